"""SentencePiece subword vocabularies: exact round trips, the specials at 0-3, joint and separate
vocabularies, training on the training split only, the caches, the checkpoint files, and a
run that translates without its training data."""

from __future__ import annotations

import gzip
import io
import json
import shutil
from pathlib import Path

import pytest
import reference_pipeline as reference
import sentencepiece
from conftest import CONFIGS, MULTI30K, assert_error, cli, isolated

from seq2seq import checkpoint, loader
from seq2seq.config import (
    Config,
    ConfigError,
    DataConfig,
    RecurrentConfig,
    load_config,
)
from seq2seq.data import subword
from seq2seq.data.tokenizer import (
    SentencePieceTokenizer,
    Tokenizer,
    _clean,
    processor,
    sentencepiece_input,
    tokenizer_for,
)
from seq2seq.data.vocab import SPECIALS, model_sizes
from seq2seq.errors import CheckpointError
from seq2seq.evaluate import tokenized_bleu
from seq2seq.models import build_model

# A word and a letter found in no training line the models may read: they come only after
# data.train_limit and in the validation and test splits.
UNSEEN = "Ørnulf"
LIMIT = 300


def _lines(path: Path, count: int | None = None) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle][:count]


@pytest.fixture
def corpus(tmp_path, multi30k_dir) -> Path:
    """The first 300 Multi30k pairs, then 100 pairs (beyond data.train_limit) and validation and
    test splits that all name UNSEEN."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for lang, greeting in (("de", "grüßt"), ("en", "greets")):
        train = _lines(multi30k_dir / f"train.{lang}.gz", LIMIT)
        assert not any("ø" in line.lower() for line in train)
        unseen = [f"{UNSEEN} {greeting} {UNSEEN} number {i}." for i in range(100)]
        (folder / f"train.{lang}").write_text("\n".join(train + unseen) + "\n")
        for split in ("val", "test"):
            (folder / f"{split}.{lang}").write_text("\n".join(unseen[:20]) + "\n")
    return folder


def small_config(folder: Path, **settings) -> DataConfig:
    defaults = {"tokenizer": "sentencepiece", "vocab_size": 300, "train_limit": LIMIT}
    return DataConfig(corpus="files", dir=str(folder), test="test", **{**defaults, **settings})


def prepare(config: DataConfig):
    train = reference.load_split(config, "train")
    return train, reference.build_vocabs(config, train)


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_the_specials_have_ids_0_to_3_in_the_model_and_the_vocabulary(corpus, model_type):
    _, (src_vocab, tgt_vocab) = prepare(small_config(corpus, sp_model_type=model_type))
    for vocab in (src_vocab, tgt_vocab):
        assert vocab.itos[:4] == list(SPECIALS)
        assert (vocab.unk, vocab.pad, vocab.sos, vocab.eos) == (0, 1, 2, 3)
        sp = processor(vocab.subword_model)
        assert [sp.id_to_piece(i) for i in range(4)] == list(SPECIALS)
        assert (sp.unk_id(), sp.pad_id(), sp.bos_id(), sp.eos_id()) == (0, 1, 2, 3)
        assert len(vocab) == sp.get_piece_size() == 300
        # A piece's index in the vocabulary is its SentencePiece id.
        text = "Zwei Männer stehen am Herd und bereiten Essen zu."
        assert vocab.ids(sp.encode(text, out_type=str)) == sp.encode(text)


def test_the_vocabulary_comes_from_the_first_train_limit_training_pairs_only(corpus):
    config = small_config(corpus)
    _, (src_vocab, tgt_vocab) = prepare(config)
    for vocab, lang in ((src_vocab, "de"), (tgt_vocab, "en")):
        text = (corpus / f"train.{lang}").read_text().lower().splitlines()[:LIMIT]
        spelled = "".join(f" {line}\n" for line in text)
        pieces = [piece.replace("▁", " ") for piece in vocab.itos[4:]]
        # Every character of the text SentencePiece reads becomes a piece, so "ø" would be one
        # had it read a line beyond the limit, or a validation or test line.
        assert not any("ø" in piece for piece in pieces)
        assert all(piece in spelled for piece in pieces)
    test = reference.load_split(config, "test")
    assert src_vocab.unk in src_vocab.ids(test.src_tokens[0])


def test_a_joint_vocabulary_is_one_vocab_for_both_sides(corpus):
    _, (src_vocab, tgt_vocab) = prepare(small_config(corpus, joint_vocab=True, vocab_size=400))
    assert src_vocab is tgt_vocab
    assert model_sizes(src_vocab, tgt_vocab)["joint_vocab"] is True
    assert {"▁mann", "▁man"} <= set(src_vocab.itos)  # pieces of both languages

    _, (src_vocab, tgt_vocab) = prepare(small_config(corpus))
    assert src_vocab != tgt_vocab
    assert model_sizes(src_vocab, tgt_vocab)["joint_vocab"] is False


def test_a_joint_spacy_vocabulary_counts_both_sides(corpus):
    config = small_config(corpus, tokenizer="spacy", joint_vocab=True, min_freq=1)
    _, (src_vocab, tgt_vocab) = prepare(config)
    assert src_vocab is tgt_vocab
    assert {"mann", "man"} <= set(src_vocab.itos)
    assert src_vocab.subword_model is None


def test_an_unknown_character_decodes_as_unk(corpus):
    _, (_, tgt_vocab) = prepare(small_config(corpus))
    tokenizer = tokenizer_for(small_config(corpus), "tgt", tgt_vocab)
    ids = tgt_vocab.ids(tokenizer("a dog ☃ runs."))
    assert tokenizer.detokenize(tgt_vocab.tokens(ids)) == "a dog <unk> runs."


def test_pre_tokenized_pieces_spell_spacy_tokens_and_detokenize_by_moses_rules(corpus):
    config = small_config(corpus, sp_pretokenize=True, lowercase=False)
    _, (_, tgt_vocab) = prepare(config)
    tokenizer = tokenizer_for(config, "tgt", tgt_vocab)
    words = Tokenizer("en", lowercase=False)
    text = "A man's red t-shirt, in the park."
    pieces = tokenizer(text)
    assert (
        tokenizer.join(pieces) == " ".join(words(text)) == "A man 's red t - shirt , in the park ."
    )
    assert tokenizer.detokenize(pieces) == words.detokenize(words(text)) == text


def test_the_spacy_token_bleu_of_subword_output_retokenizes_the_decoded_text(corpus):
    _, (_, tgt_vocab) = prepare(small_config(corpus))
    tokenizer = tokenizer_for(small_config(corpus), "tgt", tgt_vocab)
    references = ["A man's t-shirt, in the park.", "Two dogs play."]
    output = [tokenizer(reference) for reference in references]  # a perfect translation
    assert tokenized_bleu([tokenizer.join(o) for o in output], references, "en") == pytest.approx(
        100
    )
    assert tokenized_bleu([" ".join(o) for o in output], references, "en") < 50.0


@pytest.fixture(scope="module", params=[False, True], ids=["cased", "lowercased"])
def multi30k_models(request, tmp_path_factory):
    """SentencePiece models of Multi30k's whole training text, default settings but case."""
    config = DataConfig(dir=str(MULTI30K), tokenizer="sentencepiece", lowercase=request.param)
    with isolated(tmp_path_factory.getbasetemp() / "cache"):
        return config, reference.subword_vocabs(config)


