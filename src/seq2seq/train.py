"""The Trainer: one loop that reads top to bottom.

Each epoch: bucketed batches in random order; forward with teacher forcing; cross-entropy that
ignores padding; backward; gradient-norm clipping; an optimizer step; then validation loss,
free-running loss and greedy BLEU, the last and (if improved) best checkpoints, and a log line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from seq2seq import checkpoint
from seq2seq.config import Config, ConfigError, TrainConfig, config_to_dict
from seq2seq.data.batching import bucket_batches, iterate, padding_share
from seq2seq.data.dataset import build_vocabs, load_split, numericalize
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import model_sizes
from seq2seq.decode import DecodeSettings
from seq2seq.device import autocast as device_autocast
from seq2seq.device import pick_device, pick_precision
from seq2seq.errors import CheckpointError, TrainingDiverged, TrainingInterrupted
from seq2seq.evaluate import evaluate_examples, perplexity
from seq2seq.models import build_model

log = logging.getLogger(__name__)

MAX_BAD_STEPS_IN_ROW = 5  # non-finite losses in a row before training gives up
MAX_OOM_BATCHES = 20  # GPU batches skipped for memory before training gives up


# Config keys that may change when a run is resumed.
# `name` and `output_dir` only say where the run directory is: a moved run resumes.
RESUMABLE_CHANGES = {
    "resume",
    "overwrite",
    "train.epochs",
    "device",
    "train.num_threads",
    "name",
    "output_dir",
}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(config: Config, step: int, steps_per_epoch: int) -> float:
    """The paper's schedule (section 3.4): after `halve_after_epochs`, halve the rate every
    `halve_every_epochs`."""
    train = config.train
    epoch = step / steps_per_epoch
    if train.lr_schedule == "constant" or epoch < train.halve_after_epochs:
        return 1.0
    return 0.5 ** (math.floor((epoch - train.halve_after_epochs) / train.halve_every_epochs) + 1)


def make_optimizer(train: TrainConfig, params, device: torch.device) -> torch.optim.Optimizer:
    """Adam or SGD, fused into one kernel where PyTorch has one: on CPU (PyTorch 2.4 and
    later) the fused Adam step takes 8 ms for the tutorial model's 14M parameters, against
    28 ms one tensor at a time."""
    params = list(params)
    optimizer = torch.optim.Adam if train.optimizer == "adam" else torch.optim.SGD
    try:
        return optimizer(params, lr=train.lr, fused=device.type in ("cpu", "cuda"))
    except RuntimeError:  # no fused kernel for this device in this PyTorch
        return optimizer(params, lr=train.lr)


def config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes += config_diff(a, b, f"{prefix}{key}.")
        elif a != b and f"{prefix}{key}" not in RESUMABLE_CHANGES:
            changes.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return changes


class Trainer:
    def __init__(self, config: Config):
        self.config = config
        self.run_dir = config.run_dir
        self._check_run_dir()
        seed_everything(config.seed)
        if config.train.num_threads:
            torch.set_num_threads(config.train.num_threads)
        self.device = pick_device(config.device)
        self.precision = pick_precision(config.train.precision, self.device)

        data = config.data
        train_split = load_split(data, "train")
        self.valid_split = load_split(data, "valid")
        self.src_vocab, self.tgt_vocab = build_vocabs(data, train_split)
        self.train_examples = numericalize(
            train_split, self.src_vocab, self.tgt_vocab, data, limit=data.train_limit
        )
        self.valid_examples = numericalize(self.valid_split, self.src_vocab, self.tgt_vocab, data)
        self.tgt_tokenizer = Tokenizer(data.tgt_lang, lowercase=data.lowercase)

        sizes = model_sizes(self.src_vocab, self.tgt_vocab)
        self.model = build_model(config.model, **sizes).to(self.device)
        self.optimizer = make_optimizer(config.train, self.model.parameters(), self.device)
        self.rng = random.Random(config.seed)  # batch order
        self.generator = torch.Generator().manual_seed(config.seed)  # teacher-forcing draws
        self.epoch, self.step = 0, 0
        self.position = 0  # batches of the current epoch already trained on
        self.epoch_rng = self.rng.getstate()  # the batch-order RNG when the epoch began
        self.epoch_loss, self.epoch_tokens = 0.0, 0
        self.bad_steps = self.bad_steps_in_row = self.oom_batches = 0
        self.best = None
        if config.resume:
            self._resume()

    def _check_run_dir(self) -> None:
        """Never train over a finished model by accident."""
        config = self.config
        last = self.run_dir / "last"
        if config.resume:
            try:
                checkpoint.resolve(last)  # also finds a save interrupted mid-swap
            except CheckpointError:
                raise ConfigError(
                    f"cannot resume: {last} does not exist; start the run without resume=true"
                ) from None
            return
        if self.run_dir.exists() and any(self.run_dir.iterdir()) and not config.overwrite:
            raise ConfigError(
                f"run directory {self.run_dir} already holds a run; continue it with "
                f"resume=true, replace it with overwrite=true, or pick another name=..."
            )

    def _resume(self) -> None:
        last = checkpoint.load(self.run_dir / "last", self.device)
        changes = config_diff(config_to_dict(last.config), config_to_dict(self.config))
        if changes and not self.config.overwrite:
            raise ConfigError(
                "cannot resume with a changed config (" + "; ".join(changes) + "); undo the "
                "changes, or add overwrite=true to resume anyway"
            )
        if (last.src_vocab, last.tgt_vocab) != (self.src_vocab, self.tgt_vocab):
            raise ConfigError(f"cannot resume: the data gives other vocabularies than {last.path}")
        if last.config.model != self.config.model:
            raise ConfigError(
                f"cannot resume: the model in {last.path} was built with other model.* "
                f"settings; a run's model cannot change shape, start a new run instead"
            )
        self.model.load_state_dict(last.model.state_dict())
        state = checkpoint.load_training_state(last.path, self.optimizer)
        try:
            self._restore(state)
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(
                f"{last.path}/trainer.json lacks part of the training state ({error}); "
                f"the checkpoint is damaged"
            ) from None
        log.info("resumed %s at epoch %d, step %d", self.run_dir, self.epoch, self.step)

    def _restore(self, state: dict) -> None:
        for key in (
            "epoch",
            "step",
            "position",
            "best",
            "epoch_loss",
            "epoch_tokens",
            "bad_steps",
            "oom_batches",
        ):
            setattr(self, key, state[key])
        self.epoch_rng = _tuplify(state["epoch_rng"])
        self.rng.setstate(_tuplify(state["batch_rng"]))
        self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))
        torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
        random.setstate(_tuplify(state["python_rng"]))
        np.random.set_state(_numpy_unstate(state["numpy_rng"]))
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(
                [torch.tensor(s, dtype=torch.uint8) for s in state["cuda_rng"]]
            )

    def train(self) -> dict:
        config, train = self.config, self.config.train
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not config.resume:  # overwrite=true: the replaced run goes, all of it
            (self.run_dir / "log.jsonl").unlink(missing_ok=True)
            for name in ("best", "last"):
                shutil.rmtree(self.run_dir / name, ignore_errors=True)
        (self.run_dir / "config.yaml").write_text(
            yaml.safe_dump(config_to_dict(config), sort_keys=False)
        )
        steps_per_epoch = len(self._epoch_batches(random.Random(0)))
        total_steps = round(train.epochs * steps_per_epoch)
        self.steps_per_epoch = steps_per_epoch
        log.info(
            "training %s on %s in %s: %d examples, %d steps per epoch, vocabularies %d / %d",
            config.name,
            self.device,
            self.precision,
            len(self.train_examples),
            steps_per_epoch,
            len(self.src_vocab),
            len(self.tgt_vocab),
        )
        record = {}
        with _stop_on_signals() as stop:
            while self.step < total_steps:
                if self.position == 0:  # a new epoch; else resume inside the saved one
                    self.epoch += 1
                    self.epoch_rng = self.rng.getstate()
                    self.epoch_loss, self.epoch_tokens = 0.0, 0
                self.rng.setstate(self.epoch_rng)
                batches = self._epoch_batches(self.rng)
                end = min(len(batches), self.position + total_steps - self.step)
                started = time.perf_counter()
                self._run_batches(batches[self.position : end], stop)
                seconds = time.perf_counter() - started
                record = self._record(batches, seconds)
                if self.position == len(batches):
                    self.position = 0
                self._save(record)
                self._log(record)
        return record

    def _epoch_batches(self, rng: random.Random) -> list[list[int]]:
        train = self.config.train
        return bucket_batches(
            self.train_examples, size=train.batch_size, unit=train.batch_unit, rng=rng
        )

    def _run_batches(self, batches: list[list[int]], stop: dict) -> None:
        """Train on these batches, saving and stopping cleanly if a signal asks to."""
        train = self.config.train
        criterion = torch.nn.CrossEntropyLoss(ignore_index=self.tgt_vocab.pad)
        autocast = device_autocast(self.precision, self.device)
        self.model.train()
        pin = self.device.type == "cuda"
        batch_iter = iterate(
            self.train_examples, batches, self.src_vocab.pad, self.tgt_vocab.pad, pin=pin
        )
        progress = tqdm(
            batch_iter, total=len(batches), desc=f"epoch {self.epoch}", leave=False, disable=None
        )
        for batch in progress:
            batch = batch.to(self.device)
            try:
                with autocast:
                    logits = self.model(
                        batch.src,
                        batch.src_lengths,
                        batch.tgt,
                        train.teacher_forcing_ratio,
                        self.generator,
                    )
                # The loss in float32 whatever the precision: log-softmax over V is sensitive.
                loss = criterion(logits.float().flatten(0, 1), batch.tgt[:, 1:].flatten())
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), train.clip_norm)
            except torch.OutOfMemoryError:
                self._out_of_memory(batch)
                loss = norm = None
            # One host sync per step is the price of the running loss and of the finiteness
            # check; it is negligible beside a training step on CPU and small on GPU.
            loss_value = float("nan") if loss is None else loss.item()
            if loss is not None and self._finite(loss_value, norm):
                # The rate is a function of the step alone, so resuming needs no scheduler state.
                factor = lr_factor(self.config, self.step, self.steps_per_epoch)
                for group in self.optimizer.param_groups:
                    group["lr"] = train.lr * factor
                self.optimizer.step()
                self.epoch_loss += loss_value * batch.num_target_tokens
                self.epoch_tokens += batch.num_target_tokens
            self.step += 1
            self.position += 1
            progress.set_postfix(loss=f"{loss_value:.3f}")
            if stop["signal"]:
                self._save({"interrupted": stop["signal"]})
                raise TrainingInterrupted(
                    f"stopped by {stop['signal']} at epoch {self.epoch}, step {self.step}; "
                    f"the state is saved in {self.run_dir / 'last'}: continue with "
                    f"seq2seq train CONFIG name={self.config.name} resume=true"
                )

    def _finite(self, loss_value: float, norm: torch.Tensor) -> bool:
        """Skip the update of a non-finite loss or gradient; give up after several in a row."""
        if math.isfinite(loss_value) and bool(torch.isfinite(norm)):
            self.bad_steps_in_row = 0
            return True
        self.bad_steps += 1
        self.bad_steps_in_row += 1
        log.warning(
            "step %d: non-finite loss or gradient (%s); update skipped", self.step, loss_value
        )
        if self.bad_steps_in_row >= MAX_BAD_STEPS_IN_ROW:
            raise TrainingDiverged(
                f"{self.bad_steps_in_row} steps in a row had a non-finite loss or gradient "
                f"(step {self.step}); lower train.lr or train.clip_norm, or use "
                f"train.precision=float32, and start again"
            )
        return False

    def _out_of_memory(self, batch) -> None:
        if self.device.type != "cuda":
            raise TrainingDiverged(
                f"out of memory on a batch of {batch.src.size(0)} sentences; lower "
                f"train.batch_size (or use train.batch_unit=tokens)"
            )
        self.oom_batches += 1
        self.optimizer.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        log.warning(
            "step %d: out of GPU memory on a batch of %d sentences; batch skipped",
            self.step,
            batch.src.size(0),
        )
        if self.oom_batches > MAX_OOM_BATCHES:
            raise TrainingDiverged(
                f"out of GPU memory on {self.oom_batches} batches; lower train.batch_size"
            )

    def _record(self, batches: list[list[int]], seconds: float) -> dict:
        loss = self.epoch_loss / max(self.epoch_tokens, 1)
        return {
            "epoch": self.epoch,
            "step": self.step,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": loss,
            "train_ppl": perplexity(loss),
            "padding": padding_share(self.train_examples, batches),
            "precision": self.precision,
            "seconds": seconds,
            "tokens_per_second": self.epoch_tokens / seconds if seconds else 0.0,
            "skipped_steps": self.bad_steps,
            "oom_batches": self.oom_batches,
            **self.validate(),
        }

    def validate(self) -> dict:
        settings = DecodeSettings(
            max_length_a=self.config.train.max_length_a, max_length_b=self.config.train.max_length_b
        )
        figures = evaluate_examples(
            self.model,
            self.valid_examples,
            self.valid_split.tgt_text,
            vocab=self.tgt_vocab,
            tokenizer=self.tgt_tokenizer,
            device=self.device,
            settings=settings,
        )
        keys = ("loss", "ppl", "free_loss", "free_ppl", "bleu", "bleu_tokenized", "chrf")
        return {f"val_{key}": figures[key] for key in keys}

    def _save(self, record: dict) -> None:
        """Save last/ (resumable at this exact step) and, if the metric improved, best/."""
        metric = self.config.train.best_metric
        improved = False
        if metric in record:
            # BLEU is better higher, losses lower; a NaN never becomes the best.
            score = record[metric] if metric == "val_bleu" else -record[metric]
            improved = math.isfinite(score) and (self.best is None or score > self.best)
            if improved:
                self.best = score
            record["best"] = improved
        vocabs = (self.src_vocab, self.tgt_vocab)
        meta = {"epoch": self.epoch, "step": self.step, "metrics": record}
        checkpoint.save(
            self.run_dir / "last",
            self.model,
            self.config,
            vocabs,
            meta,
            optimizer=self.optimizer,
            trainer_state=self._state(),
        )
        if improved:
            checkpoint.save(self.run_dir / "best", self.model, self.config, vocabs, meta)

    def _state(self) -> dict:
        """Everything beyond weights and optimizer that an exact resume needs."""
        state = {
            "epoch": self.epoch,
            "step": self.step,
            "position": self.position,
            "best": self.best,
            "epoch_rng": self.epoch_rng,
            "batch_rng": self.rng.getstate(),
            "epoch_loss": self.epoch_loss,
            "epoch_tokens": self.epoch_tokens,
            "bad_steps": self.bad_steps,
            "oom_batches": self.oom_batches,
            "generator": self.generator.get_state().tolist(),
            "torch_rng": torch.get_rng_state().tolist(),
            "python_rng": random.getstate(),
            "numpy_rng": _numpy_state(),
        }
        if torch.cuda.is_available():
            state["cuda_rng"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
        return state

    def _log(self, record: dict) -> None:
        with open(self.run_dir / "log.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        tqdm.write(
            f"epoch {record['epoch']:>3} | train loss {record['train_loss']:.3f} "
            f"ppl {record['train_ppl']:7.2f} | val loss {record['val_loss']:.3f} "
            f"ppl {record['val_ppl']:7.2f} | free ppl {record['val_free_ppl']:7.2f} | "
            f"BLEU {record['val_bleu']:5.2f} (tok {record['val_bleu_tokenized']:5.2f}) | "
            f"{record['seconds']:.0f}s {record['tokens_per_second']:.0f} tok/s"
            + (" | best" if record["best"] else "")
        )


def _numpy_state() -> list:
    name, keys, position, has_gauss, gauss = np.random.get_state()
    return [name, keys.tolist(), position, has_gauss, gauss]


def _numpy_unstate(state: list) -> tuple:
    name, keys, position, has_gauss, gauss = state
    return name, np.array(keys, dtype=np.uint32), position, has_gauss, gauss


@contextlib.contextmanager
def _stop_on_signals():
    """SIGINT (Ctrl-C) and SIGTERM ask the loop to stop after the current step, so the saved
    state is always a whole step; a second Ctrl-C stops at once."""
    stop = {"signal": None}

    def request(number, frame):
        if stop["signal"] and number == signal.SIGINT:
            raise KeyboardInterrupt
        stop["signal"] = signal.Signals(number).name

    if threading.current_thread() is not threading.main_thread():
        yield stop  # signals can only be handled in the main thread
        return
    previous = {s: signal.signal(s, request) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _tuplify(value):
    """JSON turns the tuples of random.getstate() into lists; setstate wants them back."""
    return tuple(_tuplify(v) for v in value) if isinstance(value, list) else value


def train(config: Config) -> Path:
    Trainer(config).train()
    return config.run_dir
