"""Training data: where cases come from (config file lists or in-memory arrays) and their checks.

A case is either a :class:`Case` (arrays already in memory, e.g. volumes from a Slicer scene) or a
:class:`FileCase` (paths from a config's ``*_filenames`` list, read when needed). Both offer ``load()`` (the
arrays), ``n_channels`` (known without reading) and ``fingerprint()`` (changes when the data changes, for the
disk cache). :func:`check_cases` rejects unusable inputs before any training starts, with one-line messages.

The preprocessing cache is in :mod:`BratsUNetLib.data.cache`, the datasets and sampler in
:mod:`BratsUNetLib.training.samples`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from BratsUNetLib.errors import BratsUNetError, ConfigError, ImageError
from BratsUNetLib.data.images import axis_codes, read_axis_codes, read_case, read_label


@dataclass
class Case:
    """One case in memory.

    ``image``: (C, X, Y, Z) float32, channels in the model's order, all on one grid. ``affine``: 4x4 voxel ->
    RAS mm. ``label``: (X, Y, Z) integer label map on the same grid, or ``None`` (prediction only).
    """

    id: str
    image: np.ndarray
    affine: np.ndarray
    label: np.ndarray | None = None

    @property
    def n_channels(self) -> int:
        return int(self.image.shape[0])

    @property
    def has_label(self) -> bool:
        return self.label is not None

    @property
    def identity(self) -> str:
        return self.id

    @property
    def axis_codes(self) -> str:
        return axis_codes(self.affine)

    def load(self) -> Case:
        return self

    def fingerprint(self) -> str:
        """Hash of the arrays and the affine: any change in the data gives another fingerprint."""
        digest = hashlib.blake2b(digest_size=16)
        for array in (self.image, self.affine, self.label):
            if array is not None:
                array = np.ascontiguousarray(array)
                digest.update(f"{array.dtype.str}{array.shape}".encode())
                digest.update(memoryview(array).cast("B"))
        return digest.hexdigest()


@dataclass
class FileCase:
    """One case on disk: one NIfTI file per channel (the first is the reference grid) and an optional label."""

    id: str
    image_paths: tuple[Path, ...]
    label_path: Path | None = None

    @property
    def n_channels(self) -> int:
        return len(self.image_paths)

    @property
    def has_label(self) -> bool:
        return self.label_path is not None

    @property
    def identity(self) -> str:
        return "|".join(str(p) for p in self.paths)

    @property
    def paths(self) -> tuple[Path, ...]:
        return self.image_paths + ((self.label_path,) if self.label_path else ())

    @property
    def axis_codes(self) -> str:
        """Voxel axis directions of the reference (first) channel, read from its header."""
        return read_axis_codes(self.image_paths[0])

    def load(self) -> Case:
        """Read the channels (resampled onto the first one's grid) and the label (nearest neighbour onto it)."""
        image, affine = read_case(self.image_paths)
        label = read_label(self.label_path, image.shape[1:], affine) if self.label_path else None
        return Case(self.id, image, affine, label)

    def fingerprint(self) -> str:
        """Paths, sizes and modification times: editing or replacing a file gives another fingerprint."""
        digest = hashlib.blake2b(digest_size=16)
        for path in self.paths:
            stat = os.stat(path)
            digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns};".encode())
        return digest.hexdigest()


class CaseSource(Protocol):
    """What the training code needs from a case, whichever kind it is."""

    id: str

    @property
    def n_channels(self) -> int: ...

    @property
    def has_label(self) -> bool: ...

    @property
    def identity(self) -> str: ...

    @property
    def axis_codes(self) -> str: ...

    def load(self) -> Case: ...

    def fingerprint(self) -> str: ...


def case_name(first_image: str | os.PathLike) -> str:
    """A case's name, as the original named it and its outputs: its first image's file name up to the first dot."""
    return Path(first_image).name.split(".")[0]


def file_cases(entries: Sequence[dict], group: str = "training") -> list[FileCase]:
    """Turn a config's ``<group>_filenames`` list into :class:`FileCase` objects, checking that every file exists.

    ``entries``: ``[{"image": [flair, t1, t1ce, t2], "label": seg}, ...]`` (``label`` optional; a single image
    may be given as a string). Missing files are reported together (the first few named) before anything runs.
    """
    key = f"{group}_filenames"
    if not isinstance(entries, (list, tuple)):
        raise ConfigError(f"'{key}' must be a list of {{\"image\": [...], \"label\": ...}} objects.")
    cases, missing = [], []
    for position, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or "image" not in entry:
            raise ConfigError(f"'{key}' item {position} must be an object with an \"image\" list, got {entry!r:.80}.")
        images = [entry["image"]] if isinstance(entry["image"], (str, os.PathLike)) else list(entry["image"])
        if not images:
            raise ConfigError(f"'{key}' item {position} has an empty \"image\" list.")
        paths = tuple(Path(p).expanduser().absolute() for p in images)
        label = entry.get("label")
        label_path = Path(label).expanduser().absolute() if label else None
        case = FileCase(case_name(paths[0]), paths, label_path)
        missing += [str(p) for p in case.paths if not p.is_file()]
        cases.append(case)
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise ImageError(f"{len(missing)} file(s) of '{key}' do not exist: {', '.join(missing[:3])}{more}. "
                         f"Fix the paths in the config.")
    return cases


def check_cases(cases: Sequence[CaseSource], group: str, in_channels: int | None, need_labels: bool) -> None:
    """Reject a case list that cannot train: empty, a channel count other than the model's, or missing labels.

    Image contents (readability, label values) are checked when the cases are first preprocessed.
    """
    if not cases:
        raise ConfigError(f"The {group} list is empty: add cases to '{group}_filenames' in the config "
                          f"(or select cases to train on).")
    for case in cases:
        if in_channels is not None and case.n_channels != in_channels:
            raise BratsUNetError(f"{group} case '{case.id}' has {case.n_channels} image channel(s) but the model "
                                 f"takes {in_channels} (model 'in_channels'); give every case the same "
                                 f"{in_channels} images in the same order.")
        if need_labels and not case.has_label:
            raise ConfigError(f"{group} case '{case.id}' has no label; every {group} case needs a \"label\" file.")
