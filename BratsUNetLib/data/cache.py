"""The deterministic preprocessing of every case, computed once and kept: in memory, on disk, or not at all.

Each case goes through: read -> label values checked -> label map to one-hot region channels (``labels`` and
``setup_label_hierarchy``) -> the cached part of :func:`augmentation.split_pipeline` (orientation, foreground
crop, resize or pad-crop, and normalization unless a random step must come first). The result is a *prepared*
case: ``{"image": float32 (C, X, Y, Z), "label": uint8 (L, X, Y, Z) (when labelled), "affine": float64 4x4,
"meta": {...}}`` where ``affine`` is the preprocessed grid's voxel -> RAS mm matrix.

Modes:
- ``memory`` (default): every case is prepared up front (in parallel with data-loader workers) and kept.
- ``disk``: prepared cases are saved as ``<folder>/<case>-<hash>.pt`` (plain tensors and a metadata dict, read
  back with ``weights_only=True``; unlike MONAI's PersistentDataset the affine and metadata survive). Each file
  records a key made of the input files' paths, sizes and modification times (or the arrays' hash for
  in-memory cases), the dataset options and the library versions; a file whose key differs is stale and is
  recomputed, with a message.
- ``none``: every case is prepared once up front only to check it (so bad inputs fail before training), then
  again each time it is used.
"""

from __future__ import annotations

import hashlib
import json
import re
import multiprocessing
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import monai
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose
from torch.utils.data import DataLoader, Dataset

from BratsUNetLib import __version__
from BratsUNetLib.cancel import CancelToken
from BratsUNetLib.data.cases import Case, CaseSource
from BratsUNetLib.errors import BratsUNetError, Cancelled
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.fileio import atomic_path
from BratsUNetLib.data.labels import check_label_values, label_channels
from BratsUNetLib.data.preprocessing import NonFiniteValues

CACHE_MODES = ("memory", "disk", "none")
# Bump when the layout of a prepared case changes, so old cache files are recomputed.
CACHE_FORMAT = 1


def prepare_case(case: Case, options: dict, transforms: Compose, source: str) -> dict[str, Any]:
    """Run the cached preprocessing on one loaded case (see the module docstring for the result).

    ``options``: the normalized dataset options (``labels``, ``setup_label_hierarchy``, ...); ``source``: how
    to name the case in errors (its label file when there is one).
    """

    affine = torch.as_tensor(np.asarray(case.affine, dtype=np.float64))
    # A copy: in-memory cases belong to the caller, and MONAI's normalization works in place.
    data = {"image": MetaTensor(torch.tensor(case.image, dtype=torch.float32), affine=affine)}
    if case.label is not None:
        labels = options.get("labels")
        if not labels:
            raise BratsUNetError("dataset: 'labels' is missing; list the label values to train on, e.g. [2, 1, 4].")
        flat = [int(v) for v in np.hstack([np.ravel(v) for v in labels])]  # nested lists merge values
        check_label_values(case.label, [0, *flat], source)
        channels = label_channels(case.label, labels, bool(options.get("setup_label_hierarchy")))
        data["label"] = MetaTensor(torch.from_numpy(channels), affine=affine.clone())
    try:
        out = transforms(data)
    except NonFiniteValues as exc:
        raise exc.for_case(case.id, source) from None
    prepared = {"image": out["image"].as_tensor().to(torch.float32).contiguous(),
                "affine": torch.as_tensor(out["image"].affine, dtype=torch.float64).clone(),
                "meta": {"id": case.id, "source": source, "original_shape": list(case.image.shape[1:]),
                         "original_affine": np.asarray(case.affine, dtype=np.float64).tolist()}}
    if "label" in out:
        prepared["label"] = torch.round(out["label"].as_tensor()).to(torch.uint8).contiguous()
    return prepared


