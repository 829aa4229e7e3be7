"""Typed run configuration: frozen dataclasses, YAML loading and dotted overrides.

Every key has its default here and nowhere else. Unknown keys and bad values are refused at
load time, all at once, each naming the key, the value and what would be valid.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from seq2seq.errors import Seq2SeqError


class ConfigError(Seq2SeqError, ValueError):
    """A configuration the user wrote is wrong; the message says what and how to fix it."""


@dataclass(frozen=True)
class DataConfig:
    corpus: Literal["multi30k", "files"] = "multi30k"
    # Where the corpus files are; None looks in $SEQ2SEQ_DATA, then the user cache (Multi30k is
    # downloaded there when missing).
    dir: str | None = None
    src_lang: str = "de"
    tgt_lang: str = "en"
    # A split is a path prefix relative to `dir`: its files are {prefix}.{lang}[.gz].
    # Several training corpora are a list of prefixes, prepared together under one vocabulary.
    train: str | tuple[str, ...] = "train"
    # Each training corpus's share of an epoch's pairs, one weight per prefix of `train`
    # (null: every pair once an epoch). A corpus short of its share is repeated.
    train_weights: tuple[float, ...] | None = None
    valid: str = "val"
    test: str = "test_2016_flickr"
    # spacy: words from spaCy's rule-based tokenizer, detokenized by Moses rules; sentencepiece:
    # subword pieces from a SentencePiece model trained on the training split (data/subword.py).
    tokenizer: Literal["spacy", "sentencepiece"] = "spacy"
    lowercase: bool = True
    reverse_source: bool = True
    # One vocabulary for source and target (a Transformer then shares their embeddings); with
    # sentencepiece, also one model trained on both sides' text.
    joint_vocab: bool = False
    # spacy only: keep tokens seen at least min_freq times, at most max_size (specials included).
    min_freq: int = 2
    max_size: int | None = None
    # sentencepiece only: the model type, and the pieces per vocabulary (specials included).
    sp_model_type: Literal["bpe", "unigram"] = "unigram"
    vocab_size: int = 5000
    # sentencepiece only: read spaCy's tokens joined by spaces instead of the raw text.
    sp_pretokenize: bool = False
    # Sentences longer than this many tokens are truncated (the tutorial keeps 1,000).
    max_length: int = 1000
    # Use only the first N training sentence pairs (None: all); for quick trials and tests.
    train_limit: int | None = None
    # Preparation (`seq2seq prepare`, or `seq2seq train` when the prepared corpus is missing):
    # the processes that tokenize (null: one per core).
    num_workers: int | None = None
    # Filters of the training corpora at preparation; evaluation splits keep every line.
    # Drop pairs with an empty side.
    filter_empty: bool = True
    # Drop pairs with a side longer than max_length tokens (false: truncate them).
    filter_long: bool = False
    # Drop pairs whose longer side has more than this many times the tokens of the shorter.
    max_length_ratio: float | None = None
    # Drop pairs seen before, exactly (both sides).
    filter_duplicates: bool = False


@dataclass(frozen=True)
class RecurrentConfig:
    """`model.type: lstm`, the paper's attention-free encoder-decoder (models/recurrent.py)."""

    type: Literal["lstm"] = "lstm"
    cell: Literal["lstm", "gru"] = "lstm"
    embedding_size: int = 256
    hidden_size: int = 512
    num_layers: int = 2
    dropout: float = 0.5
    # Every parameter starts uniform in [-init_range, init_range] (the paper's 0.08).
    init_range: float = 0.08
    # On CPU, dense oneDNN calls in exact time slices and our own dropout (models/cpu_rnn.py);
    # false runs plain nn.LSTM / nn.GRU calls, tested equal, in case a PyTorch release breaks
    # the private calls the fast path makes. Ignored on GPUs, which always run cuDNN.
    cpu_fast_path: bool = True


@dataclass(frozen=True)
class AttentionConfig:
    """`model.type: attention`, an RNN encoder-decoder with attention (models/attention.py):
    Bahdanau et al. (2015) by default, Luong et al. (2015) with `style: luong`."""

    type: Literal["attention"] = "attention"
    cell: Literal["lstm", "gru"] = "lstm"
    embedding_size: int = 256
    # The decoder's state; the bidirectional encoder has hidden_size / 2 per direction, so its
    # outputs have hidden_size features too.
    hidden_size: int = 512
    num_layers: int = 1
    dropout: float = 0.3
    # bahdanau: attend with the previous decoder state, and feed the context to the RNN and the
    # output layer; luong: attend with the new decoder state, then an attentional layer.
    style: Literal["bahdanau", "luong"] = "bahdanau"
    # additive (Bahdanau's MLP), general (Luong's bilinear) or dot.
    score: Literal["additive", "general", "dot"] = "additive"
    # Luong's input feeding: the previous attentional vector is part of the next RNN input.
    input_feeding: bool = True


