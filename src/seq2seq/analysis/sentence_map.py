"""The paper's Figure 2: a 2-D PCA projection of the encoder's sentence representations.

Sutskever et al. (2014, section 3.8) project the LSTM's hidden state after reading each phrase
and find that it is sensitive to word order ("John admires Mary" / "Mary admires John" lie
apart) but fairly insensitive to the active or passive voice. Here each sentence's vector is
the top encoder layer's final hidden state, H numbers, projected onto the two directions of
largest variance among the sentences drawn.

The default probes (`data/probe_sentences.de`) come in groups of one meaning each; the command
also reports how close sentences of one group are compared with sentences of different groups,
so that whether the meaning clusters form is a figure, not only a picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from seq2seq.analysis.plot import figure_format, new_figure, save_figure
from seq2seq.data.examples import Example, encode_source, encode_target
from seq2seq.data.reading import read_lines
from seq2seq.data.tokenizer import tokenizer_for
from seq2seq.decode import length_batches
from seq2seq.device import pick_device
from seq2seq.errors import Seq2SeqError
from seq2seq.loader import load_checkpoint

PROBES = "probe_sentences.de"


@dataclass(frozen=True)
class Probes:
    """Sentences and the group (meaning) of each, numbered from 0."""

    sentences: list[str]
    groups: list[int]


def parse_probes(lines: list[str], source: str) -> Probes:
    """One sentence per line; a blank line starts a new group; `#` starts a comment line."""
    sentences, groups, group, blank = [], [], 0, False
    for line in lines:
        text = line.strip()
        if text.startswith("#"):
            continue
        if not text:
            blank = True
            continue
        if blank and sentences:
            group += 1
        sentences.append(text)
        groups.append(group)
        blank = False
    if len(sentences) < 2:
        raise Seq2SeqError(
            f"{source} has fewer than 2 sentences ({len(sentences)}); a sentence map needs "
            f"at least 2, one per line"
        )
    return Probes(sentences, groups)


def read_probes(path: str | None) -> Probes:
    """The sentences of path, or the shipped German probes."""
    if path is not None:
        return parse_probes(read_lines(Path(path)), str(path))
    with resources.as_file(resources.files("seq2seq.data").joinpath(PROBES)) as shipped:
        return parse_probes(read_lines(shipped), str(shipped))


def summary(state) -> torch.Tensor:
    """(B, H): one vector per sentence, from an encoder state that offers one (`summary()`)."""
    if hasattr(state, "summary"):
        return state.summary()
    raise Seq2SeqError(
        f"this model's encoder state ({type(state).__name__}) has no sentence vector; "
        f"sentence-map needs a single model whose encoder state has summary(), such as "
        f"model.type=lstm, not an ensemble"
    )


@torch.inference_mode()
def sentence_vectors(
    model, examples: list[Example], *, pad: int, device: torch.device, batch_size: int = 128
) -> torch.Tensor:
    """(N, H) float32 on the CPU: each example's source encoded, in the examples' order."""
    model.eval()
    vectors: list[torch.Tensor | None] = [None] * len(examples)
    for batch in length_batches(examples, batch_size, pad):
        batch = batch.to(device)
        found = summary(model.encode(batch.src, batch.src_lengths)).float().cpu()  # (B, H)
        for index, vector in zip(batch.indices, found, strict=True):
            vectors[index] = vector
    return torch.stack(vectors)


def project(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PCA by the SVD of the centred vectors: (N, H) -> the (N, 2) coordinates along the two
    principal components, and the share of the variance each explains. Each axis is signed so
    that its largest coordinate is positive, so the picture does not flip between runs."""
    centred = vectors.double() - vectors.double().mean(dim=0)
    _, singular, directions = torch.linalg.svd(centred, full_matrices=False)
    points = centred @ directions[:2].T  # (N, 2)
    signs = points.gather(0, points.abs().argmax(dim=0, keepdim=True)).sign()  # (1, 2)
    points = points * torch.where(signs == 0, 1.0, signs)
    variance = singular.square()
    share = variance[:2] / variance.sum().clamp_min(torch.finfo(variance.dtype).tiny)
    return points, share


def separation(vectors: torch.Tensor, groups: list[int]) -> tuple[float, float] | None:
    """Mean cosine similarity of sentence pairs in one group and of pairs in different groups,
    in the full H dimensions, after removing the sentences' mean (as PCA does: what all
    sentences share says nothing about which belong together); None without both kinds."""
    centred = vectors.double() - vectors.double().mean(dim=0)
    unit = torch.nn.functional.normalize(centred, dim=1)
    cosine = unit @ unit.T  # (N, N)
    group = torch.tensor(groups)
    same = group[:, None] == group[None, :]
    pairs = ~torch.eye(len(groups), dtype=torch.bool)
    within, between = cosine[same & pairs], cosine[~same]
    if not (within.numel() and between.numel()):
        return None
    return within.mean().item(), between.mean().item()


def draw_map(probes: Probes, points: torch.Tensor, share: torch.Tensor, title: str):
    """A labelled point per sentence, coloured by group."""
    from matplotlib import colormaps

    figure = new_figure(figsize=(9, 7), layout="constrained")
    ax = figure.subplots()
    palette = colormaps["tab10"].colors
    for sentence, group, (x, y) in zip(
        probes.sentences, probes.groups, points.tolist(), strict=True
    ):
        colour = palette[group % len(palette)]
        ax.scatter([x], [y], color=colour, s=30)
        ax.annotate(sentence, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8)
    ax.set_xlabel(f"principal component 1 ({share[0]:.0%} of the variance)")
    ax.set_ylabel(f"principal component 2 ({share[1]:.0%} of the variance)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.margins(0.25, 0.1)  # room for the labels of the outermost points
    return figure


def sentence_map(
    run: str, output: str, *, sentences: str | None = None, device: str = "auto"
) -> dict:
    """`seq2seq sentence-map`: encode the probes with the run's model, project them and draw
    the map into output. Returns the sentences, their groups and 2-D points, the variance
    shares and the group separation (within, between), or None for it without groups."""
    output = Path(output)
    figure_format(output)  # refuse a bad name, a missing matplotlib or bad probes before
    new_figure()  # loading the model
    probes = read_probes(sentences)
    chosen = pick_device(device)
    ckpt = load_checkpoint(run, chosen)
    data = ckpt.config.data
    tokens = tokenizer_for(data, "src", ckpt.src_vocab).tokenize_many(probes.sentences)
    examples = [
        Example(encode_source(t, ckpt.src_vocab, data), encode_target([], ckpt.tgt_vocab, data))
        for t in tokens
    ]
    vectors = sentence_vectors(ckpt.model, examples, pad=ckpt.src_vocab.pad, device=chosen)
    points, share = project(vectors)
    title = f"{ckpt.path}: encoder's final hidden state (top layer), PCA"
    save_figure(draw_map(probes, points, share, title), output)
    return {
        "sentences": probes.sentences,
        "groups": probes.groups,
        "points": points.tolist(),
        "variance_share": share.tolist(),
        "separation": separation(vectors, probes.groups),
    }
