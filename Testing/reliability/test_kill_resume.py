"""Training killed with SIGKILL at random points resumes without losing more than the epoch it was in.

A tiny network trains on one generated 32³ case, three steps an epoch. Each run is killed (SIGKILL: no handler,
no clean-up) at a point drawn from a seeded generator, and every point is an event of the run itself, never a
moment in time, so the same seed kills at the same points on a machine ten times faster or slower:

- start-up: right after its first or second progress event (preparing the training cases);
- training an epoch: at the start of the first or second epoch of the run, or after its first or second step;
- saving an epoch: at a random one of the run's first file operations (partway through a write, or just before
  or after a rename or deletion), while an epoch's log row and checkpoints are saved.

After every kill the work folder must hold only readable files: every ``model*.pth`` loads,
``training_log.csv`` parses with epochs 1..N each once, ``model.pth`` is at most one epoch behind the log, and
the last saved epoch never goes back. The same command then runs again and resumes. A final real
``python -m BratsUNetLib train`` completes the run, and the log has every epoch exactly once.

The killed runs are forked from :mod:`forkserver`, which has imported the library once: each runs what
``python -m BratsUNetLib train ...`` runs, without paying seconds of imports per kill, and kills itself at the
chosen event (see :mod:`forkserver`).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from reliability_support import MODALITIES, ROOT, TINY_CONFIG, leftovers, run_bratsunet

from BratsUNetLib.models.checkpoint import load_checkpoint
from BratsUNetLib.training.log import TrainingLog

KILLS = 20
SEED = 20240607
REGIONS = ["WT", "TC", "ET"]
PHASES = ("start-up", "training an epoch", "saving an epoch")
# How often each phase is aimed at.
PHASE_WEIGHTS = (0.15, 0.35, 0.5)
# Saving an epoch is 6 to 9 file operations (log: write, rename; model.pth: write, rename; model_best.pth and
# model_<epoch>.pth: copy, rename; the oldest model_<epoch>.pth: delete); kills aim at the first 18 of a run.
WRITES_AIMED_AT = 18
MIN_WRITES_PER_EPOCH = 6
# Optimisation steps per epoch (passes over the one case): kills land at an epoch's start or after one of its
# steps but the last (the last step's event begins the saving).
STEPS_PER_EPOCH = 3
# Progress events a run emits before its first epoch starts: preparing the training cases starts, then ends.
START_UP_EVENTS = 2


def kill_schedule(rng: random.Random) -> list[tuple[str, int, float]]:
    """``(phase, n, fraction)`` for every kill: in the start-up or in the n-th epoch's training, at the event
    ``fraction`` picks (see :func:`kill_point`), or at the n-th file operation (``fraction`` of the way through
    it) when the phase is saving."""
    schedule = []
    for _ in range(KILLS):
        phase = rng.choices(PHASES, weights=PHASE_WEIGHTS)[0]
        n = rng.randint(1, WRITES_AIMED_AT) if phase == "saving an epoch" else rng.choices([1, 2], [0.7, 0.3])[0]
        schedule.append((phase, n, rng.random()))
    return schedule


def kill_point(phase: str, n: int, fraction: float) -> dict:
    """The fork server's arming for a kill of the schedule: the file operation, or the progress event to die at.

    In an epoch the run emits ``start`` and then one ``progress`` per step: the event of index
    ``(n - 1) * (STEPS_PER_EPOCH + 1) + 1 + s`` among them is the n-th epoch's start (``s`` = 0) or its s-th
    step done, with ``s`` < STEPS_PER_EPOCH drawn from ``fraction``.
    """
    if phase == "saving an epoch":
        return {"kill_at_write": n, "fraction": fraction}
    if phase == "start-up":
        return {"kill_at_event": {"nth": 1 + int(fraction * START_UP_EVENTS), "events": None, "task_prefix": None}}
    step = int(fraction * STEPS_PER_EPOCH)
    return {"kill_at_event": {"nth": (n - 1) * (STEPS_PER_EPOCH + 1) + 1 + step, "events": ["start", "progress"],
                              "task_prefix": "epoch"}}


def most_epochs_completed(schedule: list[tuple[str, int, float]]) -> int:
    """An upper bound of the epochs the killed runs can complete: a kill while the n-th epoch of a run trains
    leaves n - 1 epochs saved; one at the n-th file operation, at most n / MIN_WRITES_PER_EPOCH rounded up."""
    return sum({"start-up": 0, "training an epoch": n - 1, "saving an epoch": -(-n // MIN_WRITES_PER_EPOCH)}[phase]
               for phase, n, _fraction in schedule)


class ForkServer:
    """The client side of :mod:`forkserver`."""

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("forkserver.py"))],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self._read() == {"ready": True}

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        assert line, "the fork server ended"
        return json.loads(line)

    def _ask(self, request: dict) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._read()

    def run(self, argv: list[str], output: Path, **arming) -> int:
        """Start ``argv`` in a child armed with ``kill_at_write`` and ``fraction``, or ``kill_at_event``."""
        return self._ask({"run": argv, "output": str(output), **arming})["pid"]

    def wait(self, pid: int, poll: bool = False) -> dict:
        return self._ask({"wait": pid, "poll": poll})

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


class Run:
    """One forked training run, armed to kill itself, and the JSON events it wrote."""

    def __init__(self, server: ForkServer, argv: list[str], output: Path, **arming):
        self.server, self.output = server, output
        self.pid = server.run([*argv, "--progress", "json"], output, **arming)
        self.status: dict | None = None
        self.events: list[dict] = []

    def end(self) -> None:
        """Wait for the run to end (at its kill point, or at the fork server's hang guard), then read its events."""
        self.status = self.server.wait(self.pid)
        for line in self.output.read_text(errors="replace").splitlines():
            try:
                self.events.append(json.loads(line))
            except ValueError:
                pass  # a line on stderr

    def phase(self) -> str:
        """Where the run was at the last event it wrote before the kill."""
        last = next((e for e in reversed(self.events) if isinstance(e, dict)
                     and e.get("event") in ("start", "progress", "epoch")
                     and str(e.get("task", "epoch")).startswith("epoch")), None)
        if last is None:
            return "start-up"
        if last["event"] == "progress" and last["done"] == last["total"]:
            return "saving an epoch"
        return "training an epoch"


def check_work_folder(work: Path) -> tuple[int, int]:
    """``(last logged epoch, epoch of model.pth)`` after checking that every file of the work folder is usable."""
    log_path = work / "training_log.csv"
    logged = 0
    if log_path.exists():
        epochs = [row["epoch"] for row in TrainingLog.read(log_path, REGIONS).rows]
        assert epochs == list(range(1, len(epochs) + 1)), f"log epochs {epochs}"
        logged = len(epochs)
    saved = 0
    for checkpoint in sorted(work.glob("model*.pth")):
        content = load_checkpoint(checkpoint)  # raises for a partial or damaged file
        assert content["format"] == "bratsunet"
        if checkpoint.name == "model.pth":
            saved = content["epoch"]
    assert saved in (logged, logged - 1) or logged == saved == 0, (logged, saved)
    return logged, saved


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the killed runs are forked (POSIX)")
def test_random_sigkills_never_lose_more_than_the_current_epoch(tmp_path, case_files):
    schedule = kill_schedule(random.Random(SEED))
    n_epochs = most_epochs_completed(schedule) + 3  # the killed runs can never finish the training
    config = json.loads(json.dumps(TINY_CONFIG))
    config["training"].update(n_epochs=n_epochs, save_last_n_models=2,
                              training_iterations_per_epoch=STEPS_PER_EPOCH)
    config["training_filenames"] = [{"image": [str(case_files[m]) for m in MODALITIES],
                                     "label": str(case_files["seg"])}]
    (tmp_path / "tiny.json").write_text(json.dumps(config))
    argv = ["train", "--config_filename", str(tmp_path / "tiny.json"), "--nthreads", "0", "--ngpus", "0",
            "--seed", "3"]
    work = tmp_path / "tiny"

    landed: Counter[str] = Counter()
    saved = 0
    server = ForkServer()
    try:
        for number, (phase, n, fraction) in enumerate(schedule):
            output = tmp_path / f"run{number}.jsonl"
            run = Run(server, argv, output, **kill_point(phase, n, fraction))
            run.end()
            where = f"kill {number + 1} ({phase}, {n}, {fraction:.3f}); the run's output ends: " \
                    f"{run.output.read_text()[-1500:]}"
            assert run.status["signal"] == signal.SIGKILL, f"{run.status}; {where}"
            if phase != "saving an epoch":  # a file operation may also be a start-up's (removing temporaries)
                assert run.phase() == phase, f"the kill landed in {run.phase()}; {where}"
            landed[run.phase()] += 1
            try:
                _logged, now_saved = check_work_folder(work)
            except Exception as exc:
                raise AssertionError(f"{exc!r}; {where}") from exc
            assert now_saved >= saved, f"model.pth went back from epoch {saved} to {now_saved}; {where}"
            saved = now_saved
    finally:
        server.close()
    assert sum(landed.values()) == KILLS
    print(f"\n{KILLS} kills, by where they landed: {dict(landed)}; epoch {saved} of {n_epochs} saved")

    result = run_bratsunet([*argv, "--progress", "none"], timeout=600)
    assert result.returncode == 0, result.stderr
    assert check_work_folder(work) == (n_epochs, n_epochs)
    assert load_checkpoint(work / "model.pth")["extra"]["interrupted"] is False
    best = TrainingLog.read(work / "training_log.csv", REGIONS).best_row("loss")
    assert load_checkpoint(work / "model_best.pth")["epoch"] == best["epoch"]  # even if a kill cut its copy
    assert leftovers(work) == []  # half-written temporaries of killed runs were removed on resuming
    assert sorted(p.name for p in work.glob("model*.pth")) == sorted(
        ["model.pth", "model_best.pth", f"model_{n_epochs - 1}.pth", f"model_{n_epochs}.pth"])


def test_a_run_killed_between_its_first_log_row_and_its_first_checkpoint_starts_again(tmp_path, case_files, cli):
    """The one moment the log knows an epoch that no checkpoint holds, before any checkpoint exists."""
    config = json.loads(json.dumps(TINY_CONFIG))
    config["training_filenames"] = [{"image": [str(case_files[m]) for m in MODALITIES],
                                     "label": str(case_files["seg"])}]
    (tmp_path / "tiny.json").write_text(json.dumps(config))
    argv = ["train", "--config_filename", str(tmp_path / "tiny.json"), "--nthreads", "0", "--ngpus", "0",
            "--seed", "3"]
    assert cli(argv)[0] == 0
    work = tmp_path / "tiny"
    for name in ("model.pth", "model_best.pth"):  # the state a kill right after the first log write leaves
        (work / name).unlink()
    config["training"]["n_epochs"] = 2
    (tmp_path / "tiny.json").write_text(json.dumps(config))

    code, _stdout, errors = cli(argv)

    assert (code, errors) == (0, [])
    assert check_work_folder(work) == (2, 2)