@dataclass(frozen=True)
class TransformerConfig:
    """`model.type: transformer`, Vaswani et al. (2017) (models/transformer.py)."""

    type: Literal["transformer"] = "transformer"
    d_model: int = 256
    heads: int = 8
    encoder_layers: int = 3
    decoder_layers: int = 3
    ff_size: int = 1024
    dropout: float = 0.1
    attention_dropout: float = 0.0
    # Layer norm before each sublayer (and after the stacks) instead of after each sublayer.
    pre_norm: bool = False
    # The decoder's input embedding is its output layer's weight (Press and Wolf, 2017).
    tie_embeddings: bool = True
    # With a joint source/target vocabulary, the encoder shares the decoder's embedding.
    share_embeddings: bool = True


# Every architecture's settings, by `model.type`. A section's `type` picks its class; a key that
# belongs to another type is refused, naming the type it belongs to.
MODEL_CONFIGS: dict[str, type] = {
    "lstm": RecurrentConfig,
    "attention": AttentionConfig,
    "transformer": TransformerConfig,
}
ModelConfig = RecurrentConfig | AttentionConfig | TransformerConfig


@dataclass(frozen=True)
class TrainConfig:
    epochs: float = 10
    batch_size: int = 128
    batch_unit: Literal["sentences", "tokens"] = "sentences"
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 0.001
    # "halving": after `halve_after_epochs`, halve the rate every `halve_every_epochs` (the paper).
    # "inverse_sqrt": rise linearly to `lr` over `warmup_steps` updates, then fall as
    # 1/sqrt(step) (the Transformer's, Vaswani et al. 2017 section 5.3, with `lr` as the peak).
    lr_schedule: Literal["constant", "halving", "inverse_sqrt"] = "constant"
    halve_after_epochs: float = 5.0
    halve_every_epochs: float = 0.5
    warmup_steps: int = 4000
    # Adam's (beta1, beta2); the Transformer used (0.9, 0.98).
    adam_betas: tuple[float, float] = (0.9, 0.999)
    # Decoupled weight decay on every parameter: AdamW (Loshchilov and Hutter 2019) with adam,
    # plain L2 weight decay with sgd. 0 keeps plain Adam.
    weight_decay: float = 0.0
    # The training loss only (Szegedy et al. 2016 section 7): validation loss and perplexity
    # stay plain cross-entropy, comparable across runs.
    label_smoothing: float = 0.0
    clip_norm: float = 1.0
    teacher_forcing_ratio: float = 0.5
    # Which validation figure picks the best checkpoint: teacher-forced loss, free-running loss
    # (the decoder reads its own predictions, as the tutorial's "valid loss") or greedy BLEU.
    best_metric: Literal["val_loss", "val_free_loss", "val_bleu"] = "val_loss"
    # Stop once `best_metric` has not improved for this many epochs; None trains every epoch.
    patience: int | None = None
    # Also keep the last N epochs' checkpoints as epoch-K/ (for `seq2seq average`); 0: none.
    keep_checkpoints: int = 0
    # Batches whose gradients add up to one update (gradient accumulation): the update of a
    # batch K times larger. With N processes, each update covers N x accumulate batches.
    accumulate: int = 1
    # "auto": bfloat16 autocast where it pays off (CPUs with AMX, GPUs with bfloat16), float16
    # with a gradient scaler on GPUs without bfloat16, else float32; see device.py.
    precision: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # Read the running loss and the non-finite-step guard every N steps (one host sync each);
    # None: every step on CPUs, where it costs nothing, every 50 on GPUs.
    sync_every: int | None = None
    # With several processes: seconds a process waits for the others at a collective (process
    # 0's validation and save included) before it gives up.
    distributed_timeout: float = 1800.0
    # Validation BLEU's beam size (1: greedy) and length limit: at most
    # max_length_a * source length + max_length_b tokens.
    valid_beam_size: int = 1
    max_length_a: float = 1.5
    max_length_b: int = 10
    # CPU threads for PyTorch; None keeps PyTorch's choice.
    num_threads: int | None = None
    # Also write every logged figure as TensorBoard scalars under runs/NAME/tensorboard/.
    tensorboard: bool = False


@dataclass(frozen=True)
class Config:
    name: str = "run"
    # Where the run directory goes: {output_dir}/{name}.
    output_dir: str = "runs"
    seed: int = 1234
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    # Continue from the run directory's last checkpoint.
    resume: bool = False
    # Allow training into an existing run directory, replacing its checkpoints.
    overwrite: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=RecurrentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a YAML config, apply `key=value` overrides and check everything."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass the path of a YAML file")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise ConfigError(f"config file {path} is not valid YAML: {one_line(error)}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"override {override!r} must look like key=value, e.g. train.epochs=2"
            )
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            raise ConfigError(
                f"override {override!r}: {value!r} is not a valid value; quote strings, "
                f"e.g. {key}='{value}'"
            ) from None
        _set_dotted(raw, key.strip(), parsed)
    return config_from_dict(raw)


