"""An ensemble of models behind the same decoding interface (Sutskever et al. 2014, section
3.6: an ensemble of 5 reversed LSTMs gave their best result). The ensemble's log-probability of
a token is the average of its members' log-probabilities, renormalised over the vocabulary (a
normalised geometric mean of the members' distributions), so that ensemble scores, losses and
perplexities are those of a proper distribution; renormalising never changes a step's ranking."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seq2seq.models.recurrent import draw_gold_inputs


@dataclass
class EnsembleState:
    members: list

    def select(self, index: torch.Tensor) -> EnsembleState:
        return EnsembleState([state.select(index) for state in self.members])


class Ensemble(nn.Module):
    def __init__(self, models: list[nn.Module]):
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
        if len(outputs) == 1:
            log_probs = outputs[0][0]
        else:
            mean = torch.stack([lp for lp, _ in outputs]).mean(dim=0)  # (B, V)
            log_probs = torch.log_softmax(mean, dim=-1)
        return log_probs, EnsembleState([s for _, s in outputs])

    def forward(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt: torch.Tensor,
        teacher_forcing_ratio: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Averaged log-probabilities (B, T-1, V); they serve as logits for cross-entropy."""
        state = self.encode(src, src_lengths)
        steps = tgt.size(1) - 1
        gold = draw_gold_inputs(steps, teacher_forcing_ratio, generator)
        outputs, token = [], tgt[:, 0]
        for t in range(steps):
            if t > 0:  # input t is the true token or, as the draw says, the previous prediction
                token = tgt[:, t] if gold[t] else outputs[-1].argmax(-1)
            log_probs, state = self.decode_step(token, state)  # (B, V)
            outputs.append(log_probs)
        return torch.stack(outputs, dim=1)  # (B, T-1, V)