@pytest.mark.slow
@pytest.mark.parametrize("side", ["src", "tgt"])
def test_every_test2016_line_round_trips_exactly(multi30k_models, side):
    """Exact up to what SentencePiece is given to read: NFC, control characters as spaces,
    runs of spaces as one, no spaces at the ends, and lowercase where configured."""
    config, vocabs = multi30k_models
    vocab = vocabs[side == "tgt"]
    lang = config.src_lang if side == "src" else config.tgt_lang
    lines = _lines(MULTI30K / f"test_2016_flickr.{lang}.gz")
    tokenizer = tokenizer_for(config, side, vocab)
    assert len(lines) == 1000
    for line, pieces in zip(lines, tokenizer.tokenize_many(lines), strict=True):
        assert vocab.unk not in vocab.ids(pieces)
        expected = " ".join(word for word in _clean(line).split(" ") if word)
        assert tokenizer.detokenize(pieces) == (expected.lower() if config.lowercase else expected)


@pytest.mark.slow
def test_decoding_gives_back_exactly_the_text_sentencepiece_read(multi30k_models):
    config, (src_vocab, _) = multi30k_models
    tokenizer = tokenizer_for(config, "src", src_vocab)
    cases = {
        "Ein Café.": "Ein Café.",
        # NFC composes; a no-break space stays (NFKC, SentencePiece's default, makes it a space)
        "  Zwei   Hunde\tspielen \u00a0im Cafe\u0301.  ": "Zwei Hunde spielen \u00a0im Café.",
        "": "",
    }
    for text, expected in cases.items():
        if config.lowercase:
            expected = expected.lower()
        assert tokenizer.detokenize(tokenizer(text)) == expected


