"""Synthetic BraTS cases: reproducible from the seed, with BraTS labels, nesting, geometry, contrasts and files."""

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from BratsUNetLib.cli import main as cli
from BratsUNetLib.errors import BratsUNetError, ExitCode
from BratsUNetLib.phantoms.generate import MODALITIES, generate_case, generate_cohort, write_case
from BratsUNetLib.phantoms.tumour import Lesion, push_tissue_away

SMALL = (40, 40, 40)
SIX_NEIGHBOURS = ndimage.generate_binary_structure(3, 1)


@pytest.fixture(scope="module")
def small_cases():
    """30 small cases: enough seeds to meet every kind of tumour the generator draws."""
    return [generate_case(SMALL, seed) for seed in range(30)]


def test_same_seed_gives_the_same_case_and_another_seed_a_different_one():
    first, again, other = generate_case(SMALL, 7), generate_case(SMALL, 7), generate_case(SMALL, 8)
    for name in MODALITIES:
        np.testing.assert_array_equal(first.images[name], again.images[name])
        assert not np.array_equal(first.images[name], other.images[name])
    np.testing.assert_array_equal(first.label, again.label)
    assert not np.array_equal(first.label, other.label)
    np.testing.assert_array_equal(first.affine, again.affine)


def test_brats_2020_geometry_and_value_types_by_default():
    case = generate_case()
    assert case.label.shape == (240, 240, 155) and case.label.dtype == np.uint8
    assert set(case.images) == set(MODALITIES)
    for image in case.images.values():
        assert image.shape == (240, 240, 155) and image.dtype == np.int16
    expected = np.diag([-1.0, -1.0, 1.0, 1.0])
    expected[1, 3] = 239  # the origin of BraTS 2020 files
    np.testing.assert_array_equal(case.affine, expected)

    # A skull-stripped adult-sized brain (mm) inside the field of view, in a zero background.
    brain = case.images["t1"] > 0
    voxels = np.argwhere(brain)
    extent = voxels.max(0) - voxels.min(0) + 1
    assert 110 <= extent[0] <= 160 and 140 <= extent[1] <= 200 and 110 <= extent[2] <= 155
    assert voxels.min() > 0 and np.all(voxels.max(0) < np.array([239, 239, 154]))
    for image in case.images.values():
        values = image[brain]
        assert values.min() >= 0 and 100 < np.median(values) < 2000 and values.max() < 5000


def test_labels_are_brats_values_nested_and_inside_the_brain(small_cases):
    for seed, case in enumerate(small_cases):
        label = case.label
        assert set(np.unique(label)) <= {0, 1, 2, 4}, seed
        core = np.isin(label, (1, 4))
        assert core.any() and (label == 2).any(), seed
        # Edema surrounds the core: every neighbour of a core voxel is tumour.
        assert np.all(label[ndimage.binary_dilation(core, SIX_NEIGHBOURS)] > 0), seed
        # Where the tumour enhances, necrosis lies inside the enhancing rim.
        if (label == 4).any():
            assert np.all(np.isin(label[ndimage.binary_dilation(label == 1, SIX_NEIGHBOURS)], (1, 4))), seed
        # No label outside the brain, and no image signal outside it either.
        brain = case.images["t1"] > 0
        assert not np.any((label > 0) & ~brain), seed
        for image in case.images.values():
            assert not np.any((image > 0) & ~ndimage.binary_dilation(brain, iterations=1)), seed


def test_tumours_vary_in_composition_number_and_size(small_cases):
    labels = [case.label for case in small_cases]
    without_enhancing = [i for i, label in enumerate(labels) if not (label == 4).any()]
    without_necrosis = [i for i, label in enumerate(labels) if not (label == 1).any()]
    with_both = [i for i, label in enumerate(labels) if (label == 4).any() and (label == 1).any()]
    multifocal = [i for i, label in enumerate(labels) if ndimage.label(np.isin(label, (1, 4)))[1] > 1]
    assert without_enhancing and without_necrosis and len(with_both) > 15 and multifocal
    core_sizes = [int(np.isin(label, (1, 4)).sum()) for label in labels]
    assert max(core_sizes) > 5 * min(core_sizes)
    centres = np.array([np.argwhere(label > 0).mean(0) for label in labels])
    assert np.all(centres.std(0) > 2)  # positions spread over the brain, not one spot


