"""Execution backends: the network's logits, computed the fastest way that gives the same answer.

:func:`prepare` wraps a network (in eval mode) in a :class:`Runner`, a callable with the network's own
contract: a float32 batch ``(N, C, X, Y, Z)`` in, logits ``(N, K, X, Y, Z)`` float32 out, on the same device.

Backends (``benchmarks/README.md`` has the measurements behind the defaults):

- ``eager``: PyTorch fp32 as it is. Always available; the reference every other backend is checked against.
- ``onnxruntime`` / ``openvino`` (CPU, optional extra ``bratsunet[fast]``): the network exported once to ONNX
  for the input shape met, cached in :func:`default_cache_dir`, then run by ONNX Runtime or OpenVINO in fp32.
- ``channels_last``: eager on a ``channels_last_3d`` copy of the network.
- ``compile``: ``torch.compile`` (the first call compiles, tens of seconds per process).
- ``amp``: eager under ``torch.autocast`` at half precision (fp16 on CUDA without bf16, else bf16).
- ``auto`` (the default): on CUDA ``amp`` with cuDNN autotuning; on other GPUs ``eager``; on the CPU the first
  of OpenVINO and ONNX Runtime that is installed and whose logits agree with eager fp32, else ``eager``.
  Agreement is checked once per model and backend version, on the first real input (whose eager logits are
  then the answer), and remembered in the cache, so later processes start the fast backend at once. Networks
  cheaper than :data:`AUTO_MIN_FLOPS` stay eager.

Precisions (:data:`PRECISIONS`, asked for explicitly; ``None`` is fp32, or mixed precision for ``amp``):

- ``fp32``: as above. On CUDA ``auto`` then runs eager fp32 rather than ``amp``.
- ``bf16``: on the CPU OpenVINO with its bf16 inference precision, only where the CPU has bf16 units
  (:func:`BratsUNetLib.hardware.cpu.has_bf16_units`; emulated bf16 is slower than fp32, so it is refused
  elsewhere); on CUDA ``amp``.
- ``int8``: on the CPU only, OpenVINO running the network quantized once per model and input shape by NNCF's
  post-training quantization (:mod:`.openvino_engine`), calibrated on inputs the caller supplies.

Reduced precisions change the logits on purpose, so they skip the agreement check; their effect on Dice is
measured in ``benchmarks/README.md`` instead. OpenVINO keeps its compiled networks in the cache's ``openvino``
folder (its ``CACHE_DIR``), so a later process compiles nothing.

Exports are static-shape ONNX graphs, one file per per-sample input shape: resized inputs (the original's 128³)
and sliding windows always have one shape, and static shapes let the runtimes plan every layer. Instance norms
are exported in a form both runtimes compute as accurately as PyTorch (:class:`SplitReductionInstanceNorm`).
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import hashlib
import importlib
import importlib.util
import itertools
import json
import logging
import math
import os
import shutil
import sys
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from BratsUNetLib import __version__
from BratsUNetLib.errors import BratsUNetError, Cancelled
from BratsUNetLib.fileio import atomic_path, write_text_atomic
from BratsUNetLib.hardware.cpu import cpu_name, has_bf16_units
from BratsUNetLib.inference.openvino_engine import (IR_FILE, QUANTIZATION_RECIPE, compile_engine, import_quietly,
                                                    quantize_int8)

BACKENDS = ("auto", "eager", "onnxruntime", "openvino", "channels_last", "compile", "amp")
PRECISIONS = ("fp32", "bf16", "int8")
#: The backends a reduced precision runs on (``auto`` picks the first that fits the device).
_REDUCED_PRECISION_BACKENDS = {"bf16": ("auto", "openvino", "amp"), "int8": ("auto", "openvino")}
#: Exported backends and the module each needs; ``auto`` tries them on the CPU in this order (fastest first).
EXPORTED = {"openvino": "openvino", "onnxruntime": "onnxruntime"}
#: An exported backend agrees with eager fp32 when every logit satisfies |fast - eager| <= ATOL + RTOL·|eager|.
#: With sigmoid outputs this keeps every probability within 1e-3 of eager's: σ' <= 1/4 bounds the ATOL part by
#: 5e-4 and σ'(x)·RTOL·|x| <= 2.3e-4 for every x.
AGREEMENT_ATOL = 2e-3
AGREEMENT_RTOL = 1e-3
#: ``auto`` exports only networks costing at least this many FLOPs per sample: below it (about a second of
#: eager time) the one-time export and agreement check would cost more than a fast backend can save.
AUTO_MIN_FLOPS = 100e9
ONNX_OPSET = 18
#: Changes whenever the exported graph changes for the same network, so that older exports are not reused.
EXPORT_RECIPE = "2: split-reduction instance norm"
# Engines kept per runner: the current shape and one more (each holds the network's weights and buffers).
_ENGINES_KEPT = 2

_logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """Where exported networks are kept: ``$BRATSUNET_CACHE_DIR``, else the user's cache folder + ``bratsunet/exports``."""
    if os.environ.get("BRATSUNET_CACHE_DIR"):
        return Path(os.environ["BRATSUNET_CACHE_DIR"]).expanduser()
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "bratsunet" / "exports"


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (OpenVINO and onnxscript take seconds)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def installed_backends() -> list[str]:
    """The backends usable in this environment (the exported ones need ``onnxscript`` to export)."""
    exported = [name for name, module in EXPORTED.items() if _installed(module)] if _installed("onnxscript") else []
    return [name for name in BACKENDS if name not in EXPORTED] + exported


