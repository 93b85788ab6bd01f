"""The options of how the network runs, shared by ``bratsunet segment`` and ``bratsunet predict``."""

from __future__ import annotations

import argparse

# The names of BratsUNetLib.inference.backends.BACKENDS and inference.options.NATIVE_STRATEGIES, spelled out so
# that --help does not import torch (tests check that they match).
BACKENDS = ("auto", "eager", "onnxruntime", "openvino", "channels_last", "compile", "amp")
NATIVE_STRATEGIES = ("auto", "whole", "windows")
PRECISIONS = ("fp32", "bf16", "int8")
PRECISION_HELP = ("the arithmetic of the network: fp32 (default; mixed precision with --backend amp or on a CUDA "
                  "GPU with --backend auto), bf16 (OpenVINO on CPUs with bf16 units, i.e. AVX512-BF16 or AMX; "
                  "AMP on a GPU) or int8 (OpenVINO on the CPU, quantized once per model with NNCF on generated "
                  "phantoms); benchmarks/README.md has their speed and Dice change")


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--backend``, ``--precision``, ``--native``, ``--sliding-window`` and ``--tta``."""
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="how the network runs: auto (default: the fastest installed option whose outputs agree "
                             "with PyTorch fp32), eager (plain PyTorch) or one of the others (see "
                             "benchmarks/README.md)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None, help=PRECISION_HELP)
    parser.add_argument("--native", nargs="?", const="auto", choices=NATIVE_STRATEGIES, default=None,
                        help="run the network at the images' native resolution instead of resizing the volume to the "
                             "model's input size: 'whole' in one pass over the padded brain (fastest; needs memory), "
                             "'windows' in sliding windows of the model's input size (little memory), 'auto' (also "
                             "--native alone) whole when it fits in the free memory, else windows. Default: as the "
                             "model was trained (resized; native auto for models trained without a fixed size)")
    parser.add_argument("--sliding-window", action="store_true",
                        help="the same as --native windows (the original's flag)")
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: average the 8 mirror flips (8 times slower)")
