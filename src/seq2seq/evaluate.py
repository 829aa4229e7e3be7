"""Perplexity, BLEU and chrF.

Three BLEU-related figures are reported, each labelled:
- `bleu`: sacreBLEU on detokenized output against the raw references, with its signature; the
  figure to compare with other papers. Lowercased when the model writes lowercase
  (`data.lowercase`, signature `case:lc`), case-sensitive otherwise (`case:mixed`).
- `chrf`: sacreBLEU chrF on the same text, cased alike.
- `bleu_tokenized`: BLEU on lowercased spaCy tokens, as the pytorch-seq2seq tutorial computes
  it (the output tokens joined by spaces, re-tokenized by spaCy, against the tokenized
  references), so its published figure can be compared like for like. A SentencePiece model's
  pieces are decoded into text first, and that text re-tokenized.
"""

from __future__ import annotations

import math

import torch
from sacrebleu.metrics import BLEU, CHRF

from seq2seq.data.examples import Example
from seq2seq.data.tokenizer import SentencePieceTokenizer, Tokenizer, tokenizer_for
from seq2seq.data.vocab import Vocab
from seq2seq.decode import DecodeSettings, best_translations, length_batches


@torch.inference_mode()
def corpus_loss(
    model,
    examples: list[Example],
    *,
    pad: int,
    device: torch.device,
    teacher_forcing_ratio: float = 1.0,
    batch_size: int = 128,
) -> float | None:
    """Mean cross-entropy per target token, <eos> included (an empty target scores only its
    <eos>). A ratio of 0 feeds the decoder its own predictions for exactly the reference's
    length (the tutorial's "test loss"). None where the model cannot tell (a CTranslate2
    export has no free-running loss)."""
    if whole := getattr(model, "corpus_loss", None):  # an engine scoring lists itself
        return whole(examples, teacher_forcing_ratio, batch_size)
    model.eval()
    total, tokens = 0.0, 0
    for batch in length_batches(examples, batch_size, pad):
        batch = batch.to(device)
        logits = model(batch.src, batch.src_lengths, batch.tgt, teacher_forcing_ratio)
        total += torch.nn.functional.cross_entropy(
            logits.float().flatten(0, 1),
            batch.tgt[:, 1:].flatten(),
            ignore_index=pad,
            reduction="sum",
        ).item()
        tokens += batch.num_target_tokens
    return total / max(tokens, 1)


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 100.0))


def sacrebleu_scores(
    detokenized: list[str], references: list[str], *, lowercase: bool
) -> dict[str, float | str]:
    bleu = BLEU(lowercase=lowercase)
    chrf = CHRF(lowercase=lowercase)
    return {
        "bleu": bleu.corpus_score(detokenized, [references]).score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf": chrf.corpus_score(detokenized, [references]).score,
        "chrf_signature": str(chrf.get_signature()),
    }


def tokenized_bleu(hypotheses: list[str], references: list[str], lang: str) -> float:
    """The tutorial's figure: plain corpus BLEU (no smoothing) over lowercased spaCy tokens of
    the hypotheses (the output as a tokenizer's `join` gives it) and the references."""
    lower = Tokenizer(lang, lowercase=True)
    hyp_tokens = [" ".join(t) for t in lower.tokenize_many(hypotheses)]
    ref_tokens = [" ".join(t) for t in lower.tokenize_many(references)]
    bleu = BLEU(tokenize="none", smooth_method="none", force=True)
    return bleu.corpus_score(hyp_tokens, [ref_tokens]).score


def evaluate_examples(
    model,
    examples: list[Example],
    references: list[str],
    *,
    vocab: Vocab,
    tokenizer: Tokenizer | SentencePieceTokenizer,
    device: torch.device,
    settings: DecodeSettings = DecodeSettings(),
    free_running: bool = True,
    translate: bool = True,
) -> dict:
    """Every figure for aligned examples and raw references: teacher-forced and free-running
    loss and perplexity, BLEU (both), chrF, and the detokenized translations. sacreBLEU's
    figures are lowercased when the tokenizer lowercases, case-sensitive otherwise.

    Training's validation may leave out the two slow parts: `free_running=False` skips the
    free-running loss (a decoder pass over its own predictions; `free_loss` is None), and
    `translate=False` skips decoding, so BLEU, chrF and the translations are absent."""

    def loss_at(ratio: float) -> float | None:
        return corpus_loss(
            model,
            examples,
            pad=vocab.pad,
            device=device,
            batch_size=settings.batch_size,
            teacher_forcing_ratio=ratio,
        )

    loss = loss_at(1.0)
    free_loss = loss_at(0.0) if free_running else None
    figures = {
        "loss": loss,
        "ppl": perplexity(loss),
        "free_loss": free_loss,
        "free_ppl": None if free_loss is None else perplexity(free_loss),
    }
    if not translate:
        return figures
    outputs = best_translations(
        model,
        examples,
        sos=vocab.sos,
        eos=vocab.eos,
        pad=vocab.pad,
        device=device,
        settings=settings,
    )
    hypotheses = [vocab.tokens(ids) for ids in outputs]
    detokenized = [tokenizer.detokenize(tokens) for tokens in hypotheses]
    return {
        **figures,
        **sacrebleu_scores(detokenized, references, lowercase=tokenizer.lowercase),
        "bleu_tokenized": tokenized_bleu(
            [tokenizer.join(tokens) for tokens in hypotheses], references, tokenizer.lang
        ),
        "translations": detokenized,
    }


def evaluate_split(
    ckpt,
    split_name: str,
    *,
    device: torch.device,
    data_dir: str | None = None,
    settings: DecodeSettings = DecodeSettings(),
) -> dict:
    """Every figure for one split of the checkpoint's corpus, decoded with the checkpoint's
    length rule unless `settings` gives one."""
    from seq2seq.data.splits import load_split

    split = load_split(ckpt.config.data, split_name, data_dir, vocabs=ckpt.vocabs)
    return evaluate_loaded(ckpt, split, device=device, settings=settings)


def evaluate_loaded(
    ckpt,
    split,
    *,
    device: torch.device,
    settings: DecodeSettings = DecodeSettings(),
    free_running: bool = True,
) -> dict:
    """`evaluate_split` for a split already read with the checkpoint's vocabularies."""
    from seq2seq.data.splits import numericalize

    data = ckpt.config.data
    examples = numericalize(split, ckpt.src_vocab, ckpt.tgt_vocab, data)
    figures = evaluate_examples(
        ckpt.model,
        examples,
        split.tgt_text,
        vocab=ckpt.tgt_vocab,
        tokenizer=tokenizer_for(data, "tgt", ckpt.tgt_vocab),
        device=device,
        settings=settings.for_checkpoint(ckpt),
        free_running=free_running,
    )
    return {"split": split.name, "sentences": len(examples), **figures}