def test_the_cache_serves_a_second_preparation_without_training(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQ2SEQ_CACHE", str(tmp_path / "private-cache"))
    config = small_config(corpus, sp_pretokenize=True)
    first = prepare(config)
    assert len(list((tmp_path / "private-cache" / "subword").glob("*.model"))) == 2

    def refuse(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(sentencepiece.SentencePieceTrainer, "train", refuse)
    monkeypatch.setattr(SentencePieceTokenizer, "encode", refuse)
    monkeypatch.setattr(Tokenizer, "tokenize_many", refuse)
    second = prepare(config)
    assert second[1] == first[1]
    assert second[0] == first[0]
    with pytest.raises(AssertionError, match="trained again"):  # other settings: another model
        prepare(small_config(corpus, sp_pretokenize=True, vocab_size=301))


def test_training_is_reproducible_byte_for_byte(corpus):
    lines = (corpus / "train.en").read_text().splitlines()[:LIMIT]
    for model_type in ("unigram", "bpe"):
        first = subword.train(lines, model_type=model_type, vocab_size=300, name="en")
        assert subword.train(lines, model_type=model_type, vocab_size=300, name="en") == first


def test_config_checks_the_subword_keys_all_at_once():
    with pytest.raises(ConfigError) as error:
        load_config(
            None, ["data.tokenizer=wordpiece", "data.sp_model_type=char", "data.vocab_size=4"]
        )
    message = str(error.value)
    assert "data.tokenizer=wordpiece is not one of spacy, sentencepiece" in message
    assert "data.sp_model_type=char is not one of bpe, unigram" in message
    assert "data.vocab_size=4 must be more than 4" in message


@pytest.mark.parametrize(
    "vocab_size, fragments",
    [
        (100000, ["data.vocab_size=100000 is more than the de training text allows", "at most"]),
        (20, ["data.vocab_size=20 is too small for the de training text", "at least"]),
    ],
)
def test_a_vocabulary_size_the_data_cannot_give_is_refused_in_one_line(
    corpus, tmp_path, capsys, vocab_size, fragments
):
    code = cli(
        [
            "train",
            CONFIGS / "tiny.yaml",
            f"output_dir={tmp_path / 'runs'}",
            "data.corpus=files",
            f"data.dir={corpus}",
            "data.tokenizer=sentencepiece",
            f"data.vocab_size={vocab_size}",
        ]
    )
    assert_error(capsys, code, *fragments)


# Checkpoints: the SentencePiece models beside vocab.json.


def save_checkpoint(path: Path, data: DataConfig, vocabs) -> None:
    config = Config(data=data, model=RecurrentConfig(embedding_size=8, hidden_size=8, dropout=0.0))
    model = build_model(config.model, **model_sizes(*vocabs))
    checkpoint.save(path, model, config, vocabs, {"epoch": 1, "step": 1})


@pytest.mark.parametrize(
    "joint, files", [(False, ["spm.src.model", "spm.tgt.model"]), (True, ["spm.joint.model"])]
)
def test_a_checkpoint_stores_and_loads_its_models(corpus, tmp_path, joint, files):
    config = small_config(corpus, joint_vocab=joint, vocab_size=400)
    _, vocabs = prepare(config)
    save_checkpoint(tmp_path / "ckpt", config, vocabs)
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("spm.*")) == files
    loaded = checkpoint.load(tmp_path / "ckpt")
    assert loaded.vocabs == vocabs
    assert (loaded.src_vocab is loaded.tgt_vocab) == joint


def _missing(path: Path) -> None:
    path.unlink()


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00\x01 this is not a SentencePiece model")


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (_missing, "spm.src.model is missing"),
        (_garbage, "is unusable"),
        (_truncated, "is unusable"),
    ],
)
def test_a_missing_or_damaged_model_file_is_refused_in_one_line(
    corpus, tmp_path, capsys, damage, fragment
):
    config = small_config(corpus)
    _, vocabs = prepare(config)
    save_checkpoint(tmp_path / "ckpt", config, vocabs)
    damage(tmp_path / "ckpt" / "spm.src.model")
    with pytest.raises(CheckpointError, match=fragment):
        checkpoint.load(tmp_path / "ckpt")
    assert_error(capsys, cli(["translate", tmp_path / "ckpt", "Ein Mann."]), fragment)