def check_backend(backend: str) -> None:
    """Raise :class:`BratsUNetError` (one line) for a backend that is unknown or whose package is missing."""
    if backend not in BACKENDS:
        raise BratsUNetError(f"Unknown backend '{backend}'; use one of {', '.join(BACKENDS)}.")
    if backend in EXPORTED and backend not in installed_backends():
        raise BratsUNetError(f"The {backend} backend is not installed; install it with "
                             f"'pip install bratsunet[fast]' or choose --backend auto or eager.")


def check_precision(precision: str | None, backend: str = "auto") -> None:
    """Raise :class:`BratsUNetError` (one line) for an unknown precision or one ``backend`` cannot run. Whether the
    machine has the units and the packages is checked when the device is known (:class:`Runner`)."""
    if precision is None or precision == "fp32":
        if precision == "fp32" and backend == "amp":
            raise BratsUNetError("--backend amp computes in reduced precision; use --precision bf16 with it, or "
                                 "another backend for fp32.")
        return
    if precision not in PRECISIONS:
        raise BratsUNetError(f"Unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}.")
    if backend not in _REDUCED_PRECISION_BACKENDS[precision]:
        raise BratsUNetError(f"--precision {precision} runs on OpenVINO"
                             + (" (or amp on a GPU)" if precision == "bf16" else "")
                             + f", not --backend {backend}; use --backend auto or openvino.")


def _check_precision_on(device: torch.device, precision: str, backend: str) -> None:
    """Raise :class:`BratsUNetError` when ``device`` (or what is installed) cannot run ``precision`` usefully."""
    if precision == "int8" and device.type != "cpu":
        raise BratsUNetError(f"--precision int8 runs on the CPU (OpenVINO); on {device.type} use --precision bf16 "
                             "or fp32.")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise BratsUNetError("This GPU has no bf16 units; use --backend amp (fp16) or --precision fp32.")
    if device.type != "cpu":
        return
    if precision == "bf16" and not has_bf16_units():
        raise BratsUNetError(f"This CPU ({cpu_name()}) has no bf16 units (AVX512-BF16 or AMX), where bf16 is "
                             "emulated and slower than fp32; use --precision fp32, or int8.")
    missing = [module for module in ("openvino", "onnxscript", *(("nncf",) if precision == "int8" else ()))
               if not _installed(module)]
    if missing and backend != "amp":  # bf16 autocast is PyTorch's own
        raise BratsUNetError(f"--precision {precision} on the CPU needs {', '.join(missing)}, which is not installed; "
                             "install it with 'pip install bratsunet[fast]' or use --precision fp32.")