def test_images_have_tissue_and_glioma_contrasts():
    case = generate_case((96, 96, 96), 4)
    label, images = case.label, {k: v.astype(float) for k, v in case.images.items()}
    # Away from the brain's outline, where partial volume with the background darkens every modality.
    healthy = ndimage.binary_erosion(images["t1"] > 0, iterations=3) & (label == 0)

    def mean(name, mask):
        return images[name][mask].mean()

    # CSF (the darkest T1 voxels of the healthy brain) is dark in T1 and FLAIR but bright in T2.
    csf = healthy & (images["t1"] < np.percentile(images["t1"][healthy], 5))
    assert mean("t2", csf) > 1.3 * mean("t2", healthy)
    assert mean("flair", csf) < 0.75 * mean("flair", healthy)
    # Edema bright in FLAIR and T2; enhancing rim bright in T1ce; the core dark in T1; necrosis dark in T1ce.
    edema, enhancing, necrosis = label == 2, label == 4, label == 1
    assert mean("flair", edema) > 1.25 * mean("flair", healthy)
    assert mean("t2", edema) > 1.25 * mean("t2", healthy)
    assert mean("t1ce", enhancing) > 1.4 * mean("t1ce", healthy)
    assert mean("t1", enhancing | necrosis) < 0.9 * mean("t1", healthy)
    assert mean("t1ce", necrosis) < 0.7 * mean("t1ce", healthy)
    assert mean("t2", necrosis) > 1.4 * mean("t2", healthy)


def test_left_handed_storage_keeps_the_anatomy_at_the_same_world_points():
    lps, left = generate_case(SMALL, 5), generate_case(SMALL, 5, left_handed=True)
    assert np.linalg.det(lps.affine[:3, :3]) > 0 > np.linalg.det(left.affine[:3, :3])
    np.testing.assert_array_equal(np.diag(left.affine), [-1, 1, 1, 1])
    voxels = np.argwhere(np.ones(SMALL, dtype=bool))
    world = nib.affines.apply_affine(lps.affine, voxels)
    moved = np.rint(nib.affines.apply_affine(np.linalg.inv(left.affine), world)).astype(int)
    for name in MODALITIES:
        np.testing.assert_array_equal(left.images[name][tuple(moved.T)], lps.images[name][tuple(voxels.T)])
    np.testing.assert_array_equal(left.label[tuple(moved.T)], lps.label[tuple(voxels.T)])


def test_mass_effect_pushes_tissue_away_from_the_tumour():
    lesion = Lesion(centre=np.array([20.0, 20.0, 20.0]), radius=6, rim=2, edema=4, kind="necrotic", push=5)
    distances = np.arange(1, 20, dtype=np.float32)
    coords = np.stack([20 + distances, np.full_like(distances, 20), np.full_like(distances, 20)])
    push_tissue_away(coords, [lesion])
    sources = coords[0] - 20  # where the tissue now at each distance came from
    assert np.all(sources < distances)  # tissue moved outwards
    assert sources[0] == 0  # next to the centre the tissue was replaced by tumour
    outside = sources[sources > 0]
    assert len(outside) > 10 and np.all(np.diff(outside) > 0)  # order kept: the tissue never folds
    assert distances[-1] - sources[-1] < 0.01 * distances[-1]  # far tissue stays put


def test_write_case_and_cohort_use_the_brats_layout(tmp_path):
    case = generate_case((32, 32, 32), 2)
    paths = write_case(case, tmp_path, "BraTS20_Phantom_042")
    folder = tmp_path / "BraTS20_Phantom_042"
    assert {p.name for p in folder.iterdir()} == {f"BraTS20_Phantom_042_{n}.nii.gz" for n in (*MODALITIES, "seg")}
    for name in MODALITIES:
        image = nib.load(paths[name])
        assert image.get_data_dtype() == np.int16
        np.testing.assert_array_equal(np.asarray(image.dataobj), case.images[name])
        np.testing.assert_allclose(image.affine, case.affine)
        assert image.header.get_zooms() == (1.0, 1.0, 1.0)
    seg = nib.load(paths["seg"])
    assert seg.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(seg.dataobj), case.label)

    one = generate_cohort(tmp_path / "one", 1, (32, 32, 32), seed=9)
    two = generate_cohort(tmp_path / "two", 2, (32, 32, 32), seed=9)
    assert [p.name for p in two] == ["BraTS20_Phantom_001", "BraTS20_Phantom_002"]
    first = [np.asarray(nib.load(d / f"{d.name}_flair.nii.gz").dataobj) for d in (one[0], two[0], two[1])]
    np.testing.assert_array_equal(first[0], first[1])  # case 1 does not depend on the number of cases
    assert not np.array_equal(first[1], first[2])


