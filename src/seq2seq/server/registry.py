"""What a server serves: checkpoints loaded once, each under a name.

A RUN argument is `PATH`, `NAME=PATH`, or an ensemble `[NAME=]PATH+PATH[+...]` (averaged by
`loader.load_ensemble`, as `--ensemble` does on the command line). Without a name, a
model is named after its directory (`runs/tutorial` -> `tutorial`), an ensemble after its
members' directories joined by `+`.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from seq2seq import loader
from seq2seq.analysis.attention_maps import attention_refusal
from seq2seq.checkpoint import Checkpoint
from seq2seq.decode import DecodeSettings
from seq2seq.errors import Seq2SeqError
from seq2seq.server.batcher import ShuttingDown
from seq2seq.translate import Translator

NAME = re.compile(r"[A-Za-z0-9._+-]+")


@dataclass(frozen=True)
class Spec:
    name: str
    paths: tuple[str, ...]


@dataclass
class ServedModel:
    name: str
    translator: Translator
    attention: bool  # whether it draws attention maps: one model of an attention type
    stopping: threading.Event = field(default_factory=threading.Event)  # set at shutdown

    def decoder(self, settings: DecodeSettings) -> Translator:
        return self.translator.with_settings(settings)

    def describe(self) -> dict:
        ckpt = self.translator.ckpt
        return {
            "name": self.name,
            "paths": ckpt.meta.get("members", [str(ckpt.path)]),
            "src_lang": ckpt.config.data.src_lang,
            "tgt_lang": ckpt.config.data.tgt_lang,
            "src_vocab_size": len(ckpt.src_vocab),
            "tgt_vocab_size": len(ckpt.tgt_vocab),
            "attention": self.attention,
        }


def parse_specs(texts: list[str]) -> list[Spec]:
    """The RUN arguments, checked before anything loads; the first is the default model."""
    specs = [_parse_spec(text) for text in texts]
    names = [spec.name for spec in specs]
    for name in names:
        if names.count(name) > 1:
            raise Seq2SeqError(f"two models are named {name!r}; name them apart with NAME=PATH")
    return specs


def _parse_spec(text: str) -> Spec:
    name, sep, rest = text.partition("=")
    paths = tuple((rest if sep else text).split("+"))
    if not all(paths) or (sep and not name):
        raise Seq2SeqError(f"cannot read model {text!r}; give PATH, NAME=PATH or NAME=PATH+PATH")
    if not sep:
        name = "+".join(Path(p).resolve().name for p in paths)
    if not NAME.fullmatch(name):
        raise Seq2SeqError(
            f"model name {name!r} may hold only letters, digits and . _ + -; name it with NAME=PATH"
        )
    return Spec(name, paths)


def load_models(
    specs: list[Spec], device: torch.device, *, quantize: str = "none"
) -> dict[str, ServedModel]:
    """Each spec's model: a run, an ensemble or a CTranslate2 export (loader.load_ensemble),
    quantized as `quantize` says."""
    models = {}
    for spec in specs:
        ckpt = loader.load_ensemble(list(spec.paths), device, quantize=quantize)
        models[spec.name] = served_model(spec.name, ckpt, device)
    return models


def served_model(name: str, ckpt: Checkpoint, device: torch.device) -> ServedModel:
    """The checkpoint served under `name`, its model one that a shutdown can stop."""
    stopping = threading.Event()
    stoppable = dataclasses.replace(ckpt, model=Stoppable(ckpt.model, stopping))
    attention = attention_refusal(ckpt) is None
    return ServedModel(name, Translator(stoppable, device), attention, stopping)


class Stoppable:
    """A model that raises ShuttingDown at its next decoding step once `stopping` is set. The
    search asks the model for one step at a time (`decode_step`), so a shutdown stops a long
    decode within a step of its deadline, where the search itself cannot be interrupted. An
    engine that decodes whole lists itself (a CTranslate2 export) finishes its list."""

    def __init__(self, model, stopping: threading.Event):
        self._model = model
        self._stopping = stopping

    def decode_step(self, *args, **kwargs):
        if self._stopping.is_set():
            raise ShuttingDown()
        return self._model.decode_step(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._model, name)