def test_model_files_that_do_not_match_vocab_json_are_refused(corpus, tmp_path):
    config = small_config(corpus)
    _, vocabs = prepare(config)
    save_checkpoint(tmp_path / "ckpt", config, vocabs)
    src, tgt = tmp_path / "ckpt" / "spm.src.model", tmp_path / "ckpt" / "spm.tgt.model"
    src_bytes = src.read_bytes()
    src.write_bytes(tgt.read_bytes())
    tgt.write_bytes(src_bytes)
    with pytest.raises(CheckpointError, match="spm.src.model does not hold the src vocabulary"):
        checkpoint.load(tmp_path / "ckpt")


def test_an_ensemble_refuses_members_with_other_sentencepiece_models(corpus, tmp_path):
    config = small_config(corpus)
    _, vocabs = prepare(config)
    # The same pieces from a model that differs only in a training setting it records.
    lines = sentencepiece_input(
        (corpus / "train.de").read_text().splitlines()[:LIMIT], lowercase=True
    )
    other = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=other,
        model_type="unigram",
        vocab_size=300,
        max_sentence_length=5000,
        **subword.OPTIONS,
    )
    other_vocab = subword.subword_vocab(other.getvalue())
    assert other_vocab.itos == vocabs[0].itos and other_vocab != vocabs[0]
    save_checkpoint(tmp_path / "a", config, vocabs)
    save_checkpoint(tmp_path / "b", config, (other_vocab, vocabs[1]))
    with pytest.raises(CheckpointError, match="different SentencePiece models"):
        loader.load_ensemble([tmp_path / "a", tmp_path / "b"])
    save_checkpoint(tmp_path / "c", small_config(corpus, tokenizer="spacy"), vocabs)
    with pytest.raises(CheckpointError, match="data.tokenizer='spacy'"):
        loader.load_ensemble([tmp_path / "a", tmp_path / "c"])


@pytest.mark.slow
def test_a_subword_run_translates_from_its_directory_alone(tmp_path, multi30k_dir, capsys):
    argv = [
        "train",
        CONFIGS / "tiny.yaml",
        f"output_dir={tmp_path / 'runs'}",
        f"data.dir={multi30k_dir}",
        "data.tokenizer=sentencepiece",
        "data.vocab_size=500",
        "data.train_limit=400",
        "train.epochs=1",
    ]
    assert cli(argv) == 0
    run = tmp_path / "runs" / "tiny"
    assert sorted(p.name for p in (run / "best").glob("spm.*")) == [
        "spm.src.model",
        "spm.tgt.model",
    ]
    capsys.readouterr()
    written = tmp_path / "test.en"
    assert cli(["evaluate", run, "--split", "test", "--json", "--output", written]) == 0
    figures = json.loads(capsys.readouterr().out)
    translations = written.read_text(encoding="utf-8").splitlines()
    assert figures["sentences"] == len(translations) == 1000
    # The tutorial's figure is that of the text the pieces decode to, never of the pieces.
    assert not any("\u2581" in line for line in translations)
    with gzip.open(multi30k_dir / "test_2016_flickr.en.gz", "rt", encoding="utf-8") as handle:
        references = handle.read().splitlines()
    assert figures["bleu_tokenized"] == tokenized_bleu(translations, references, "en")
    assert cli(["translate", run, "Ein Mann."]) == 0
    expected = capsys.readouterr().out

    copy = tmp_path / "elsewhere" / "tiny"
    shutil.copytree(run, copy)
    shutil.rmtree(run)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEQ2SEQ_DATA", str(tmp_path / "nowhere"))
        patch.setenv("SEQ2SEQ_CACHE", str(tmp_path / "empty-cache"))
        assert cli(["translate", copy, "Ein Mann."]) == 0
    out = capsys.readouterr().out
    assert out == expected and len(out.splitlines()) == 1
    assert not (tmp_path / "empty-cache").exists()
