"""Results for people to look at: PNG slices of cases with their labels, training curves, and an HTML page.

Used by ``bratsunet demo``. Everything is drawn with matplotlib's Agg canvas directly (no pyplot, no global
backend switch), so it works headless and inside other applications. Every file is written atomically.
PNG sizes are exact: a slices figure is ``n_columns × panel_px`` wide and ``3 × panel_px + 2 × STRIP_PX`` high
(title strip on top, colour legend at the bottom); a curves figure is ``width_px × height_px``.
"""

from __future__ import annotations

import html
import math
import os
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from nibabel.orientations import apply_orientation, io_orientation

from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.fileio import atomic_path, write_text_atomic
from BratsUNetLib.data.labels import REGIONS, region_names
from BratsUNetLib.evaluation.metrics import mean_metrics
from BratsUNetLib.training.log import TrainingLog, dice_column

if TYPE_CHECKING:  # the curve's module imports the inference stack, which a report of metrics does not need
    from BratsUNetLib.evaluation.click_curve import ClickCurve

DPI = 100
STRIP_PX = 28  # height of the column-title strip and of the legend strip of a slices figure
OVERLAY_ALPHA = 0.45
VIEWS = ("axial", "coronal", "sagittal")


def _figure(width_px: int, height_px: int):
    """A matplotlib Figure of exactly ``width_px × height_px`` pixels at :data:`DPI`, on an Agg canvas."""
    # Imported here: matplotlib is optional for the library and slow to import; only a report's figures need it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _save_png(figure, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=DPI, format="png", facecolor=figure.get_facecolor())
    return Path(path)


def _ras_orientation(affine: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray]:
    """How to turn a stored array into R, A, S axes (nibabel orientation, None without an affine) and the voxel
    sizes along R, A, S.

    For display only: slices then come out the same way up whatever the file's voxel order (LPS BraTS files,
    left-handed clinical files). Without an affine the array is shown as stored, with 1 mm voxels.
    """
    if affine is None:
        return None, np.ones(3)

    orientation = io_orientation(affine)
    spacing = np.empty(3)
    spacing[orientation[:, 0].astype(int)] = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    return orientation, spacing


def _to_ras(array: np.ndarray, orientation: np.ndarray | None) -> np.ndarray:
    if orientation is None:
        return array

    return apply_orientation(array, orientation)


def _slice(volume: np.ndarray, view: str, index: int) -> np.ndarray:
    """A 2-D RAS slice the way radiologists view it: axial and coronal with the patient's right on the left of
    the screen, superior / anterior at the top; sagittal with anterior on the left. Rows first."""
    if view == "axial":
        return volume[::-1, ::-1, index].T
    if view == "coronal":
        return volume[::-1, index, ::-1].T
    return volume[index, ::-1, ::-1].T


def _aspect(spacing: np.ndarray, view: str) -> float:
    """Display aspect (row spacing / column spacing) of :func:`_slice` of ``view``."""
    rows, columns = {"axial": (1, 0), "coronal": (2, 0), "sagittal": (2, 1)}[view]
    return float(spacing[rows] / spacing[columns])


