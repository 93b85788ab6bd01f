"""Progress reporting for long work: a bar for people, JSON lines for programs (the Slicer module).

Every event is a flat dict with an ``"event"`` key. The kinds used across the library:

- ``{"event": "start", "task": str, "total": int}`` — a counted task begins (cases, epochs, steps).
- ``{"event": "progress", "task": str, "done": int, "total": int, "fraction": float, "seconds_left": float|None,
  **details}`` — one more unit finished; ``fraction`` (0..1) and ``seconds_left`` are of the whole job where the
  task is a part of it (a training run's epochs carry ``epoch`` and ``epochs``), else of the task.
- ``{"event": "epoch", "epoch": int, "loss": float, "val_loss": float|None, "dice": {...}, "lr": float,
  "seconds": float, "eta_seconds": float|None}`` — one training epoch finished.
- ``{"event": "message", "text": str}`` — a line for the log.
- ``{"event": "result", **payload}`` — the outcome of a job (paths written, metrics).
- ``{"event": "error", "message": str}`` — the job failed with a user-facing message.

In ``json`` mode each event is one line of JSON on the stream (stdout by default); nothing else is written
there, so a reader can parse every line.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
import weakref
from collections.abc import Iterator
from typing import IO, Any

MODES = ("bar", "json", "none")

# Set by the worker (commands/worker.py) for the job it runs: fields added to every event, and the stream
# that carries JSON events while plain prints go elsewhere.
_job_fields: dict[str, Any] = {}
_json_stream: IO[str] | None = None
# Every reporter, so that an error message can first erase the bars left open by the failed work.
_reporters: weakref.WeakSet[ProgressReporter] = weakref.WeakSet()


@contextlib.contextmanager
def job_scope(stream: IO[str], **fields: Any) -> Iterator[None]:
    """Within the block, JSON events go to ``stream`` and carry ``fields`` (e.g. the worker's job id)."""
    global _json_stream, _job_fields
    previous = (_json_stream, _job_fields)
    _json_stream, _job_fields = stream, dict(fields)
    try:
        yield
    finally:
        _json_stream, _job_fields = previous


def _jsonable(value: Any) -> Any:
    """Floats that JSON cannot represent (NaN, inf) become null so every line stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class ProgressReporter:
    """Sends progress events to a progress bar (``bar``), a JSON-lines stream (``json``) or nowhere."""

    def __init__(self, mode: str = "bar", stream: IO[str] | None = None):
        if mode not in MODES:
            raise ValueError(f"progress mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.stream = stream
        self._bars: dict[str, Any] = {}
        self._started: dict[str, float] = {}  # task -> time.monotonic() at its start, for seconds_left
        _reporters.add(self)

    def emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, **_job_fields, **fields}
        if self.mode == "json":
            stream = self.stream or _json_stream or sys.stdout
            stream.write(json.dumps(_jsonable(record)) + "\n")
            stream.flush()
        elif self.mode == "bar":
            self._show(record)

    def start(self, task: str, total: int, **details: Any) -> None:
        self._started[task] = time.monotonic()
        self.emit("start", task=task, total=int(total), **details)

    def advance(self, task: str, done: int, total: int, *, fraction: float | None = None,
                seconds_left: float | None = None, **details: Any) -> None:
        """``done`` of ``total`` units of ``task``; ``fraction`` and ``seconds_left`` default to the task's own
        (from its :meth:`start`), for work that knows better (a training run over all its epochs)."""
        if fraction is None:
            fraction = done / total if total > 0 else 0.0
            started = self._started.get(task)
            seconds_left = eta_seconds(started, done, total) if started is not None else None
        self.emit("progress", task=task, done=int(done), total=int(total), fraction=round(float(fraction), 6),
                  seconds_left=None if seconds_left is None else round(float(seconds_left), 1), **details)

    def message(self, text: str) -> None:
        self.emit("message", text=text)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    def _show(self, record: dict[str, Any]) -> None:
        # Imported here: only a drawn bar needs tqdm, and the Slicer module imports this module (job events,
        # command lines) in a Python that may not have it.
        from tqdm import tqdm

        kind = record["event"]
        stream = self.stream or sys.stderr
        if kind in ("start", "progress") and record.get("epochs"):
            self._show_run(record, stream, tqdm)
            return
        if kind == "start":
            old = self._bars.pop(record["task"], None)
            if old is not None:
                old.close()
            self._bars[record["task"]] = tqdm(total=record["total"], desc=record["task"], file=stream,
                                              dynamic_ncols=True, leave=True)
        elif kind == "progress":
            bar = self._bars.get(record["task"])
            if bar is None:
                return
            bar.n = record["done"]
            details = {k: v for k, v in record.items() if k not in ("event", "task", "done", "total")}
            if details:
                bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in details.items()},
                                refresh=False)
            bar.refresh()
            if record["done"] >= record["total"]:
                bar.close()
                self._bars.pop(record["task"], None)
        elif kind in ("message", "error"):
            text = record.get("text") or record.get("message")
            if self._bars:
                tqdm.write(str(text), file=stream)
            else:
                print(text, file=stream, flush=True)
        elif kind == "epoch":
            parts = [f"epoch {record['epoch']}", f"loss {record['loss']:.4f}"]
            if record.get("val_loss") is not None:
                parts.append(f"val_loss {record['val_loss']:.4f}")
            for region, value in (record.get("dice") or {}).items():
                if value is not None:
                    parts.append(f"Dice {region} {value:.3f}")
            parts.append(f"{record.get('seconds', 0.0):.1f}s")
            self._show({"event": "message", "text": "  ".join(parts)})


    def _show_run(self, record: dict[str, Any], stream: IO[str], tqdm: Any) -> None:
        """One bar over a whole training run (every epoch's steps), not one per epoch."""
        steps, epoch, epochs = int(record["total"]), int(record["epoch"]), int(record["epochs"])
        bar = self._bars.get(RUN_BAR)
        if bar is None or bar.total != steps * epochs:
            if bar is not None:
                bar.close()
            bar = self._bars[RUN_BAR] = tqdm(total=steps * epochs, initial=(epoch - 1) * steps, desc="training",
                                             file=stream, dynamic_ncols=True, leave=True)
        if record["event"] == "progress":
            bar.n = (epoch - 1) * steps + int(record["done"])
            postfix = {"epoch": f"{epoch}/{epochs}"}
            if isinstance(record.get("loss"), float):
                postfix["loss"] = f"{record['loss']:.4g}"
            bar.set_postfix(postfix, refresh=False)
            bar.refresh()


RUN_BAR = "training run"  # the key of the bar _show_run draws


def discard_bars() -> None:
    """Erase the progress bars still open (work that failed midway), so that an error message stands alone."""
    for reporter in list(_reporters):
        for bar in reporter._bars.values():
            bar.leave = False
            bar.close()
        reporter._bars.clear()


def eta_seconds(started: float, done: int, total: int) -> float | None:
    """Seconds left when ``done`` of ``total`` units took ``time.monotonic() - started`` seconds."""
    if done <= 0:
        return None
    return (time.monotonic() - started) / done * (total - done)
