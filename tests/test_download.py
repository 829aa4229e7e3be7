"""Fetching Multi30k, against a local HTTP server on 127.0.0.1; never the internet."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from seq2seq.config import DataConfig
from seq2seq.data import splits
from seq2seq.data.files import data_dirs, locate_split, multi30k_checksums
from seq2seq.errors import DataError


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        self.server.requested.append(self.path)


@contextlib.contextmanager
def _serve(directory: Path) -> Iterator[http.server.ThreadingHTTPServer]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requested = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A private cache, so that downloads cannot leak into other tests' lookups."""
    monkeypatch.setenv("SEQ2SEQ_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _use_server(monkeypatch, server) -> str:
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    monkeypatch.setenv("SEQ2SEQ_MULTI30K_URL", url)
    return url


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_shipped_checksums_match_the_published_files(multi30k_dir):
    published = {}
    for line in (multi30k_dir / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        published[name] = digest
    assert multi30k_checksums() == published
    assert _sha256(multi30k_dir / "train.de.gz") == published["train.de.gz"]


def test_missing_multi30k_is_downloaded_into_the_cache(multi30k_dir, cache, monkeypatch):
    with _serve(multi30k_dir) as server:
        _use_server(monkeypatch, server)
        paths = locate_split("train", ("de", "en"), data_dirs(None), "multi30k")
    assert paths == [cache / "multi30k" / "train.de.gz", cache / "multi30k" / "train.en.gz"]
    assert sorted(server.requested) == ["/train.de.gz", "/train.en.gz"]
    for path in paths:
        assert path.read_bytes() == (multi30k_dir / path.name).read_bytes()
        assert _sha256(path) == multi30k_checksums()[path.name]

    # With the server gone (the fixture's unreachable URL back), the cached files are used.
    monkeypatch.setenv("SEQ2SEQ_MULTI30K_URL", "http://127.0.0.1:9/unreachable/")
    assert locate_split("train", ("de", "en"), data_dirs(None), "multi30k") == paths


def test_load_split_downloads_what_it_needs(multi30k_dir, cache, monkeypatch):
    with _serve(multi30k_dir) as server:
        _use_server(monkeypatch, server)
        split = splits.load_split(DataConfig(), "val")
    assert sorted(server.requested) == ["/val.de.gz", "/val.en.gz"]
    assert len(split.src_text) == 1014
    with gzip.open(multi30k_dir / "val.en.gz", "rt", encoding="utf-8") as handle:
        assert split.tgt_text[0] == handle.readline().rstrip("\n")


def test_a_corrupt_download_is_refused_and_not_kept(tmp_path, cache, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    (served / "train.de.gz").write_bytes(gzip.compress(b"Nicht Multi30k.\n"))
    with _serve(served) as server:
        _use_server(monkeypatch, server)
        with pytest.raises(DataError) as error:
            locate_split("train", ("de", "en"), data_dirs(None), "multi30k")
    assert "downloaded train.de.gz is corrupt" in str(error.value)
    assert multi30k_checksums()["train.de.gz"] in str(error.value)
    assert not (cache / "multi30k" / "train.de.gz").exists()


def test_a_file_missing_on_the_server_is_a_data_error(tmp_path, cache, monkeypatch):
    (tmp_path / "empty").mkdir()
    with _serve(tmp_path / "empty") as server:
        url = _use_server(monkeypatch, server)
        with pytest.raises(DataError) as error:
            locate_split("val", ("de", "en"), data_dirs(None), "multi30k")
    assert f"cannot download {url}val.de.gz (HTTPError)" in str(error.value)


def test_an_unreachable_server_says_which_files_to_put_where(cache):
    with pytest.raises(DataError) as error:
        locate_split("train", ("de", "en"), data_dirs(None), "multi30k")
    message = str(error.value)
    assert "cannot download http://127.0.0.1:9/unreachable/train.de.gz" in message
    for name in ("train.de.gz", "train.en.gz", "val.de.gz", "test_2016_flickr.en.gz"):
        assert name in message
    assert f"in {cache / 'multi30k'}" in message
    assert "data.dir" in message and "SEQ2SEQ_DATA" in message
    assert "\n" not in message
    assert error.value.__suppress_context__  # one clear error, not a chain of library ones
