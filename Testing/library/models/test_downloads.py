"""Model downloads, offline: a server on 127.0.0.1 started here serves generated files (Range
requests, truncated transfers and errors on demand); each case checks what the models folder holds afterwards."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import platformdirs
import pytest
from file_server import Files, file_server

from BratsUNetLib.cancel import CancelToken
from BratsUNetLib.errors import BratsUNetError, Cancelled
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.models import downloads
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
    """The folder's files, but for the (empty) lock files of its downloads."""
    return sorted(path.name for path in folder.iterdir() if path.name != downloads.LOCKS_FOLDER) if folder.exists() else []


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


def test_a_placed_file_whose_record_was_not_written_is_checked_by_its_md5(server, tmp_path):
    """A process ended between placing an md5-only download and recording its sha256: the next call checks the md5
    before trusting the file, then records the sha256."""
    data = payload(5)
    server.files["/bundle.zip"] = data
    md5 = hashlib.md5(data).hexdigest()
    path = download(f"{server.url}/bundle.zip", "bundle.zip", md5=md5, folder=tmp_path)
    record = tmp_path / "bundle.zip.sha256"
    record.unlink()
    assert download(f"{server.url}/bundle.zip", "bundle.zip", md5=md5, folder=tmp_path) == path
    assert recorded_sha256(path) == hashlib.sha256(data).hexdigest()
    record.unlink()
    path.write_bytes(payload(6))  # damaged while unrecorded
    with pytest.raises(BratsUNetError, match="is not the file that was downloaded"):
        download(f"{server.url}/bundle.zip", "bundle.zip", md5=md5, folder=tmp_path)
    assert len(server.ranges) == 1  # checked in place, never downloaded again


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


# Another process downloading the same file: it holds the download's lock until told (a line on its stdin) to
# place the file and go.
HOLDER = """
import sys, filelock
from pathlib import Path
folder, data = Path(sys.argv[1]), bytes.fromhex(sys.argv[2])
(folder / ".locks").mkdir(parents=True, exist_ok=True)
with filelock.FileLock(str(folder / ".locks" / "model.pth.lock")):
    print("held", flush=True)
    if sys.stdin.readline().strip() == "place":
        (folder / "model.pth").write_bytes(data)
"""


def _holding_process(folder: Path, data: bytes) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), data.hex()], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def _tell(holder: subprocess.Popen, line: str) -> None:
    holder.stdin.write(line + "\n")
    holder.stdin.flush()


def test_a_second_download_of_the_same_file_waits_for_the_first_and_takes_its_file(server, tmp_path):
    data = payload(7)
    server.files["/model.pth"] = data
    holder = _holding_process(tmp_path, data)
    events = []

    def on_event(event):  # the waiting message is the moment the other process finishes
        events.append(event)
        if event["event"] == "message" and "Waiting for another download" in event["text"]:
            _tell(holder, "place")

    path = download(f"{server.url}/model.pth", "model.pth", sha256=hashlib.sha256(data).hexdigest(), folder=tmp_path,
                    reporter=ProgressReporter("json", stream=_Lines(on_event)))
    assert holder.wait(timeout=60) == 0  # a hang guard
    assert path.read_bytes() == data and server.ranges == []  # the other's file, checked, not fetched again
    assert [e["text"] for e in events if e["event"] == "message"] == [
        "Waiting for another download of model.pth to finish ..."]


def test_waiting_for_another_download_can_be_cancelled_and_leaves_nothing(server, tmp_path):
    server.files["/model.pth"] = payload(8)
    holder = _holding_process(tmp_path, b"")
    cancel = CancelToken()

    def on_event(event):
        if event["event"] == "message" and "Waiting for another download" in event["text"]:
            cancel.cancel()

    with pytest.raises(Cancelled, match="Stopped waiting"):
        download(f"{server.url}/model.pth", "model.pth", folder=tmp_path, cancel=cancel,
                 reporter=ProgressReporter("json", stream=_Lines(on_event)))
    _tell(holder, "go")
    assert holder.wait(timeout=60) == 0
    assert listing(tmp_path) == [] and server.ranges == []


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


# ------------------------------------------------------------------------------------ resuming, records, encodings

class _IgnoresRange(Files):
    """A server that answers every request with the whole file (status 200), as one without Range support."""

    def do_GET(self):  # noqa: N802 (the http.server name)
        self.server.asked.append((self.headers.get("Range"), self.headers.get("Accept-Encoding")))
        del self.headers["Range"]
        super().do_GET()


def _cancel_at(token: CancelToken, done: int) -> ProgressReporter:
    """A reporter that cancels ``token`` at the first progress event with ``done`` bytes or more."""
    def on_event(event):
        if event["event"] == "progress" and event["done"] >= done:
            token.cancel()
    return ProgressReporter("json", stream=_Lines(on_event))


def test_a_server_that_ignores_range_makes_the_next_attempt_start_over(server, tmp_path):
    data = payload(5)
    server.files["/model.pth"] = data
    digest = hashlib.sha256(data).hexdigest()
    token = CancelToken()
    with pytest.raises(Cancelled):
        download(f"{server.url}/model.pth", "model.pth", sha256=digest, folder=tmp_path,
                 reporter=_cancel_at(token, 2 * CHUNK), cancel=token)
    part = (tmp_path / "model.pth.part").stat().st_size
    assert 0 < part < SIZE
    server.asked = []
    server.RequestHandlerClass = _IgnoresRange
    path = download(f"{server.url}/model.pth", "model.pth", sha256=digest, folder=tmp_path)
    # Asked to continue (the bytes as stored, never compressed ones), got the whole file (200).
    assert server.asked == [(f"bytes={part}-", "identity")]
    assert path.read_bytes() == data  # the whole file once, not the part followed by the whole file
    assert listing(tmp_path) == ["model.pth"]


def test_without_any_hash_the_first_download_is_trusted_and_recorded(server, tmp_path):
    data = payload(6)
    server.files["/bundle.zip"] = data
    path = download(f"{server.url}/bundle.zip", "bundle.zip", folder=tmp_path)
    assert (tmp_path / "bundle.zip.sha256").read_text().strip() == hashlib.sha256(data).hexdigest()
    path.unlink()
    server.files["/bundle.zip"] = payload(7)
    with pytest.raises(BratsUNetError, match="recorded at its first download in .*bundle.zip.sha256.*delete that "
                                             "record") as error:
        download(f"{server.url}/bundle.zip", "bundle.zip", folder=tmp_path)
    assert "\n" not in str(error.value)
    assert listing(tmp_path) == ["bundle.zip.sha256"]


def test_a_file_changed_in_the_folder_is_refused_without_a_download(server, tmp_path):
    server.files["/model.pth"] = payload(8)
    path = download(f"{server.url}/model.pth", "model.pth", folder=tmp_path)
    assert downloads.cached_path("model.pth", tmp_path) == path
    path.write_bytes(b"damaged")
    with pytest.raises(BratsUNetError, match="its hash differs.*delete it") as error:
        download(f"{server.url}/model.pth", "model.pth", folder=tmp_path)
    assert "\n" not in str(error.value)
    assert len(server.ranges) == 1  # checked against the record, not downloaded again
    assert downloads.cached_path("other.pth", tmp_path) is None


def test_models_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(downloads.MODELS_DIR_ENV, str(tmp_path / "models"))
    assert downloads.models_dir() == tmp_path / "models"
    monkeypatch.delenv(downloads.MODELS_DIR_ENV)
    assert downloads.models_dir() == platformdirs.user_cache_path("bratsunet") / "models"
