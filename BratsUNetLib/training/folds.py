"""Cross-validation folds exactly as the original 3DUnetCNN split them.

The original shuffled ``training_filenames`` with ``numpy.random.seed(seed); numpy.random.shuffle(list)``, took
``step = int(N / n_folds)`` and let fold k (1-based) validate on items ``[(k-1)*step, k*step)``, the last fold
also taking the remainder. Reproducing this bit for bit means fold k holds the same cases as in the original,
so users can compare folds across the two tools. Each fold is written as ``<work_dir>/fold<k>.json``: the config
without its ``cross_validation`` block, with the fold's own training and validation lists; it is trained in
``<work_dir>/fold<k>/``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from BratsUNetLib.errors import ConfigError
from BratsUNetLib.fileio import write_text_atomic
from BratsUNetLib.config.validation import CROSS_VALIDATION_DEFAULTS


def split_folds(items: Sequence[Any], n_folds: int = 5, seed: int = 25) -> list[tuple[list[Any], list[Any]]]:
    """Split ``items`` into ``n_folds`` ``(training, validation)`` pairs, fold 1 first, as the original did.

    ``items`` is not modified. A private ``RandomState`` seeded with ``seed`` gives the same permutation as the
    original's global ``numpy.random.seed`` + ``numpy.random.shuffle`` without touching the global generator.
    """
    if len(items) < n_folds:
        raise ConfigError(f"cross_validation: {len(items)} training cases cannot be split into {n_folds} folds; "
                          f"lower 'n_folds' or add cases.")
    shuffled = list(items)
    np.random.RandomState(seed).shuffle(shuffled)
    step = int(len(shuffled) / n_folds)
    folds = []
    for index in range(n_folds):
        start = index * step
        stop = len(shuffled) if index == n_folds - 1 else start + step
        folds.append((shuffled[:start] + shuffled[stop:], shuffled[start:stop]))
    return folds


def write_fold_configs(config: dict, work_dir: str | Path) -> list[Path]:
    """Write ``<work_dir>/fold<k>.json`` for every fold of ``config`` and return their paths in fold order.

    ``config`` is a config from :func:`config.load_config` (file lists included; its ``cross_validation``
    block normalized to ``{"n_folds", "random_seed"}``). The fold files keep every other block and file group
    unchanged, so groups such as ``test_filenames`` are still predicted after each fold.
    """

    if not config.get("training_filenames"):
        raise ConfigError("cross_validation needs cases in 'training_filenames' to split into folds.")
    settings = {**CROSS_VALIDATION_DEFAULTS, **(config.get("cross_validation") or {})}
    n_folds, seed = settings["n_folds"], settings["random_seed"]
    base = {key: value for key, value in config.items() if key != "cross_validation"}
    paths = []
    for fold, (training, validation) in enumerate(split_folds(config["training_filenames"], n_folds, seed), 1):
        fold_config = copy.deepcopy(base)
        fold_config["training_filenames"] = training
        fold_config["validation_filenames"] = validation
        paths.append(write_text_atomic(Path(work_dir) / f"fold{fold}.json", json.dumps(fold_config, indent=2) + "\n"))
    return paths
