#!/usr/bin/env python3
"""``bratsunet`` with a stopwatch: runs the command line unchanged and records where the time went.

    python benchmarks/timed_segment.py TIMINGS.json segment --model ... --flair ... --output ...

The command runs through ``BratsUNetLib.cli.main`` exactly as the ``bratsunet`` entry point does; the library's
stage functions are wrapped (not changed) to add up their time:

- ``loading``: :func:`BratsUNetLib.inference.loaded_model.load_models` (checkpoint → network);
- ``reading``: :func:`BratsUNetLib.data.images.read_case` (NIfTI files → arrays on the reference grid);
- ``preprocessing``: the forward MONAI ``Compose`` (foreground crop, resize, normalization);
- ``network``: :class:`BratsUNetLib.inference.backends.Runner` calls (every sliding window included);
- ``postprocessing``: the rest of :func:`BratsUNetLib.inference.pipeline.segment_case` (activation, inverse of the
  spatial steps, label map, volumes);
- ``writing``: :func:`BratsUNetLib.inference.writing.write_result` (NIfTI outputs);
- ``startup``: from the interpreter's start to the command (imports) and the process's exit, measured by the
  caller as its wall time minus ``in_process_s``.

TIMINGS.json receives ``{"stages_s": {...}, "in_process_s", "imports_s", "backend", "peak_rss_mb", "exit_code"}``.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import functools  # noqa: E402  (after the clock starts, so that imports are counted)
import json  # noqa: E402
import sys  # noqa: E402
from collections import defaultdict  # noqa: E402

from BratsUNetLib.cli import main as cli  # noqa: E402

cli.import_monai_without_unused_extras()  # as the bratsunet program does before it runs a command

from BratsUNetLib.inference import backends, loaded_model, pipeline, writing  # noqa: E402
from monai.transforms import Compose  # noqa: E402  # isort: skip

import benchlib  # noqa: E402

IMPORTED = time.perf_counter()
stages: defaultdict[str, float] = defaultdict(float)
used_backends: set[str] = set()


def timed(stage: str, function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            stages[stage] += time.perf_counter() - start
    return wrapper


def timed_runner_call(function):
    @functools.wraps(function)
    def wrapper(self, batch):
        start = time.perf_counter()
        try:
            return function(self, batch)
        finally:
            stages["network"] += time.perf_counter() - start
            used_backends.add(str(self.backend))
    return wrapper


def main(argv: list[str]) -> int:
    timings_path, command = argv[0], argv[1:]
    # Each function is replaced in the module its caller takes it from.
    loaded_model.load_models = timed("loading", loaded_model.load_models)
    pipeline.segment_case = timed("segmenting", pipeline.segment_case)
    writing.write_result = timed("writing", writing.write_result)
    pipeline.read_case = timed("reading", pipeline.read_case)
    Compose.__call__ = timed("preprocessing", Compose.__call__)
    backends.Runner.__call__ = timed_runner_call(backends.Runner.__call__)
    exit_code = cli.main(command, own_process=True)
    total = stages.pop("segmenting", 0.0)
    stages["postprocessing"] = total - stages["reading"] - stages["preprocessing"] - stages["network"]
    with open(timings_path, "w") as stream:
        json.dump({"stages_s": dict(stages), "in_process_s": time.perf_counter() - STARTED,
                   "imports_s": IMPORTED - STARTED, "backend": ",".join(sorted(used_backends)),
                   "peak_rss_mb": benchlib.own_peak_rss_mb(), "exit_code": exit_code}, stream)
    return exit_code


if __name__ == "__main__":
    cli.exit_now(main(sys.argv[1:]))  # and exits as the bratsunet program does
