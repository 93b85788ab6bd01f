"""The models the panel offers: the catalogue's models by name (downloaded on first use, by the worker), checkpoint
files chosen by the user, models trained in this session, and original 3DUnetCNN checkpoints (bare weights) with
the config they were trained with.

A model's description (channels, outputs, network size, training summary) is read from the checkpoint by the
library, once per version of the file and without building the network (only the worker process builds it, to
segment). Reading it imports torch, so it happens only when a model is chosen or used, never when the module loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from BratsUNetLib.models.catalogue import CatalogueEntry, catalogue_card, is_model_name, load_catalogue


@dataclass
class ModelEntry:
    """One model: its checkpoint (or, for a catalogue model, its name), the config an original checkpoint needs,
    and where it came from."""

    path: str
    config: str = ""
    trained_here: bool = False
    catalogue: CatalogueEntry | None = None

    def label(self, components: int = 2) -> str:
        """What the model selector shows: the last ``components`` parts of the path (and a mark for models
        trained here); a catalogue model's title and whether it is downloaded."""
        if self.catalogue is not None:
            state = "downloaded" if downloaded_checkpoint(self.path) else "downloads on first use"
            return f"{self.catalogue.title or self.path} ({state})"
        text = "/".join(Path(self.path).parts[-components:])
        return f"{text} (trained in this session)" if self.trained_here else text


