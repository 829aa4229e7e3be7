"""The config's sections and their keys, each key declared once with `key()`; the model
section's keys, one class per model type, are in model.py."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from seq2seq.config.keys import is_plain_name, key, section, unless, when
from seq2seq.config.model import ModelConfig, RecurrentConfig

SPECIALS = 4  # <unk>, <pad>, <sos>, <eos>: a vocabulary holds more than these


@dataclass(frozen=True)
class DataConfig:
    """The corpus, its tokenizer and its vocabularies (seq2seq/data/)."""

    corpus: Literal["multi30k", "files"] = key(
        "multi30k",
        "multi30k: Multi30k, downloaded when missing; files: any parallel corpus, found in `dir`.",
    )
    dir: str | None = key(
        None,
        "Where the corpus files are; null looks in $SEQ2SEQ_DATA, then the user cache "
        "(Multi30k is downloaded there when missing).",
    )
    src_lang: str = key("de", "The source language: the suffix of the source files.")
    tgt_lang: str = key("en", "The target language: the suffix of the target files.")
    train: str | tuple[str, ...] = key(
        "train",
        "The training split: a path prefix relative to `dir`, whose files are "
        "{prefix}.{lang}[.gz]; or a list of them, several corpora prepared together under "
        "one vocabulary (on the command line `data.train=europarl,news`, or quoted "
        "`'data.train=[europarl,news]'`).",
    )
    train_weights: tuple[float, ...] | None = key(
        None,
        "Each training corpus's share of an epoch's pairs, one weight per prefix of `train` "
        "(null: every pair once an epoch); a corpus short of its share is repeated.",
        above=0,
    )
    valid: str = key(
        "val", "The validation split's path prefix, as `train`.", applies=when("data.holdout", None)
    )
    test: str = key(
        "test_2016_flickr",
        "The test split's path prefix, as `train`.",
        applies=when("data.holdout", None),
    )
    columns: tuple[str, ...] | None = key(
        None,
        "null: a split is two line-aligned files, {prefix}.{src_lang} and {prefix}.{tgt_lang}. "
        "A list: a split is one file of tab-separated pairs, {prefix}.tsv or {prefix}.txt, "
        "and the list says what each column holds, in order; the columns named `src_lang` and "
        "`tgt_lang` are read, any other name is a column skipped: [en, de] for the Tatoeba "
        "exports, [en, de, attribution] for the newer ones. A line with another number of "
        "fields is refused. Every file may be gzip-compressed ({name}.gz).",
    )
    holdout: tuple[float, float] | None = key(
        None,
        "The shares of the training corpus held out as the validation and the test split, "
        "e.g. [0.01, 0.01], for a corpus that comes without them (null: `valid` and `test` "
        "are files of their own). A hash of each pair's `holdout_by` sentence decides its "
        "split, so every pair with that sentence goes to the same one, whatever the file's "
        "order (docs/data.md).",
        above=0,
        below=1,
    )
    holdout_by: str | None = key(
        None,
        "holdout only: the language whose sentence decides a pair's split (null: src_lang).",
        applies=unless("data.holdout", None),
    )
    tokenizer: Literal["spacy", "sentencepiece"] = key(
        "spacy",
        "spacy: words from spaCy's rule-based tokenizer, detokenized by Moses rules; "
        "sentencepiece: subword pieces from a SentencePiece model trained on the training split.",
    )
    lowercase: bool = key(True, "Lowercase every sentence before tokenizing.")
    reverse_source: bool = key(
        True, "Feed the source backwards, as Sutskever et al. (2014) found helps an LSTM."
    )
    joint_vocab: bool = key(
        False,
        "One vocabulary for source and target (a Transformer then shares their embeddings); "
        "with sentencepiece, also one model trained on both sides' text.",
    )
    min_freq: int = key(
        2,
        "spacy only: keep tokens seen at least this many times.",
        low=1,
        applies=when("data.tokenizer", "spacy"),
    )
    max_size: int | None = key(
        None,
        "spacy only: the most tokens a vocabulary keeps, specials included (null: no limit).",
        above=SPECIALS,
        applies=when("data.tokenizer", "spacy"),
    )
    sp_model_type: Literal["bpe", "unigram"] = key(
        "unigram",
        "sentencepiece only: the SentencePiece model type.",
        applies=when("data.tokenizer", "sentencepiece"),
    )
    vocab_size: int = key(
        5000,
        "sentencepiece only: the pieces per vocabulary, specials included.",
        above=SPECIALS,
        applies=when("data.tokenizer", "sentencepiece"),
    )
    sp_pretokenize: bool = key(
        False,
        "sentencepiece only: read spaCy's tokens joined by spaces instead of the raw text.",
        applies=when("data.tokenizer", "sentencepiece"),
    )
    max_length: int = key(
        1000,
        "Sentences longer than this many tokens are truncated (the tutorial keeps 1,000).",
        low=1,
    )
    train_limit: int | None = key(
        None,
        "Use only the first N pairs of each training corpus that pass the filters (null: "
        "all); for quick trials and tests.",
        low=1,
    )
    num_workers: int | None = key(
        None,
        "Preparation (`seq2seq prepare`, or `seq2seq train` when the prepared corpus is "
        "missing): the processes that tokenize (null: one per core).",
        low=1,
    )
    filter_empty: bool = key(
        True, "Preparation drops training pairs with an empty side (evaluation splits: never)."
    )
    filter_long: bool = key(
        False,
        "Preparation drops training pairs with a side longer than `max_length` tokens "
        "(false: such sides are truncated).",
    )
    max_length_ratio: float | None = key(
        None,
        "Preparation drops training pairs whose longer side has more than this many times the "
        "tokens of the shorter (null: no such filter).",
        low=1,
    )
    filter_duplicates: bool = key(
        False, "Preparation drops exact repeats of an earlier training pair (both sides)."
    )

    @property
    def train_corpora(self) -> tuple[str, ...]:
        """`data.train` as a tuple: one prefix per training corpus."""
        return (self.train,) if isinstance(self.train, str) else self.train

    def problems(self) -> list[str]:
        problems = []
        if self.src_lang == self.tgt_lang:
            problems.append(f"data.src_lang and data.tgt_lang are both {self.src_lang!r}")
        prefixes = self.train_corpora
        if self.train_weights is not None and len(self.train_weights) != len(prefixes):
            problems.append(
                f"data.train_weights has {len(self.train_weights)} weights for "
                f"{len(prefixes)} training corpora in data.train; give one weight per corpus"
            )
        return problems + self._column_problems() + self._holdout_problems(len(prefixes))

    def _column_problems(self) -> list[str]:
        return [
            f"data.columns={list(self.columns)} must name data.{side}={lang!r} once"
            for side, lang in (("src_lang", self.src_lang), ("tgt_lang", self.tgt_lang))
            if self.columns is not None and self.columns.count(lang) != 1
        ]

    def _holdout_problems(self, corpora: int) -> list[str]:
        if self.holdout is None:
            return []
        problems = []
        if sum(self.holdout) >= 1:
            problems.append(
                f"data.holdout={list(self.holdout)} holds out everything; its shares must "
                f"add up to less than 1"
            )
        if corpora > 1:
            problems.append(
                f"data.holdout holds pairs out of one training corpus, and data.train lists "
                f"{corpora}; name one"
            )
        if self.holdout_by not in (None, self.src_lang, self.tgt_lang):
            problems.append(
                f"data.holdout_by={self.holdout_by!r} must be data.src_lang "
                f"({self.src_lang!r}) or data.tgt_lang ({self.tgt_lang!r})"
            )
        return problems


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, validation and checkpoints (seq2seq/training/)."""

    epochs: float = key(10, "Epochs to train; may be fractional (7.5).", above=0)
    batch_size: int = key(128, "The batch size, in `batch_unit`s.", low=1)
    batch_unit: Literal["sentences", "tokens"] = key(
        "sentences", "sentences, or tokens (the padded tokens of the longer side)."
    )
    optimizer: Literal["adam", "sgd"] = key("adam", "The optimizer.")
    lr: float = key(0.001, "The learning rate (inverse_sqrt: its peak).", above=0)
    lr_schedule: Literal["constant", "halving", "inverse_sqrt"] = key(
        "constant",
        "halving: after `halve_after_epochs`, halve the rate every `halve_every_epochs` (the "
        "paper's). inverse_sqrt: rise linearly to `lr` over `warmup_steps` updates, then fall "
        "as 1/sqrt(step) (Vaswani et al. 2017, section 5.3).",
    )
    halve_after_epochs: float = key(
        5.0,
        "halving: the epoch the halving starts.",
        low=0,
        applies=when("train.lr_schedule", "halving"),
    )
    halve_every_epochs: float = key(
        0.5,
        "halving: epochs between two halvings.",
        above=0,
        applies=when("train.lr_schedule", "halving"),
    )
    warmup_steps: int = key(
        4000,
        "inverse_sqrt: updates of linear warmup to `lr`.",
        low=1,
        applies=when("train.lr_schedule", "inverse_sqrt"),
    )
    adam_betas: tuple[float, float] = key(
        (0.9, 0.999),
        "Adam's (beta1, beta2); the Transformer used (0.9, 0.98).",
        low=0,
        below=1,
        applies=when("train.optimizer", "adam"),
    )
    weight_decay: float = key(
        0.0,
        "Decoupled weight decay on every parameter: AdamW (Loshchilov and Hutter 2019) with "
        "adam, plain L2 weight decay with sgd; 0 keeps plain Adam.",
        low=0,
    )
    label_smoothing: float = key(
        0.0,
        "Label smoothing of the training loss only (Szegedy et al. 2016, section 7); "
        "validation loss and perplexity stay plain cross-entropy, comparable across runs.",
        low=0,
        below=1,
    )
    clip_norm: float = key(1.0, "Clip the gradient norm to this.", above=0)
    teacher_forcing_ratio: float = key(
        0.5, "The share of decoder steps that read the true previous token.", low=0, high=1
    )
    best_metric: Literal["val_loss", "val_free_loss", "val_bleu"] = key(
        "val_loss",
        "Which validation figure picks the best checkpoint: teacher-forced loss, free-running "
        "loss (the decoder reads its own predictions, the tutorial's valid loss) or greedy BLEU.",
    )
    patience: int | None = key(
        None,
        "Stop once `best_metric` has not improved for this many epochs (null: train every epoch).",
        low=1,
    )
    keep_checkpoints: int = key(
        0, "Also keep the last N epochs' checkpoints as epoch-K/, for `seq2seq average`.", low=0
    )
    accumulate: int = key(
        1,
        "Batches whose gradients add up to one update (gradient accumulation): the update of a "
        "batch K times larger. With N processes, each update covers N x accumulate batches.",
        low=1,
    )
    precision: Literal["auto", "float32", "bfloat16", "float16"] = key(
        "auto",
        "auto: bfloat16 autocast where it pays off (CPUs with avx512_bf16 or AMX, GPUs with "
        "bfloat16), float16 with a gradient scaler on GPUs without bfloat16, else float32; see "
        "docs/precision.md.",
    )
    sync_every: int | None = key(
        None,
        "Read the running loss and the non-finite-step guard every N steps, one host sync each "
        "(null: every step on CPUs, where it costs nothing, every 50 on GPUs).",
        low=1,
    )
    distributed_timeout: float = key(
        1800.0,
        "With several processes: seconds a process waits for the others at a collective "
        "(process 0's validation and save included) before it gives up.",
        above=0,
    )
    valid_beam_size: int = key(1, "Validation BLEU's beam size (1: greedy).", low=1)
    bleu_from_epoch: int = key(
        1,
        "Validation translates (BLEU, chrF) from this epoch on; earlier epochs log only their "
        "losses, and patience counts from here. Translating is most of validation's time, "
        "and the first epochs' BLEU rarely matters.",
        low=1,
    )
    free_running_validation: bool = key(
        True,
        "Also measure the free-running validation loss (the tutorial's valid loss): a decoder "
        "pass over its own predictions, as slow as translating. false logs it as null.",
    )
    max_length_a: float = key(
        1.5,
        "Validation decodes at most max_length_a x source length + max_length_b tokens.",
        low=0,
    )
    max_length_b: int = key(10, "See `max_length_a`.", low=0)
    num_threads: int | None = key(None, "CPU threads for PyTorch (null: PyTorch's choice).", low=1)
    tensorboard: bool = key(
        False, "Also write every logged figure as TensorBoard scalars under runs/NAME/tensorboard/."
    )

    def problems(self) -> list[str]:
        problems = []
        if self.best_metric == "val_free_loss" and not self.free_running_validation:
            problems.append(
                "train.best_metric=val_free_loss needs train.free_running_validation=true"
            )
        if self.best_metric == "val_bleu" and self.bleu_from_epoch > math.ceil(self.epochs):
            problems.append(
                f"train.bleu_from_epoch={self.bleu_from_epoch} is after the last epoch "
                f"({math.ceil(self.epochs)}), so train.best_metric=val_bleu would never be "
                f"measured; lower it, or train more epochs"
            )
        return problems


@dataclass(frozen=True)
class Config:
    """The run: its name, place, seed and device, and the sections below."""

    name: str = key(
        "run",
        "The run directory's name, under `output_dir`.",
        check=is_plain_name,
        must="one plain path component: no slash, backslash or drive, and not '.' or '..'",
    )
    output_dir: str = key("runs", "Where the run directory goes: {output_dir}/{name}.")
    seed: int = key(
        1234,
        "Seeds Python, NumPy and PyTorch; the same seed repeats a run on the same machine.",
        low=0,
        high=2**32 - 1,
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = key("auto", "Where to train.")
    resume: bool = key(False, "Continue from the run directory's last checkpoint.")
    overwrite: bool = key(
        False,
        "Allow training into an existing run directory, replacing its checkpoints.",
        applies=when("resume", False),
    )
    data: DataConfig = section(DataConfig, "The corpus, its tokenizer and its vocabularies.")
    model: ModelConfig = section(RecurrentConfig, "The architecture and its sizes.")
    train: TrainConfig = section(TrainConfig, "Optimisation, validation and checkpoints.")

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name
