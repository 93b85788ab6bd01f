"""Several GPUs (or nodes) with DistributedDataParallel, launched by ``torchrun``.

``bratsunet train --ngpus N`` (N > 1) started by hand re-launches itself as
``python -m torch.distributed.run --standalone --nproc_per_node N -m BratsUNetLib train ...`` (see
:func:`relaunch`). Under torchrun every process finds ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in its
environment; :func:`start` joins the process group (NCCL on CUDA, gloo otherwise) and pins the process to GPU
``LOCAL_RANK``. For several nodes, run torchrun yourself on each node, e.g.::

    torchrun --nnodes 2 --nproc_per_node 4 --rdzv_backend c10d --rdzv_endpoint HOST:29500 \\
        -m BratsUNetLib train --config_filename config.json --ngpus 4

Every rank trains on its share of each epoch's samples; rank 0 alone validates, writes files and reports, and
shares its results with the others (so all ranks take the same scheduler and early-stopping decisions).
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from BratsUNetLib.hardware.devices import resolve_device
from BratsUNetLib.errors import BratsUNetError

COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank among ``world_size`` processes and the device it computes on."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()


def launched_by_torchrun() -> bool:
    """True inside a process started by torchrun (``torch.distributed.run``)."""
    return all(name in os.environ for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))


def start(device: str = "auto") -> Context:
    """The :class:`Context` of this process, joining the process group when launched by torchrun."""
    if not launched_by_torchrun():
        return Context(device=resolve_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    kind = resolve_device(device).type
    if kind == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise BratsUNetError(f"Process {local_rank} of this node has no GPU: only {torch.cuda.device_count()} "
                                 f"CUDA GPU(s) are visible; lower --nproc_per_node / --ngpus.")
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    elif kind == "cpu":
        chosen = torch.device("cpu")
    else:
        raise BratsUNetError(f"Distributed training runs on CUDA GPUs or CPUs, not on {kind}; use --device cuda or cpu.")
    if not dist.is_initialized():
        # The other ranks wait while rank 0 validates, which can outlast the default 10-minute timeout.
        dist.init_process_group(backend="nccl" if kind == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
    return Context(rank, local_rank, world_size, chosen)


def finish(context: Context) -> None:
    """Leave the process group (if this process joined one)."""
    if context.distributed:
        dist.destroy_process_group()


def wrap(network: torch.nn.Module, context: Context) -> torch.nn.Module:
    """``network`` wrapped in DistributedDataParallel when running distributed, else unchanged."""
    if not context.distributed:
        return network

    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(network, device_ids=device_ids)


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The plain network inside a DistributedDataParallel wrapper (what checkpoints store)."""
    return getattr(network, "module", network)


def mean_across(value: float, weight: float, context: Context) -> float:
    """The ``weight``-weighted mean of ``value`` over all ranks (``value`` itself when not distributed)."""
    if not context.distributed:
        return value
    totals = torch.tensor([value * weight, weight], dtype=torch.float64, device=context.device)
    dist.all_reduce(totals)
    return float(totals[0] / totals[1])


def any_across(flag: bool, context: Context) -> bool:
    """True on every rank when ``flag`` is true on any rank (e.g. one rank received Ctrl-C)."""
    if not context.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=context.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def share(obj: Any, context: Context) -> Any:
    """Rank 0's ``obj`` on every rank (picklable objects only)."""
    if not context.distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0, device=context.device if context.device.type == "cuda" else None)
    return holder[0]


def barrier(context: Context) -> None:
    if context.distributed:
        dist.barrier()


def torchrun_command(n_processes: int, arguments: Sequence[str]) -> list[str]:
    """The command that runs ``bratsunet <arguments>`` as ``n_processes`` processes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n_processes}",
            "-m", "BratsUNetLib", *arguments]


def relaunch(n_processes: int, arguments: Sequence[str]) -> int:
    """Run ``bratsunet <arguments>`` under torchrun with ``n_processes`` processes and return its exit status.

    Ctrl-C reaches torchrun and the training processes directly (same terminal process group), and each stops
    after its current step; this launcher only waits for them, passing SIGTERM on.
    """
    command = torchrun_command(n_processes, arguments)
    print("Starting distributed training: " + " ".join(command), file=sys.stderr, flush=True)
    process = subprocess.Popen(command)
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
                signal.SIGTERM: signal.signal(signal.SIGTERM, lambda signum, frame: process.terminate())}
    try:
        return process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
