"""Inference on one case: geometry of the inverse preprocessing, TTA, ensembles, activations, labels, cache."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from library_support import TINY_CONFIG

from BratsUNetLib.inference import pipeline as inference
from BratsUNetLib.models.checkpoint import save_checkpoint
from BratsUNetLib.config.loading import load_config
from BratsUNetLib.hardware.devices import resolve_device
from BratsUNetLib.errors import BratsUNetError, ConfigError
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.inference.pipeline import InferenceOptions, LoadedModel, load_models, segment_case
from BratsUNetLib.models.networks import build_network

CHANNELS = ["flair", "t1", "t1ce", "t2"]
# Left-handed (first axis runs towards the left) with unequal voxel sizes: a flip or transpose bug shows.
LEFT_HANDED = np.array([[-1.0, 0, 0, 30], [0, 1.2, 0, -20], [0, 0, 1.1, 10], [0, 0, 0, 1]])
SHAPE = (44, 40, 36)
BLOB_CENTRE = (27, 14, 20)


def tiny_config(**dataset_changes) -> dict:
    config = copy.deepcopy(TINY_CONFIG)
    config["dataset"].update(dataset_changes)
    return load_config(config)


def ellipsoid(centre, radii, shape=SHAPE) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float64)
    offsets = (grid - np.reshape(centre, (3, 1, 1, 1))) / np.reshape(radii, (3, 1, 1, 1))
    return (offsets ** 2).sum(0) < 1


def blob_case(folder: Path, seed: int = 0, extra_blobs=(), affine=LEFT_HANDED) -> tuple[dict, np.ndarray]:
    """A bright blob in a 'brain' ellipsoid, the same in all four channels; returns (paths, blob mask)."""
    rng = np.random.default_rng(seed)
    brain = ellipsoid((22, 20, 18), (17, 15, 13))
    blob = ellipsoid(BLOB_CENTRE, (4, 4, 4))
    for centre, radius in extra_blobs:
        blob |= ellipsoid(centre, (radius,) * 3)
    image = np.where(brain, 100.0, 0.0) + np.where(blob, 400.0, 0.0) + rng.normal(0, 3, SHAPE) * brain
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in CHANNELS:
        paths[name] = folder / f"case_{name}.nii.gz"
        nib.save(nib.Nifti1Image(image.astype(np.float32), affine), paths[name])
    return paths, blob


class BlobDetector(torch.nn.Module):
    """Three identical WT/TC/ET logits: high where the (z-scored) input channel is far above the mean."""

    def __init__(self, channel: int = 0):
        super().__init__()
        self.channel = channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20 * (x[:, self.channel:self.channel + 1] - 3.0).repeat(1, 3, 1, 1, 1)


class Ramp(torch.nn.Module):
    """Logits that grow along every spatial axis whatever the input: not mirror-symmetric."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grids = torch.meshgrid(*[torch.linspace(-1, 1, n) for n in x.shape[2:]], indexing="ij")
        return (3 * (grids[0] + 2 * grids[1] + 3 * grids[2]))[None, None].repeat(x.shape[0], 3, 1, 1, 1)


def model_from(network: torch.nn.Module, config: dict, channels=CHANNELS) -> LoadedModel:
    return LoadedModel(Path("test.pth"), network.eval(), {"config": config, "channels": channels}, torch.device("cpu"))


def saved_model(path: Path, config: dict, seed: int, channels=CHANNELS) -> Path:
    torch.manual_seed(seed)
    save_checkpoint(path, build_network(config["model"]), config=config, channels=channels)
    return path


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.mark.parametrize("sliding_window, dataset, exact", [
    (False, {}, False),  # resize to 32³ and back
    (True, {}, True),  # native resolution
    (False, {"resample": False}, True),  # centre pad/crop to 32³
    (False, {"orientation": "RAS"}, False),  # reoriented (the first axis flipped), then resized
])
def test_tumour_probabilities_land_on_the_tumour_voxels_of_a_left_handed_image(tmp_path, sliding_window, dataset,
                                                                               exact):
    paths, blob = blob_case(tmp_path)
    model = model_from(BlobDetector(), tiny_config(**dataset))
    result = segment_case(paths, [model], InferenceOptions(sliding_window=sliding_window))

    assert result.labels.shape == SHAPE and result.labels.dtype == np.uint8
    np.testing.assert_allclose(result.affine, LEFT_HANDED)
    found = result.labels == 4  # all three regions present: enhancing tumour in BraTS 2020 labels
    assert set(np.unique(result.labels)) == {0, 4}
    # Resizing 32³ and back blurs the edge by about a voxel; at native resolution it is exact.
    assert dice(found, blob) > (0.99 if exact else 0.8)
    np.testing.assert_allclose(np.argwhere(found).mean(0), BLOB_CENTRE, atol=0.5)
    assert result.volumes_ml["WT"] == pytest.approx(found.sum() * 1.0 * 1.2 * 1.1 / 1000)
    assert result.volumes_ml["NCR"] == result.volumes_ml["ED"] == 0.0


