"""Vocabularies: token <-> index maps built from the training split only."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

UNK, PAD, SOS, EOS = "<unk>", "<pad>", "<sos>", "<eos>"
SPECIALS = (UNK, PAD, SOS, EOS)


class Vocab:
    """Specials first (`<unk>`=0, `<pad>`=1, `<sos>`=2, `<eos>`=3), then tokens by frequency.

    A SentencePiece vocabulary is its model's pieces in the model's id order (the model puts the
    specials at 0-3 too, so a piece's index is its SentencePiece id) and carries the model
    itself, serialized, as `subword_model`: the pieces are nothing without the model that cuts
    text into them, and two vocabularies are equal only if their models are."""

    def __init__(self, tokens: list[str], *, subword_model: bytes | None = None):
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}, got {tokens[:4]}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("a vocabulary must not list a token twice")
        self.itos = list(tokens)
        self.stoi = {token: index for index, token in enumerate(self.itos)}
        self.unk, self.pad, self.sos, self.eos = (self.stoi[s] for s in SPECIALS)
        self.subword_model = subword_model

    @classmethod
    def build(
        cls, sentences: Iterable[list[str]], *, min_freq: int = 2, max_size: int | None = None
    ) -> Vocab:
        """Keep tokens seen at least `min_freq` times; ties in frequency sort alphabetically."""
        counts = Counter(token for sentence in sentences for token in sentence)
        return cls.from_counts(counts, min_freq=min_freq, max_size=max_size)

    @classmethod
    def from_counts(
        cls, counts: Counter, *, min_freq: int = 2, max_size: int | None = None
    ) -> Vocab:
        """`build` from the tokens' counts, as a streaming pass over a corpus makes them."""
        counts = Counter(counts)
        for special in SPECIALS:
            counts.pop(special, None)
        kept = sorted(
            (t for t, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t)
        )
        if max_size is not None:
            kept = kept[: max(0, max_size - len(SPECIALS))]
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Vocab)
            and self.itos == other.itos
            and self.subword_model == other.subword_model
        )

    def ids(self, tokens: list[str]) -> list[int]:
        """Each token's index, `<unk>`'s for a token the vocabulary lacks."""
        return [self.stoi.get(token, self.unk) for token in tokens]

    def tokens(self, indices: Iterable[int]) -> list[str]:
        """Tokens up to the first `<eos>`, without `<sos>`/`<pad>`."""
        out = []
        for index in indices:
            if index == self.eos:
                break
            if index not in (self.sos, self.pad):
                out.append(self.itos[index])
        return out


def model_sizes(src_vocab: Vocab, tgt_vocab: Vocab) -> dict[str, int | bool]:
    """What a model needs to know of its vocabularies: `build_model(config, **model_sizes(...))`.
    `joint_vocab`: source and target share one vocabulary, so they may share embeddings."""
    return {
        "src_vocab_size": len(src_vocab),
        "tgt_vocab_size": len(tgt_vocab),
        "src_pad": src_vocab.pad,
        "tgt_pad": tgt_vocab.pad,
        "joint_vocab": src_vocab == tgt_vocab,
    }
