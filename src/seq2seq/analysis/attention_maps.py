"""Attention maps: which source tokens a model looked at while it wrote each output token.

Search never collects attention. Given the translations it found, each is decoded again step
by step with the model's own `decode_step`, its tokens fed in (forced decoding), and after
each step the decoder state's `attention(layer, head)` gives that step's weights over the
source: one row per output token, and a last row for the step that wrote `<eos>` (none when
search cut the translation at its length limit). Any model whose decoder states have
`attention()` works (models/attention.py, models/transformer.py); the attention-free LSTM and
ensembles, which have no single attention, are refused in one line.

Columns are the real source positions in reading order: `<sos>`, the source tokens as the
sentence is written (a model that reads its source reversed, data.reverse_source, has its
columns turned back), then `<eos>`. The markers are kept because a model may put weight on
them; with them every row sums to 1. Padding never shows.

Shapes: B batch, S source length (with <sos> and <eos>), T output length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from seq2seq.analysis.plot import check_figure_output, new_figure, save_figure
from seq2seq.data.examples import Example, encode_source, encode_target
from seq2seq.data.vocab import EOS, SOS
from seq2seq.decode import length_batches
from seq2seq.errors import ParameterError, Seq2SeqError
from seq2seq.search import Hypothesis
from seq2seq.translate import Translator


@dataclass(frozen=True)
class AttentionMap:
    """One sentence's map: `weights[t][s]` is the attention that output token t (the last row:
    `<eos>`) paid to source token s. An empty sentence has an empty map."""

    translation: str
    source_tokens: list[str]  # <sos>, the source tokens in reading order, <eos>
    target_tokens: list[str]  # the translation's tokens, <eos>
    weights: list[list[float]]  # one row per target token, one column per source token


@torch.inference_mode()
def supports_attention(model) -> bool:
    """Whether the model's decoder states report attention (`state.attention()`), asked of the
    state of a one-token source, so that any architecture behind the protocol can answer."""
    device = next(model.parameters()).device
    state = model.encode(torch.zeros(1, 1, dtype=torch.long, device=device), torch.ones(1).long())
    return callable(getattr(state, "attention", None))


def attention_refusal(ckpt) -> str | None:
    """Why this checkpoint (or ensemble) draws no attention map, or None when it does."""
    members = ckpt.meta.get("members")
    if members:
        return f"attention maps need one model, not an ensemble of {len(members)}; give one run"
    if ckpt.meta.get("export"):
        return (
            f"{ckpt.path} is a CTranslate2 export, which gives no attention maps; give the run "
            f"it came from ({ckpt.meta['checkpoint']})"
        )
    if not supports_attention(ckpt.model):
        return (
            f"{ckpt.path} has no attention (model.type={ckpt.config.model.type}); "
            f"use model.type=attention or transformer"
        )
    return None


def check_attention(ckpt) -> None:
    if reason := attention_refusal(ckpt):
        raise Seq2SeqError(reason)


@torch.inference_mode()
def forced_attention(
    model,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    hypotheses: list[list[int]],
    *,
    sos: int,
    layer: int | None = None,
    head: int | None = None,
) -> list[torch.Tensor]:
    """Per sentence, float32 weights (T_i + 1, S_i) on the CPU: row t is the attention of the
    step that wrote hypotheses[i][t] (the last row: the step after it, which wrote <eos>) over
    the S_i = src_lengths[i] real source positions, in the model's order.

    src (B, S) and src_lengths (B,) on the CPU, as `encode` takes them; hypotheses: output ids
    without <sos> and <eos>, as search returns them."""
    model.eval()
    state = model.encode(src, src_lengths)
    steps = max(map(len, hypotheses)) + 1
    # Step t reads token t-1 of each hypothesis; rows past their hypothesis' end read <sos>,
    # and what they attend to is cut off below.
    inputs = torch.full((len(hypotheses), steps), sos, dtype=torch.long)
    for row, tokens in enumerate(hypotheses):
        inputs[row, 1 : len(tokens) + 1] = torch.tensor(tokens, dtype=torch.long)
    inputs = inputs.to(src.device)
    rows = []
    for t in range(steps):
        _, state = model.decode_step(inputs[:, t], state)
        rows.append(_step_attention(state, layer, head).float().cpu())  # (B, S)
    weights = torch.stack(rows, dim=1)  # (B, T + 1, S)
    return [
        weights[i, : len(tokens) + 1, : int(length)]
        for i, (tokens, length) in enumerate(zip(hypotheses, src_lengths.tolist(), strict=True))
    ]


def _step_attention(state, layer: int | None, head: int | None) -> torch.Tensor:
    if not callable(getattr(state, "attention", None)):
        raise Seq2SeqError(
            f"this model's decoder state ({type(state).__name__}) has no attention; "
            f"use model.type=attention or transformer"
        )
    try:
        return state.attention(layer=layer, head=head)
    except ValueError as error:  # a layer or head the model lacks, in the model's words
        raise Seq2SeqError(str(error)) from None


def reading_order(length: int, reversed_source: bool) -> list[int]:
    """The model's source positions (<sos>, tokens, <eos>; length of them) in the order that
    shows the sentence as written."""
    tokens = range(1, length - 1)
    return [0, *(reversed(tokens) if reversed_source else tokens), length - 1]


def attention_maps(
    translator: Translator,
    lines: list[str],
    best: list[tuple[str, Hypothesis]],
    *,
    layer: int | None = None,
    head: int | None = None,
) -> list[AttentionMap]:
    """The map of each line's translation: `best` holds, per line, the text and hypothesis that
    `translator.nbest(lines)` put first. A translation that search cut at its length limit
    never wrote <eos>, so its map has no <eos> row. Decoded in batches of the translator's
    batch size."""
    ckpt, settings = translator.ckpt, translator.settings
    check_attention(ckpt)
    data, vocab = ckpt.config.data, ckpt.tgt_vocab
    tokens = [t[: data.max_length] for t in translator.src_tokenizer.tokenize_many(lines)]
    empty = encode_target([], vocab, data)
    examples = [Example(encode_source(t, ckpt.src_vocab, data), empty) for t in tokens]
    maps = [AttentionMap(text, [], [], []) for text, _ in best]
    todo = [i for i, t in enumerate(tokens) if t]  # an empty sentence has no map
    batches = length_batches([examples[i] for i in todo], settings.batch_size, vocab.pad)
    for batch in batches:
        lines_in_batch = [todo[i] for i in batch.indices]
        found = forced_attention(
            ckpt.model,
            batch.src.to(translator.device),
            batch.src_lengths,
            [best[line][1].tokens for line in lines_in_batch],
            sos=vocab.sos,
            layer=layer,
            head=head,
        )
        for line, weights in zip(lines_in_batch, found, strict=True):
            output = [vocab.itos[i] for i in best[line][1].tokens]
            ended = best[line][1].ended
            order = reading_order(weights.size(1), data.reverse_source)
            maps[line] = AttentionMap(
                best[line][0],
                [SOS, *tokens[line], EOS],
                [*output, EOS] if ended else output,
                weights[: len(output) + ended, order].tolist(),
            )
    return maps


def check_plot(output: str, lines: list[str]) -> None:
    """Refuse what would stop an attention plot later, before any model loads: a figure name
    of an unknown format, a missing matplotlib, other than one sentence."""
    check_figure_output(Path(output))
    if len(lines) != 1:
        raise ParameterError(
            "attention_plot",
            f"{{parameter}} draws one sentence; give exactly one (got {len(lines)})",
        )


def plot_attention(
    translator: Translator,
    line: str,
    best: tuple[str, Hypothesis],
    output: str,
    *,
    layer: int | None = None,
    head: int | None = None,
) -> AttentionMap:
    """`seq2seq translate --attention-plot`: the line's map, drawn into output (PNG or SVG)."""
    (found,) = attention_maps(translator, [line], [best], layer=layer, head=head)
    if not found.weights:
        raise Seq2SeqError("the sentence has no tokens, so no attention to draw; give a sentence")
    title = _which_attention(translator.ckpt.config.model.type, layer, head)
    save_figure(draw_attention(found, title), Path(output))
    return found


def _which_attention(model_type: str, layer: int | None, head: int | None) -> str:
    if model_type != "transformer":
        return "attention"
    where = "last layer" if layer is None else f"layer {layer}"
    return f"cross-attention, {where}, " + ("mean of its heads" if head is None else f"head {head}")


def draw_attention(found: AttentionMap, title: str):
    """Source tokens across the top, output tokens down the side, darker for more weight."""
    columns, rows = len(found.source_tokens), len(found.target_tokens)
    size = (max(4.0, 1.5 + 0.4 * columns), max(3.0, 1.5 + 0.35 * rows))
    figure = new_figure(figsize=size, layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(found.weights, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    ax.xaxis.tick_top()
    ax.set_xticks(range(columns), found.source_tokens, rotation=60, ha="left")
    ax.set_yticks(range(rows), found.target_tokens)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    ax.set_title(title, fontsize=10)
    figure.colorbar(image, ax=ax, label="attention weight", shrink=0.8)
    return figure
