"""The models a user has by name: catalogue models downloaded (and bundles converted) into the models folder.

Every model in the folder is a BratsUNet checkpoint ``<models folder>/<name>.pth``: a catalogue entry of format
``bratsunet`` is that file as downloaded; one of format ``monai-bundle`` is downloaded as its zip (kept beside it
in ``downloads/``) and converted once (:func:`BratsUNetLib.models.bundle.import_bundle`); ``bratsunet models
import`` converts a local bundle the same way. So wherever a model file is accepted, a name is too
(:func:`resolve_model`): a catalogue model not yet downloaded is downloaded first.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from BratsUNetLib.cancel import CancelToken
from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.fileio import atomic_path
from BratsUNetLib.models.bundle import import_bundle
from BratsUNetLib.models.catalogue import NAME_PATTERN, CatalogueEntry, find_entry, is_model_name, load_catalogue
from BratsUNetLib.models.downloads import CHECKPOINT_SUFFIX, checkpoint_path, download, models_dir

DOWNLOADS_FOLDER = "downloads"


@dataclass(frozen=True)
class StoredModel:
    """A model by name: its catalogue entry (None for one imported here) and its checkpoint when it is there."""

    name: str
    entry: CatalogueEntry | None
    checkpoint: Path | None

    @property
    def state(self) -> str:
        """``downloaded``, ``imported`` or ``downloadable``."""
        if self.checkpoint is None:
            return "downloadable"
        return "downloaded" if self.entry is not None else "imported"


def list_models(folder: Path | None = None, catalogue: str | os.PathLike | None = None) -> list[StoredModel]:
    """The catalogue's models (downloaded or not), then the models imported into ``folder`` by name."""
    folder = folder or models_dir()
    entries = load_catalogue(catalogue)
    found = [StoredModel(entry.name, entry, _present(checkpoint_path(entry.name, folder))) for entry in entries]
    known = {entry.name for entry in entries}
    if folder.is_dir():
        found += [StoredModel(path.stem, None, path) for path in sorted(folder.glob(f"*{CHECKPOINT_SUFFIX}"))
                  if path.stem not in known and NAME_PATTERN.fullmatch(path.stem)]
    return found


def resolve_model(model: str | os.PathLike, *, folder: Path | None = None, catalogue: str | os.PathLike | None = None,
                  reporter: ProgressReporter | None = None, cancel: CancelToken | None = None) -> Path:
    """The checkpoint file for ``model``: an existing file as it is, else a model name (downloaded when needed).

    A name resolves only against the catalogue and the models folder (an allowlist): anything else is an error
    that says where names are listed.
    """
    if not is_model_name(model):
        return Path(model).expanduser()  # a path: the checkpoint readers report a missing or unusable file
    name = str(model)
    stored = checkpoint_path(name, folder)
    if stored.is_file():
        return stored
    entries = load_catalogue(catalogue)
    if name not in {entry.name for entry in entries}:
        listed = ", ".join(entry.name for entry in entries) or "none"
        raise BratsUNetError(f"'{name}' is neither a model file nor a model name (catalogue models: {listed}; "
                             "`bratsunet models list` shows them and the imported ones).")
    return download_model(find_entry(name, entries), folder=folder, reporter=reporter, cancel=cancel)


def download_model(entry: CatalogueEntry, *, folder: Path | None = None, reporter: ProgressReporter | None = None,
                   cancel: CancelToken | None = None) -> Path:
    """Download the catalogue model ``entry`` (verified, resumable) and return its checkpoint in ``folder``."""
    folder = folder or models_dir()
    target = checkpoint_path(entry.name, folder)
    if target.is_file():
        return target
    downloads = folder / DOWNLOADS_FOLDER
    if entry.format == "bratsunet":
        return download(entry.url, target.name, sha256=entry.sha256, md5=entry.md5, folder=folder,
                        reporter=reporter, cancel=cancel, title=entry.name)
    bundle = download(entry.url, f"{entry.name}.zip", sha256=entry.sha256, md5=entry.md5, folder=downloads,
                      reporter=reporter, cancel=cancel, title=entry.name)
    weights = None
    if entry.weights and entry.weights.get("url"):
        weights = download(entry.weights["url"], f"{entry.name}.weights.pt", sha256=entry.weights.get("sha256"),
                           md5=entry.weights.get("md5"), folder=downloads, reporter=reporter, cancel=cancel,
                           title=f"{entry.name} weights")
    return _convert(bundle, target, weights)


def import_model(source: str | os.PathLike, name: str | None = None, *, folder: Path | None = None,
                 overwrite: bool = False) -> Path:
    """Convert the local MONAI bundle ``source`` (a zip or folder) into the model ``name`` (default: the bundle's
    file or folder name) in ``folder``; an existing model of that name is replaced only with ``overwrite``."""
    source = Path(source).expanduser()
    name = name or re.sub(r"[^a-z0-9_.-]+", "_", source.stem.lower()).strip("_.-")
    if not NAME_PATTERN.fullmatch(name):
        raise BratsUNetError(f"'{name}' cannot name a model: use lower-case letters, digits, '_', '-' and '.' "
                             "(at most 64), e.g. --name my_bundle.")
    target = checkpoint_path(name, folder)
    if target.exists() and not overwrite:
        raise BratsUNetError(f"A model called '{name}' exists ({target}); pass --overwrite to replace it or "
                             "choose another --name.")
    return _convert(source, target, None)


def _convert(bundle: Path, target: Path, weights: Path | None) -> Path:
    # Written under a temporary name and renamed: a failed conversion leaves no model behind.
    with atomic_path(target) as temporary:
        import_bundle(bundle, temporary, weights)
    return target


def _present(path: Path) -> Path | None:
    return path if path.is_file() else None
