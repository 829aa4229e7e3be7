"""Tab-separated corpora (`data.columns`) and splits held out of the training corpus
(`data.holdout`): read as the columns say, plain or gzip, prepared as two files would be,
a bad line refused in one line, and a held-out split that shares no deciding sentence with
training, whatever the file's order."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest
from conftest import ROOT

from seq2seq.config import ConfigError, DataConfig, load_config
from seq2seq.data.prepare import prepare
from seq2seq.data.splits import load_split
from seq2seq.errors import DataError

TATOEBA = ROOT.parent / "shared" / "data" / "tatoeba-deu-eng" / "deu-eng.tsv.gz"

PAIRS = [
    ("Hi.", "Hallo!"),
    ("Run!", "Lauf!"),
    ("I won.", "Ich habe gewonnen."),
    ("Help!", "Hilfe!"),
]


def write_tsv(path: Path, rows: list[tuple[str, ...]]) -> Path:
    text = "".join("\t".join(row) + "\n" for row in rows).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text) if path.suffix == ".gz" else text)
    return path


def tsv(folder: Path, **settings) -> DataConfig:
    settings = {"columns": ("en", "de"), "num_workers": 1, "min_freq": 1, **settings}
    return DataConfig(corpus="files", dir=str(folder), **settings)


@pytest.mark.parametrize("name", ["train.tsv", "train.tsv.gz", "train.txt", "train.txt.gz"])
def test_the_columns_are_chosen_by_language_plain_or_gzip(tmp_path, name):
    write_tsv(tmp_path / name, PAIRS)
    split = load_split(tsv(tmp_path), "train")
    assert split.src_text == [de for _, de in PAIRS]  # de -> en, from the second column
    assert split.tgt_text == [en for en, _ in PAIRS]


def test_a_column_of_another_name_is_skipped(tmp_path):
    rows = [(en, de, "CC-BY 2.0 (France) Attribution: tatoeba.org #1") for en, de in PAIRS]
    write_tsv(tmp_path / "train.tsv", rows)
    split = load_split(tsv(tmp_path, columns=("en", "de", "attribution")), "train")
    assert split.src_text == [de for _, de in PAIRS]


def test_a_tab_separated_corpus_is_prepared_as_two_files_would_be(tmp_path):
    write_tsv(tmp_path / "tsv" / "train.tsv", PAIRS)
    lines = tmp_path / "lines"
    lines.mkdir()
    (lines / "train.de").write_text("".join(de + "\n" for _, de in PAIRS))
    (lines / "train.en").write_text("".join(en + "\n" for en, _ in PAIRS))
    from_tsv = prepare(tsv(tmp_path / "tsv"))
    from_lines = prepare(DataConfig(corpus="files", dir=str(lines), num_workers=1, min_freq=1))
    assert from_tsv.path != from_lines.path
    for side in ("src", "tgt"):
        assert getattr(from_tsv, side).ids.tolist() == getattr(from_lines, side).ids.tolist()
    assert from_tsv.manifest["parts"][0]["lines"] == 4
    assert [entry["path"] for entry in from_tsv.manifest["inputs"]] == [
        str(tmp_path / "tsv" / "train.tsv")
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_line_with_other_fields_is_one_line_naming_file_and_line(tmp_path, workers):
    rows = [*PAIRS] * 3000
    rows[9000] = ("Hi.", "Hallo!", "extra")
    path = write_tsv(tmp_path / "train.tsv.gz", rows)
    data = tsv(tmp_path, num_workers=workers)
    expected = (
        f"{path} line 9001 has 3 tab-separated fields, but data.columns names 2 (en, de); "
        f"set data.columns to name each of its columns, or mend the line"
    )
    for read in (lambda: prepare(data), lambda: load_split(data, "train")):
        with pytest.raises(DataError) as error:
            read()
        assert str(error.value) == expected


def test_a_missing_tab_separated_file_names_what_was_looked_for(tmp_path):
    with pytest.raises(DataError, match=r"cannot find train\.tsv or train\.txt \(or either \.gz\)"):
        load_split(tsv(tmp_path), "train")


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["data.columns=en,fr"], "data.columns=['en', 'fr'] must name data.src_lang='de'"),
        (["data.columns=de,de,en"], "must name data.src_lang='de' once"),
        (["data.holdout=0.5,0.5"], "its shares must add up to less than 1"),
        (["data.holdout=0.1,0.1", "data.train=a,b"], "data.train lists 2; name one"),
        (["data.holdout=0.1,0.1", "data.holdout_by=fr"], "data.holdout_by='fr' must be"),
        (["data.holdout=0,0.1"], "data.holdout=[0.0, 0.1] must be in (0, 1) or null"),
    ],
)
def test_bad_tab_and_holdout_settings_are_refused_at_load(overrides, fragment):
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def corpus_with_repeats(count: int) -> list[tuple[str, str]]:
    """`count` pairs, many English sentences with several German ones, as in Tatoeba."""
    return [(f"Sentence {i % (count // 3)}.", f"Satz {i}.") for i in range(count)]


def parts(folder: Path, data: DataConfig) -> dict[str, list[tuple[str, str]]]:
    splits = {name: load_split(data, name) for name in ("train", "valid", "test")}
    return {
        name: list(zip(split.tgt_text, split.src_text, strict=True))
        for name, split in splits.items()
    }


def test_held_out_splits_share_no_deciding_sentence_with_training(tmp_path):
    rows = corpus_with_repeats(3000)
    write_tsv(tmp_path / "corpus.tsv", rows)
    data = tsv(tmp_path, train="corpus", holdout=(0.1, 0.1), holdout_by="en")
    found = parts(tmp_path, data)
    assert sorted(sum(found.values(), [])) == sorted(rows)  # each pair in one split
    english = {name: {en for en, _ in pairs} for name, pairs in found.items()}
    assert not english["train"] & (english["valid"] | english["test"])
    assert not english["valid"] & english["test"]
    assert 200 < len(found["valid"]) < 400 and 200 < len(found["test"]) < 400
    prepared = prepare(data)  # preparation reads the training part only
    assert len(prepared) == len(found["train"])


def test_the_held_out_splits_do_not_depend_on_the_files_order(tmp_path):
    rows = corpus_with_repeats(600)
    write_tsv(tmp_path / "a" / "corpus.tsv", rows)
    write_tsv(tmp_path / "b" / "corpus.tsv", random.Random(0).sample(rows, len(rows)))
    found = [
        parts(folder, tsv(folder, train="corpus", holdout=(0.2, 0.2), holdout_by="en"))
        for folder in (tmp_path / "a", tmp_path / "b")
    ]
    assert {name: sorted(pairs) for name, pairs in found[0].items()} == {
        name: sorted(pairs) for name, pairs in found[1].items()
    }


def test_an_empty_held_out_part_is_one_line(tmp_path):
    write_tsv(tmp_path / "corpus.tsv", PAIRS)
    data = tsv(tmp_path, train="corpus", holdout=(0.001, 0.001))
    with pytest.raises(DataError, match="the valid part of .*corpus.tsv holds no pair"):
        load_split(data, "valid")


@pytest.mark.skipif(not TATOEBA.is_file(), reason="the shared Tatoeba file is not here")
@pytest.mark.slow
def test_the_tatoeba_split_keeps_each_english_sentence_in_one_split():
    data = tsv(TATOEBA.parent, train="deu-eng", holdout=(0.01, 0.01), holdout_by="en")
    found = parts(TATOEBA.parent, data)
    assert sum(map(len, found.values())) == 169_813
    english = {name: {en for en, _ in pairs} for name, pairs in found.items()}
    assert not english["train"] & (english["valid"] | english["test"])