def one_line(error: Exception) -> str:
    """A parser's multi-line message as one line, for the CLI's one-line errors."""
    return " ".join(str(error).split())


def config_from_dict(raw: dict[str, Any]) -> Config:
    errors: list[str] = []
    config = _build(Config, raw, "", errors)  # a field with a bad type keeps its default
    errors += _check_values(config)
    if errors:
        raise ConfigError("invalid config: " + "; ".join(errors))
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _set_dotted(raw: dict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key}: {part} is not a section")
    node[leaf] = value


def _build(cls: type, raw: Any, prefix: str, errors: list[str]) -> Any:
    if raw is None:  # a section with every key commented out
        raw = {}
    if not isinstance(raw, dict):
        errors.append(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
        return cls()
    hints = typing.get_type_hints(cls)
    names = _field_names(cls)
    for key in raw:
        if key not in names:
            errors.append(f"unknown key {prefix}{key} (valid keys: {', '.join(names)})")
    values = {}
    for name in names:
        if name not in raw:
            continue
        kind = hints[name]
        if cls is Config and name == "model":
            values[name] = _build_model(raw[name], errors)
        elif dataclasses.is_dataclass(kind):
            values[name] = _build(kind, raw[name], f"{prefix}{name}.", errors)
        else:
            ok, value = _coerce(raw[name], kind)
            if ok:
                values[name] = value
            else:
                errors.append(f"{prefix}{name}={raw[name]!r} is not {_describe(kind)}")
    return cls(**values)


def _build_model(raw: Any, errors: list[str]) -> ModelConfig:
    """The model section, as the class its `type` names; keys of other types are refused."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        errors.append(f"model must be a mapping, got {raw!r}")
        return RecurrentConfig()
    kind = raw.get("type", "lstm")
    if kind not in MODEL_CONFIGS:
        errors.append(f"model.type={kind!r} is not one of {', '.join(MODEL_CONFIGS)}")
        return RecurrentConfig()
    cls = MODEL_CONFIGS[kind]
    names = _field_names(cls)
    for key in raw:
        if key not in names:
            owners = [other for other, c in MODEL_CONFIGS.items() if key in _field_names(c)]
            belongs = f"; it belongs to model.type={' or '.join(owners)}" if owners else ""
            errors.append(
                f"unknown key model.{key} for model.type={kind}{belongs} "
                f"(valid keys: {', '.join(names)})"
            )
    return _build(cls, {k: v for k, v in raw.items() if k in names}, "model.", errors)


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _coerce(value: Any, kind: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(kind)
    if origin is Literal:
        return value in typing.get_args(kind), value
    if origin is tuple and typing.get_args(kind)[-1] is Ellipsis:  # a YAML list of any length
        item_kind = typing.get_args(kind)[0]
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            value = [value]  # a single item, as a one-item list
        if not isinstance(value, list | tuple) or not value:
            return False, value
        items = [_coerce(item, item_kind) for item in value]
        ok = all(item_ok for item_ok, _ in items)
        return ok, tuple(item for _, item in items) if ok else value
    if origin is tuple:  # a YAML list of a fixed length
        options = typing.get_args(kind)
        if not isinstance(value, list | tuple) or len(value) != len(options):
            return False, value
        items = [_coerce(item, option) for item, option in zip(value, options, strict=True)]
        ok = all(item_ok for item_ok, _ in items)
        return ok, tuple(item for _, item in items) if ok else value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(kind):
            ok, coerced = _coerce(value, option)
            if ok:
                return True, coerced
        return False, value
    if kind is type(None):
        return value is None, value
    if kind is bool:
        return isinstance(value, bool), value
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return True, float(value)
            except ValueError:
                return False, value
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if kind is str:
        return isinstance(value, str), value
    raise AssertionError(f"config type {kind} has no coercion")


def _describe(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(kind)))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(kind))
    plurals = {int: "integers", float: "numbers", bool: "booleans", str: "strings"}
    if origin is tuple and typing.get_args(kind)[-1] is Ellipsis:
        return f"a list of {plurals[typing.get_args(kind)[0]]}"
    if origin is tuple:
        options = typing.get_args(kind)
        assert len(set(options)) == 1, f"config type {kind}: only lists of one type are described"
        return f"a list of {len(options)} {plurals[options[0]]}"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return "null" if kind is type(None) else names[kind]


# Range checks of model settings, for every model type that has the key.
MODEL_CHECKS = [
    ("embedding_size", lambda v: v >= 1, "positive"),
    ("hidden_size", lambda v: v >= 1, "positive"),
    ("num_layers", lambda v: v >= 1, "at least 1"),
    ("dropout", lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    ("attention_dropout", lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    ("init_range", lambda v: v > 0, "positive"),
    ("d_model", lambda v: v >= 1, "positive"),
    ("heads", lambda v: v >= 1, "at least 1"),
    ("encoder_layers", lambda v: v >= 1, "at least 1"),
    ("decoder_layers", lambda v: v >= 1, "at least 1"),
    ("ff_size", lambda v: v >= 1, "positive"),
]


def _check_values(config: Config) -> list[str]:
    """Range checks that types alone cannot express."""
    problems = []
    checks = [
        ("data.min_freq", config.data.min_freq >= 1, "at least 1"),
        (
            "data.max_size",
            config.data.max_size is None or config.data.max_size > 4,
            "more than 4 (the special tokens)",
        ),
        ("data.vocab_size", config.data.vocab_size > 4, "more than 4 (the special tokens)"),
        ("data.max_length", config.data.max_length >= 1, "at least 1"),
        (
            "data.train_limit",
            config.data.train_limit is None or config.data.train_limit >= 1,
            "positive",
        ),
        (
            "data.num_workers",
            config.data.num_workers is None or config.data.num_workers >= 1,
            "at least 1 (or null: one per core)",
        ),
        (
            "data.max_length_ratio",
            config.data.max_length_ratio is None or config.data.max_length_ratio >= 1,
            "at least 1 (or null: no ratio filter)",
        ),
        (
            "data.train_weights",
            config.data.train_weights is None or min(config.data.train_weights) > 0,
            "positive numbers",
        ),
        ("train.epochs", config.train.epochs > 0, "positive"),
        ("train.batch_size", config.train.batch_size >= 1, "at least 1"),
        ("train.lr", config.train.lr > 0, "positive"),
        ("train.clip_norm", config.train.clip_norm > 0, "positive"),
        (
            "train.teacher_forcing_ratio",
            0.0 <= config.train.teacher_forcing_ratio <= 1.0,
            "in [0, 1]",
        ),
        ("train.halve_every_epochs", config.train.halve_every_epochs > 0, "positive"),
        ("train.warmup_steps", config.train.warmup_steps >= 1, "at least 1"),
        (
            "train.adam_betas",
            all(0.0 <= b < 1.0 for b in config.train.adam_betas),
            "numbers in [0, 1)",
        ),
        ("train.weight_decay", config.train.weight_decay >= 0, "0 or more"),
        ("train.label_smoothing", 0.0 <= config.train.label_smoothing < 1.0, "in [0, 1)"),
        (
            "train.patience",
            config.train.patience is None or config.train.patience >= 1,
            "at least 1 (or null: no early stopping)",
        ),
        ("train.keep_checkpoints", config.train.keep_checkpoints >= 0, "0 or more"),
        ("train.valid_beam_size", config.train.valid_beam_size >= 1, "at least 1"),
        ("train.accumulate", config.train.accumulate >= 1, "at least 1"),
        (
            "train.sync_every",
            config.train.sync_every is None or config.train.sync_every >= 1,
            "at least 1 (or null: every step on CPUs, every 50 on GPUs)",
        ),
        ("train.distributed_timeout", config.train.distributed_timeout > 0, "positive"),
        (
            "train.num_threads",
            config.train.num_threads is None or config.train.num_threads >= 1,
            "at least 1",
        ),
        ("name", bool(config.name) and "/" not in config.name, "a non-empty name without '/'"),
    ]
    checks += [
        (f"model.{key}", ok(getattr(config.model, key)), requirement)
        for key, ok, requirement in MODEL_CHECKS
        if hasattr(config.model, key)
    ]
    for key, ok, requirement in checks:
        if not ok:
            value = config
            for part in key.split("."):
                value = getattr(value, part)
            shown = list(value) if isinstance(value, tuple) else value  # as YAML writes it
            problems.append(f"{key}={shown!r} must be {requirement}")
    model = config.model
    if model.type == "attention" and model.hidden_size % 2:
        problems.append(
            f"model.hidden_size={model.hidden_size} must be even: the bidirectional encoder "
            f"gives each direction half"
        )
    if model.type == "transformer" and model.d_model % model.heads:
        problems.append(
            f"model.d_model={model.d_model} must be a multiple of model.heads={model.heads}"
        )
    prefixes = (config.data.train,) if isinstance(config.data.train, str) else config.data.train
    weights = config.data.train_weights
    if weights is not None and len(weights) != len(prefixes):
        problems.append(
            f"data.train_weights has {len(weights)} weights for {len(prefixes)} training "
            f"corpora in data.train; give one weight per corpus"
        )
    if config.data.src_lang == config.data.tgt_lang:
        problems.append(f"data.src_lang and data.tgt_lang are both {config.data.src_lang!r}")
    return problems
