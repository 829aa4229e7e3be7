"""The paper's Figure 3: BLEU by sentence length and by average word-frequency rank.

Sutskever et al. (2014, section 3.7, Figure 3) sort the test sentences by their length, and
again by their "average word frequency rank", cut each ordering into groups, and plot each
group's BLEU against the length (or rank) that marks it. They find that the LSTM holds up on
long sentences (no degradation below 35 words) and degrades on sentences of rarer words.

Here, as there:
- a sentence's length is its number of source words;
- a word's frequency rank is its position in the training corpus's source words sorted by count
  (1: the most frequent; a word the training corpus lacks ranks after every word it has), and a
  sentence's rank is the mean over its words;
- each ordering is cut into `groups` groups of about equal size, never splitting sentences of
  equal key (so group sizes vary, and are reported), and each group is marked by its largest key.

Words are lowercased `\\w+` runs and single punctuation marks, whatever the model's tokenizer,
so that runs with words and runs with subwords are bucketed alike. BLEU is sacreBLEU's corpus
BLEU of each group, on detokenized text (lowercased when the run's data is).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from seq2seq.analysis.plot import check_figure_output, new_figure, run_names, save_figure
from seq2seq.errors import Seq2SeqError

WORD = re.compile(r"\w+|[^\w\s]")


def words(sentence: str) -> list[str]:
    return WORD.findall(sentence.lower())


def frequency_ranks(sentences: list[str]) -> dict[str, int]:
    """Each word's rank by count in `sentences`, from 1; ties broken by first appearance."""
    counts = Counter(word for sentence in sentences for word in words(sentence))
    return {word: rank for rank, (word, _) in enumerate(counts.most_common(), start=1)}


def mean_rank(sentence: str, ranks: dict[str, int]) -> float:
    """The mean frequency rank of the sentence's words; 0 for a sentence without words."""
    found = words(sentence)
    unseen = len(ranks) + 1
    return sum(ranks.get(word, unseen) for word in found) / len(found) if found else 0.0


def groups_by(keys: list[float], count: int) -> list[list[int]]:
    """Sentence indices sorted by key, cut into about `count` groups of about equal size; a
    group ends only where the key changes, so equal keys share a group."""
    if count < 1:
        raise Seq2SeqError(f"--groups must be at least 1 ({count})")
    order = sorted(range(len(keys)), key=lambda index: keys[index])
    groups, current = [], []
    for position, index in enumerate(order):
        current.append(index)
        boundary = math.ceil((len(groups) + 1) * len(order) / count)
        last = position + 1 == len(order)
        if last or (position + 1 >= boundary and keys[order[position + 1]] != keys[index]):
            groups.append(current)
            current = []
    return groups


@dataclass(frozen=True)
class Bucket:
    """One group of sentences: the largest key in it, its size, and its BLEU."""

    key: float
    sentences: int
    bleu: float


def bucket_bleu(
    keys: list[float],
    hypotheses: list[str],
    references: list[str],
    *,
    count: int,
    lowercase: bool,
) -> list[Bucket]:
    import sacrebleu

    buckets = []
    for group in groups_by(keys, count):
        bleu = sacrebleu.corpus_bleu(
            [hypotheses[i] for i in group], [[references[i] for i in group]], lowercase=lowercase
        )
        buckets.append(Bucket(max(keys[i] for i in group), len(group), bleu.score))
    return buckets


@dataclass(frozen=True)
class RunBuckets:
    name: str
    length: list[Bucket]
    rank: list[Bucket]