def _backend_id(backend: str) -> str:
    """The backend with its version (``openvino 2026.4.1``): a new version is checked again."""
    module = _import_openvino() if backend == "openvino" else importlib.import_module(EXPORTED[backend])
    return f"{backend} {getattr(module, '__version__', '?')}"


def model_fingerprint(network: torch.nn.Module) -> str:
    """SHA-256 of what decides a network's outputs and its export: architecture, weights, library versions.

    ``repr`` names every layer with its kernel sizes, strides, norms and activations; parameters and buffers
    (shared ones once) give the weights.
    """
    digest = hashlib.sha256()
    for part in (repr(network), __version__, torch.__version__, str(ONNX_OPSET), EXPORT_RECIPE):
        digest.update(part.encode() + b"\0")
    for name, tensor in itertools.chain(network.named_parameters(), network.named_buffers()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


class SplitReductionInstanceNorm(torch.nn.Module):
    """Instance norm whose statistics are summed one spatial axis at a time, for exported graphs.

    ONNX Runtime's InstanceNormalization and OpenVINO's fused MVN sum all X·Y·Z voxels of a channel in one
    float32 accumulation; at 96³–128³ (~10⁶ terms) their results differ from PyTorch's by up to 10⁻⁴ per layer,
    which grows to 10⁻²–5·10⁻² in the logits of a DynUNet and changes label maps. Written as ONNX reductions over one
    axis at a time (≤ a few hundred terms each), both runtimes match PyTorch to ~10⁻⁵. Successive reductions
    alternate sum and mean because OpenVINO merges consecutive reductions of the same kind into one.
    Same contract and parameters as the wrapped ``torch.nn.InstanceNorm*d`` (without running statistics).
    """

    def __init__(self, norm: torch.nn.InstanceNorm1d | torch.nn.InstanceNorm2d | torch.nn.InstanceNorm3d):
        super().__init__()
        self.norm = norm

    @staticmethod
    def _spatial_mean(tensor: torch.Tensor) -> torch.Tensor:
        count = 1
        for step, dim in enumerate(range(tensor.dim() - 1, 1, -1)):
            if step % 2 == 0:
                count *= tensor.shape[dim]
                tensor = tensor.sum(dim=dim, keepdim=True)
            else:
                tensor = tensor.mean(dim=dim, keepdim=True)
        return tensor / count

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - self._spatial_mean(x)  # two passes: no cancellation in E[x²] − E[x]²
        y = centred * torch.rsqrt(self._spatial_mean(centred * centred) + self.norm.eps)
        if self.norm.affine:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            y = y * self.norm.weight.view(shape) + self.norm.bias.view(shape)
        return y


_INSTANCE_NORMS = (torch.nn.InstanceNorm1d, torch.nn.InstanceNorm2d, torch.nn.InstanceNorm3d)


def _for_export(network: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``network`` with every instance norm (per-sample statistics) as :class:`SplitReductionInstanceNorm`.

    Modules shared between parents (DynUNet's ``skip_layers`` alias its blocks) stay shared in the copy. Other
    layers are exported as they are; should a runtime compute one of them less accurately than PyTorch, the
    agreement check of ``auto`` turns that backend down.
    """
    exported = copy.deepcopy(network)
    replacements: dict[int, torch.nn.Module] = {}
    for parent in list(exported.modules()):
        for name, child in list(parent.named_children()):
            if (isinstance(child, _INSTANCE_NORMS)
                    and not (child.track_running_stats and child.running_mean is not None)):
                if id(child) not in replacements:
                    replacements[id(child)] = SplitReductionInstanceNorm(child)
                setattr(parent, name, replacements[id(child)])
    return exported


def export_onnx(network: torch.nn.Module, shape: Sequence[int], path: str | os.PathLike) -> Path:
    """Export ``network`` (CPU, eval mode) for inputs of exactly ``shape`` ``(1, C, X, Y, Z)`` to one ONNX file.

    The torch.export-based exporter is the supported one (the TorchScript exporter is deprecated). Instance
    norms are exported as :class:`SplitReductionInstanceNorm`. Weights are stored inside the file, not beside
    it, so one atomic rename publishes a complete export.
    """
    example = torch.zeros(tuple(shape), dtype=torch.float32)
    network = _for_export(network)
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)  # silences "torchvision is not installed" notes about unrelated ops
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(network, (example,), dynamo=True, verbose=False, input_names=["image"],
                                        output_names=["logits"], opset_version=ONNX_OPSET)
    finally:
        onnx_logger.setLevel(level)
    with atomic_path(path) as tmp:
        program.save(str(tmp), external_data=False)
    return Path(path)


class ExportCache:
    """A folder of ONNX exports and, per model, a JSON record of their checksums and of agreement verdicts.

    ``<fingerprint>.json``: ``{"exports": {file name: {"sha256", "shape", "created"}},
    "verdicts": {"openvino 2026.4.1": {"agrees", "max_abs_diff", "shape", "checked", "error"?}},
    "cost": {"flops_per_voxel": float}}``.
    A file whose checksum does not match its record (truncated, damaged, edited) is exported again.
    """

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder).expanduser() if folder is not None else default_cache_dir()

    def _record_path(self, fingerprint: str) -> Path:
        return self.folder / f"{fingerprint}.json"

    def record(self, fingerprint: str) -> dict:
        """The model's record; empty when missing or unreadable (then everything is redone)."""
        try:
            record = json.loads(self._record_path(fingerprint).read_text())
        except (OSError, ValueError, RecursionError):  # RecursionError: a damaged record nested too deeply
            return {}
        return record if isinstance(record, dict) else {}

    def _update(self, fingerprint: str, section: str, key: str, value: object) -> None:
        record = self.record(fingerprint)
        entries = record.get(section) if isinstance(record.get(section), dict) else {}
        record[section] = {**entries, key: value}
        write_text_atomic(self._record_path(fingerprint), json.dumps(record, indent=1, sort_keys=True))

    def verdict(self, fingerprint: str, backend: str) -> dict | None:
        verdicts = self.record(fingerprint).get("verdicts")
        if not isinstance(verdicts, dict):
            return None  # nothing checked yet: no need to import the backend for its version
        verdict = verdicts.get(_backend_id(backend))
        return verdict if isinstance(verdict, dict) else None

    def store_verdict(self, fingerprint: str, backend: str, verdict: dict) -> None:
        stamped = {**verdict, "checked": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        self._update(fingerprint, "verdicts", _backend_id(backend), stamped)

    def flops_per_voxel(self, fingerprint: str) -> float | None:
        """FLOPs of one forward pass per input voxel of one sample, as counted before; None if never counted."""
        value = (self.record(fingerprint).get("cost") or {}).get("flops_per_voxel")
        return float(value) if isinstance(value, (int, float)) and value > 0 else None

    def store_flops_per_voxel(self, fingerprint: str, value: float) -> None:
        self._update(fingerprint, "cost", "flops_per_voxel", value)

    def onnx_file(self, network: torch.nn.Module, fingerprint: str, shape: Sequence[int],
                  log: Callable[[str], None], export: bool = True) -> Path | None:
        """A verified ONNX export of ``network`` for ``shape``, exported now if missing or damaged (or, when
        ``export`` is False, None)."""
        name = f"{fingerprint}-{'x'.join(str(int(size)) for size in shape)}.onnx"
        path = self.folder / name
        entry = (self.record(fingerprint).get("exports") or {}).get(name)
        if path.is_file():
            if isinstance(entry, dict) and entry.get("sha256") == _file_sha256(path):
                return path
        if not export:
            return None
        if path.is_file():
            log(f"The cached export '{path}' is damaged or unrecorded; exporting the network again.")
        log(f"Exporting the network to ONNX for {'×'.join(str(s) for s in shape[2:])} inputs "
            f"(once per model and input size; cached in '{self.folder}').")
        export_onnx(network, shape, path)
        self._update(fingerprint, "exports", name, {
            "sha256": _file_sha256(path), "shape": [int(size) for size in shape],
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
        return path

    @property
    def compiled_folder(self) -> Path:
        """OpenVINO's ``CACHE_DIR``: its compiled networks, one per model, shape, precision and version."""
        return self.folder / "openvino"

    def int8_file(self, network: torch.nn.Module, fingerprint: str, shape: Sequence[int],
                  calibration: Callable[[Sequence[int]], Sequence[np.ndarray]] | None,
                  log: Callable[[str], None], quantize: bool = True) -> Path | None:
        """A verified int8 OpenVINO IR of ``network`` for ``shape``, quantized now if missing or damaged (or, when
        ``quantize`` is False, None). ``calibration(shape)`` gives the calibration inputs."""
        name = f"{fingerprint}-{'x'.join(str(int(size)) for size in shape)}-int8"
        folder = self.folder / name
        recorded = (self.record(fingerprint).get("int8") or {}).get(name)
        if (folder / IR_FILE).is_file() and isinstance(recorded, dict) \
                and recorded.get("recipe") == QUANTIZATION_RECIPE \
                and recorded.get("sha256") == [_file_sha256(folder / IR_FILE), _file_sha256(folder / "model.bin")]:
            return folder / IR_FILE
        if not quantize:
            return None
        if calibration is None:
            raise BratsUNetError("int8 needs calibration inputs, and none were given for this network; use "
                                 "--precision fp32 or bf16.")
        if folder.exists():
            log(f"The cached int8 network '{folder}' is damaged, unrecorded or of an older recipe; quantizing again.")
            shutil.rmtree(folder, ignore_errors=True)
        inputs = calibration(shape)  # first: it refuses a quantization the memory cannot hold
        onnx_path = self.onnx_file(network, fingerprint, shape, log)
        log(f"Quantizing the network to int8 for {'×'.join(str(s) for s in shape[2:])} inputs on {len(inputs)} "
            f"calibration inputs (once per model and input size; cached in '{self.folder}').")
        xml = quantize_int8(onnx_path, inputs, folder)
        self._update(fingerprint, "int8", name, {
            "sha256": [_file_sha256(xml), _file_sha256(folder / "model.bin")], "shape": [int(s) for s in shape],
            "recipe": QUANTIZATION_RECIPE, "calibration_inputs": len(inputs),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
        return xml


def _onnxruntime_engine(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    # Imported here, not at the top: an optional backend, loaded only when asked for (its native thread pools
    # live as long as the process, test_backends.py).
    import onnxruntime

    onnxruntime.disable_telemetry_events()  # ONNX Runtime's usage events (Windows builds): nothing is sent home
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # one chain of layers: parallelism lives inside each convolution
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda array: session.run(None, {"image": array})[0]


def _import_openvino() -> Any:
    """``import openvino`` without its usage telemetry (:func:`.openvino_engine.import_quietly` says why)."""
    return import_quietly("openvino")


def _openvino_engine(path: Path, threads: int, precision: str = "fp32",
                     cache_dir: Path | None = None) -> Callable[[np.ndarray], np.ndarray]:
    return compile_engine(path, threads, precision, cache_dir)


_ENGINE_BUILDERS = {"onnxruntime": _onnxruntime_engine, "openvino": _openvino_engine}


def _amp_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the device has it (same range as fp32, no overflow), else fp16 (older CUDA GPUs)."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _torch_engine(network: torch.nn.Module, backend: str, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """A torch-only backend as a function batch → float32 logits."""
    if backend == "eager":
        return network
    if backend == "channels_last":
        # A copy, so that the caller's network keeps its layout (module.to converts in place).
        converted = copy.deepcopy(network).to(memory_format=torch.channels_last_3d)
        return lambda batch: converted(batch.contiguous(memory_format=torch.channels_last_3d)).contiguous()
    if backend == "compile":
        return torch.compile(network, dynamic=False)
    if backend == "amp":
        dtype = _amp_dtype(device)

        def autocast(batch: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device_type=device.type, dtype=dtype):
                return network(batch).float()
        return autocast
    raise ValueError(f"not a torch backend: {backend}")


def _disagreement(fast: torch.Tensor, reference: torch.Tensor) -> tuple[bool, float]:
    """(agrees, max |fast - reference|) under :data:`AGREEMENT_ATOL` / :data:`AGREEMENT_RTOL`."""
    difference = (fast.float() - reference.float()).abs()
    agrees = bool((difference <= AGREEMENT_ATOL + AGREEMENT_RTOL * reference.abs()).all())
    return agrees, float(difference.max()) if difference.numel() else 0.0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


class Runner:
    """The network behind a backend: ``runner(batch)`` returns what ``network(batch)`` returns, in eval mode.

    ``backend`` is the backend in use; for ``auto`` on the CPU it is ``None`` until the first call decides.
    ``precision`` is one of :data:`PRECISIONS` or None (fp32; mixed for ``amp``); ``calibration(shape)`` gives
    int8's calibration inputs ``(1, C, X, Y, Z)`` float32 for an input shape.
    """

    def __init__(self, network: torch.nn.Module, backend: str, device: torch.device,
                 cache: ExportCache, log: Callable[[str], None], precision: str | None = None,
                 calibration: Callable[[Sequence[int]], Sequence[np.ndarray]] | None = None):
        check_precision(precision, backend)
        self.network = network.eval()
        self.requested = backend
        self.device = device
        self.cache = cache
        self._log = log
        self.precision = precision
        self._calibration = calibration
        self._fingerprint: str | None = None
        self._engines: OrderedDict[tuple, Callable[[np.ndarray], np.ndarray]] = OrderedDict()
        self._torch: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._background: threading.Thread | None = None
        self.backend: str | None = None
        if precision in ("bf16", "int8"):
            _check_precision_on(device, precision, backend)
            if device.type == "cpu" and backend != "amp":
                self.backend = "openvino"  # the only CPU backend with reduced precisions
                return
            if device.type == "cuda" and backend == "auto":
                torch.backends.cudnn.benchmark = True
            if device.type != "cpu" and backend not in ("auto", "amp"):
                raise BratsUNetError(f"The {backend} backend runs on the CPU; use --device cpu or --backend auto.")
            self._use("amp")
            return
        if backend == "auto" and precision == "fp32" and device.type != "cpu":
            if device.type == "cuda":
                torch.backends.cudnn.benchmark = True
            self._use("eager")
        elif backend == "auto":
            if device.type == "cuda":
                torch.backends.cudnn.benchmark = True  # fixed input shapes: autotune each convolution once
                self._use("amp")
            elif device.type != "cpu":
                self._use("eager")
        elif backend in EXPORTED:
            if device.type != "cpu":
                raise BratsUNetError(f"The {backend} backend runs on the CPU; use --device cpu or --backend auto.")
            self.backend = backend
        else:
            self._use(backend)

    @property
    def description(self) -> str:
        """The backend in use and its precision, e.g. ``openvino, fp32`` or ``amp, bf16`` (``auto`` before the
        first call has chosen)."""
        if self.backend is None:
            return "auto, not chosen yet"
        if self.backend == "amp":
            precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}[_amp_dtype(self.device)]
        else:
            precision = self.precision or "fp32"
        return f"{self.backend}, {precision}"

    def _use(self, backend: str) -> None:
        self.backend = backend
        if backend not in EXPORTED:
            self._torch = _torch_engine(self.network, backend, self.device)

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.network)
        return self._fingerprint

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self._wait_for_background()
        # no_grad rather than inference_mode: callers may update the returned tensor in place afterwards.
        with torch.no_grad():
            if self.backend is None:
                reference = self._choose(batch)
                if reference is not None:  # the one-time check ran eager on this batch: its answer stands
                    return reference
            if self.backend not in EXPORTED:
                return self._torch(batch)
            try:
                return self._run_exported(self.backend, batch)
            except Cancelled:
                raise
            except Exception as exc:  # a runtime's own failure (e.g. export of a new shape): eager still works
                if self.precision in ("bf16", "int8"):
                    raise BratsUNetError(f"{self.backend} at {self.precision} failed ({_one_line(exc)}); "
                                         "use --precision fp32.") from None
                if self.requested != "auto":
                    raise BratsUNetError(f"The {self.backend} backend failed ({_one_line(exc)}); "
                                         "use --backend eager.") from None
                self._log(f"{self.backend} failed on a {tuple(batch.shape[2:])} input ({_one_line(exc)}); "
                          "continuing with PyTorch.")
                self._use("eager")
                return self._torch(batch)

    def warm(self, shape: Sequence[int]) -> None:
        """Export / load what the chosen backend needs for inputs of ``shape`` ``(N, C, X, Y, Z)`` now."""
        self._wait_for_background()
        if self.backend in EXPORTED:
            self._engine(self.backend, (1, *shape[1:]))

    def prepare_in_background(self, shape: Sequence[int]) -> None:
        """Start loading, in a thread, the engine the first call on inputs of ``shape`` ``(N, C, X, Y, Z)`` needs.

        Meant for the time the caller spends reading and preprocessing the image: taking a remembered ``auto``
        verdict and loading an existing export into its runtime take about a second for the BraTS DynUNet
        (hashing the weights and the 100 MB export, OpenVINO's compilation). Nothing is exported or checked
        here; what cannot be done in the background is done, and reported, by the first call, which waits for
        the thread.
        """
        if self._background is None and (self.backend is None or self.backend in EXPORTED):
            self._background = threading.Thread(target=self._prepare, args=((1, *shape[1:]),),
                                                name="prepare-backend", daemon=True)
            self._background.start()

    def _prepare(self, shape: tuple) -> None:
        try:
            if self.backend is None:
                self._use_remembered_verdict()
            if self.backend in EXPORTED:
                self._engine(self.backend, shape, export=False)
        except Exception:  # noqa: BLE001  # the first call does the same again and reports what fails
            _logger.debug("background preparation failed", exc_info=True)

    def _wait_for_background(self) -> None:
        if self._background is not None:
            self._background.join()
            self._background = None

    def _engine(self, backend: str, shape: tuple, export: bool = True) -> Callable[[np.ndarray], np.ndarray] | None:
        """The runtime session for ``shape``; None when ``export`` is False and no valid export exists yet."""
        key = (backend, shape)
        if key not in self._engines:
            if self.precision == "int8":
                path = self.cache.int8_file(self.network, self.fingerprint, shape, self._calibration, self._log,
                                            quantize=export)
            else:
                path = self.cache.onnx_file(self.network, self.fingerprint, shape, self._log, export=export)
            if path is None:
                return None
            extra = {"precision": self.precision or "fp32", "cache_dir": self.cache.compiled_folder} \
                if backend == "openvino" else {}
            self._engines[key] = _ENGINE_BUILDERS[backend](path, torch.get_num_threads(), **extra)
            while len(self._engines) > _ENGINES_KEPT:
                self._engines.popitem(last=False)
        self._engines.move_to_end(key)
        return self._engines[key]

    def _run_exported(self, backend: str, batch: torch.Tensor) -> torch.Tensor:
        """Run an exported backend one sample at a time (the exports take a batch of one)."""
        engine = self._engine(backend, (1, *batch.shape[1:]))
        # No copy when the batch is already float32, contiguous and on the CPU (the usual case).
        array = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        outputs = [torch.from_numpy(np.asarray(engine(array[index:index + 1]))) for index in range(len(array))]
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)

    def _use_remembered_verdict(self) -> bool:
        """Take the first installed exported backend remembered as agreeing with eager; False if there is none."""
        installed = installed_backends()
        for name in EXPORTED:
            if name in installed:
                verdict = self.cache.verdict(self.fingerprint, name)
                if verdict is not None and verdict.get("agrees"):
                    self._use(name)
                    return True
        return False

    def _choose(self, batch: torch.Tensor) -> torch.Tensor | None:
        """``auto`` on the CPU, first call: set :attr:`backend` from a remembered verdict (and return None), else
        from a one-time check against eager fp32 on ``batch`` (and return eager's logits, already computed)."""
        if self._use_remembered_verdict():
            return None
        installed = installed_backends()
        unchecked = [name for name in EXPORTED if name in installed and self.cache.verdict(self.fingerprint, name) is None]
        # A fully convolutional network's cost grows with the input's voxels, so it is counted once per model and
        # remembered: counting imports torch._dynamo (1-3 s) and the small networks it keeps eager need no more.
        voxels = math.prod(batch.shape[2:])
        flops_per_voxel = self.cache.flops_per_voxel(self.fingerprint)
        if flops_per_voxel is not None and flops_per_voxel * voxels < AUTO_MIN_FLOPS:
            self._use("eager")
            return None
        # Imported here: the FLOP counter loads torch._dynamo (about a second), needed only the first time a
        # network's size is measured; remembered counts skip it.
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            reference = self.network(batch)
        flops_per_voxel = counter.get_total_flops() / max(len(batch), 1) / voxels
        with contextlib.suppress(BratsUNetError):  # an unwritable cache only means counting again next time
            self.cache.store_flops_per_voxel(self.fingerprint, flops_per_voxel)
        if not unchecked or flops_per_voxel * voxels < AUTO_MIN_FLOPS:
            self._use("eager")
            return reference
        for name in unchecked:
            try:
                agrees, difference = _disagreement(self._run_exported(name, batch), reference)
                verdict = {"agrees": agrees, "max_abs_diff": difference}
            except Cancelled:
                raise
            except Exception as exc:  # export or runtime failure of a third-party package: try the next one
                verdict = {"agrees": False, "error": _one_line(exc)}
            verdict["shape"] = list(batch.shape[1:])
            with contextlib.suppress(BratsUNetError):  # an unwritable cache only means checking again next time
                self.cache.store_verdict(self.fingerprint, name, verdict)
            if verdict["agrees"]:
                self._log(f"Using {name}: its logits agree with PyTorch fp32 (max difference "
                          f"{verdict['max_abs_diff']:.1e}).")
                self._use(name)
                return reference
            self._log(f"Not using {name}: " + (verdict.get("error") or
                      f"its logits differ from PyTorch fp32 by up to {verdict['max_abs_diff']:.1e}."))
        self._engines.clear()
        self._use("eager")
        return reference


def prepare(network: torch.nn.Module, example_shape: Sequence[int] | None = None, backend: str = "auto",
            device: str | torch.device = "cpu", cache_dir: str | os.PathLike | None = None,
            log: Callable[[str], None] | None = None, precision: str | None = None,
            calibration: Callable[[Sequence[int]], Sequence[np.ndarray]] | None = None) -> Runner:
    """Wrap ``network`` (already on ``device``) in a :class:`Runner` for ``backend`` (one of :data:`BACKENDS`) at
    ``precision`` (one of :data:`PRECISIONS`, None: fp32, mixed for ``amp``); ``calibration`` as :class:`Runner`.

    ``example_shape`` ``(N, C, X, Y, Z)``, when given, exports / loads an explicitly chosen exported backend now
    rather than on the first call, so that its errors surface here. ``cache_dir`` defaults to
    :func:`default_cache_dir`; ``log`` receives one-line notes for the user (exports, the choice made).
    Raises :class:`BratsUNetError` for an unknown or unusable backend or precision.
    """
    check_backend(backend)
    runner = Runner(network, backend, torch.device(device), ExportCache(cache_dir), log or _logger.info,
                    precision, calibration)
    if example_shape is not None and runner.backend in EXPORTED:
        try:
            runner.warm(example_shape)
        except (BratsUNetError, KeyboardInterrupt):
            raise
        except Exception as exc:  # exporter or runtime failure: one line for the user, not a traceback
            raise BratsUNetError(f"The {backend} backend cannot run this network ({_one_line(exc)}); "
                                 "use --backend eager.") from None
    return runner
