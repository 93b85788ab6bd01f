"""OpenVINO on the CPU: an exported network compiled at a precision, and its int8 quantization by NNCF.

Used by :mod:`.backends`. Both packages are optional (``bratsunet[fast]``) and take seconds to import, so they
are imported here, on first use, and without their usage telemetry (:func:`import_quietly`).

- :func:`compile_engine`: an ONNX or OpenVINO IR file compiled for the CPU in fp32, bf16 (OpenVINO's inference
  precision hint) or, for a quantized IR, int8; compiled networks are kept in ``cache_dir`` (OpenVINO's
  ``CACHE_DIR``), so a later process loads them instead of compiling again.
- :func:`quantize_int8`: NNCF post-training quantization of an ONNX export into an int8 IR folder, calibrated
  on inputs ``(1, C, X, Y, Z)`` float32 of the exported shape.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: OpenVINO's names of the precisions of :data:`.backends.PRECISIONS`. An int8 IR carries its own quantization;
#: its other layers stay fp32.
_PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
#: The file of an int8 IR folder that OpenVINO reads (its weights are ``model.bin`` beside it).
IR_FILE = "model.xml"
#: Changes whenever the quantization recipe changes, so that older int8 networks are not reused.
QUANTIZATION_RECIPE = "2: nncf mixed preset, fast bias correction, output convolution in fp32"


def import_quietly(module: str) -> Any:
    """``import openvino`` / ``import nncf`` without their usage telemetry.

    Both send usage events to Google Analytics from a background thread (package ``openvino_telemetry``) unless
    the user has opted out; a hospital workstation must not report its use of a tumour segmenter, and offline
    the thread keeps the process alive at exit until its request times out (2 s per segmentation,
    benchmarks/README.md). Their own fallback without that package is a stub that sends nothing, so the package
    is marked missing while they load and importable again afterwards.
    """
    if module in sys.modules:
        return sys.modules[module]
    hidden = "openvino_telemetry" not in sys.modules
    if hidden:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # makes its import fail
    try:
        return importlib.import_module(module)
    finally:
        if hidden and sys.modules.get("openvino_telemetry", 0) is None:
            del sys.modules["openvino_telemetry"]


def compile_engine(path: Path, threads: int, precision: str = "fp32",
                   cache_dir: Path | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function ``(1, C, X, Y, Z)`` float32 → logits running ``path`` (ONNX or IR) on the CPU at ``precision``."""
    openvino = import_quietly("openvino")
    # The precision always explicitly: on CPUs with bf16/AMX units OpenVINO otherwise computes in bf16.
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
                              "INFERENCE_PRECISION_HINT": _PRECISION_HINTS[precision]}
    if cache_dir is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(cache_dir)
        except OSError:  # an unwritable cache only means compiling again next time
            pass
    compiled = openvino.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    # share_inputs avoids copying the input; outputs are copied because the request reuses its buffers.
    return lambda array: request.infer({0: array}, share_inputs=True)[0]


def quantize_int8(onnx_path: Path, calibration: Sequence[np.ndarray], folder: Path) -> Path:
    """Quantize the network of ``onnx_path`` to int8 with NNCF into ``folder`` (an IR: ``model.xml`` + ``.bin``).

    ``calibration``: inputs ``(1, C, X, Y, Z)`` float32 of the exported shape, each seen once; every one holds
    hundreds of thousands of voxels, so a few give stable activation ranges. The folder appears whole or not at all:
    the IR is written into a temporary folder beside it that is then renamed (when another process finished
    the same folder first, its copy is kept).
    """
    openvino = import_quietly("openvino")
    nncf = import_quietly("nncf")
    model = openvino.Core().read_model(str(onnx_path))
    # NNCF draws its own progress bars and notes on standard output, which carries the command's results (and the
    # Slicer worker's replies); the caller reports the step instead.
    # The mixed preset (asymmetric activations: LeakyReLU outputs are mostly positive) and the output
    # convolution left in fp32 (its logits decide each voxel's label at the threshold) halved the Dice change
    # of the symmetric preset on a trained DynUNet (benchmarks/README.md).
    convolutions = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    with contextlib.redirect_stdout(io.StringIO()):
        quantized = nncf.quantize(model, nncf.Dataset(list(calibration)), subset_size=len(calibration),
                                  preset=nncf.QuantizationPreset.MIXED, fast_bias_correction=True,
                                  ignored_scope=nncf.IgnoredScope(names=convolutions[-1:]))
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        openvino.save_model(quantized, str(temporary / IR_FILE), compress_to_fp16=False)
        try:
            os.rename(temporary, folder)
        except OSError:
            if not (folder / IR_FILE).is_file():
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return folder / IR_FILE
