#!/usr/bin/env python3
"""The GPU check: what a lent GPU machine runs once, in under 8 minutes, for benchmarks/README.md §11.

    python benchmarks/gpu_check.py                 # on a CUDA machine: the figures of the issue
    python benchmarks/gpu_check.py --output DIR    # also writes DIR/gpu.json (the device tool brings $OUT back)

Steps, each timed and reported as one JSON result (benchmarks/results/gpu[-cpu].json):

1. **Inference** of the BraTS 2020 DynUNet on 1×4×128³ through ``backends.prepare`` as ``bratsunet segment``
   runs it on CUDA (``auto``: AMP in bf16 with cuDNN autotuning; and fp32): median seconds per pass after
   warm-up, then ``bratsunet segment --device cuda`` end to end on a BraTS-size phantom (target < 0.5 s for the
   network on an H100-class GPU).
2. **Training throughput**: volumes per second of training steps (forward, Dice+CE loss, backward, Adam) of the
   same network at 128³, batch 2, under AMP with a gradient scaler (target > 10 on an H100-class GPU).
3. **DistributedDataParallel**: ``torchrun --nproc_per_node 2 -m BratsUNetLib train`` on phantoms (NCCL on two
   GPUs where there are two, else two CPU processes with gloo, as the test suite does).
4. **The CUDA-only tests** (``Testing/library/inference/test_cuda.py``; they skip without a GPU).

Without a GPU every step runs its CPU fallback (a tiny DynUNet, 64³) so that the script is known to work; those
numbers are not GPU figures and are written to ``gpu-cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib

ROOT = benchlib.HERE.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", help="a folder for a copy of the results (e.g. the device tool's $OUT)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps (default 20)")
    return parser.parse_args(argv)


def timed(call, repeats: int) -> list[float]:
    import torch

    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        call()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def inference(gpu: bool, work: Path) -> dict:
    import torch

    from BratsUNetLib.inference import backends

    block = benchlib.model_block("brats" if gpu else "tiny")
    device = "cuda" if gpu else "cpu"
    edge = 128 if gpu else 64
    network = benchlib.seeded_network(block).to(device)
    batch = torch.randn(1, 4, edge, edge, edge, device=device)
    rows = {}
    for name, precision in (("auto", None), ("fp32", "fp32")):
        runner = backends.prepare(network, backend="auto", device=device, precision=precision)
        timed(lambda runner=runner: runner(batch), 2)  # warm-up: cuDNN autotuning
        times = timed(lambda runner=runner: runner(batch), 5)
        rows[name] = {"runs_as": runner.description, "median_s": benchlib.median(times), "times_s": times}
    rows["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20 if gpu else None
    return {"input": [1, 4, edge, edge, edge], "network": "brats" if gpu else "tiny", **rows,
            "end_to_end": end_to_end(gpu, work, block)}


def end_to_end(gpu: bool, work: Path, block: dict) -> dict:
    import torch

    from BratsUNetLib.phantoms.generate import MODALITIES, generate_case, write_case

    shape = (240, 240, 155) if gpu else (96, 96, 64)
    paths = write_case(generate_case(shape, seed=0), work / "case", "BraTS20_Phantom_000")
    config = benchlib.benchmark_config("brats" if gpu else "tiny", desired_shape=[128 if gpu else 64] * 3)
    (work / "config.json").write_text(json.dumps(config))
    torch.save(benchlib.seeded_network(block).state_dict(), work / "model.pth")
    command = [benchlib.python(), "-m", "BratsUNetLib", "segment", "--model", str(work / "model.pth"), "--config",
               str(work / "config.json"), "--output", str(work / "labels.nii.gz"), "--overwrite", "--progress", "none",
               "--device", "cuda" if gpu else "cpu", *(f"--{m}={paths[m]}" for m in MODALITIES)]
    walls = [benchlib.run_measured(command)["wall_s"] for _ in range(2)]  # the first one warms the file cache
    return {"case": list(shape), "wall_s": walls[-1], "first_wall_s": walls[0]}


def training(gpu: bool, steps: int) -> dict:
    import torch
    from monai.losses import DiceCELoss

    block = benchlib.model_block("brats" if gpu else "tiny")
    device = torch.device("cuda" if gpu else "cpu")
    edge, batch_size = (128, 2) if gpu else (64, 2)
    network = benchlib.seeded_network(block).to(device).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    loss_function = DiceCELoss(sigmoid=True)
    scaler = torch.amp.GradScaler(device.type, enabled=gpu)
    images = torch.randn(batch_size, 4, edge, edge, edge, device=device)
    labels = (torch.rand(batch_size, 3, edge, edge, edge, device=device) > 0.9).float()
    dtype = torch.bfloat16 if not gpu or torch.cuda.is_bf16_supported() else torch.float16

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=gpu):
            loss = loss_function(network(images), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    timed(step, 3)  # warm-up
    times = timed(step, steps if gpu else 3)
    seconds = benchlib.median(times)
    return {"input": [batch_size, 4, edge, edge, edge], "amp": gpu, "median_step_s": seconds,
            "volumes_per_s": batch_size / seconds,
            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if gpu else None}


def distributed(gpu_count: int, work: Path) -> dict:
    from BratsUNetLib.phantoms.generate import MODALITIES, generate_cohort

    cases = generate_cohort(work / "ddp_cases", 4, (48, 48, 48), seed=1)
    entries = [{"image": [str(case / f"{case.name}_{m}.nii.gz") for m in MODALITIES],
                "label": str(case / f"{case.name}_seg.nii.gz")} for case in cases]
    config = benchlib.benchmark_config("tiny", desired_shape=[32, 32, 32])
    for key in ("cross_validation", "test_filenames", "validation_filenames", "training_filenames"):
        config.pop(key, None)  # the BraTS example's folds and file lists: this run has its own four cases
    config["training"] = {**config.get("training", {}), "batch_size": 1, "n_epochs": 2}
    config["training_filenames"], config["validation_filenames"] = entries[:3], entries[3:]
    (work / "ddp.json").write_text(json.dumps(config))
    nccl = gpu_count >= 2
    command = [benchlib.python(), "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "BratsUNetLib", "train", "--config_filename", str(work / "ddp.json"), "--seed", "1",
               "--progress", "none", "--nthreads", "0", *(["--ngpus", "2"] if nccl else ["--device", "cpu"])]
    start = time.perf_counter()
    process = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=work)
    return {"backend": "nccl, 2 GPUs" if nccl else "gloo, 2 CPU processes", "exit_code": process.returncode,
            "wall_s": time.perf_counter() - start, "model_written": (work / "ddp" / "model.pth").is_file(),
            "stderr_head": process.stderr[:1500] if process.returncode else ""}


def cuda_tests() -> dict:
    process = subprocess.run([benchlib.python(), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                              "Testing/library/inference/test_cuda.py"], capture_output=True, text=True,
                             timeout=300, cwd=ROOT)
    return {"exit_code": process.returncode, "summary": process.stdout.strip().splitlines()[-1:]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    gpu = torch.cuda.is_available()
    info = benchlib.machine()
    info["gpus"] = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    results: dict = {"benchmark": "gpu", "gpu": gpu, "machine": info}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
        work = Path(folder)
        os.environ.setdefault("BRATSUNET_CACHE_DIR", str(work / "cache"))
        for name, call in (("inference", lambda: inference(gpu, work)), ("training", lambda: training(gpu, args.steps)),
                           ("distributed", lambda: distributed(torch.cuda.device_count(), work)),
                           ("cuda_tests", cuda_tests)):
            start = time.perf_counter()
            try:
                results[name] = call()
            except Exception as exc:  # noqa: BLE001  # one failing step must not hide the others' figures
                results[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            results[name]["step_s"] = time.perf_counter() - start
            print(f"{name}: {json.dumps(results[name])[:600]}", flush=True)
    path = benchlib.write_results("gpu" if gpu else "gpu-cpu", results, quick=False)
    if args.output:
        Path(args.output).mkdir(parents=True, exist_ok=True)
        (Path(args.output) / path.name).write_text(path.read_text())
    print(f"results: {path}")
    failed = [name for name in ("inference", "training", "distributed", "cuda_tests")
              if "error" in results[name] or results[name].get("exit_code")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
