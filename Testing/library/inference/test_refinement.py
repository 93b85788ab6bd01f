"""Click-guided refinement (``BratsUNetLib.inference.refinement``) with a network whose answer is known: it keeps
its prior (the current segmentation) and adds or removes where a click's map is above one half. What is tested is
everything around the network: the click's place on a left-handed grid, the voxel order, the recomputed box,
labels kept outside it, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segmentation_cases import LEFT_HANDED, SHAPE, ellipsoid, model_from, tiny_config

from BratsUNetLib.config.loading import load_config
from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.guidance import Click
from BratsUNetLib.inference.pipeline import segment_case
from BratsUNetLib.inference.refinement import refine

GUIDANCE = {"sigma": 2, "margin": 6, "max_edge": 32}


class ClickFollower(torch.nn.Module):
    """Region logits: the prior (channels 10-12), plus the region's positive click map, minus its negative one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        regions = [x[:, 10 + r] + x[:, 4 + 2 * r] - x[:, 5 + 2 * r] for r in range(3)]
        return 20 * (torch.stack(regions, dim=1) - 0.5)


def guided_model():
    config = tiny_config()
    config["model"]["in_channels"] = 13
    config["guidance"] = dict(GUIDANCE)
    return model_from(ClickFollower(), load_config(config))


def ras(index):
    """The RAS point (mm) of a voxel index on the test grid."""
    return tuple(float(v) for v in (LEFT_HANDED @ np.array([*index, 1.0]))[:3])


@pytest.fixture
def case():
    rng = np.random.default_rng(0)
    image = rng.normal(100, 5, (4, *SHAPE)).astype(np.float32)
    labels = np.zeros(SHAPE, np.uint8)
    labels[ellipsoid((27, 14, 20), (5, 5, 5))] = 2  # an edema the automatic result found
    labels[ellipsoid((10, 30, 10), (2, 2, 2))] = 2  # and a small false one
    return image, labels


def test_a_positive_click_in_a_missed_region_adds_it_there_and_only_there(case):
    image, labels = case
    result = refine(guided_model(), image, LEFT_HANDED, labels, [Click(ras((30, 14, 20)), "TC", True)])
    added = (result.labels != labels)
    assert result.labels[30, 14, 20] == 1  # a tumour core inside the edema: necrotic core (label 1)
    assert added.any() and np.all(np.argwhere(added) >= [27, 11, 17]) and np.all(np.argwhere(added) <= [33, 17, 23])
    # Outside the recomputed box nothing changed, and the box holds the click with its margin.
    outside = np.ones(SHAPE, bool)
    outside[result.box] = False
    np.testing.assert_array_equal(result.labels[outside], labels[outside])
    assert all(s.start <= i - 6 and i + 6 < s.stop for s, i in zip(result.box, (30, 14, 20)))


def test_a_negative_click_on_a_false_region_removes_it(case):
    image, labels = case
    result = refine(guided_model(), image, LEFT_HANDED, labels, [Click(ras((10, 30, 10)), "WT", False)])
    assert not result.labels[ellipsoid((10, 30, 10), (2, 2, 2))].any()
    np.testing.assert_array_equal(result.labels[ellipsoid((27, 14, 20), (5, 5, 5))], 2)  # the true one stays


def test_a_click_far_from_the_tumour_changes_nothing_outside_its_box(case):
    image, labels = case
    result = refine(guided_model(), image, LEFT_HANDED, labels, [Click(ras((40, 4, 32)), "ET", False)])
    np.testing.assert_array_equal(result.labels, labels)
    # Every box has max_edge voxels per edge (one network input shape): here against the volume's far end.
    assert result.box[0] == slice(SHAPE[0] - 32, SHAPE[0]) and all(s.stop - s.start == 32 for s in result.box)


