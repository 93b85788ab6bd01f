"""Choosing the torch device a network runs on: ``auto``, ``cpu``, ``cuda`` (``cuda:N``) or ``mps``.

``auto`` takes the fastest device present (a CUDA GPU, then Apple's MPS, then the CPU). Asking for a device
that is not there is a user error with a one-line message, not a torch traceback later in the run.
"""

from __future__ import annotations

import torch

from BratsUNetLib.errors import BratsUNetError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """Return the torch device for ``name`` (one of :data:`DEVICE_CHOICES`, or ``cuda:N``).

    Raises :class:`BratsUNetError` naming the device when it is unknown or not available on this machine.
    """
    if isinstance(name, torch.device):
        name = str(name)
    text = (name or "auto").strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not _mps_available():
            raise BratsUNetError("--device mps was asked for but this PyTorch has no usable Apple MPS device; "
                                 "use --device cpu or auto.")
        return torch.device("mps")
    kind, _, index = text.partition(":")
    if kind == "cuda" and (not index or index.isdigit()):
        if not torch.cuda.is_available():
            raise BratsUNetError(f"--device {text} was asked for but no CUDA GPU is available to PyTorch "
                                 "(check the driver and that torch was built with CUDA); use --device cpu or auto.")
        count = torch.cuda.device_count()
        if index and int(index) >= count:
            raise BratsUNetError(f"--device {text} does not exist: this machine has {count} CUDA GPU(s), "
                                 f"numbered 0 to {count - 1}.")
        return torch.device(text)
    raise BratsUNetError(f"Unknown device '{name}'; use one of {', '.join(DEVICE_CHOICES)} (or cuda:N).")
