"""``bratsunet evaluate``: Dice, HD95 and volumes of predicted BraTS label maps against reference segmentations.

``--prediction`` and ``--reference`` are both label-map files (one case) or both folders. In a folder, a case is

- a file ``<case>.nii.gz`` (or ``.nii``) directly in the folder; a trailing ``_seg`` is not part of the case id
  (``<case>_seg.nii.gz``), and when some files end in ``_seg`` only those are taken as label maps (so a flat
  folder that also holds the MRI channels works), or
- a subfolder ``<case>/`` (the BraTS layout) holding ``<case>_seg.nii.gz``, or else exactly one NIfTI file
  whose name contains ``seg``.

Predictions are matched to references by case id; a prediction whose id starts with a reference id followed by
``_``, ``-`` or ``.`` (e.g. ``<case>_pred.nii.gz``) matches that reference (the longest such id). Cases found
on only one side are listed and not evaluated. Each prediction is compared on its reference's grid
(nearest-neighbour resampling through the affines when the grids differ); spacing comes from the reference.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from BratsUNetLib.cli.arguments.evaluate import NAME
from BratsUNetLib.data.images import read_label, read_label_image
from BratsUNetLib.data.labels import check_label_values, get_scheme
from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.evaluation.metrics import mean_metrics, region_metrics
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.fileio import check_not_inputs, check_output_path, write_text_atomic


OUTPUT_FORMATS = (".json", ".csv")
NIFTI_SUFFIXES = (".nii.gz", ".nii")
SEPARATORS = ("_", "-", ".")


def run(args: argparse.Namespace) -> int:
    if args.output is not None:
        if not args.output.name.lower().endswith(OUTPUT_FORMATS):
            raise BratsUNetError(f"Output '{args.output}' must end in .json or .csv (the format is chosen by "
                                 "the extension).")
        check_not_inputs({"--output": args.output}, {"--prediction": args.prediction, "--reference": args.reference})
        check_output_path(args.output)
        if args.output.exists() and not args.overwrite:
            raise BratsUNetError(f"--output '{args.output}' exists; pass --overwrite to replace it, or choose another "
                                 "file name.")
    scheme = get_scheme(args.labels)
    allowed = (0, *scheme.labels)
    pairs, unmatched_predictions, unmatched_references = find_cases(args.prediction, args.reference)

    reporter = ProgressReporter(args.progress)
    warnings = []
    if unmatched_references:
        warnings.append(f"{len(unmatched_references)} reference case(s) have no prediction and are not evaluated: "
                        f"{_list(unmatched_references)}")
    if unmatched_predictions:
        warnings.append(f"{len(unmatched_predictions)} prediction(s) match no reference case and are ignored: "
                        f"{_list(unmatched_predictions)}")
    for text in warnings:
        # Shown even with --progress none: silently skipping cases would make the mean misleading.
        if args.progress == "none":
            print(f"Warning: {text}", file=sys.stderr)
        else:
            reporter.message(f"Warning: {text}")

    results: dict[str, dict[str, dict[str, float]]] = {}
    reporter.start(NAME, len(pairs))
    for done, (case_id, prediction_path, reference_path) in enumerate(pairs, start=1):
        reference = read_label_image(reference_path)
        check_label_values(reference.array, allowed, reference_path)
        prediction = read_label(prediction_path, reference.shape, reference.affine)
        check_label_values(prediction, allowed, prediction_path)
        results[case_id] = region_metrics(prediction, reference.array, reference.spacing, scheme)
        reporter.advance(NAME, done, len(pairs), case=case_id)
    reporter.close()
    mean = mean_metrics(list(results.values()))

    summary = {"labels": scheme.name, "prediction": str(args.prediction), "reference": str(args.reference),
               "cases": results, "mean": mean, "unmatched_predictions": unmatched_predictions,
               "unmatched_references": unmatched_references}
    if args.output is not None:
        if args.output.name.lower().endswith(".json"):
            write_text_atomic(args.output, json.dumps(summary, indent=2) + "\n")
        else:
            write_text_atomic(args.output, _csv(results, mean))
    if args.progress == "json":
        reporter.emit("result", output=str(args.output) if args.output else None, **summary)
    else:
        print(_table(results, mean))
        if args.output is not None:
            print(f"Results written to {args.output}")
    return 0


def find_cases(prediction: Path, reference: Path) -> tuple[list[tuple[str, Path, Path]], list[str], list[str]]:
    """Pair predictions with references (see the module doc).

    Returns ``([(case id, prediction file, reference file), ...] sorted by case id, unmatched prediction ids,
    unmatched reference ids)``.
    """
    for path, what in ((prediction, "prediction"), (reference, "reference")):
        if not path.exists():
            raise BratsUNetError(f"The {what} '{path}' does not exist; give a label-map file or a folder of them.")
    if prediction.is_file() and reference.is_file():
        return [(_case_id(reference.name), prediction, reference)], [], []
    if prediction.is_file() or reference.is_file():
        raise BratsUNetError(f"--prediction '{prediction}' and --reference '{reference}' must both be files or "
                             "both be folders.")
    predictions, references = label_files(prediction), label_files(reference)
    if not references:
        raise BratsUNetError(f"No reference segmentations found in '{reference}'; expected <case>/<case>_seg.nii.gz "
                             "or <case>.nii.gz files.")
    # Exact ids first, so that e.g. <case>_probabilities.nii.gz beside <case>.nii.gz is left out, not a clash.
    matched = {case_id: path for case_id, path in predictions.items() if case_id in references}
    unmatched_predictions = []
    for prediction_id, path in predictions.items():
        if prediction_id in references:
            continue
        reference_id = _matching_reference(prediction_id, references)
        if reference_id is None or reference_id in predictions:  # no reference, or it has an exact match
            unmatched_predictions.append(prediction_id)
        elif reference_id in matched:
            raise BratsUNetError(f"Two predictions match reference case '{reference_id}': '{matched[reference_id]}' "
                                 f"and '{path}'; keep one prediction per case.")
        else:
            matched[reference_id] = path
    if not matched:
        raise BratsUNetError(f"No prediction in '{prediction}' matches a reference case in '{reference}' (e.g. "
                             f"{_list(sorted(references), 3)}); name predictions <case>.nii.gz after the cases.")
    pairs = [(case_id, matched[case_id], references[case_id]) for case_id in sorted(matched)]
    unmatched_references = sorted(set(references) - set(matched))
    return pairs, sorted(unmatched_predictions), unmatched_references


def label_files(folder: Path) -> dict[str, Path]:
    """``{case id: label-map file}`` for the flat files and case subfolders of ``folder``."""
    flat = sorted(p for p in folder.iterdir() if p.is_file() and _is_nifti(p))
    segmentations = [p for p in flat if _stem(p.name).lower().endswith("_seg")]
    cases: dict[str, Path] = {}
    for path in segmentations or flat:
        cases[_case_id(path.name)] = path
    for subfolder in sorted(p for p in folder.iterdir() if p.is_dir()):
        path = _segmentation_in(subfolder)
        if path is None:
            continue
        if subfolder.name in cases:
            raise BratsUNetError(f"Case '{subfolder.name}' appears twice in '{folder}': '{cases[subfolder.name]}' and "
                                 f"'{path}'; keep one.")
        cases[subfolder.name] = path
    return cases


def _segmentation_in(folder: Path) -> Path | None:
    """The label-map file of a case folder: ``<case>_seg.nii[.gz]``, else the one NIfTI named ``*seg*``."""
    for suffix in NIFTI_SUFFIXES:
        exact = folder / f"{folder.name}_seg{suffix}"
        if exact.is_file():
            return exact
    candidates = sorted(p for p in folder.iterdir() if p.is_file() and _is_nifti(p) and "seg" in p.name.lower())
    if len(candidates) > 1:
        raise BratsUNetError(f"Several segmentations in '{folder}' ({', '.join(p.name for p in candidates)}); "
                             f"keep one, or name it {folder.name}_seg.nii.gz.")
    return candidates[0] if candidates else None


def _matching_reference(prediction_id: str, references: dict[str, Path]) -> str | None:
    """The longest reference id that ``prediction_id`` starts with, followed by a separator; else None."""
    prefixes = [case_id for case_id in references
                if any(prediction_id.startswith(case_id + separator) for separator in SEPARATORS)]
    return max(prefixes, key=len) if prefixes else None


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def _stem(name: str) -> str:
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _case_id(name: str) -> str:
    """Case id of a label-map file name: the name without ``.nii[.gz]`` and without a trailing ``_seg``."""
    stem = _stem(name)
    return stem[:-4] if stem.lower().endswith("_seg") and len(stem) > 4 else stem


def _list(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _columns(regions: list[str]) -> list[tuple[str, str, str]]:
    """(column title, region, metric) in display order: Dice, HD95, then the two volumes, per region."""
    columns = []
    for metric, title in (("dice", "Dice"), ("hd95", "HD95"), ("volume_prediction_ml", "mL pred"),
                          ("volume_reference_ml", "mL ref")):
        columns.extend((f"{title} {region}", region, metric) for region in regions)
    return columns


def _table(results: dict[str, dict[str, dict[str, float]]], mean: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per case and a final mean row."""
    regions = list(mean)
    columns = _columns(regions)
    rows = [(case_id, metrics) for case_id, metrics in results.items()] + [("mean", mean)]
    width = max(len("case"), *(len(case_id) for case_id, _ in rows))
    header = "case".ljust(width) + "".join(f"  {title:>{_width(title)}}" for title, _, _ in columns)
    lines = [header]
    for case_id, metrics in rows:
        cells = []
        for title, region, metric in columns:
            value = metrics[region][metric]
            text = f"{value:.4f}" if metric == "dice" else f"{value:.2f}"
            cells.append(f"  {text:>{_width(title)}}")
        lines.append(case_id.ljust(width) + "".join(cells))
    return "\n".join(lines)


def _width(title: str) -> int:
    return max(len(title), 7)


def _csv(results: dict[str, dict[str, dict[str, float]]], mean: dict[str, dict[str, float]]) -> str:
    """One row per case and a final ``mean`` row; columns ``case, dice_WT, ..., hd95_WT, ..., volume_*_WT, ...``."""
    columns = [(f"{metric}_{region}", region, metric) for _, region, metric in _columns(list(mean))]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["case", *(name for name, _, _ in columns)])
    for case_id, metrics in [*results.items(), ("mean", mean)]:
        writer.writerow([case_id, *(repr(float(metrics[region][metric])) for _, region, metric in columns)])
    return buffer.getvalue()