def test_refusals_are_one_line(case):
    image, labels = case
    with pytest.raises(BratsUNetError, match="lies outside the image"):
        refine(guided_model(), image, LEFT_HANDED, labels, [Click((500.0, 0.0, 0.0), "WT", True)])
    with pytest.raises(BratsUNetError, match="No click given"):
        refine(guided_model(), image, LEFT_HANDED, labels, [])
    with pytest.raises(BratsUNetError, match=r"grid \(44, 40, 35\) is not the images'"):
        refine(guided_model(), image, LEFT_HANDED, labels[..., :-1], [Click(ras((1, 1, 1)), "WT", True)])
    unguided = model_from(ClickFollower(), tiny_config())
    with pytest.raises(BratsUNetError, match="takes no clicks"):
        refine(unguided, image, LEFT_HANDED, labels, [Click(ras((1, 1, 1)), "WT", True)])
    wrong = labels.copy()
    wrong[0, 0, 0] = 7
    with pytest.raises(BratsUNetError, match=r"label values \[7\]"):
        refine(guided_model(), image, LEFT_HANDED, wrong, [Click(ras((1, 1, 1)), "WT", True)])


def test_a_guided_model_segments_without_clicks(tmp_path):
    """Without clicks a guided model sees empty click maps and an empty prior (as trained for its automatic
    samples): here, the click follower finds nothing, and runs."""
    from segmentation_cases import blob_case

    paths, _blob = blob_case(tmp_path)
    result = segment_case(paths, [guided_model()])
    assert result.labels.shape == SHAPE and not result.labels.any()


def test_images_prepared_once_give_the_same_answer(case):
    """A session of clicks prepares the images once (``prepare``); each click then gives what a call with the
    raw images gives."""
    from BratsUNetLib.inference.refinement import prepare

    image, labels = case
    model = guided_model()
    prepared = prepare(model, image, LEFT_HANDED)
    for click in (Click(ras((30, 14, 20)), "TC", True), Click(ras((10, 30, 10)), "WT", False)):
        expected = refine(model, image, LEFT_HANDED, labels, [click])
        again = refine(model, prepared, LEFT_HANDED, labels, [click])
        np.testing.assert_array_equal(again.labels, expected.labels)
        assert again.box == expected.box


class EdemaEverywhere(ClickFollower):
    """The click follower, but its whole tumour covers every voxel it sees."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        logits[:, 0] = 10.0
        return logits


def test_a_click_changes_its_region_and_those_inside_it_only(case):
    """A TC click may move TC and ET; the edema boundary in its box stays the user's, however the network
    answers for WT there (it grows only where the new core needs it)."""
    image, labels = case
    model = model_from(EdemaEverywhere(), guided_model().config)
    result = refine(model, image, LEFT_HANDED, labels, [Click(ras((32, 14, 20)), "TC", True)])
    assert result.labels[32, 14, 20] == 1
    gained = (labels == 0) & (result.labels != 0)
    assert gained.any() and np.all(result.labels[gained] == 1)  # nothing new is edema: only the new core
    wt_click = refine(model, image, LEFT_HANDED, labels, [Click(ras((32, 14, 20)), "WT", True)])
    box = np.zeros(SHAPE, bool)
    box[wt_click.box] = True
    assert np.all(wt_click.labels[box] != 0)  # a WT click: the network's WT, here the whole box


def test_the_click_curve_follows_the_simulated_clicks(case):
    """``evaluation.click_curve`` (the demo's and bench_clicks' curve): Dice per region after 0, 1, 2, 3, 5, 10
    clicks, each placed on the largest error. The click follower corrects where it is clicked, so the curve
    starts at the start's Dice and rises."""
    from BratsUNetLib.data.labels import labels_to_regions
    from BratsUNetLib.evaluation.click_curve import CLICK_COUNTS, click_curve
    from BratsUNetLib.evaluation.metrics import dice

    image, labels = case
    reference = np.zeros(SHAPE, np.uint8)
    reference[ellipsoid((27, 14, 20), (5, 5, 5))] = 2
    reference[ellipsoid((27, 14, 20), (2, 2, 2))] = 1  # a core the start missed; the false edema is not there
    curve = click_curve(guided_model(), {"C": (image, LEFT_HANDED, labels, reference)})
    values = curve.cases["C"]
    start, truth = labels_to_regions(labels), labels_to_regions(reference)
    assert [len(values[region]) for region in ("WT", "TC", "ET")] == [len(CLICK_COUNTS)] * 3
    assert values["WT"][0] == dice(start[0], truth[0]) and values["TC"][0] == 0.0
    assert values["TC"][-1] > 0.5 and values["WT"][-1] > values["WT"][0]
    assert curve.mean()["TC"] == values["TC"] and curve.gain()["TC"] == values["TC"][CLICK_COUNTS.index(5)]