def analyse(
    name: str,
    sources: list[str],
    hypotheses: list[str],
    references: list[str],
    train_sources: list[str],
    *,
    groups: int,
    lowercase: bool,
) -> RunBuckets:
    """Figure 3's two series for one run's translations of a split."""
    if not train_sources:
        raise Seq2SeqError(f"{name}: the training corpus has no source sentences to rank words")
    ranks = frequency_ranks(train_sources)
    lengths = [float(len(words(sentence))) for sentence in sources]
    mean_ranks = [mean_rank(sentence, ranks) for sentence in sources]
    common = {"count": groups, "lowercase": lowercase}
    return RunBuckets(
        name,
        bucket_bleu(lengths, hypotheses, references, **common),
        bucket_bleu(mean_ranks, hypotheses, references, **common),
    )


def draw(results: list[RunBuckets], split: str):
    """Two panels, as the paper's Figure 3: BLEU by length (left), by mean rank (right). As
    there, the groups stand evenly along the x-axis in their order, each marked by its largest
    key (the first run's, where runs ranked words on other corpora) and its number of
    sentences."""
    figure = new_figure(figsize=(12, 4.8), layout="constrained")
    left, right = figure.subplots(1, 2)
    panels = (
        (left, "length", "sentence length (source words; largest in the group)"),
        (right, "rank", "average word frequency rank (largest in the group)"),
    )
    for ax, field, label in panels:
        for result in results:
            buckets = getattr(result, field)
            ax.plot(range(len(buckets)), [b.bleu for b in buckets], marker="o", label=result.name)
        marks = getattr(results[0], field)
        ax.set_xticks(range(len(marks)), [f"{b.key:.0f}\nn={b.sentences}" for b in marks])
        ax.tick_params(axis="x", labelsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("BLEU")
        ax.grid(alpha=0.3)
    left.set_title(f"BLEU by sentence length ({split})")
    right.set_title(f"BLEU by average word frequency rank ({split})")
    left.legend(fontsize=8)
    return figure


def table(result: RunBuckets) -> list[str]:
    """The two series as text: key, sentences, BLEU."""
    lines = [f"{result.name}"]
    for field, heading in (("length", "length <="), ("rank", "mean rank <=")):
        lines.append(f"  {heading:>14}  sentences   BLEU")
        lines += [
            f"  {bucket.key:>14.1f}  {bucket.sentences:>9}  {bucket.bleu:>5.2f}"
            for bucket in getattr(result, field)
        ]
    return lines


def training_sources(config, data_dir: str | None) -> list[str]:
    """The source side of every training corpus of the run's config, as raw text (tab-separated
    corpora and held-out parts read as training reads them)."""
    from seq2seq.data.files import data_dirs, locate
    from seq2seq.data.reading import read_split

    dirs = data_dirs(data_dir or config.dir)
    return [
        sentence
        for prefix in config.train_corpora
        for sentence in read_split(locate(config, prefix, dirs, "train"), skip_empty=True).src
    ]


def length_frequency(
    runs: list[str],
    split: str,
    output: str | None,
    *,
    device,
    settings,
    groups: int = 8,
    data_dir: str | None = None,
) -> list[RunBuckets]:
    """`seq2seq analysis`: decode `split` with each run, bucket, draw to `output` if given."""
    from seq2seq.data.splits import load_split
    from seq2seq.evaluate import evaluate_loaded
    from seq2seq.loader import load_ensemble

    if output is not None:
        check_figure_output(Path(output))
    groups_by([0.0], groups)  # refuse a bad --groups before any decoding
    results = []
    for name, run in zip(run_names(runs), runs, strict=True):
        ckpt = load_ensemble([run], device)
        data = ckpt.config.data
        # The split is read once; its free-running loss, which the figure never shows, is
        # not measured.
        text = load_split(data, split, data_dir, vocabs=ckpt.vocabs)
        found = evaluate_loaded(ckpt, text, device=device, settings=settings, free_running=False)
        train = training_sources(data, data_dir)
        results.append(
            analyse(
                name,
                text.src_text,
                found["translations"],
                text.tgt_text,
                train,
                groups=groups,
                lowercase=data.lowercase,
            )
        )
    if output is not None:
        save_figure(draw(results, split), Path(output))
    return results
