"""A CTranslate2 translator in our model's part: it decodes, scores and reports the loss of
whole lists of examples, so that `decode.py` and `evaluate.py` hand an export's work to it
and keep everything around the model (tokenizing, reversing, lowercasing, detokenizing) as it
is for a PyTorch run.

Examples arrive as our token ids, `<sos> tokens <eos>` on the source side; CTranslate2 takes
token strings and adds the source's `<sos>` and `<eos>` itself (convert.py configures it so),
so the ids go back to the strings of our own vocabulary, and the output strings to our ids.

Decoding options map one to one: beam size, n-best (`num_hypotheses`), the minimum length
(CTranslate2's default of 1 is overridden) and the length limit, a * source length + b capped
at max_length, which CTranslate2 takes as one number per call: sentences are decoded in groups
of one limit. The length penalty does not map: ours is GNMT's, ((5 + length) / 6) ** alpha,
and CTranslate2 4 divides by length ** alpha (a 3-token hypothesis' score is its
log-probability / 3 ** alpha), which ranks hypotheses otherwise; it is refused.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import torch

from seq2seq.data.examples import Example
from seq2seq.data.vocab import Vocab
from seq2seq.decode import DecodeSettings
from seq2seq.errors import ParameterError
from seq2seq.search import Hypothesis, hypothesis

log = logging.getLogger(__name__)


class CTranslate2Model:
    """Decodes with `translator`, a `ctranslate2.Translator` over an export directory."""

    def __init__(self, translator, *, src_vocab: Vocab, tgt_vocab: Vocab, position_rows: int):
        self.translator = translator
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.position_rows = position_rows

    def check_settings(self, settings: DecodeSettings) -> None:
        """Refuse, before any work, what CTranslate2 cannot do as our search does."""
        if settings.alpha != 0.0:
            raise ParameterError(
                "alpha",
                f"{{parameter}} {settings.alpha:g} is GNMT's length penalty, ((5 + length) / 6) "
                f"** alpha; CTranslate2 divides by length ** alpha, which ranks otherwise: use "
                f"{{parameter}} 0 with an export, or decode the run itself",
            )

    def decode_examples(self, examples: list[Example], settings: DecodeSettings):
        """The n-best hypotheses of each example, in order, as `decode.decode_examples`, with
        search.py's empty hypotheses: a source without tokens gives the empty hypothesis
        ended at once, of the log-probability `score_examples` gives an empty target; a
        length limit of 0, the empty hypothesis cut there (log-probability 0). A limit past
        the exported position table is cut to it, and said."""
        self.check_settings(settings)
        cut = [hypothesis([], 0.0, ended=False, alpha=0.0)] * settings.n_best
        out = [cut for _ in examples]
        sources = [example.src[1:-1] for example in examples]
        self._end_empty_sources(examples, settings, out)
        limits = self._limits(settings, [len(source) for source in sources])
        groups = defaultdict(list)
        for index, source in enumerate(sources):
            if source and limits[index] > 0:  # the others are done
                groups[limits[index]].append(index)
        # Every group is queued at once, so that the translator's workers (inter_threads)
        # decode groups side by side; the results are collected in order.
        pending = []
        for limit, indices in groups.items():
            # convert.position_rows sized the table for the longest source at this limit.
            assert limit < self.position_rows, (limit, self.position_rows)
            results = self.translator.translate_batch(
                [self._strings(sources[i]) for i in indices],
                asynchronous=True,
                **_options(settings, limit),
            )
            pending.append((limit, indices, results))
        for limit, indices, results in pending:
            for index, result in zip(indices, results, strict=True):
                result = result.result()
                out[index] = [
                    self._hypothesis(tokens, score, limit)
                    for tokens, score in zip(result.hypotheses, result.scores, strict=True)
                ]
        return out

    def _limits(self, settings: DecodeSettings, lengths: list[int]) -> list[int]:
        """Each source's output length limit, at most the tokens the position table holds
        (an output and its <sos>: convert.position_rows sized it for the run's default rule
        at its longest source)."""
        limits = settings.limits(torch.tensor(lengths)).tolist()
        most = self.position_rows - 1
        if any(limit > most for limit in limits):
            log.warning(
                "this export's position table holds %d positions, so outputs are cut at %d "
                "tokens (the length rule asked for up to %d); decode the run itself for longer "
                "ones",
                self.position_rows,
                most,
                max(limits),
            )
        return [min(limit, most) for limit in limits]

    def _end_empty_sources(self, examples, settings: DecodeSettings, out: list) -> None:
        """Each source without tokens ends at once: its n-best list in `out` becomes the empty
        hypothesis, ended, scored as an empty target."""
        empty = [i for i, example in enumerate(examples) if len(example.src) <= 2]
        if not empty:
            return
        frame = [self.tgt_vocab.sos, self.tgt_vocab.eos]
        pairs = [Example(examples[i].src, frame) for i in empty]
        for i, ends in zip(empty, self.score_examples(pairs, settings.batch_size), strict=True):
            out[i] = [hypothesis([], ends, ended=True, alpha=0.0)] * settings.n_best

    def score_examples(self, examples: list[Example], batch_size: int) -> list[float]:
        """log P(target | source) of each example, <eos> included, as `decode.score_examples`."""
        results = self.translator.score_batch(
            [self._strings(example.src[1:-1]) for example in examples],
            [self._strings(example.tgt[1:-1], self.tgt_vocab) for example in examples],
            max_batch_size=batch_size,
            max_input_length=0,
        )
        return [float(sum(result.log_probs)) for result in results]

    def corpus_loss(
        self, examples: list[Example], teacher_forcing_ratio: float, batch_size: int
    ) -> float | None:
        """Mean cross-entropy per target token, <eos> included, as `evaluate.corpus_loss`; None
        for the free-running loss, which needs logits at positions the model chose itself,
        and CTranslate2 only scores given targets."""
        if teacher_forcing_ratio < 1.0:
            return None
        total = -sum(self.score_examples(examples, batch_size))
        tokens = sum(len(example.tgt) - 1 for example in examples)
        return total / max(tokens, 1)

    def _strings(self, ids: list[int], vocab: Vocab | None = None) -> list[str]:
        return [(vocab or self.src_vocab).itos[i] for i in ids]

    def _hypothesis(self, tokens: list[str], log_prob: float, limit: int) -> Hypothesis:
        """Without a length penalty, a hypothesis' score is its log-probability. CTranslate2
        does not say whether a hypothesis ended; under the limit it did (search.py: at limit L
        an ended hypothesis has at most L - 1 tokens, a cut one L)."""
        ids = [self.tgt_vocab.stoi[token] for token in tokens]
        return hypothesis(ids, log_prob, ended=len(ids) < limit, alpha=0.0)


def _options(settings: DecodeSettings, limit: int) -> dict:
    return {
        "max_batch_size": settings.batch_size,
        "beam_size": settings.beam_size,
        "num_hypotheses": settings.n_best,
        "length_penalty": 0.0,  # CTranslate2's default is 1
        # Past the limit, the limit wins, as in search.py: every output is cut there.
        "min_decoding_length": min(settings.min_length, limit),
        "max_decoding_length": limit,
        "max_input_length": 0,  # our sources are cut at data.max_length already
        "return_scores": True,
    }
