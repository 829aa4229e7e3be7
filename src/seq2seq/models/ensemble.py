"""An ensemble of models behind the same decoding interface (Sutskever et al. 2014, section
3.6: an ensemble of 5 reversed LSTMs gave their best result). The ensemble's log-probability of
a token is the average of its members' log-probabilities, renormalised over the vocabulary (a
normalised geometric mean of the members' distributions), so that ensemble scores, losses and
perplexities are those of a proper distribution; renormalising never changes a step's ranking."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seq2seq.models.forcing import mixed_forcing
from seq2seq.models.protocol import Seq2SeqModel


@dataclass
class EnsembleState:
    members: list

    def select(self, index: torch.Tensor) -> EnsembleState:
        return EnsembleState([state.select(index) for state in self.members])


class Ensemble(nn.Module):
    def __init__(self, models: list[Seq2SeqModel]):
        super().__init__()
        self.models = nn.ModuleList(models)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EnsembleState:
        return EnsembleState([model.encode(src, src_lengths) for model in self.models])

    def decode_step(
        self, tokens: torch.Tensor, state: EnsembleState
    ) -> tuple[torch.Tensor, EnsembleState]:
        outputs = [
            m.decode_step(tokens, s) for m, s in zip(self.models, state.members, strict=True)
        ]
        log_probs = _combine([lp for lp, _ in outputs])  # (B, V)
        return log_probs, EnsembleState([s for _, s in outputs])

    def forward(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt: torch.Tensor,
        teacher_forcing_ratio: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The ensemble's log-probabilities (B, T-1, V); they serve as logits for cross-entropy.
        At ratio 1.0 each member runs its own training forward in one go; below it, the shared
        step-by-step loop feeds back the ensemble's predictions."""
        if teacher_forcing_ratio < 1.0:
            return mixed_forcing(self, src, src_lengths, tgt, teacher_forcing_ratio, generator)
        log_probs = [
            torch.log_softmax(model(src, src_lengths, tgt).float(), dim=-1) for model in self.models
        ]
        return _combine(log_probs)


def _combine(log_probs: list[torch.Tensor]) -> torch.Tensor:
    """The members' log-probabilities (..., V) averaged and renormalised over the vocabulary."""
    if len(log_probs) == 1:
        return log_probs[0]
    return torch.log_softmax(torch.stack(log_probs).mean(dim=0), dim=-1)