class PreparedCases:
    """Prepared cases by index, from the cache chosen by ``mode`` (see the module docstring)."""

    def __init__(self, cases: Sequence[CaseSource], options: dict, transforms: Compose, mode: str = "memory",
                 folder: str | Path | None = None):
        if mode not in CACHE_MODES:
            raise BratsUNetError(f"Unknown cache mode '{mode}'; use one of {', '.join(CACHE_MODES)}.")
        if mode == "disk" and folder is None:
            raise ValueError("the disk cache needs a folder")
        self.cases = list(cases)
        self.options = options
        self.transforms = transforms
        self.mode = mode
        self.folder = Path(folder) if folder is not None else None
        self._memory: dict[int, dict[str, Any]] = {}
        self._keys: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.mode == "memory" and index in self._memory:
            return self._memory[index]
        if self.mode == "disk":
            cached = self._read(index)
            if cached is not None:
                return cached
        return self._compute(index)

    def prepare(self, n_workers: int = 0, reporter: ProgressReporter | None = None, task: str = "prepare cases",
                cancel: CancelToken | None = None) -> None:
        """Prepare every case now, ``n_workers`` processes in parallel, so that bad inputs fail here.

        Raises the first case's :class:`BratsUNetError` (one line naming the file), or :class:`Cancelled`.
        """
        reporter = reporter or ProgressReporter("none")
        todo = [i for i in range(len(self)) if not (self.mode == "memory" and i in self._memory)]
        stale = 0
        if self.mode == "disk":
            self.folder.mkdir(parents=True, exist_ok=True)
            status = {i: self._status(i) for i in todo}
            stale = sum(1 for s in status.values() if s == "stale")
            todo = [i for i, s in status.items() if s != "valid"]
        if stale:
            reporter.message(f"{stale} cached case(s) in '{self.folder}' are out of date (their files or the "
                             f"dataset options changed); recomputing them.")
        if not todo:
            return
        reporter.start(task, len(todo))
        # Its own generator: a DataLoader otherwise draws from torch's global one, which seeded runs replay.
        loader = DataLoader(_Preparer(self, todo), batch_size=None, num_workers=n_workers,
                            generator=torch.Generator(), **worker_options(n_workers))
        for done, (index, outcome) in enumerate(loader, 1):
            if isinstance(outcome, BratsUNetError):
                raise outcome
            if self.mode == "memory":
                self._memory[index] = outcome
            reporter.advance(task, done, len(todo), case=self.cases[index].id)
            if cancel is not None and cancel.cancelled:
                raise Cancelled("Stopped while preparing the cases; nothing was trained.")

    def _compute(self, index: int) -> dict[str, Any]:
        case = self.cases[index]
        loaded = case.load()
        source = str(getattr(case, "label_path", None) or case.identity)
        prepared = prepare_case(loaded, self.options, self.transforms, source)
        if self.mode == "disk":
            with atomic_path(self._path(index)) as tmp:
                torch.save({"key": self._key(index), **prepared}, tmp)
        return prepared

    def _key(self, index: int) -> str:
        """What the cached result of case ``index`` depends on, hashed."""
        if index not in self._keys:
            description = {"format": CACHE_FORMAT, "library": __version__, "monai": monai.__version__,
                           "torch": torch.__version__.split("+")[0], "data": self.cases[index].fingerprint(),
                           "options": self.options}
            text = json.dumps(description, sort_keys=True, default=str)
            self._keys[index] = hashlib.sha256(text.encode()).hexdigest()
        return self._keys[index]

    def _path(self, index: int) -> Path:
        case = self.cases[index]
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", case.id)[:80] or "case"
        # The identity (paths) in the name keeps two cases with the same file names apart.
        return self.folder / f"{name}-{hashlib.sha1(case.identity.encode()).hexdigest()[:10]}.pt"

    def _status(self, index: int) -> str:
        """``valid``, ``stale`` or ``missing`` for the disk cache file of case ``index``."""
        path = self._path(index)
        if not path.is_file():
            return "missing"
        try:
            stored = torch.load(path, weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - an unreadable cache file is simply recomputed
            return "stale"
        return "valid" if stored.get("key") == self._key(index) else "stale"

    def _read(self, index: int) -> dict[str, Any] | None:
        try:
            stored = torch.load(self._path(index), weights_only=True)
        except (OSError, RuntimeError, EOFError):
            return None
        if stored.pop("key", None) != self._key(index):
            return None
        return stored


class _Preparer(Dataset):
    """Prepares the listed cases of a :class:`PreparedCases`; user errors come back as the exception object.

    Returning the error instead of raising it keeps its message one line: a data-loader worker would wrap it
    in a traceback.
    """

    def __init__(self, cases: PreparedCases, indices: list[int]):
        self.cases = cases
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[int, dict[str, Any] | BratsUNetError]:
        index = self.indices[position]
        try:
            prepared = self.cases._compute(index)
        except BratsUNetError as exc:
            return index, exc
        # The disk cache is already written; sending the arrays back to the main process would be wasted work.
        return index, (prepared if self.cases.mode == "memory" else {})


def ignore_interrupts(worker_id: int) -> None:
    """Data-loader worker start-up: leave Ctrl-C to the main process, which stops the run cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def worker_options(n_workers: int) -> dict:
    """DataLoader options for ``n_workers`` worker processes (none for 0).

    Workers start from a fork server where there is one: forking a process whose native thread pools are running
    (OpenVINO, ONNX Runtime or oneDNN after a segmentation in the same Slicer worker process) can crash it.
    """
    if n_workers <= 0:
        return {}
    options: dict = {"worker_init_fn": ignore_interrupts}
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # The fork server imports these once; each worker forked from it then starts in a fraction of a second
        # instead of importing torch and MONAI again (seconds per worker, for every data loader of a run).
        # Importing runs no thread pool, so forking the server stays safe. (Ignored once the server runs.)
        context.set_forkserver_preload(list(FORKSERVER_PRELOAD))
        options["multiprocessing_context"] = context
    return options


# What data-loading workers unpickle their dataset with (their imports bring torch, MONAI and nibabel).
FORKSERVER_PRELOAD = ("BratsUNetLib.data.cache", "BratsUNetLib.training.samples")


def start_fork_server(n_workers: int) -> None:
    """Start the fork server of :func:`worker_options` now, so that its imports (seconds) run on another core while
    this process checks the config and builds the network, instead of when the first data loader needs a worker."""
    if n_workers <= 0 or "forkserver" not in multiprocessing.get_all_start_methods():
        return
    from multiprocessing import forkserver

    forkserver.set_forkserver_preload(list(FORKSERVER_PRELOAD))
    forkserver.ensure_running()
