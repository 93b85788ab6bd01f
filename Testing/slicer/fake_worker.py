"""A stand-in for ``python -m BratsUNetLib worker``: the same JSON-lines protocol, scripted behaviour.

The job's first argument chooses what it does:

- ``events N``: ``start``, N ``progress`` events, a ``message`` and a ``result``, then ``done`` 0.
- ``fail``: an ``error`` event with a one-line message, then ``done`` 2.
- ``crash``: a line on stderr, then the process dies without finishing the job.
- ``hang``: starts a child process, reports both process ids in a ``message``, then never finishes: both stay
  held (no clock) until they are killed or the client goes away, so "still running" holds on any machine.
- ``segment --model M ... --flair F ... --output L``: writes a label map on F's grid (a cube of each BraTS
  label; moved 1000 mm away when M's name contains "shifted", a larger edema when it contains "larger") and reports its volumes, like
  ``bratsunet segment``.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

# The child of ``hang``: blocked until the worker's stdin (which it inherits and never reads) has no writer left,
# i.e. until the client is gone. Killing the worker alone does not end it: only the kill of the whole process
# group that Cancel does, which is what the test checks.
HELD_CHILD = "import select; poll = select.poll(); poll.register(0, 0); poll.poll()"


def emit(job: str, event: str, **fields) -> None:
    sys.stdout.write(json.dumps({"event": event, "job": job, **fields}) + "\n")
    sys.stdout.flush()


def fake_segment(job: str, argv: list[str]) -> None:
    import nibabel
    import numpy as np

    options = {flag: value for flag, value in itertools.pairwise(argv) if flag.startswith("--")}
    flair = nibabel.load(options["--flair"])
    labels = np.zeros(flair.shape, dtype=np.uint8)
    edema = 20 if "larger" in os.path.basename(options["--model"]) else 14  # another result from another model
    labels[4:edema, 4:edema, 4:edema] = 2
    labels[6:12, 6:12, 6:12] = 1
    labels[8:10, 8:10, 8:10] = 4
    affine = flair.affine.copy()
    if "shifted" in os.path.basename(options["--model"]):
        affine[0, 3] += 1000.0
    nibabel.save(nibabel.Nifti1Image(labels, affine), options["--output"])
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000
    volumes = {"NCR": float((labels == 1).sum() * voxel_ml), "ED": float((labels == 2).sum() * voxel_ml),
               "ET": float((labels == 4).sum() * voxel_ml)}
    volumes["TC"] = volumes["NCR"] + volumes["ET"]
    volumes["WT"] = volumes["TC"] + volumes["ED"]
    emit(job, "result", outputs={"labels": options["--output"]}, volumes_ml=volumes)


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        job, argv = request["job"], request["argv"]
        kind = argv[0]
        if kind == "events":
            total = int(argv[1])
            emit(job, "start", task="steps", total=total)
            for done in range(1, total + 1):
                emit(job, "progress", task="steps", done=done, total=total)
            emit(job, "message", text="all steps done")
            emit(job, "result", value=42)
            emit(job, "done", exit_code=0)
        elif kind == "fail":
            emit(job, "error", message="segment: error: the model file 'x.pth' is damaged; download it again.")
            emit(job, "done", exit_code=2)
        elif kind == "crash":
            sys.stderr.write("fatal: simulated crash in the worker\n")
            sys.stderr.flush()
            os._exit(3)
        elif kind == "hang":
            child = subprocess.Popen([sys.executable, "-c", HELD_CHILD])
            emit(job, "message", text=json.dumps({"worker": os.getpid(), "child": child.pid}))
            sys.stdin.read()  # held: the client sends nothing while a job runs; end-of-file when it is gone
            return
        elif kind == "segment":
            fake_segment(job, argv)
            emit(job, "done", exit_code=0)


if __name__ == "__main__":
    main()