def tumour_centre(label: np.ndarray) -> tuple[int, int, int]:
    """The tumour voxel nearest the centroid of ``label > 0`` (so the slices cut through tumour even when it is
    multifocal), or the middle of the grid when there is no tumour."""
    voxels = np.argwhere(label > 0)
    if len(voxels) == 0:
        return tuple(int(n) // 2 for n in label.shape)
    nearest = voxels[np.argmin(((voxels - voxels.mean(axis=0)) ** 2).sum(axis=1))]
    return tuple(int(v) for v in nearest)


def _label_rgba(label_slice: np.ndarray, scheme: str) -> np.ndarray:
    rgba = np.zeros((*label_slice.shape, 4), dtype=np.float32)
    for info in region_names(scheme):
        rgba[label_slice == info.value] = (*info.rgb_float, OVERLAY_ALPHA)
    return rgba


def write_case_slices(path: str | os.PathLike, images: Mapping[str, np.ndarray], reference: np.ndarray | None = None,
                      prediction: np.ndarray | None = None, affine: np.ndarray | None = None, *,
                      title: str = "", panel_px: int = 240, scheme: str = "brats2020") -> Path:
    """A PNG of one case: axial, coronal and sagittal slices through the tumour centre (rows), for each
    grey-scale image of ``images`` (e.g. ``{"FLAIR": flair, "T1ce": t1ce}``, ``(X, Y, Z)`` arrays) once with the
    ``reference`` labels and once with the ``prediction`` labels overlaid in the BraTS colours (columns).

    Label maps are uint8 ``(X, Y, Z)`` on the images' grid; either may be None (then its columns are left out).
    ``affine`` (voxel → RAS) orients the slices; the centre is that of the reference tumour, else of the
    predicted one. Size: ``len(images) × n_label_maps × panel_px`` wide (at least one column per image),
    ``3 × panel_px + 2 × STRIP_PX`` high.
    """
    overlays = [(name, labels) for name, labels in (("reference", reference), ("prediction", prediction))
                if labels is not None] or [("", None)]
    columns = [(image_name, overlay_name) for image_name in images for overlay_name, _ in overlays]
    orientation, spacing = _ras_orientation(affine)
    volumes = {name: _to_ras(np.asarray(array, dtype=np.float32), orientation) for name, array in images.items()}
    label_maps = {name: _to_ras(np.asarray(labels), orientation) for name, labels in overlays if labels is not None}
    # Show the head, not the empty field of view around it (BraTS backgrounds are exactly 0).
    crop = _content_box([*volumes.values(), *label_maps.values()])
    volumes = {name: volume[crop] for name, volume in volumes.items()}
    label_maps = {name: labels[crop] for name, labels in label_maps.items()}
    shape = next(iter(volumes.values())).shape
    centre_source = label_maps.get("reference", label_maps.get("prediction"))
    centre = tumour_centre(centre_source) if centre_source is not None else tuple(n // 2 for n in shape)

    width, height = len(columns) * panel_px, len(VIEWS) * panel_px + 2 * STRIP_PX
    figure = _figure(width, height)
    figure.set_facecolor("black")
    for col, (image_name, overlay_name) in enumerate(columns):
        heading = f"{image_name} + {overlay_name}" if overlay_name else image_name
        figure.text((col + 0.5) * panel_px / width, 1 - STRIP_PX / 2 / height, heading, color="white",
                    ha="center", va="center", fontsize=10)
        volume = volumes[image_name]
        brain = volume[volume > 0]
        upper = float(np.percentile(brain, 99.5)) if brain.size else 1.0
        for row, view in enumerate(VIEWS):
            bottom = (STRIP_PX + (len(VIEWS) - 1 - row) * panel_px) / height
            axes = figure.add_axes((col * panel_px / width, bottom, panel_px / width, panel_px / height))
            axes.set_axis_off()
            index = centre[{"axial": 2, "coronal": 1, "sagittal": 0}[view]]
            aspect = _aspect(spacing, view)
            axes.imshow(_slice(volume, view, index), cmap="gray", vmin=0, vmax=upper, aspect=aspect,
                        interpolation="nearest")
            if overlay_name:
                axes.imshow(_label_rgba(_slice(label_maps[overlay_name], view, index), scheme), aspect=aspect,
                            interpolation="nearest")
    # Legend strip: the title and the label names where the figure is wide enough, else the label values.
    middle = STRIP_PX / 2 / height
    wide = width >= 720
    if wide:
        figure.text(0.01, middle, title, color="white", ha="left", va="center", fontsize=9)
    labels = region_names(scheme)
    start = 0.4 if wide else 0.0
    for number, info in enumerate(labels):
        text = f"\u25a0 {info.value} {info.name}" if wide else f"\u25a0 {info.value}"
        figure.text(start + (1 - start) * (number + 0.5) / len(labels), middle, text, color=info.rgb_float,
                    ha="center", va="center", fontsize=9)
    return _save_png(figure, path)


def _content_box(arrays: Sequence[np.ndarray], margin: int = 4) -> tuple[slice, slice, slice]:
    """The bounding box of the non-zero voxels of all ``arrays`` plus ``margin`` voxels (all of it if empty)."""
    occupied = np.zeros(arrays[0].shape, dtype=bool)
    for array in arrays:
        occupied |= array != 0
    if not occupied.any():
        return (slice(None),) * 3
    voxels = np.argwhere(occupied)
    return tuple(slice(max(lo - margin, 0), hi + margin + 1) for lo, hi in zip(voxels.min(0), voxels.max(0)))


def plot_training_curves(log_path: str | os.PathLike, path: str | os.PathLike, *, width_px: int = 960,
                         height_px: int = 360) -> Path:
    """A PNG of ``training_log.csv`` (columns ``epoch,loss,lr,val_loss``, optional ``dice_WT/TC/ET``): losses
    and learning rate (log scale) on the left, validation Dice per region on the right."""

    log = TrainingLog.read(log_path, REGIONS)
    if not log.rows:
        raise BratsUNetError(f"The training log '{log_path}' has no epochs yet; train for at least one epoch.")
    epochs = log.values("epoch")
    figure = _figure(width_px, height_px)
    losses, dice_axes = figure.subplots(1, 2)
    losses.plot(epochs, log.values("loss"), marker=".", label="training loss")
    if not all(math.isnan(v) for v in log.values("val_loss")):
        losses.plot(epochs, log.values("val_loss"), marker=".", label="validation loss")
    losses.set_xlabel("epoch")
    losses.set_ylabel("loss")
    learning_rate = losses.twinx()
    learning_rate.plot(epochs, log.values("lr"), color="grey", linestyle="--", label="learning rate")
    if all(v > 0 for v in log.values("lr")):
        learning_rate.set_yscale("log")
    handles = losses.get_legend_handles_labels()
    extra = learning_rate.get_legend_handles_labels()
    losses.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize=8)
    losses.set_title("Loss")

    dice_axes.set_title("Validation Dice")
    dice_axes.set_xlabel("epoch")
    plotted = False
    for region in REGIONS:
        values = log.values(dice_column(region))
        if not all(math.isnan(v) for v in values):
            dice_axes.plot(epochs, values, marker=".", label=region)
            plotted = True
    if plotted:
        dice_axes.set_ylim(0, 1)
        dice_axes.legend(fontsize=8)
    else:
        dice_axes.text(0.5, 0.5, "no validation Dice in the log", ha="center", va="center",
                       transform=dice_axes.transAxes)
    figure.subplots_adjust(left=0.07, right=0.97, bottom=0.14, top=0.9, wspace=0.3)
    return _save_png(figure, path)


def plot_click_curve(curve: ClickCurve, path: str | os.PathLike, *, width_px: int = 560, height_px: int = 360
                     ) -> Path:
    """A PNG of a click curve (:class:`~BratsUNetLib.evaluation.click_curve.ClickCurve`): mean Dice per region
    against the number of simulated clicks."""
    figure = _figure(width_px, height_px)
    axes = figure.subplots()
    for region, values in curve.mean().items():
        axes.plot(curve.clicks, values, marker="o", label=region)
    axes.set_xlabel("simulated clicks")
    axes.set_ylabel(f"mean Dice ({len(curve.cases)} held-out cases)")
    axes.set_ylim(0, 1)
    axes.legend(fontsize=8)
    figure.subplots_adjust(left=0.14, right=0.97, bottom=0.14, top=0.95)
    return _save_png(figure, path)


# (metric key, table heading, format) in table order; the units are those of metrics.region_metrics.
TABLE_METRICS = (
    ("dice", "Dice", "{:.3f}"),
    ("hd95", "HD95 (mm)", "{:.2f}"),
    ("volume_prediction_ml", "Predicted volume (mL)", "{:.1f}"),
    ("volume_reference_ml", "Reference volume (mL)", "{:.1f}"),
)

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: right; }
th { background: #eee; } td:first-child, th:first-child { text-align: left; }
tr.mean td { font-weight: bold; background: #f6f6f6; }
img { max-width: 100%; margin: 0.5em 0; }
"""


def _metrics_table(case_metrics: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """An HTML table: one row per case and a mean row; per metric one column per region WT, TC, ET."""
    regions = [region for region in REGIONS if any(region in m for m in case_metrics.values())]
    head_top = "".join(f'<th colspan="{len(regions)}">{html.escape(title)}</th>' for _, title, _ in TABLE_METRICS)
    head_regions = "".join(f"<th>{region}</th>" for _ in TABLE_METRICS for region in regions)
    rows = [f'<tr><th rowspan="2">Case</th>{head_top}</tr>', f"<tr>{head_regions}</tr>"]

    def cells(metrics: Mapping[str, Mapping[str, float]]) -> str:
        return "".join(f"<td>{fmt.format(metrics[region][key])}</td>" for key, _, fmt in TABLE_METRICS
                       for region in regions)

    for case, metrics in case_metrics.items():
        rows.append(f"<tr><td>{html.escape(str(case))}</td>{cells(metrics)}</tr>")
    if len(case_metrics) > 1:
        rows.append(f'<tr class="mean"><td>Mean of {len(case_metrics)} cases</td>'
                    f"{cells(mean_metrics(list(case_metrics.values())))}</tr>")
    return "<table>\n" + "\n".join(rows) + "\n</table>"


def _relative_src(image: str | os.PathLike, page: Path) -> str:
    """``image`` as a link relative to the page's folder, so the page and its PNGs can be moved together
    (URL-quoted, as file names may hold spaces or ``#``)."""
    relative = Path(os.path.relpath(Path(image).resolve(), page.resolve().parent)).as_posix()
    return html.escape(urllib.parse.quote(relative), quote=True)


def write_html_report(path: str | os.PathLike, case_metrics: Mapping[str, Mapping[str, Mapping[str, float]]], *,
                      curves_png: str | os.PathLike | None = None,
                      slice_pngs: Mapping[str, str | os.PathLike] | None = None,
                      title: str = "BratsUNet report", notes: Sequence[str] = ()) -> Path:
    """An HTML page: ``notes`` (one paragraph each), the metrics table of ``case_metrics`` (``{case id:
    region_metrics(...)}``, with a mean row), the training curves PNG and one slices PNG per case.

    The page is self-contained apart from the PNGs it links with paths relative to its own folder.
    """
    page = Path(path)
    parts = [f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>',
             f"<style>{_STYLE}</style>\n</head>\n<body>", f"<h1>{html.escape(title)}</h1>"]
    parts += [f"<p>{html.escape(note)}</p>" for note in notes]
    if case_metrics:
        parts += ["<h2>Segmentation metrics</h2>",
                  "<p>Regions: WT whole tumour (labels 1, 2, 4), TC tumour core (1, 4), ET enhancing tumour (4). "
                  "Dice and HD95 follow the BraTS 2020 conventions (both empty: Dice 1, HD95 0; one empty: Dice 0, "
                  "HD95 373.13 mm).</p>",
                  _metrics_table(case_metrics)]
    if curves_png is not None:
        parts += ["<h2>Training</h2>", f'<img src="{_relative_src(curves_png, page)}" alt="Training curves">']
    if slice_pngs:
        parts.append("<h2>Cases</h2>")
        for case, png in slice_pngs.items():
            parts += [f"<h3>{html.escape(str(case))}</h3>",
                      f'<img src="{_relative_src(png, page)}" alt="Slices of {html.escape(str(case), quote=True)}">']
    parts.append("</body>\n</html>\n")
    return write_text_atomic(page, "\n".join(parts))
