"""Segmentations written to files: one case's label map and probabilities (:func:`write_result`), and every case
of a config's file group into a folder, as the original predict.py (:func:`predict_group`), under names no two
cases share (:func:`prediction_names`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from BratsUNetLib.config.loading import filename_groups, load_config
from BratsUNetLib.data.cases import case_name
from BratsUNetLib.data.images import write_image
from BratsUNetLib.errors import BratsUNetError, ConfigError
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.fileio import (atomic_paths, check_not_inputs, check_output_folder, describe_paths,
                                 finish_interrupted_writes)
from BratsUNetLib.inference.loaded_model import load_models
from BratsUNetLib.inference.options import InferenceOptions
from BratsUNetLib.inference.pipeline import SegmentationResult, segment_case


def write_result(result: SegmentationResult, labels_path: str | os.PathLike | None = None,
                 probabilities_path: str | os.PathLike | None = None) -> dict[str, str]:
    """Write the label map (uint8) and/or the probabilities (float32, 4-D x,y,z,K as the original).

    Both appear together or not at all (:func:`BratsUNetLib.fileio.atomic_paths`: temporary names, a journal,
    then the renames). Returns the absolute paths written, keyed ``labels`` / ``probabilities`` (for the
    ``result`` event).
    """
    outputs: list[tuple[str, Path, np.ndarray, type]] = []
    if labels_path is not None:
        if result.labels is None:
            raise BratsUNetError("This model's outputs are not labels (its config has no dataset.labels); "
                                 "write the probabilities instead.")
        outputs.append(("labels", Path(labels_path), result.labels, np.uint8))
    if probabilities_path is not None:
        outputs.append(("probabilities", Path(probabilities_path), np.moveaxis(result.probabilities, 0, -1),
                        np.float32))
    if not outputs:
        return {}
    with atomic_paths([path for _, path, _, _ in outputs]) as temporaries:
        for (_, _, array, dtype), tmp in zip(outputs, temporaries):
            write_image(tmp, array, result.affine, dtype)
    return {key: str(path.absolute()) for key, path, _, _ in outputs}


#: How many clashing output names an error lists before it counts the rest.
_LISTED = 3


def prediction_names(first_images: Sequence[str | os.PathLike]) -> list[str]:
    """Output names for cases whose first inputs are ``first_images``, no two of which can map to one file.

    Each case is :func:`BratsUNetLib.data.cases.case_name` as the original, unless its outputs (``<name>.nii.gz`` and
    ``<name>_seg.nii.gz``, compared without case for case-insensitive file systems) would be another case's:
    then, for every case of such a clash, ``<folder>_<name>`` with the first input's folder name (cases in
    different folders whose first images share a file name), and if that still clashes ``<...>_case<N>`` with
    the case's position in the list, which is unique.
    """
    paths = [Path(path) for path in first_images]
    names = [case_name(path) for path in paths]
    for rename in (lambda i: f"{paths[i].parent.name}_{names[i]}", lambda i: f"{names[i]}_case{i + 1}"):
        clashing = _clashing(names)
        if not clashing:
            break
        for index in clashing:
            names[index] = rename(index)
    return names


def _clashing(names: Sequence[str]) -> set[int]:
    """Positions of the names whose output files (probabilities or label map) another name also gives."""
    owners: dict[str, set[int]] = {}
    for index, name in enumerate(names):
        for file_name in (name, f"{name}_seg"):
            owners.setdefault(file_name.casefold(), set()).add(index)
    return {index for owner in owners.values() if len(owner) > 1 for index in owner}


def predict_group(config: dict | str | os.PathLike, model_paths: str | os.PathLike | Sequence[str | os.PathLike],
                  group: str, output_dir: str | os.PathLike, *, options: InferenceOptions = InferenceOptions(),
                  segment: bool = False, overwrite: bool = True, skip_existing: bool = False,
                  device: str | torch.device = "auto", reporter: ProgressReporter | None = None,
                  resolve_model: Callable[[str | os.PathLike], str | os.PathLike] | None = None,
                  ) -> list[dict[str, str]]:
    """Predict every case of the config's ``<group>_filenames`` into ``output_dir``, as the original predict.py.

    Per case ``<name>.nii.gz`` holds the activated outputs (float32, x,y,z,K) on the first input's grid, and with
    ``segment`` ``<name>_seg.nii.gz`` the uint8 label map, where ``<name>`` is from :func:`prediction_names`.
    The whole plan of outputs is checked before any work: no output may be an input of any case of the config
    (or a model, or the config); without ``overwrite`` no output may exist, except that ``skip_existing``
    skips cases whose outputs all exist. ``resolve_model`` turns each of ``model_paths`` into a checkpoint file
    (a model name into its downloaded checkpoint); it is called only once the plan has passed, so that a mistake
    in it costs no download. Returns one dict of written paths per predicted case.
    """
    reporter = reporter or ProgressReporter("none")
    config_path = None if isinstance(config, Mapping) else config
    config = load_config(config)
    groups = filename_groups(config)
    key = f"{group}_filenames"
    entries = groups.get(group)
    if not entries:
        listed = sorted(name for name, cases in groups.items() if cases)
        raise ConfigError(f"The config has no cases in '{key}'; choose --group among: {', '.join(listed) or 'none'}.")
    if isinstance(model_paths, (str, os.PathLike)):
        model_paths = [model_paths]
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise BratsUNetError(f"--output_directory '{output_dir}' is a file, not a folder; give a folder (it is made "
                             "if needed).")

    # The whole plan first: every case's outputs, checked before anything is read or written.
    names = prediction_names([entry["image"][0] for entry in entries])  # load_config checked: lists of paths
    plan = []
    for name, entry in zip(names, entries):
        outputs = {"probabilities": output_dir / f"{name}.nii.gz"}
        if segment:
            outputs["labels"] = output_dir / f"{name}_seg.nii.gz"
        plan.append((name, entry, outputs))
    # prediction_names rules clashes out; this check keeps that promise whatever the names are.
    seen: set[str] = set()
    clashes = []
    for _, _, outputs in plan:
        for path in outputs.values():
            if path.name.casefold() in seen:
                clashes.append(path.name)
            seen.add(path.name.casefold())
    if clashes:
        raise BratsUNetError(f"{len(clashes)} output name(s) would be written by two cases: "
                             f"{describe_paths(clashes, _LISTED)}; rename the first image of one of those cases.")
    inputs = [("--model_filename", model) for model in model_paths]
    if config_path is not None:
        inputs.append(("--config_filename", config_path))
    for group_name, group_entries in groups.items():
        for entry in group_entries if isinstance(group_entries, list) else []:
            if not isinstance(entry, Mapping):
                continue
            inputs.extend((f"image of a case in '{group_name}_filenames'", path) for path in entry.get("image") or [])
            label = entry.get("label")
            inputs.extend((f"label of a case in '{group_name}_filenames'", path)
                          for path in (label if isinstance(label, (list, tuple)) else [label]) if path)
    check_not_inputs([(f"the output of case '{name}'", path) for name, _, outputs in plan
                      for path in outputs.values()], inputs)
    for message in finish_interrupted_writes([output_dir]):  # shown even with --progress none
        reporter.message(message) if reporter.mode != "none" else print(message, file=sys.stderr, flush=True)
    todo, existing = [], []
    for name, entry, outputs in plan:
        present = [path for path in outputs.values() if path.exists()]
        if skip_existing and len(present) == len(outputs):
            continue  # done by an earlier run
        if not overwrite:
            existing.extend(present)
        todo.append((name, entry, outputs))
    if existing:
        hint = " (or --no_overwrite to skip the cases whose outputs all exist)" if not skip_existing else ""
        raise BratsUNetError(f"{len(existing)} output(s) exist in '{output_dir}': "
                             f"{describe_paths([path.name for path in existing], _LISTED)}; pass --overwrite to "
                             f"replace them{hint}, or choose another --output_directory.")
    if resolve_model is not None:
        model_paths = [resolve_model(model) for model in model_paths]
    models = load_models(model_paths, config=config, device=device)
    check_output_folder(output_dir, "--output_directory")
    written: list[dict[str, str]] = []
    reporter.start("predict", len(entries))
    for done, (name, entry, outputs) in enumerate(todo, start=len(entries) - len(todo) + 1):
        try:
            result = segment_case(entry["image"], models, options, with_labels=segment)
        except BratsUNetError as exc:  # say which case of the list is at fault
            raise type(exc)(f"case '{name}' of '{key}': {exc}") from None
        written.append({"case": name, **write_result(result, outputs.get("labels"), outputs["probabilities"])})
        reporter.advance("predict", done, len(entries), case=name)
    return written