class ModelRegistry:
    """Known models by checkpoint path, in the order they were added, with their descriptions cached."""

    def __init__(self) -> None:
        self._entries: dict[str, ModelEntry] = {}
        # (checkpoint's file_version, config's file_version or None) -> description
        self._descriptions: dict[tuple, dict] = {}

    def add(self, path: str | os.PathLike, config: str | os.PathLike = "", trained_here: bool = False) -> ModelEntry:
        """Register (or update) a model; the same file is listed once (a model name as it is)."""
        key = str(path) if is_model_name(path) else str(Path(path).resolve())
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = ModelEntry(key)
        entry.config = str(config or entry.config or "")
        entry.trained_here = entry.trained_here or trained_here
        return entry

    def add_catalogue(self, source: str | os.PathLike | None = None) -> list[ModelEntry]:
        """Register the catalogue's models (``$BRATSUNET_MODEL_CATALOGUE``, else the shipped one) by name."""
        added = []
        for item in load_catalogue(source):
            entry = self._entries.setdefault(item.name, ModelEntry(item.name))
            entry.catalogue = item
            added.append(entry)
        return added

    def entries(self) -> list[ModelEntry]:
        return list(self._entries.values())

    def labelled_entries(self) -> list[tuple[ModelEntry, str]]:
        """Every entry with a label that tells it from the others: ``<folder>/<file>``, with as many more
        parent folders as it takes (models trained in two output folders are both ``bratsunet_slicer/model_best.pth``).
        """
        entries = self.entries()
        components = dict.fromkeys((entry.path for entry in entries), 2)
        while True:
            labels = {entry.path: entry.label(components[entry.path]) for entry in entries}
            clashing = [entry for entry in entries
                        if list(labels.values()).count(labels[entry.path]) > 1
                        and components[entry.path] < len(Path(entry.path).parts)]
            if not clashing:
                return [(entry, labels[entry.path]) for entry in entries]
            for entry in clashing:
                components[entry.path] += 1

    def get(self, path: str | os.PathLike) -> ModelEntry | None:
        if not path:
            return None
        return self._entries.get(str(path) if is_model_name(path) else str(Path(path).resolve()))

    def describe(self, path: str | os.PathLike, config: str | os.PathLike = "") -> dict[str, Any]:
        """The checkpoint's description (``BratsUNetLib.models.checkpoint.describe_checkpoint``), cached until the
        checkpoint or its config changes: choosing a model reads the file once, and Apply then reads it no more.

        Raises the library's CheckpointError / ConfigError with a one-line message for unusable files, and for
        a checkpoint whose network would not fit in this machine's memory (estimated from its config). The network
        is never built in Slicer's own process (the worker builds it), so Slicer never freezes or dies on a model
        file.
        """
        # Imported on use: the library brings torch, which the panel may still have to install (see the docstring).
        from BratsUNetLib.errors import CheckpointError, ConfigError
        from BratsUNetLib.inputfiles import require_regular_file
        from BratsUNetLib.models.checkpoint import describe_checkpoint

        if is_model_name(path):
            checkpoint = downloaded_checkpoint(path)
            if checkpoint is None:
                return self._catalogue_description(str(path))
            path = checkpoint
        path = Path(path)
        if not path.exists() and not path.is_symlink():
            raise CheckpointError(f"The model file '{path}' does not exist; choose a checkpoint (.pth).")
        # A named pipe or device would block Slicer's own process as soon as it is opened.
        require_regular_file(path, "The model file", "choose a checkpoint (.pth)", error=CheckpointError)
        if config:
            require_regular_file(config, "The model's config file", "choose the config (.json) it was trained with",
                                 error=ConfigError)
        key = (file_version(path), file_version(config) if config else None)
        if key not in self._descriptions:
            self._descriptions[key] = describe_checkpoint(path, config=config or None)
        return self._descriptions[key]

    def card(self, path: str | os.PathLike, config: str | os.PathLike = "") -> str:
        """The model card shown in the panel: inputs, outputs, labels, preprocessing, training summary."""
        early = self.card_before_download(path)
        if early is not None:
            return early
        # Imported on use, as in describe().
        from BratsUNetLib.models.checkpoint import model_card

        description = self.describe(path, config)
        entry = self.get(path)
        if entry is None or entry.catalogue is None:
            return model_card(description)
        return catalogue_card(entry.catalogue) + "\n\n" + model_card(description)

    def card_before_download(self, path: str | os.PathLike) -> str | None:
        """The card of a catalogue model not downloaded yet, from its catalogue entry alone (so also before torch
        and MONAI are installed: a new user sees what the model is before the first Apply); None for others."""
        entry = self.get(path)
        if entry is None or entry.catalogue is None or downloaded_checkpoint(entry.path) is not None:
            return None
        return catalogue_card(entry.catalogue) + "\n" + "Not downloaded yet: the first Apply downloads it."

    def _catalogue_description(self, name: str) -> dict[str, Any]:
        """What a catalogue model not downloaded yet is known to take and give (from its catalogue entry)."""
        from BratsUNetLib.errors import CheckpointError
        from BratsUNetLib.modalities import MODALITIES

        entry = self.get(name)
        if entry is None or entry.catalogue is None:
            self.add_catalogue()
            entry = self.get(name)
        if entry is None or entry.catalogue is None:
            raise CheckpointError(f"'{name}' is neither a model file nor a catalogue model; choose a checkpoint "
                                  "(.pth) or one of the catalogue's models.")
        return {"format": CATALOGUE_FORMAT, "name": name, "channels": list(entry.catalogue.channels or MODALITIES),
                "regions": ["WT", "TC", "ET"]}


def file_version(path: str | os.PathLike) -> tuple[str, int, int]:
    """What tells one version of a file from another without reading it: its resolved path, size and
    modification time (in nanoseconds: a file rewritten within the same second still counts as changed)."""
    status = os.stat(path)
    return str(Path(path).resolve()), status.st_size, status.st_mtime_ns


CATALOGUE_FORMAT = "catalogue"  # the description of a catalogue model not downloaded yet


def downloaded_checkpoint(name: str | os.PathLike) -> Path | None:
    """The checkpoint of the catalogue model ``name`` once downloaded (and converted), else None."""
    try:  # on use: the models folder is found with platformdirs, one of the packages installed on first use
        from BratsUNetLib.models.downloads import checkpoint_path
    except ImportError:  # the panel lists models before the install: nothing can have been downloaded yet
        return None
    path = checkpoint_path(str(name))
    return path if path.is_file() else None
