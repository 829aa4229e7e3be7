"""Whether checkpoints can be combined: the one check behind `seq2seq average` (a mean of
weights) and ensembles (a mean of predictions, `--ensemble`, `seq2seq.load([...])`).

Both need members that turn text into ids and ids into text alike: the same text preparation
and the same vocabularies (with SentencePiece, the same models). Averaging weights needs
more: the same architecture, so that each weight means the same thing in every member.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from seq2seq.config import config_diff, config_to_dict
from seq2seq.errors import CheckpointError

if TYPE_CHECKING:
    from seq2seq.checkpoint import Checkpoint

# The data settings that decide how text becomes ids and back, besides the vocabularies.
TEXT_PREPARATION = (
    *("tokenizer", "src_lang", "tgt_lang", "lowercase", "reverse_source", "joint_vocab"),
    "max_length",  # sources are truncated to it
)

# Model keys that change how a model computes, not what: members may differ in them.
SAME_MODEL = frozenset({"model.cpu_fast_path"})

ADVICE = {
    "average": "average checkpoints of one run",
    "ensemble": "ensemble models trained on the same data with the same data settings",
}


def check_combinable(
    first: Checkpoint, other: Checkpoint, *, how: Literal["average", "ensemble"]
) -> None:
    """Refuse, in one line, an `other` that cannot be averaged (`how="average"`) or ensembled
    with `first`, naming the first setting in which they differ."""
    prefix = f"cannot {how} {other.path} with {first.path}"
    advice = ADVICE[how]
    keys = list(TEXT_PREPARATION)
    if first.config.data.tokenizer == "sentencepiece":
        keys.append("sp_pretokenize")
    for key in keys:
        mine, theirs = getattr(first.config.data, key), getattr(other.config.data, key)
        if mine != theirs:
            raise CheckpointError(
                f"{prefix}: {other.path} has data.{key}={theirs!r} but {first.path} has "
                f"{mine!r}; {advice}"
            )
    if [v.itos for v in other.vocabs] != [v.itos for v in first.vocabs]:
        raise CheckpointError(f"{prefix}: they have different vocabularies; {advice}")
    if other.vocabs != first.vocabs:
        raise CheckpointError(f"{prefix}: they have different SentencePiece models; {advice}")
    if how == "average":
        models = [config_to_dict(c.config)["model"] for c in (first, other)]
        changes = config_diff(*models, "model.", ignore=SAME_MODEL)
        if changes:
            raise CheckpointError(
                f"{prefix}: their configs differ ({'; '.join(changes)}); {advice}"
            )
