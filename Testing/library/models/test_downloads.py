"""Model downloads and the catalogue, offline: a server on 127.0.0.1 started here serves generated files (Range
requests, truncated transfers and errors on demand); each case checks what the models folder holds afterwards."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from file_server import file_server

from BratsUNetLib.cancel import CancelToken
from BratsUNetLib.errors import BratsUNetError, Cancelled, ConfigError
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.models import downloads
from BratsUNetLib.models.catalogue import CATALOGUE_ENV, find_entry, load_catalogue
from BratsUNetLib.models.downloads import download, recorded_sha256

SIZE = 20_000
CHUNK = 1_000


@pytest.fixture
def server():
    with file_server() as httpd:
        yield httpd


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(downloads, "CHUNK_BYTES", CHUNK)  # many progress events, each a point to cancel at


def payload(seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, SIZE, dtype=np.uint8).tobytes()


def listing(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def test_a_download_is_verified_and_named_only_then(server, tmp_path):
    data = payload()
    server.files["/model.pth"] = data
    events = []
    reporter = ProgressReporter("json", stream=_Lines(events.append))
    path = download(f"{server.url}/model.pth", "model.pth", sha256=hashlib.sha256(data).hexdigest(),
                    folder=tmp_path, reporter=reporter)
    assert path.read_bytes() == data
    assert listing(tmp_path) == ["model.pth"]
    progress = [event for event in events if event["event"] == "progress"]
    assert progress[-1]["done"] == progress[-1]["total"] == SIZE and len(progress) >= SIZE // CHUNK
    # Already there: not downloaded again.
    assert download(f"{server.url}/model.pth", "model.pth", folder=tmp_path) == path
    assert len(server.ranges) == 1


def test_md5_only_records_the_sha256_and_a_changed_file_is_refused_later(server, tmp_path):
    data = payload(1)
    server.files["/bundle.zip"] = data
    md5 = hashlib.md5(data).hexdigest()
    path = download(f"{server.url}/bundle.zip", "bundle.zip", md5=md5, folder=tmp_path)
    assert recorded_sha256(path) == hashlib.sha256(data).hexdigest()
    path.unlink()
    server.files["/bundle.zip"] = payload(2)  # the server now serves another file
    with pytest.raises(BratsUNetError, match="is not the published file") as error:
        download(f"{server.url}/bundle.zip", "bundle.zip", md5=md5, folder=tmp_path)
    assert "\n" not in str(error.value)
    assert listing(tmp_path) == ["bundle.zip.sha256"]


def test_a_wrong_hash_leaves_nothing(server, tmp_path):
    server.files["/model.pth"] = payload()
    with pytest.raises(BratsUNetError, match="nothing was kept"):
        download(f"{server.url}/model.pth", "model.pth", sha256="0" * 64, folder=tmp_path)
    assert listing(tmp_path) == []


def test_a_missing_file_is_one_line(server, tmp_path):
    with pytest.raises(BratsUNetError, match="HTTP 404") as error:
        download(f"{server.url}/gone.pth", "gone.pth", folder=tmp_path)
    assert "\n" not in str(error.value)
    assert listing(tmp_path) == []


def test_a_truncated_transfer_is_finished_by_the_next_attempt(server, tmp_path):
    data = payload(3)
    server.files["/model.pth"] = data
    server.truncate["/model.pth"] = SIZE // 2
    digest = hashlib.sha256(data).hexdigest()
    with pytest.raises(BratsUNetError, match="failed"):
        download(f"{server.url}/model.pth", "model.pth", sha256=digest, folder=tmp_path)
    assert "model.pth" not in listing(tmp_path)  # nothing usable: at most the part for resuming
    server.truncate.clear()
    path = download(f"{server.url}/model.pth", "model.pth", sha256=digest, folder=tmp_path)
    assert path.read_bytes() == data
    assert server.ranges[-1] == ("/model.pth", f"bytes={SIZE // 2}-")
    assert listing(tmp_path) == ["model.pth"]


def test_a_cancelled_download_leaves_no_file_and_resumes_where_it_stopped(server, tmp_path):
    data = payload(4)
    server.files["/model.pth"] = data
    token = CancelToken()
    stopped_at = []

    def on_event(event):
        if event["event"] == "progress" and not token.cancelled and event["done"] >= 3 * CHUNK:
            stopped_at.append(event["done"])
            token.cancel()

    digest = hashlib.sha256(data).hexdigest()
    with pytest.raises(Cancelled, match="run the same command again to resume"):
        download(f"{server.url}/model.pth", "model.pth", sha256=digest, folder=tmp_path,
                 reporter=ProgressReporter("json", stream=_Lines(on_event)), cancel=token)
    assert listing(tmp_path) == ["model.pth.part"]
    assert (tmp_path / "model.pth.part").stat().st_size == stopped_at[0]
    path = download(f"{server.url}/model.pth", "model.pth", sha256=digest, folder=tmp_path)
    assert path.read_bytes() == data
    assert server.ranges[-1] == ("/model.pth", f"bytes={stopped_at[0]}-")
    assert listing(tmp_path) == ["model.pth"]


class _Lines:
    """A text stream that hands each JSON line written to it to ``handle`` as a dict."""

    def __init__(self, handle):
        self.handle = handle

    def write(self, text):
        for line in text.splitlines():
            if line.strip():
                self.handle(json.loads(line))

    def flush(self):
        pass


# ------------------------------------------------------------------------------------------------ the catalogue

def entry(**fields) -> dict:
    return {"name": "small", "url": "https://example.org/small.zip", "format": "monai-bundle", "sha256": None,
            **fields}


def test_the_shipped_catalogue_lists_the_monai_brats_bundle():
    (brats,) = [item for item in load_catalogue() if item.name == "brats_mri_segmentation"]
    assert brats.format == "monai-bundle" and brats.licence == "Apache-2.0"
    assert brats.channels == ("t1ce", "t1", "t2", "flair")
    assert brats.weights["md5"] == "870e677b782a5184cbc48db1456b78e8"
    assert brats.accuracy["WT"] == 0.903


def test_the_catalogue_comes_from_the_environment_or_a_url(server, tmp_path, monkeypatch):
    text = json.dumps({"models": [entry(title="Small", future_key=1)]})
    (tmp_path / "catalogue.json").write_text(text)
    monkeypatch.setenv(CATALOGUE_ENV, str(tmp_path / "catalogue.json"))
    (small,) = load_catalogue()
    assert small.title == "Small" and small.extra == {"future_key": 1}
    server.files["/catalogue.json"] = text.encode()
    monkeypatch.setenv(CATALOGUE_ENV, f"{server.url}/catalogue.json")
    assert find_entry("small", load_catalogue()).url == "https://example.org/small.zip"
    with pytest.raises(ConfigError, match="No model called 'large'.*its models: small"):
        find_entry("large", load_catalogue())


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ("[" * 100_000, "not valid JSON"),
    (json.dumps({"models": [entry(format="pickle")]}), "format must be one of bratsunet, monai-bundle"),
    (json.dumps({"models": [entry(), entry()]}), "lists small more than once"),
    (json.dumps({"models": [entry(name="../../etc")]}), "name '../../etc' must be"),
    (json.dumps({"models": [entry(sha256="abc")]}), "sha256 must be 64 hexadecimal digits"),
    (json.dumps({"models": [entry(url="file:///etc/passwd")]}), "url must be an http(s) URL"),
    (json.dumps({"models": {}}), "must be an object"),
    (" " * (2 << 20), "larger than a catalogue can be"),
])
def test_a_bad_catalogue_is_one_line(tmp_path, content, message):
    path = tmp_path / "catalogue.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        load_catalogue(path)
    assert "\n" not in str(error.value)
