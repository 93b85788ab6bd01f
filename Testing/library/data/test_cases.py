"""The data pipeline: case sources and their checks, preprocessing cache, per-sample randomness, sampler."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from BratsUNetLib.training.augmentation import split_pipeline
from BratsUNetLib.config.loading import dataset_options
from BratsUNetLib.data.cases import Case, check_cases, file_cases
from BratsUNetLib.data.cache import PreparedCases
from BratsUNetLib.training.samples import EpochSampler, SampleDataset, make_loader
from BratsUNetLib.errors import BratsUNetError, ConfigError, ImageError
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.phantoms.generate import MODALITIES, generate_case, write_case

SHAPE = (40, 40, 40)


def options(**dataset):
    base = {"name": "SegmentationDataset", "labels": [2, 1, 4], "setup_label_hierarchy": True,
            "normalization_kwargs": {"channel_wise": True}}
    return dataset_options({"dataset": {**base, **dataset}}, "training")


def memory_case(seed=0, case_id=None):
    phantom = generate_case(SHAPE, seed=seed)
    image = np.stack([phantom.images[m] for m in MODALITIES]).astype(np.float32)
    return Case(case_id or f"mem{seed}", image, phantom.affine, phantom.label)


def file_entry(folder, seed=0):
    paths = write_case(generate_case(SHAPE, seed=seed), folder, f"BraTS_{seed:03d}")
    return {"image": [str(paths[m]) for m in MODALITIES], "label": str(paths["seg"])}


class Messages(ProgressReporter):
    def __init__(self):
        super().__init__("none")
        self.lines = []

    def message(self, text):
        self.lines.append(text)


def prepared(cases, opts, mode="memory", folder=None):
    cached, per_sample = split_pipeline(opts)
    return PreparedCases(cases, opts, cached, mode, folder), per_sample


# ----------------------------------------------------------------------------------------- sources and checks

def test_file_lists_become_cases_named_like_the_original_outputs(tmp_path):
    cases = file_cases([file_entry(tmp_path, 0)], "training")
    assert cases[0].id == "BraTS_000_flair"
    assert cases[0].n_channels == 4 and cases[0].has_label
    loaded = cases[0].load()
    assert loaded.image.shape == (4, *SHAPE) and loaded.image.dtype == np.float32
    assert set(np.unique(loaded.label)) <= {0, 1, 2, 4}


def test_missing_files_are_reported_together_before_anything_runs(tmp_path):
    entry = file_entry(tmp_path, 0)
    broken = {"image": [entry["image"][0], str(tmp_path / "nope_t1.nii.gz"), *entry["image"][2:]],
              "label": str(tmp_path / "nope_seg.nii.gz")}
    with pytest.raises(ImageError, match="2 file.*do not exist.*nope_t1.nii.gz.*nope_seg.nii.gz"):
        file_cases([entry, broken], "validation")


@pytest.mark.parametrize("cases, message", [
    ([], "training list is empty"),
    ([Case("three", np.zeros((3, 8, 8, 8), np.float32), np.eye(4), np.zeros((8, 8, 8), np.uint8))],
     "has 3 image channel.*model takes 4"),
    ([Case("unlabelled", np.zeros((4, 8, 8, 8), np.float32), np.eye(4))], "has no label"),
])
def test_unusable_case_lists_are_rejected(cases, message):
    with pytest.raises(BratsUNetError, match=message):
        check_cases(cases, "training", in_channels=4, need_labels=True)


def test_label_values_outside_the_labels_fail_naming_the_case():
    case = memory_case(0)
    case.label[0, 0, 0] = 3
    cache, _ = prepared([case], options())
    with pytest.raises(ImageError, match=r"mem0.*label values \[3\]"):
        cache.prepare()


def test_an_unreadable_image_fails_in_a_worker_with_a_one_line_message(tmp_path):
    entry = file_entry(tmp_path, 0)
    with open(entry["image"][2], "wb") as stream:
        stream.write(b"not a nifti file at all")
    cache, _ = prepared(file_cases([entry]), options())
    with pytest.raises(ImageError) as caught:
        cache.prepare(n_workers=1)
    assert "t1ce.nii.gz" in str(caught.value) and "not a readable image" in str(caught.value)
    assert "\n" not in str(caught.value) and "Traceback" not in str(caught.value)


# ----------------------------------------------------------------------------------------------- preprocessing

def test_preprocessing_crops_resizes_and_builds_region_channels_with_the_affine():
    case = memory_case(1)
    original = case.image.copy()
    cache, _ = prepared([case], options(crop_foreground=True, desired_shape=[32, 32, 32], resample=True))
    cache.prepare()
    item = cache[0]
    assert item["image"].shape == (4, 32, 32, 32) and item["image"].dtype == torch.float32
    assert item["label"].shape == (3, 32, 32, 32) and item["label"].dtype == torch.uint8
    wt, tc, et = item["label"].bool()
    assert wt.any() and bool((tc <= wt).all()) and bool((et <= tc).all())  # nested regions
    # Channel-wise z-scores, and the caller's array untouched (MONAI normalizes in place).
    assert np.allclose(item["image"].flatten(1).mean(1), 0, atol=1e-4)
    assert np.array_equal(case.image, original)
    # The affine follows the crop and resize: voxel (0,0,0) is the corner of the brain's bounding box, and the
    # voxel size grows by the resize factor.
    assert not np.allclose(item["affine"].numpy(), case.affine)
    assert item["meta"]["original_affine"] == case.affine.tolist()


def test_pad_crop_keeps_the_grid_spacing_and_translates_the_affine():
    case = memory_case(2)
    cache, _ = prepared([case], options(desired_shape=[32, 48, 40]))
    affine = cache[0]["affine"].numpy()
    assert cache[0]["image"].shape == (4, 32, 48, 40)
    assert np.allclose(affine[:3, :3], case.affine[:3, :3])
    # Centre crop of 4 voxels on X, pad of 4 on Y: world position of voxel (4, -4, 0) of the original grid.
    assert np.allclose(affine[:3, 3], (case.affine @ [4, -4, 0, 1])[:3])


def test_disk_cache_round_trips_and_detects_stale_entries(tmp_path):
    entry = file_entry(tmp_path / "data", 3)
    cases = file_cases([entry])
    opts = options(crop_foreground=True, desired_shape=[32, 32, 32], resample=True)
    memory, _ = prepared(cases, opts)
    disk, _ = prepared(cases, opts, "disk", tmp_path / "cache")
    disk.prepare()
    files = list((tmp_path / "cache").glob("*.pt"))
    assert len(files) == 1 and files[0].name.startswith("BraTS_003_flair-")
    fresh, _ = prepared(cases, opts, "disk", tmp_path / "cache")  # a new run reads the file
    for key in ("image", "label", "affine"):
        assert torch.equal(fresh[0][key], memory[0][key])
    assert fresh[0]["meta"] == memory[0]["meta"]

    messages = Messages()
    unchanged, _ = prepared(cases, opts, "disk", tmp_path / "cache")
    unchanged.prepare(reporter=messages)
    assert messages.lines == []

    # Another label file at the same path (new contents and modification time) makes the entry stale.
    label = generate_case(SHAPE, seed=4).label
    write_case(generate_case(SHAPE, seed=4), tmp_path / "other", "x")
    (tmp_path / "other" / "x" / "x_seg.nii.gz").replace(entry["label"])
    changed, _ = prepared(file_cases([entry]), opts, "disk", tmp_path / "cache")
    changed.prepare(reporter=messages)
    assert len(messages.lines) == 1 and "out of date" in messages.lines[0]
    reference = memory_case(3)
    reference.label = label
    expected, _ = prepared([reference], opts)
    assert torch.equal(changed[0]["label"], expected[0]["label"])

    # So do other dataset options.
    messages.lines.clear()
    other, _ = prepared(cases, options(desired_shape=[32, 32, 32]), "disk", tmp_path / "cache")
    other.prepare(reporter=messages)
    assert "out of date" in messages.lines[0] and other[0]["image"].shape == (4, 32, 32, 32)


# ------------------------------------------------------------------------------------------ per-sample randomness

def test_random_crop_and_augmentation_are_reproducible_per_seed_and_leave_the_cache_alone():
    opts = options(random_crop=True, desired_shape=[24, 24, 24],
                   spatial_augmentations=[{"name": "RandAffined", "prob": 1.0, "rotate_range": [0.3, 0.3, 0.3]}],
                   intensity_augmentations=[{"name": "RandScaleIntensityd", "factors": 0.2, "prob": 1.0}])
    cache, per_sample = prepared([memory_case(5)], opts)
    cache.prepare()
    stored = cache[0]["image"].clone()
    dataset = SampleDataset(cache, per_sample)
    first, again, other = dataset[(0, 11)], dataset[(0, 11)], dataset[(0, 12)]
    assert first["image"].shape == (4, 24, 24, 24) and first["label"].shape == (3, 24, 24, 24)
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["label"], again["label"])
    assert not torch.equal(first["image"], other["image"])
    # Labels move with the image by nearest neighbour: still 0/1 region channels.
    assert set(torch.unique(other["label"]).tolist()) <= {0.0, 1.0}
    # The cached volume is neither normalized (the patch is, after the random steps) nor changed by sampling.
    assert torch.equal(cache[0]["image"], stored) and stored.mean() > 1
    assert abs(float(first["image"].mean())) < 0.3


def test_sampler_is_a_function_of_seed_epoch_and_pass():
    sampler = EpochSampler(5, seed=7)
    sampler.set_epoch(3)
    epoch3 = list(sampler)
    assert sorted(index for index, _ in epoch3) == [0, 1, 2, 3, 4]
    assert list(sampler) == epoch3
    sampler.set_epoch(3, iteration=2)
    assert list(sampler) != epoch3
    sampler.set_epoch(4)
    assert list(sampler) != epoch3
    fresh = EpochSampler(5, seed=7)
    fresh.set_epoch(3)
    assert list(fresh) == epoch3  # nothing carried over from earlier epochs: resuming is exact

    more = EpochSampler(3, seed=1, n_samples=7)  # samples_per_epoch above the number of cases
    assert len(list(more)) == 7 and {i for i, _ in more} == {0, 1, 2}

    ranks = [EpochSampler(5, seed=7, rank=r, world_size=2) for r in (0, 1)]
    for sampler in ranks:
        sampler.set_epoch(3)
    shares = [list(s) for s in ranks]
    assert len(shares[0]) == len(shares[1]) == 3  # padded to an even split
    assert set(shares[0] + shares[1]) == set(epoch3)


def test_workers_give_the_same_batches_as_the_main_process():
    opts = options(random_crop=True, desired_shape=[16, 16, 16],
                   intensity_augmentations=[{"name": "RandShiftIntensityd", "offsets": 0.5, "prob": 1.0}])
    cache, per_sample = prepared([memory_case(6), memory_case(7)], opts)
    cache.prepare()
    dataset = SampleDataset(cache, per_sample)

    def batches(workers):
        sampler = EpochSampler(2, seed=3)
        sampler.set_epoch(2)
        loader = make_loader(dataset, sampler, batch_size=1, n_workers=workers)
        return [batch["image"] for batch in loader]

    in_process, in_workers = batches(0), batches(2)
    assert all(torch.equal(a, b) for a, b in zip(in_process, in_workers, strict=True))


def test_loader_without_workers_ignores_prefetch_factor():
    cache, per_sample = prepared([memory_case(8)], options())
    loader = make_loader(SampleDataset(cache, per_sample), EpochSampler(1, seed=0), 1, n_workers=0,
                         prefetch_factor=2)
    assert isinstance(loader, DataLoader)
    assert next(iter(loader))["image"].shape == (1, 4, *SHAPE)


def test_unknown_augmentation_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match="spatial_augmentations"):
        split_pipeline(options(spatial_augmentations=[{"name": "RandomRotate"}]))