def test_channels_on_other_grids_are_resampled_onto_the_reference(tmp_path):
    """The detector looks only at T2, stored on a coarser oblique grid: the result is still on FLAIR's voxels."""
    paths, blob = blob_case(tmp_path)
    image = nib.load(paths["t2"])
    rotation = np.array([[np.cos(0.2), -np.sin(0.2), 0], [np.sin(0.2), np.cos(0.2), 0], [0, 0, 1]])
    oblique = np.eye(4)
    oblique[:3, :3] = rotation @ np.diag([0.9, 0.9, 1.0])
    oblique[:3, 3] = LEFT_HANDED[:3, 3] + [-40, -5, -2]
    from scipy import ndimage
    to_source = np.linalg.inv(image.affine) @ oblique  # oblique voxel -> original voxel
    data = ndimage.affine_transform(image.get_fdata(), to_source[:3, :3], to_source[:3, 3], output_shape=(60, 60, 40),
                                    order=1)
    nib.save(nib.Nifti1Image(data.astype(np.float32), oblique), paths["t2"])

    result = segment_case(paths, [model_from(BlobDetector(channel=3), tiny_config())],
                          InferenceOptions(sliding_window=True))
    assert result.labels.shape == SHAPE
    assert dice(result.labels > 0, blob) > 0.85


def test_mirror_tta_averages_the_eight_flips(tmp_path):
    paths, _ = blob_case(tmp_path, affine=np.diag([1.0, 1.0, 1.0, 1.0]))
    config = tiny_config(desired_shape=None, crop_foreground=False)  # only normalization: outputs stay in place
    model = model_from(Ramp(), config)

    plain = segment_case(paths, [model], InferenceOptions()).probabilities
    tta = segment_case(paths, [model], InferenceOptions(tta=True)).probabilities
    assert plain.shape == (3, *SHAPE)
    for axis in (1, 2, 3):
        assert not np.allclose(plain, np.flip(plain, axis), atol=1e-3)
        np.testing.assert_allclose(tta, np.flip(tta, axis), atol=1e-5)


def test_ensemble_is_the_mean_of_its_models_and_native_shapes_that_do_not_divide_work(tmp_path):
    paths, _ = blob_case(tmp_path)
    config = tiny_config(desired_shape=None)  # whole volume at native size: the crop is not a multiple of 4
    models = load_models([saved_model(tmp_path / f"fold{i}.pth", config, seed=i) for i in (1, 2)])
    options = InferenceOptions()

    each = [segment_case(paths, [model], options).probabilities for model in models]
    both = segment_case(paths, models, options)
    assert both.probabilities.shape == (3, *SHAPE)
    assert not np.allclose(each[0], each[1])
    np.testing.assert_allclose(both.probabilities, (each[0] + each[1]) / 2, atol=1e-6)


def test_ensemble_members_may_order_their_channels_differently(tmp_path):
    paths, blob = blob_case(tmp_path)
    config = tiny_config()
    first = model_from(BlobDetector(channel=0), config)
    reordered = model_from(BlobDetector(channel=3), config, channels=["t2", "t1", "t1ce", "flair"])
    result = segment_case(paths, [first, reordered], InferenceOptions(sliding_window=True))
    assert dice(result.labels > 0, blob) > 0.99


def test_activation_comes_from_the_loss_and_can_be_overridden(tmp_path):
    paths, _ = blob_case(tmp_path)
    config = tiny_config()
    config["loss"] = {"name": "DiceLoss", "softmax": True}
    model = model_from(Ramp(), config)

    softmax = segment_case(paths, [model], InferenceOptions(), with_labels=False).probabilities
    inside = softmax.sum(0) > 0  # outside the foreground crop the inverse pads with zeros
    np.testing.assert_allclose(softmax.sum(0)[inside], 1.0, atol=1e-5)
    raw = segment_case(paths, [model], InferenceOptions(activation="none"), with_labels=False).probabilities
    assert raw.min() < -1 and raw.max() > 1


