"""SentencePiece subword models (Kudo and Richardson, 2018): BPE (Sennrich et al., 2016) or the
unigram language model (Kudo, 2018), trained on the training split's text only.

SentencePiece is told to give `<unk> <pad> <sos> <eos>` the ids 0-3, so the model's pieces in
id order are a `Vocab` as every model and search expects it, a piece's index being its id.
Training is reproducible: one thread (the unigram trainer's pieces change with the number of
threads), every sentence read (no sampling), a fixed random seed; the same text and settings
give the same model, byte for byte.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterable

import sentencepiece

from seq2seq.config import ConfigError, DataConfig
from seq2seq.data.files import cache_dir
from seq2seq.data.tokenizer import processor
from seq2seq.data.vocab import EOS, PAD, SOS, UNK, Vocab
from seq2seq.writing import write_cache

log = logging.getLogger(__name__)

CACHE_FORMAT = 1

SEED = 1234

OPTIONS = {
    # The specials where Vocab has them; an unknown piece decodes as "<unk>", as a word does.
    "unk_id": 0,
    "pad_id": 1,
    "bos_id": 2,
    "eos_id": 3,
    "unk_piece": UNK,
    "pad_piece": PAD,
    "bos_piece": SOS,
    "eos_piece": EOS,
    "unk_surface": UNK,
    # Text arrives NFC-normalised (tokenizer.sentencepiece_input); SentencePiece's default NFKC
    # would rewrite some characters ("…" as "...") and spoil exact detokenization.
    "normalization_rule_name": "identity",
    "character_coverage": 1.0,  # every character of the training text is a piece
    "input_sentence_size": 0,  # read every sentence: no random sample
    "num_threads": 1,
    "minloglevel": 2,  # no progress output
}


def train(lines: list[str], *, model_type: str, vocab_size: int, name: str) -> bytes:
    """A SentencePiece model of `vocab_size` pieces (specials included) for these lines,
    serialized. `name` says whose text it is in an error (e.g. "de", "de+en")."""
    model = io.BytesIO()
    sentencepiece.set_random_generator_seed(SEED)
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=model,
            model_type=model_type,
            vocab_size=vocab_size,
            **OPTIONS,
        )
    except RuntimeError as error:
        raise _explain(str(error), vocab_size, model_type, name) from None
    return model.getvalue()


def _explain(message: str, vocab_size: int, model_type: str, name: str) -> ConfigError:
    """SentencePiece's refusal as one line naming the key and the value that would work."""
    if found := re.search(r"set it to a value <= (\d+)", message):
        return ConfigError(
            f"data.vocab_size={vocab_size} is more than the {name} training text allows with "
            f"data.sp_model_type={model_type}; set data.vocab_size to at most {found[1]}"
        )
    if found := re.search(r"smaller than required_chars\. \d+ vs (\d+)", message):
        return ConfigError(
            f"data.vocab_size={vocab_size} is too small for the {name} training text: its "
            f"characters and the 4 special tokens need at least {found[1]} pieces"
        )
    return ConfigError(
        f"SentencePiece cannot train on the {name} training text with data.vocab_size="
        f"{vocab_size}, data.sp_model_type={model_type}: {' '.join(message.split())}"
    )


def subword_vocab(model: bytes) -> Vocab:
    """The vocabulary of a serialized SentencePiece model: its pieces in id order, carrying the
    model. ValueError if the bytes are not such a model."""
    sp = processor(model)
    return Vocab([sp.id_to_piece(i) for i in range(sp.get_piece_size())], subword_model=model)


def cache_key(*, model_type: str, vocab_size: int) -> str:
    """Everything a model depends on besides its text, for the model cache."""
    options = ",".join(f"{key}={value}" for key, value in sorted(OPTIONS.items()))
    return f"{model_type}|{vocab_size}|{SEED}|{options}|{sentencepiece.__version__}"


def train_cached(config: DataConfig, digest, lines: Iterable[str], name: str, count: int) -> Vocab:
    """The SentencePiece vocabulary of `count` lines, trained or read from the cache; `digest`
    is the SHA-256 of the lines joined by newlines, which keys the cache."""
    settings = {"model_type": config.sp_model_type, "vocab_size": config.vocab_size}
    digest.update(f"{CACHE_FORMAT}|{cache_key(**settings)}".encode())
    cache_file = cache_dir() / "subword" / f"{digest.hexdigest()[:32]}.model"
    if cache_file.is_file():
        try:
            return subword_vocab(cache_file.read_bytes())
        except (OSError, ValueError):
            pass  # A damaged cache entry is trained again below.
    log.info(
        "training a SentencePiece %s model of %d pieces on %d lines of %s (cached for later runs)",
        config.sp_model_type,
        config.vocab_size,
        count,
        name,
    )
    model = train(lines, **settings, name=name)
    write_cache(cache_file, model)
    return subword_vocab(model)
