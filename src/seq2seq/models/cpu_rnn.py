"""CPU speed code for the recurrent models, kept apart from the paper's model.

None of this changes what a model computes; tests compare each piece with the plain
`nn.LSTM` / `nn.GRU` calls that `model.cpu_fast_path: false` selects (the fallback, should a
PyTorch release break the private `torch.lstm` / `torch.gru` calls made here).

- `dropout`: a uniform draw and a comparison, faster on CPU than `F.dropout` (docs/speed.md).
- `run_layers`: a stacked RNN one layer (one oneDNN call) at a time, with our dropout or given
  dropout masks between layers.
- `final_states_by_length`: a padded batch's exact final states from dense calls over time
  slices, instead of PyTorch's packed path, which steps through time op by op on CPU.

Shapes: B batch, S source length, T' steps, E embedding, H hidden, L layers.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

_RNN_PARAMETERS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def dropout(
    x: torch.Tensor, p: float, training: bool, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """Inverted dropout, with a given mask of kept entries (`keep`, boolean) or a fresh one.

    On CPU a uniform draw and a comparison are faster than the Bernoulli sampling of
    `F.dropout` (measured: docs/speed.md); other devices have a fused kernel.
    """
    if not training or p == 0.0:
        return x
    if keep is None:
        if not x.is_cpu:
            return F.dropout(x, p, True)
        keep = torch.rand(x.shape, dtype=x.dtype) >= p
    return x * (keep * (1.0 / (1.0 - p))).to(x.dtype)


def dropout_masks(
    rnn: nn.LSTM | nn.GRU, input_size: int, tokens: torch.Tensor, p: float
) -> list[torch.Tensor]:
    """Boolean keep-masks for reading tokens (B, T'): the input's (B, T', E) and those between
    the layers (B, T', H), so that a pass over the same positions can be repeated exactly."""
    sizes = [input_size] + [rnn.hidden_size] * (rnn.num_layers - 1)
    return [torch.rand(*tokens.shape, size, device=tokens.device) >= p for size in sizes]


def run_layers(
    rnn: nn.LSTM | nn.GRU,
    x: torch.Tensor,
    state,
    p: float,
    training: bool,
    keep: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, tuple | torch.Tensor]:
    """The stacked RNN `rnn` over x (B, T', in) from state, one layer at a time with our own
    dropout between layers (fresh, or the masks `keep` for layers 2..L); same parameters and
    results as `rnn(x, state)` without dropout.

    The module's own multi-layer call is used wherever no dropout mask of ours is needed:
    without dropout (evaluation, decoding: one call per step costs less than one per layer)
    and on GPUs (cuDNN, fused dropout). Training on CPU, each layer is one oneDNN call.
    """
    if keep is None and not (x.is_cpu and training and p > 0.0 and rnn.num_layers > 1):
        return rnn(x, state)
    lstm = isinstance(rnn, nn.LSTM)
    hidden, cell = state if lstm else (state, None)
    outputs, hiddens, cells = x, [], []
    for layer in range(rnn.num_layers):
        if layer > 0:
            outputs = dropout(outputs, p, training, keep[layer - 1] if keep else None)
        params = [getattr(rnn, f"{name}_l{layer}") for name in _RNN_PARAMETERS]
        if lstm:
            layer_state = (hidden[layer : layer + 1], cell[layer : layer + 1])
            outputs, h, c = torch.lstm(
                outputs, layer_state, params, True, 1, 0.0, training, False, True
            )
            cells.append(c)
        else:
            outputs, h = torch.gru(
                outputs, hidden[layer : layer + 1], params, True, 1, 0.0, training, False, True
            )
        hiddens.append(h)
    final = torch.cat(hiddens)
    return outputs, ((final, torch.cat(cells)) if lstm else final)


def final_states_by_length(
    rnn: nn.LSTM | nn.GRU, embedded: torch.Tensor, src_lengths: torch.Tensor, p: float, training
):
    """The final states (L, B, H) of every sentence of embedded (B, S, E), exactly, from dense
    (fast, oneDNN) RNN calls; an LSTM's are a (hidden, cell) pair.

    PyTorch's packed path on CPU steps through time op by op; dense calls are faster
    (docs/speed.md) but read padding. So the batch is sorted by length and run in
    time slices: slice j covers the steps between the j-1-th and j-th distinct lengths, for
    the sentences at least that long, starting from the states the previous slice ended
    in. A sentence's final state is taken from the slice that ends at its length. Slices
    of a stacked RNN are exact, as every layer at step t depends only on steps up to t.
    """
    batch_size = embedded.size(0)
    lengths, order = src_lengths.sort(descending=True)
    embedded = embedded.index_select(0, order)
    lengths = lengths.tolist()
    zeros = embedded.new_zeros(rnn.num_layers, batch_size, rnn.hidden_size)
    state = (zeros, zeros) if isinstance(rnn, nn.LSTM) else zeros
    finals, start, alive = [], 0, batch_size
    for end in sorted(set(lengths)):
        _, state = run_layers(rnn, embedded[:alive, start:end], state, p, training)
        still = sum(length > end for length in lengths)  # rows 0..still-1 go on
        finals.append(_rows(state, still, alive))
        state = _rows(state, 0, still)
        start, alive = end, still
    finals.reverse()  # longest first, as the sorted batch
    return _rows_in_order(_cat_rows(finals), order.argsort())  # the batch's own order


def _rows(state, start: int, end: int):
    """Batch rows start..end-1 of an RNN state (L, B, H) or an LSTM's pair of them."""
    if isinstance(state, tuple):
        return tuple(part[:, start:end] for part in state)
    return state[:, start:end]


def _rows_in_order(state, index: torch.Tensor):
    if isinstance(state, tuple):
        return tuple(part.index_select(1, index) for part in state)
    return state.index_select(1, index)


def _cat_rows(states: list):
    """RNN states (or LSTM pairs of them) stacked along the batch, the inverse of `_rows`."""
    if isinstance(states[0], tuple):
        return tuple(torch.cat(parts, dim=1) for parts in zip(*states, strict=True))
    return torch.cat(states, dim=1)