def test_brats2021_labels_and_scheme_from_the_config(tmp_path):
    paths, _ = blob_case(tmp_path)
    options = InferenceOptions(sliding_window=True)
    assert set(np.unique(segment_case(paths, [model_from(BlobDetector(), tiny_config())],
                                      InferenceOptions(sliding_window=True, scheme="brats2021")).labels)) == {0, 3}
    trained_on_2021 = model_from(BlobDetector(), tiny_config(labels=[2, 1, 3]))
    assert set(np.unique(segment_case(paths, [trained_on_2021], options).labels)) == {0, 3}


def test_tiny_islands_are_removed_on_request(tmp_path):
    paths, _ = blob_case(tmp_path, extra_blobs=[((10, 25, 12), 1.5)])
    model = model_from(BlobDetector(), tiny_config())
    kept = segment_case(paths, [model], InferenceOptions(sliding_window=True)).labels > 0
    cleaned = segment_case(paths, [model], InferenceOptions(sliding_window=True, min_island_voxels=50)).labels > 0
    speck = ellipsoid((10, 25, 12), (1.5,) * 3)
    assert kept[speck].all() and not cleaned[speck].any()
    assert cleaned[ellipsoid(BLOB_CENTRE, (4, 4, 4))].all()


def test_separate_label_channels_take_the_most_probable_label():
    dataset = {"labels": [1, 2, 4], "setup_label_hierarchy": False}
    probabilities = np.zeros((3, 4, 1, 1), dtype=np.float32)
    probabilities[:, 0, 0, 0] = [0.6, 0.2, 0.1]  # label 1
    probabilities[:, 1, 0, 0] = [0.3, 0.2, 0.55]  # label 4
    probabilities[:, 2, 0, 0] = [0.3, 0.3, 0.1]  # nothing above 0.5, but the sum is
    labels = inference.probabilities_to_labels(probabilities, dataset, InferenceOptions())
    assert labels[:, 0, 0].tolist() == [1, 4, 0, 0]
    summed = inference.probabilities_to_labels(probabilities, dataset, InferenceOptions(sum_then_threshold=True))
    assert summed[:, 0, 0].tolist() == [1, 4, 1, 0]
    with pytest.raises(BratsUNetError, match="--sum"):
        inference.probabilities_to_labels(probabilities, {"labels": [2, 1, 4], "setup_label_hierarchy": True},
                                          InferenceOptions(sum_then_threshold=True))


def test_missing_channel_and_mismatched_ensembles_are_user_errors(tmp_path):
    paths, _ = blob_case(tmp_path)
    model = model_from(BlobDetector(), tiny_config())
    with pytest.raises(BratsUNetError, match="t2"):
        segment_case({name: path for name, path in paths.items() if name != "t2"}, [model])
    three = tiny_config()
    three["model"]["in_channels"] = 3
    other = model_from(BlobDetector(), three, channels=["flair", "t1", "t1ce"])
    with pytest.raises(BratsUNetError, match="different channels"):
        segment_case(paths, [model, other])
    with pytest.raises(BratsUNetError, match="4 channels"):
        model_from(BlobDetector(), three)


def test_sliding_window_needs_a_window_size(tmp_path):
    paths, _ = blob_case(tmp_path)
    model = model_from(BlobDetector(), tiny_config(desired_shape=None))
    with pytest.raises(ConfigError, match="sliding-window"):
        segment_case(paths, [model], InferenceOptions(sliding_window=True))


def test_t2f_style_names_are_aliases(tmp_path):
    paths, blob = blob_case(tmp_path)
    aliased = {"t2f": paths["flair"], "t1n": paths["t1"], "t1c": paths["t1ce"], "t2w": paths["t2"]}
    result = segment_case(aliased, [model_from(BlobDetector(), tiny_config())], InferenceOptions(sliding_window=True))
    assert dice(result.labels > 0, blob) > 0.99


