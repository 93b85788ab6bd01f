"""The click curve: how a segmentation's Dice changes with simulated clicks, as a user would refine it.

For each case the curve starts from a segmentation (the automatic result a user sees first). Each click is
placed by the click simulator (:func:`BratsUNetLib.guidance.next_click`, deterministic: the largest error against
the reference, at its innermost voxel, in the region whose error it is), and the guided model refines the
current segmentation with every click so far, as the Slicer panel does with its point lists. The Dice of each
region (BraTS conventions, :func:`~.metrics.dice`) is read after 0, 1, 2, 3, 5 and 10 clicks.

Used by the demo's report and by ``benchmarks/bench_clicks.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from BratsUNetLib.data.labels import REGIONS, labels_to_regions
from BratsUNetLib.evaluation.metrics import dice
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.guidance import Click, next_click
from BratsUNetLib.inference.loaded_model import LoadedModel
from BratsUNetLib.inference.options import InferenceOptions
from BratsUNetLib.inference.refinement import prepare, refine

CLICK_COUNTS = (0, 1, 2, 3, 5, 10)
LOW_DICE = 0.85  # "where the automatic Dice is below 0.85": the cases the gain is judged on


@dataclass
class ClickCurve:
    """Dice after each of ``clicks`` simulated clicks: ``cases[case][region]`` is one value per entry of
    ``clicks`` (region WT, TC or ET)."""

    clicks: tuple[int, ...] = CLICK_COUNTS
    cases: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def mean(self) -> dict[str, list[float]]:
        """Mean Dice per region after each number of clicks."""
        return {region: np.mean([curve[region] for curve in self.cases.values()], axis=0).tolist()
                for region in REGIONS}

    def gain(self, clicks: int = 5, below: float = LOW_DICE) -> dict[str, float | None]:
        """Mean Dice gain per region after ``clicks`` clicks over the cases whose Dice without clicks is below
        ``below``; None for a region with no such case."""
        at = self.clicks.index(clicks)
        gains: dict[str, float | None] = {}
        for region in REGIONS:
            rows = [curve[region] for curve in self.cases.values() if curve[region][0] < below]
            gains[region] = float(np.mean([row[at] - row[0] for row in rows])) if rows else None
        return gains

    def largest_fall(self) -> dict[str, float]:
        """Per region, the largest fall of the mean Dice from one number of clicks to the next (0 when it never
        falls)."""
        return {region: float(max(0.0, -float(np.min(np.diff(values))))) for region, values in self.mean().items()}

    def as_dict(self) -> dict:
        return {"clicks": list(self.clicks), "mean_dice": self.mean(), "per_case_dice": self.cases,
                f"gain_after_5_clicks_where_below_{LOW_DICE}": self.gain(),
                "largest_fall_of_a_mean": self.largest_fall()}


def case_curve(model: LoadedModel, image: np.ndarray, affine: np.ndarray, start: np.ndarray, reference: np.ndarray,
               clicks: Sequence[int] = CLICK_COUNTS, options: InferenceOptions | None = None
               ) -> dict[str, list[float]]:
    """One case's curve: ``image`` ``(C, X, Y, Z)`` in the guided ``model``'s channel order on the grid
    ``affine``, ``start`` and ``reference`` BraTS 2020 label maps ``(X, Y, Z)`` on that grid. Returns the Dice per region after each count of ``clicks``."""
    prepared = prepare(model, image, affine)  # once: the images do not change between clicks
    truth = labels_to_regions(reference)
    labels, given = start, []
    curve: dict[str, list[float]] = {region: [] for region in REGIONS}
    for done in range(max(clicks) + 1):
        current = labels_to_regions(labels)
        if done in clicks:
            for index, region in enumerate(REGIONS):
                curve[region].append(dice(current[index], truth[index]))
        if done == max(clicks):
            break
        found = next_click(current, truth)
        if found is None:  # nothing left to correct: the rest of the curve stays where it is
            continue
        point = tuple(float(v) for v in (affine @ np.array([*found.index, 1.0]))[:3])
        given.append(Click(point, found.region, found.positive))  # type: ignore[arg-type]
        labels = refine(model, prepared, affine, labels, given, options).labels
    return curve


def click_curve(model: LoadedModel, cases: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                clicks: Sequence[int] = CLICK_COUNTS, options: InferenceOptions | None = None,
                reporter: ProgressReporter | None = None) -> ClickCurve:
    """:func:`case_curve` of each case: ``cases[case_id] = (image, affine, start, reference)``."""
    curve = ClickCurve(tuple(clicks))
    if reporter is not None:
        reporter.start("click curve", len(cases))
    for done, (case_id, (image, affine, start, reference)) in enumerate(cases.items(), start=1):
        curve.cases[case_id] = case_curve(model, image, affine, start, reference, clicks, options)
        if reporter is not None:
            reporter.advance("click curve", done, len(cases))
    return curve
