#!/usr/bin/env python3
"""Click latency of ``refine`` beside the automatic segmentation of the same case.

    python benchmarks/bench_refine.py           # BraTS 2020 DynUNet made guided, 240×240×155 phantom, 20 clicks
    python benchmarks/bench_refine.py --quick   # small DynUNet, 96×96×64 phantom, 5 clicks

The BraTS 2020 DynUNet of benchmarks/brats2020_config.json takes 4 + 9 input channels (a guided model: click
maps and the prior) with seeded random weights: the time of a click does not depend on what the weights learnt.
One process, the model loaded once (as in Slicer, where it stays loaded between clicks):

- ``automatic``: ``segment_case`` of the phantom (resized to the config's 128³, as the model was trained);
- ``prepare``: the images through the model's preprocessing, once per case (they do not change between clicks);
- ``click k``: ``refine`` of the current segmentation with one more click, placed by the click simulator
  (``BratsUNetLib.guidance.next_click``) on its largest error against the phantom's reference, each click timed
  from the call to the new label map (the box, the click maps, the network pass, labels put back).

With ``--panel`` the same clicks go through the Slicer module too (``BratsUNetLogic.refine`` on a real slicer-core
scene, as ``bench_panel.py`` runs it): the current segmentation exported, the job in the module's worker process
(which keeps the model loaded and the case's images prepared between clicks), the answer imported into the same
segmentation node and its volumes table. Each click is timed from the call to the refilled node.

Reported: the automatic time, the median and worst click, and each click's box. Results:
benchmarks/results/refine[-quick].json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import benchlib
import numpy as np

CLICK_TARGET_SECONDS = 3.0


def panel_clicks(checkpoint: Path, images: dict, clicks: list) -> list[float]:
    """Seconds of each of ``clicks`` through ``BratsUNetLogic.refine`` (one point a call, like the library loop),
    after an untimed automatic segmentation in the module's worker makes the node to refine."""
    from bench_panel import panel_logic

    module = panel_logic()
    from BratsUNetSlicer import scene_io

    volumes = {name: scene_io.load_volume(str(path), f"BraTS20_Phantom_007_{name}") for name, path in images.items()}
    logic = module.BratsUNetLogic()
    seconds = []
    try:
        node = logic.segment(**volumes, model=str(checkpoint), device="cpu", wait=True)
        for click in clicks:
            points = [click.point]
            started = time.perf_counter()
            logic.refine(node, addPoints=points if click.positive else None,
                         removePoints=None if click.positive else points, region=click.region, device="cpu",
                         wait=True)
            seconds.append(time.perf_counter() - started)
    finally:
        logic.worker.close()
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small network and case (a smoke test)")
    parser.add_argument("--clicks", type=int, help="clicks to time (default 20, quick 5)")
    parser.add_argument("--backend", default="auto", help="the network's backend for the clicks (default auto)")
    parser.add_argument("--panel", action="store_true", help="time the clicks through the Slicer module as well")
    args = parser.parse_args(argv)
    quick = args.quick
    n_clicks = (args.clicks or (5 if quick else 20)) + 1  # the first one apart
    shape = (96, 96, 64) if quick else (240, 240, 155)

    from BratsUNetLib.data.images import read_case
    from BratsUNetLib.data.labels import labels_to_regions
    from BratsUNetLib.guidance import Click, next_click
    from BratsUNetLib.inference.loaded_model import load_models
    from BratsUNetLib.inference.options import InferenceOptions
    from BratsUNetLib.inference.pipeline import segment_case
    from BratsUNetLib.inference.refinement import prepare, refine
    from BratsUNetLib.models.checkpoint import save_checkpoint
    from BratsUNetLib.phantoms.generate import MODALITIES, generate_case, write_case

    with tempfile.TemporaryDirectory(prefix="bench-refine-") as folder:
        phantom = generate_case(shape, seed=7)
        paths = write_case(phantom, Path(folder), "BraTS20_Phantom_007")
        config = (benchlib.benchmark_config("small", desired_shape=[64, 64, 64]) if quick
                  else benchlib.benchmark_config("brats"))
        config["model"]["in_channels"] = 13
        config["guidance"] = {}
        network = benchlib.seeded_network(config["model"])
        checkpoint = save_checkpoint(Path(folder) / "guided.pth", network, config=config, channels=list(MODALITIES))
        [model] = load_models([checkpoint], device="cpu")
        images = {m: paths[m] for m in MODALITIES}

        started = time.perf_counter()
        automatic = segment_case(images, [model]).labels
        automatic_seconds = time.perf_counter() - started

        image, affine = read_case([paths[m] for m in MODALITIES])
        started = time.perf_counter()
        prepared = prepare(model, image, affine)  # once per case: the images do not change between clicks
        prepare_seconds = time.perf_counter() - started
        reference = labels_to_regions(phantom.label)
        options = InferenceOptions(backend=args.backend)
        current, clicks, timings = automatic, [], []
        for _ in range(n_clicks):
            found = next_click(labels_to_regions(current), reference)
            if found is None:
                break
            point = tuple(float(v) for v in (affine @ np.array([*found.index, 1.0]))[:3])
            clicks.append(Click(point, found.region, found.positive))
            started = time.perf_counter()
            result = refine(model, prepared, affine, current, clicks[-1:], options)
            seconds = time.perf_counter() - started
            current = result.labels
            timings.append({"seconds": seconds, "region": found.region, "positive": found.positive,
                            "box": [s.stop - s.start for s in result.box]})
        panel = panel_clicks(checkpoint, images, clicks) if args.panel else []

    # The first click of a process converts the network for the box's shape (once; an exported backend keeps the
    # result on disk for later processes): reported on its own, the others are the clicks a user waits for.
    first = timings.pop(0)["seconds"] if timings else None
    seconds = [t["seconds"] for t in timings]
    payload = {"machine": benchlib.machine(), "versions": benchlib.versions(), "case_shape": list(shape),
               "network": "small" if quick else "brats", "automatic_seconds": automatic_seconds,
               "prepare_seconds": prepare_seconds, "backend": args.backend, "first_click_seconds": first,
               "click_median_seconds": benchlib.median(seconds), "click_worst_seconds": max(seconds, default=None),
               "clicks": timings, "target_seconds": CLICK_TARGET_SECONDS}
    if panel:
        payload.update(panel_first_click_seconds=panel[0], panel_click_seconds=panel[1:],
                       panel_click_median_seconds=benchlib.median(panel[1:]),
                       panel_click_worst_seconds=max(panel[1:], default=None))
    path = benchlib.write_results("refine", payload, quick)
    print(f"automatic segmentation {automatic_seconds:.2f} s; first click {benchlib.fmt(first)} s; "
          f"{len(seconds)} more clicks: median "
          f"{benchlib.fmt(payload['click_median_seconds'])} s, worst {benchlib.fmt(payload['click_worst_seconds'])} s "
          f"(target {CLICK_TARGET_SECONDS:g} s); {path}")
    if panel:
        print(f"through the Slicer module: first click {panel[0]:.2f} s; median "
              f"{benchlib.fmt(payload['panel_click_median_seconds'])} s, worst "
              f"{benchlib.fmt(payload['panel_click_worst_seconds'])} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
