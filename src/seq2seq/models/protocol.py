"""The contract between a model and everything that uses it.

Search, evaluation, ensembles, checkpoints and the trainer see a model only through
`Seq2SeqModel` and its decoder state only through `DecoderState`; no caller branches on the
architecture. Shapes: B batch, S source length, T target length (with <sos> and <eos>),
V target vocabulary.

- `encode(src, src_lengths) -> state`: src (B, S) source ids, padded with the model's source
  pad id; src_lengths (B,) on the CPU. Padding must never change the state.
- `decode_step(tokens, state) -> (log_probs, state)`: tokens (B,) are the previous outputs
  (<sos> first); log_probs (B, V) are float32 log-probabilities of the next token. The state
  holds everything the next step needs (recurrent states, encoder outputs and masks, key/value
  caches), so a step never recomputes the prefix.
- `forward(src, src_lengths, tgt, teacher_forcing_ratio=1.0, generator=None) -> logits`: the
  training forward, logits (B, T-1, V) for tgt[:, 1:] given tgt (B, T). At ratio 1.0 every
  step reads the true previous token; below it, the step-by-step loop of
  `forcing.mixed_forcing` (or a faster path of the model's own, tested equal to it) decides per
  step, from `generator`, whether a step reads the true token or the model's prediction.
- `state.select(index) -> state`: index (B',) of batch rows to keep, repeat or reorder; the
  only way search touches a state (beam search reorders, finished sentences leave).

A model is an `nn.Module` built by `models.build_model(config, ...)` from sizes and token ids;
it never sees a vocabulary object or the data package. Being a module, it also has
`train()`, `eval()`, `parameters()`, `state_dict()` and `to()`.
"""

from __future__ import annotations

from typing import Protocol, TypeVar, runtime_checkable

import torch

State = TypeVar("State", bound="DecoderState")


@runtime_checkable
class DecoderState(Protocol):
    def select(self: State, index: torch.Tensor) -> State:
        """The state of batch rows `index` (B',), in that order, repeats allowed."""
        ...


@runtime_checkable
class Seq2SeqModel(Protocol):
    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> DecoderState: ...

    def decode_step(
        self, tokens: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, DecoderState]: ...

    def forward(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt: torch.Tensor,
        teacher_forcing_ratio: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor: ...
