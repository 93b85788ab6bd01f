"""The models the panel offers: checkpoint files chosen by the user, models trained in this session, and
original 3DUnetCNN checkpoints (bare weights) with the config they were trained with.

A model's description (channels, outputs, training summary) comes from the checkpoint through the library;
reading it imports torch, so it happens only when a model is chosen or used, never when the module loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class ModelEntry:
    """One model: its checkpoint, the config an original checkpoint needs, and where it came from."""

    path: str
    config: str = ""
    trained_here: bool = False

    def label(self, components: int = 2) -> str:
        """What the model selector shows: the last ``components`` parts of the path (and a mark for models
        trained here)."""
        text = "/".join(Path(self.path).parts[-components:])
        return f"{text} (trained in this session)" if self.trained_here else text


class ModelRegistry:
    """Known models by checkpoint path, in the order they were added, with their descriptions cached."""

    def __init__(self) -> None:
        self._entries: dict[str, ModelEntry] = {}
        self._descriptions: dict[tuple[str, str, float], dict] = {}

    def add(self, path: str | os.PathLike, config: str | os.PathLike = "", trained_here: bool = False) -> ModelEntry:
        """Register (or update) a model; the same file is listed once."""
        key = str(Path(path).resolve())
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = ModelEntry(key)
        entry.config = str(config or entry.config or "")
        entry.trained_here = entry.trained_here or trained_here
        return entry

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
        return self._entries.get(str(Path(path).resolve())) if path else None

    def describe(self, path: str | os.PathLike, config: str | os.PathLike = "") -> dict[str, Any]:
        """The checkpoint's description (``BratsUNetLib.models.checkpoint.load_model``), cached until the file changes.

        Raises the library's CheckpointError / ConfigError with a one-line message for unusable files, and for
        a checkpoint whose stored config describes a network too big for this machine's memory: describing
        builds the network in Slicer's own process, so its size is estimated from the config first
        (:func:`check_network_size`) and Slicer never freezes or dies on a model file.
        """
        from BratsUNetLib.models.checkpoint import load_model
        from BratsUNetLib.errors import CheckpointError

        from BratsUNetLib.inputfiles import require_regular_file

        path = Path(path)
        if not path.exists() and not path.is_symlink():
            raise CheckpointError(f"The model file '{path}' does not exist; choose a checkpoint (.pth).")
        # A named pipe or device would block Slicer's own process as soon as it is opened.
        require_regular_file(path, "The model file", "choose a checkpoint (.pth)", error=CheckpointError)
        if config:
            from BratsUNetLib.errors import ConfigError

            require_regular_file(config, "The model's config file", "choose the config (.json) it was trained with",
                                 error=ConfigError)
        key = (str(path.resolve()), str(config or ""), path.stat().st_mtime)
        if key not in self._descriptions:
            check_network_size(path, config)
            _network, description = load_model(path, config=config or None, device="cpu")
            self._descriptions[key] = description
        return self._descriptions[key]

    def card(self, path: str | os.PathLike, config: str | os.PathLike = "") -> str:
        """The model card shown in the panel: inputs, outputs, labels, preprocessing, training summary."""
        from BratsUNetLib.models.checkpoint import model_card

        return model_card(self.describe(path, config))


def check_network_size(path: str | os.PathLike, config: str | os.PathLike = "") -> None:
    """Refuse (:class:`~BratsUNetLib.errors.CheckpointError`, one line) a checkpoint whose network would not fit
    in the free memory, from its stored config (or ``config`` for an original 3DUnetCNN checkpoint), before
    anything is built. Files that cannot be read are left to the loader, which names what is wrong with them.
    """
    from BratsUNetLib.models.checkpoint import ORIGINAL_FORMAT, load_checkpoint
    from BratsUNetLib.config.loading import load_config
    from BratsUNetLib.errors import BratsUNetError, CheckpointError
    from BratsUNetLib.hardware.memory import check_network_memory

    try:
        content = load_checkpoint(path)
        if content.get("format") == ORIGINAL_FORMAT:
            block = load_config(config)["model"] if config else None
        else:
            stored = content.get("config")
            block = stored.get("model") if isinstance(stored, dict) else None
    except BratsUNetError:
        return  # load_model raises the same error with its full explanation
    if block is None:
        return
    try:
        check_network_memory(block, source=f"The network of '{path}'")
    except BratsUNetError as exc:
        raise CheckpointError(str(exc)) from None