def test_phantom_command_writes_cases(tmp_path, capsys):
    status = cli.main(["phantom", "--output", str(tmp_path / "out"), "--n-cases", "2", "--shape", "32", "32", "32",
                       "--seed", "3", "--left-handed", "--progress", "none"])
    assert status == 0
    folders = sorted((tmp_path / "out").iterdir())
    assert [f.name for f in folders] == ["BraTS20_Phantom_001", "BraTS20_Phantom_002"]
    seg = nib.load(folders[1] / "BraTS20_Phantom_002_seg.nii.gz")
    assert seg.shape == (32, 32, 32) and np.linalg.det(seg.affine[:3, :3]) < 0
    np.testing.assert_array_equal(np.asarray(seg.dataobj), generate_case((32, 32, 32), (3, 2), True).label)


@pytest.mark.parametrize("arguments, complaint", [
    (["--n-cases", "0"], "--n-cases must be at least 1"),
    (["--n-cases", "1", "--shape", "64", "8", "64"], "at least 16"),
    (["--n-cases", "1", "--seed", "-1"], "seed must be 0 or more"),
])
def test_phantom_command_rejects_bad_arguments_in_one_line(tmp_path, capsys, arguments, complaint):
    status = cli.main(["phantom", "--output", str(tmp_path / "out"), "--progress", "none", *arguments])
    error = capsys.readouterr().err
    assert status == ExitCode.USER_ERROR
    assert complaint in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_phantom_command_refuses_a_file_as_output(tmp_path, capsys):
    target = tmp_path / "taken.txt"
    target.write_text("x")
    assert cli.main(["phantom", "--output", str(target), "--n-cases", "1", "--progress", "none"]) == ExitCode.USER_ERROR
    assert "is a file" in capsys.readouterr().err


def test_library_rejects_bad_shapes_and_counts(tmp_path):
    with pytest.raises(BratsUNetError, match="at least 16"):
        generate_case((240, 240))
    with pytest.raises(BratsUNetError, match="at least 1"):
        generate_cohort(tmp_path, 0, SMALL)


def test_missing_template_package_is_a_one_line_error(monkeypatch):
    from BratsUNetLib.phantoms import anatomy as phantom_anatomy

    monkeypatch.setattr(phantom_anatomy.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BratsUNetError, match="pip install nilearn"):
        phantom_anatomy._template_folder()


def test_phantom_command_refuses_a_shape_larger_than_memory_before_allocating(tmp_path, capsys):
    status = cli.main(["phantom", "--output", str(tmp_path / "out"), "--n-cases", "1", "--shape", "100000",
                       "100000", "100000", "--progress", "none"])
    error = capsys.readouterr().err.strip()
    assert status == ExitCode.USER_ERROR and len(error.splitlines()) == 1
    assert "A phantom of 100000×100000×100000 voxels would need about" in error and "give a smaller --shape" in error
    assert not (tmp_path / "out").exists()


def test_phantom_command_replaces_existing_cases_only_with_overwrite(tmp_path, capsys):
    output = tmp_path / "out"
    flair = output / "BraTS20_Phantom_002" / "BraTS20_Phantom_002_flair.nii.gz"
    flair.parent.mkdir(parents=True)
    flair.write_bytes(b"the user's own image")
    argv = ["phantom", "--output", str(output), "--n-cases", "2", "--shape", "32", "32", "32", "--progress", "none"]

    assert cli.main(argv) == ExitCode.USER_ERROR
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and f"'{flair}'" in error and "pass --overwrite" in error
    assert flair.read_bytes() == b"the user's own image"
    assert sorted(p.name for p in output.rglob("*")) == [flair.parent.name, flair.name]  # nothing else written

    assert cli.main([*argv, "--overwrite"]) == 0
    np.testing.assert_array_equal(np.asarray(nib.load(flair).dataobj), generate_case((32, 32, 32), (0, 2)).images["flair"])