def test_models_are_loaded_once_and_reloaded_when_the_file_changes(tmp_path):
    path = saved_model(tmp_path / "model.pth", tiny_config(), seed=0)
    first = load_models([path])[0]
    assert load_models([path])[0] is first
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert load_models([path])[0] is not first


def test_devices():
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(BratsUNetError, match="Unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(BratsUNetError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_the_same_anatomy_stored_in_another_voxel_order_gives_the_same_segmentation(tmp_path):
    """A model sees its training voxel order whatever the file stores: BraTS LPS and a left-handed copy agree."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    paths, _ = blob_case(tmp_path / "lps", affine=lps)
    # The same voxels at the same world points, stored with the second axis reversed (a left-handed affine).
    flipped = lps @ np.array([[1.0, 0, 0, 0], [0, -1, 0, SHAPE[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]])
    flipped_paths = {}
    for name, path in paths.items():
        flipped_paths[name] = tmp_path / f"flipped_{name}.nii.gz"
        nib.save(nib.Nifti1Image(np.asarray(nib.load(path).dataobj)[:, ::-1].copy(), flipped), flipped_paths[name])
    config = tiny_config()
    assert "orientation" not in TINY_CONFIG["dataset"]  # the case this test is about: no orientation in the config
    models = load_models([saved_model(tmp_path / "model.pth", config, seed=3)], device="cpu")

    stored = segment_case(paths, models, InferenceOptions(), with_labels=False).probabilities
    other = segment_case(flipped_paths, models, InferenceOptions(), with_labels=False).probabilities
    np.testing.assert_allclose(other[:, :, ::-1], stored, atol=1e-5)


@pytest.mark.parametrize("available, chosen", [(10 ** 12, "in one pass"), (100_000, "in sliding windows"),
                                               (None, "in sliding windows")])
def test_native_auto_runs_one_pass_when_it_fits_in_memory_else_windows(tmp_path, monkeypatch, available, chosen):
    paths, blob = blob_case(tmp_path)
    monkeypatch.setattr(inference, "available_memory_bytes", lambda device: available)
    model = model_from(BlobDetector(), tiny_config())  # resized to 32³ unless told to run at native resolution
    messages = []
    reporter = ProgressReporter("none")
    reporter.message = messages.append

    result = segment_case(paths, [model], InferenceOptions(native="auto"), reporter)
    assert chosen in result.strategy and messages == [f"Inference: {result.strategy}."]
    assert result.labels.shape == SHAPE and dice(result.labels > 0, blob) > 0.99  # exact: no resize
    np.testing.assert_allclose(result.affine, LEFT_HANDED)
    # A pointwise network gives the same probabilities whether it sees the volume whole or in windows.
    forced = "whole" if "windows" in chosen else "windows"
    other = segment_case(paths, [model], InferenceOptions(native=forced))
    assert ("in one pass" if forced == "whole" else "in sliding windows") in other.strategy
    np.testing.assert_allclose(other.probabilities, result.probabilities, atol=1e-4)


def test_the_memory_a_whole_volume_pass_needs_grows_with_its_voxels_and_the_network_width():
    narrow, wide = (build_network(dict(TINY_CONFIG["model"], filters=filters)) for filters in ([4, 8, 16], [8, 16, 32]))
    small = inference.whole_volume_bytes(narrow, (4, 32, 32, 32), out_channels=3)
    assert inference.whole_volume_bytes(narrow, (4, 64, 64, 64), out_channels=3) == 8 * small
    assert inference.whole_volume_bytes(wide, (4, 32, 32, 32), out_channels=3) > 1.5 * small
    # At least the input, the outputs and the first convolution's feature maps, in float32.
    assert small >= 4 * 32 ** 3 * (4 + 3 + 4)


def test_available_memory_is_known_on_linux_cpus_only():
    available = inference.available_memory_bytes(torch.device("cpu"))
    if os.path.exists("/proc/meminfo"):
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        total = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1]) * 1024
        assert 0 < available <= total
    assert inference.available_memory_bytes(torch.device("meta")) is None


def test_contradictory_strategies_are_a_user_error():
    with pytest.raises(BratsUNetError, match="--sliding-window.*--native whole"):
        InferenceOptions(sliding_window=True, native="whole")
    with pytest.raises(BratsUNetError, match="auto, whole, windows"):
        InferenceOptions(native="patches")
    assert InferenceOptions(sliding_window=True).native_strategy == "windows"
