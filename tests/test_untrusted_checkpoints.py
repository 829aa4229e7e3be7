"""Untrusted checkpoints: nothing in the code unpickles or loads unsafely, and a malicious or
foreign file in a checkpoint never runs and is refused in one line."""

from __future__ import annotations

import ast
import contextlib
import io
import pickle
from pathlib import Path

import pytest
import torch
from conftest import ROOT, assert_error, cli, isolated
from helpers import (
    Plant,
    tiny,
    tiny_argv,
    train,
)

from seq2seq.errors import CheckpointError
from seq2seq.training import Trainer

# Untrusted checkpoints.

UNSAFE_CALLS = {
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "cPickle.load",
    "cPickle.loads",
    "_pickle.load",
    "_pickle.loads",
    "dill.load",
    "dill.loads",
    "joblib.load",
    "shelve.open",
    "yaml.unsafe_load",
    "yaml.full_load",
}
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve"}
# Deliberate: test_checkpoint.py unpickles its own payload once, to prove that it works.
ALLOWED = {
    ("tests/test_checkpoint.py", "import pickle"),
    ("tests/test_checkpoint.py", 'pickle.loads(pickle.dumps({"weight": Plant(proof)}))'),
}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def _keyword(call: ast.Call, name: str):
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    return None


def _constant(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def unsafe_loads(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name.split(".")[0] for alias in node.names]
            found += [(node.lineno, f"import {n}") for n in names if n in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
            UNSAFE_MODULES
        ):
            found.append((node.lineno, f"from {node.module} import"))
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in UNSAFE_CALLS or name.startswith("dill."):
                found.append((node.lineno, name))
            elif name == "torch.load" and not _constant(_keyword(node, "weights_only"), True):
                found.append((node.lineno, "torch.load without weights_only=True"))
            elif name in ("np.load", "numpy.load") and not _constant(
                _keyword(node, "allow_pickle"), False
            ):
                found.append((node.lineno, f"{name} without allow_pickle=False"))
            elif name == "yaml.load" and "SafeLoader" not in _dotted(
                _keyword(node, "Loader") or ast.Name("")
            ):
                found.append((node.lineno, "yaml.load without a SafeLoader"))
    return found


def test_no_code_unpickles_or_loads_unsafely():
    files = sorted((ROOT / "src").rglob("*.py")) + sorted((ROOT / "tests").rglob("*.py"))
    problems = []
    for path in files:
        if path.resolve() == Path(__file__).resolve():
            continue
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        relative = path.relative_to(ROOT).as_posix()
        for number, what in unsafe_loads(ast.parse(source, str(path))):
            if (relative, lines[number - 1].strip()) not in ALLOWED:
                problems.append(f"{relative}:{number}: {what}")
    assert not problems, "unsafe loading:\n" + "\n".join(problems)


def test_the_scan_finds_what_it_looks_for():
    source = (
        "import pickle\nimport torch, numpy as np\nfrom dill import loads\n"
        "torch.load(f)\ntorch.load(f, weights_only=False)\ntorch.load(f, weights_only=True)\n"
        "np.load(f)\nnp.load(f, allow_pickle=False)\npickle.loads(b)\njoblib.load(f)\n"
        "yaml.load(s)\nyaml.load(s, Loader=yaml.SafeLoader)\n"
    )
    assert [n for n, _ in unsafe_loads(ast.parse(source))] == [1, 3, 4, 5, 7, 9, 10, 11]


def payload(name: str, marker: Path) -> bytes:
    """What an attacker would put in place of a checkpoint file to create `marker` on a
    careless load: a torch pickle for the weights, a raw pickle for the optimizer state, a
    text (protocol 0) pickle for trainer.json, a python-object tag for config.yaml."""
    if name == "model.safetensors":
        buffer = io.BytesIO()
        torch.save({"weight": Plant(marker)}, buffer)
        return buffer.getvalue()
    if name == "optimizer.safetensors":
        return pickle.dumps({"0.exp_avg": Plant(marker)})
    if name == "trainer.json":
        return pickle.dumps(Plant(marker), protocol=0)
    return f"!!python/object/apply:os.mkdir [{marker}]\n".encode()


@pytest.fixture(scope="module")
def resumable(corpus, tmp_path_factory) -> Path:
    """A run whose last/ files the tests below replace, and put back."""
    with isolated(tmp_path_factory.getbasetemp() / "cache"):
        return train(tiny(corpus, tmp_path_factory.mktemp("resumable"), "train.epochs=1"))


@contextlib.contextmanager
def replaced(path: Path, content: bytes):
    original = path.read_bytes()
    path.write_bytes(content)
    try:
        yield
    finally:
        path.write_bytes(original)


LAST_FILES = ["model.safetensors", "optimizer.safetensors", "trainer.json", "config.yaml"]


# How each file of last/ refuses a payload, and the fix its message names.
REFUSALS = {
    "model.safetensors": "is not a readable safetensors file",
    "optimizer.safetensors": "is not a readable safetensors file",
    "trainer.json": "is unreadable",
    "config.yaml": "is unusable",
}


@pytest.mark.slow  # trains
@pytest.mark.parametrize("name", LAST_FILES)
def test_malicious_files_in_last_never_run_on_resume(resumable, corpus, tmp_path, name):
    marker = tmp_path / "marker"
    with (
        replaced(resumable / "last" / name, payload(name, marker)),
        pytest.raises(CheckpointError) as error,
    ):
        Trainer(tiny(corpus, resumable.parent, "train.epochs=2", "resume=true"))
    assert str(error.value).startswith(f"{resumable / 'last'}/{name} {REFUSALS[name]}")
    assert not marker.exists()


@pytest.mark.slow  # trains
@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("model.safetensors", None),
        ("trainer.json", None),
        ("trainer.json", b"[1, 2"),
        ("config.yaml", None),
        ("optimizer.safetensors", None),
        ("trainer.json", b"{}"),
    ],
    ids=["model", "trainer-pickle", "trainer-cut", "config", "optimizer", "trainer-empty"],
)
def test_a_foreign_file_in_last_is_refused_in_one_line(
    resumable, corpus, tmp_path, capsys, name, content
):
    content = payload(name, tmp_path / "marker") if content is None else content
    with replaced(resumable / "last" / name, content):
        code = cli(tiny_argv(corpus, resumable.parent, "train.epochs=2", "resume=true"))
    assert_error(capsys, code, f"{resumable / 'last'}/{name}")


def test_a_config_file_that_is_not_yaml_is_one_line(tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text("train:\n  epochs: [1\n")
    assert_error(capsys, cli(["train", tmp_path / "broken.yaml"]), "is not valid YAML")
