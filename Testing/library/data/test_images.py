"""Image files and geometry: round trips, resampling onto the reference grid through world space, bad inputs."""

import gzip
import zlib

import nibabel as nib
import numpy as np
import pytest

from BratsUNetLib.data import images as imageio
from BratsUNetLib.errors import ImageError
from BratsUNetLib.data.images import (read_case, read_image, read_label, read_label_image, resample_to_reference,
                                  voxel_spacing, write_image)


def _affine(linear, origin) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = origin
    return affine


def _rotation(degrees: float) -> np.ndarray:
    """A rotation about an oblique axis (a genuinely oblique grid, not a permutation)."""
    axis = np.array([1.0, 2.0, 3.0]) / np.sqrt(14.0)
    angle = np.radians(degrees)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


AFFINES = {
    "right-handed": _affine(np.diag([1.2, 0.9, 2.0]), [-14.0, 20.5, -8.0]),
    "left-handed": _affine(np.diag([-1.0, 1.0, 1.0]), [15.0, -12.0, 3.0]),
    "LPS": _affine(np.diag([-1.0, -1.0, 1.0]), [120.0, 120.0, -70.0]),
    "oblique": _affine(_rotation(17.0) @ np.diag([0.8, 1.1, 2.5]), [3.0, -7.5, 11.0]),
}


def _world(affine: np.ndarray, shape) -> np.ndarray:
    """World coordinates (mm) of every voxel centre, shape (3, *shape)."""
    index = np.indices(shape).reshape(3, -1)
    return (affine[:3, :3] @ index + affine[:3, 3:4]).reshape(3, *shape)


@pytest.mark.parametrize("kind", AFFINES)
def test_written_image_reads_back_at_the_same_world_coordinates(tmp_path, kind):
    affine = AFFINES[kind]
    rng = np.random.default_rng(1)
    array = rng.normal(size=(12, 10, 8)).astype(np.float32)
    marker = (3, 7, 5)
    array[marker] = 1000.0
    path = write_image(tmp_path / "image.nii.gz", array, affine)

    image = read_image(path)
    assert image.array.dtype == np.float32 and image.shape == (12, 10, 8)
    np.testing.assert_array_equal(image.array, array)
    found = tuple(int(i) for i in np.argwhere(image.array == 1000.0)[0])
    np.testing.assert_allclose(image.affine @ [*found, 1], affine @ [*marker, 1], atol=1e-4)
    np.testing.assert_allclose(image.spacing, np.linalg.norm(affine[:3, :3], axis=0), rtol=1e-5)
    header = nib.load(path).header  # qform and sform agree and are "scanner", so Slicer reads the same place
    assert int(header["sform_code"]) == 1 and int(header["qform_code"]) == 1
    np.testing.assert_allclose(header.get_qform(), header.get_sform(), atol=1e-4)


@pytest.mark.parametrize("kind", ["left-handed", "LPS", "oblique"])
def test_slicer_places_written_voxels_where_the_library_does(tmp_path, kind):
    slicer = pytest.importorskip("slicer")
    import vtk

    affine = AFFINES[kind]
    array = np.zeros((9, 11, 7), dtype=np.float32)
    array[2, 8, 5] = 1.0
    path = write_image(tmp_path / "image.nii", array, affine)
    logic = slicer.vtkSlicerVolumesLogic()
    logic.SetMRMLScene(slicer.vtkMRMLScene())
    node = logic.AddArchetypeVolume(str(path), "image", 0)
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    k, j, i = np.argwhere(slicer.util.arrayFromVolume(node) == 1.0)[0]
    np.testing.assert_allclose(ijk_to_ras @ [i, j, k, 1], affine @ [2, 8, 5, 1], atol=1e-3)


def test_labels_and_probabilities_are_written_with_their_types(tmp_path):
    affine = AFFINES["LPS"]
    labels = np.zeros((6, 6, 6), dtype=np.uint8)
    labels[1:3, 2:4, 3:5] = 4
    probabilities = np.random.default_rng(0).random((6, 6, 6, 3)).astype(np.float32)
    write_image(tmp_path / "labels.nii.gz", labels, affine, dtype=np.uint8)
    write_image(tmp_path / "probabilities.nii.gz", probabilities, affine)

    stored = nib.load(tmp_path / "labels.nii.gz")
    assert stored.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(stored.dataobj), labels)
    stored = nib.load(tmp_path / "probabilities.nii.gz")
    assert stored.shape == (6, 6, 6, 3) and stored.get_data_dtype() == np.float32
    np.testing.assert_array_equal(stored.get_fdata(dtype=np.float32), probabilities)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.nii.gz", "probabilities.nii.gz"]  # no temp files
    np.testing.assert_array_equal(read_label(tmp_path / "labels.nii.gz", (6, 6, 6), affine), labels)


def test_compressed_output_is_one_standard_gzip_member_of_nibabels_nifti_bytes(tmp_path, monkeypatch):
    """Blocks compressed in parallel make one gzip stream (what ITK / Slicer and gunzip expect), same content."""
    monkeypatch.setattr(imageio, "_GZIP_BLOCK_BYTES", 4096)  # many blocks from a small image
    affine = AFFINES["oblique"]
    probabilities = np.random.default_rng(3).random((20, 18, 16, 3)).astype(np.float32)
    probabilities[probabilities < 0.6] = 0  # partly compressible, as real probability maps
    path = write_image(tmp_path / "probabilities.nii.gz", probabilities, affine)

    compressed = path.read_bytes()
    stream = zlib.decompressobj(wbits=31)  # one gzip member, checked against its CRC-32 and length
    content = stream.decompress(compressed) + stream.flush()
    assert stream.eof and stream.unused_data == b""
    assert len(compressed) < 0.9 * len(content)
    nib.save(nib.load(path), tmp_path / "by_nibabel.nii")  # nibabel's own uncompressed bytes of the same image
    assert content == (tmp_path / "by_nibabel.nii").read_bytes()
    np.testing.assert_array_equal(nib.load(path).get_fdata(dtype=np.float32), probabilities)


def test_the_first_bad_channel_in_order_is_reported(tmp_path):
    volume = np.arange(8 ** 3, dtype=np.float32).reshape(8, 8, 8)
    good = [write_image(tmp_path / f"{name}.nii.gz", volume, np.eye(4)) for name in ("flair", "t1ce")]
    constant = write_image(tmp_path / "t1.nii.gz", np.zeros((8, 8, 8)), np.eye(4))
    with pytest.raises(ImageError, match=r"t1\.nii\.gz.*holds no image"):
        read_case([good[0], constant, good[1], tmp_path / "t2.nii.gz"])  # t2 is missing, but comes later
    with pytest.raises(ImageError, match=r"t2\.nii\.gz.*does not exist"):
        read_case([*good, tmp_path / "t2.nii.gz", constant])


def test_write_refuses_a_non_nifti_name(tmp_path):
    with pytest.raises(ImageError, match=r"\.nii or \.nii\.gz"):
        write_image(tmp_path / "out.png", np.zeros((4, 4, 4)), np.eye(4))


def test_identical_geometry_returns_the_array_itself():
    array = np.ones((5, 6, 7), dtype=np.float32)
    affine = AFFINES["oblique"]
    assert resample_to_reference(array, affine, array.shape, affine.copy()) is array


def test_left_and_right_handed_storage_of_one_grid_is_rearranged_exactly():
    reference_affine = _affine(np.diag([1.0, 1.0, 1.5]), [-5.0, -6.0, -3.0])
    shape = (10, 12, 6)
    # The same voxel centres stored with X reversed (left-handed) and with the axes in the order Z, X, Y.
    flipped_affine = reference_affine @ _affine(np.diag([-1.0, 1.0, 1.0]), [shape[0] - 1, 0, 0])
    permuted_affine = reference_affine @ _affine(np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]]), [0, 0, 0])
    values = np.random.default_rng(2).normal(size=shape).astype(np.float32)

    flipped = resample_to_reference(values[::-1], flipped_affine, shape, reference_affine)
    permuted = resample_to_reference(values.transpose(2, 0, 1), permuted_affine, shape, reference_affine)
    np.testing.assert_array_equal(flipped, values)
    np.testing.assert_array_equal(permuted, values)
    assert flipped.flags.c_contiguous and permuted.flags.c_contiguous  # usable by torch.from_numpy


def test_whole_voxel_shift_keeps_values_exact_and_fills_the_rest_with_zero():
    affine = np.eye(4)
    values = np.arange(1, 4 * 5 * 6 + 1, dtype=np.float32).reshape(4, 5, 6)
    shifted = _affine(np.eye(3), [2.0, 0.0, -1.0])  # the moving image starts 2 voxels further in X
    result = resample_to_reference(values, shifted, (4, 5, 6), affine)
    np.testing.assert_array_equal(result[2:, :, :5], values[:2, :, 1:])
    assert (result[:2] == 0).all() and (result[:, :, 5] == 0).all()


def _ramp(world: np.ndarray) -> np.ndarray:
    """A linear function of world position, which trilinear interpolation reproduces exactly."""
    return (2.0 * world[0] - 1.5 * world[1] + 0.5 * world[2] + 100.0).astype(np.float32)


def test_read_case_puts_every_channel_on_the_first_channels_grid(tmp_path):
    reference_shape = (20, 22, 12)
    reference_affine = _affine(np.diag([1.0, 1.0, 2.0]), [-10.0, -11.0, -12.0])
    grids = {  # the same region of space, sampled on other grids
        "t1": (_affine(np.diag([-0.5, 0.5, 1.0]), [10.5, -12.0, -13.0]), (45, 48, 26)),
        "t1ce": (_affine(np.diag([-1.0, -1.0, 2.0]), [9.0, 10.0, -12.0]), (20, 22, 12)),
        "t2": (_affine(_rotation(12.0) @ np.diag([0.7, 0.7, 1.0]), [-4.0, -4.0, -6.0]), (60, 60, 40)),
    }
    paths = [write_image(tmp_path / "flair.nii.gz", _ramp(_world(reference_affine, reference_shape)),
                         reference_affine)]
    for name, (affine, shape) in grids.items():
        paths.append(write_image(tmp_path / f"{name}.nii.gz", _ramp(_world(affine, shape)), affine))

    image, affine = read_case(paths)
    assert image.shape == (4, *reference_shape) and image.dtype == np.float32
    np.testing.assert_allclose(affine, reference_affine, atol=1e-5)
    expected = _ramp(_world(reference_affine, reference_shape))
    np.testing.assert_allclose(image[0], expected, atol=1e-4)
    np.testing.assert_allclose(image[2], expected, atol=1e-4)  # LPS storage of the very same grid: exact
    uncovered = 0
    for channel, (moving_affine, moving_shape) in zip((1, 3), (grids["t1"], grids["t2"])):
        # Where the reference voxel lies within the moving grid's voxel centres, the ramp is reproduced.
        moving_index = np.linalg.inv(moving_affine) @ np.vstack([_world(reference_affine, reference_shape)
                                                                 .reshape(3, -1), np.ones(expected.size)])
        last = np.array(moving_shape)[:, None] - 1
        inside = ((moving_index[:3] >= 0) & (moving_index[:3] <= last)).all(0).reshape(reference_shape)
        outside = ((moving_index[:3] < -0.5) | (moving_index[:3] > last + 0.5)).any(0).reshape(reference_shape)
        assert inside.mean() > 0.3
        np.testing.assert_allclose(image[channel][inside], expected[inside], atol=2e-3)
        assert (image[channel][outside] == 0).all()  # not covered by the moving image: zero
        uncovered += int(outside.sum())
    assert uncovered > 0


def test_a_label_object_lands_on_the_same_reference_voxels(tmp_path):
    reference_shape = (16, 16, 10)
    reference_affine = _affine(np.diag([1.0, 1.0, 2.0]), [0.0, 0.0, 0.0])
    # A box whose faces lie half-way between reference voxel centres, drawn on a finer left-handed grid.
    low, high = np.array([3.5, 4.5, 5.0]), np.array([9.5, 11.5, 13.0])
    moving_affine = _affine(np.diag([-0.5, 0.5, 0.5]), [15.25, 0.25, 0.25])
    moving_shape = (31, 31, 40)
    world = _world(moving_affine, moving_shape)
    label = np.where(((world >= low[:, None, None, None]) & (world <= high[:, None, None, None])).all(0), 4, 0)
    path = write_image(tmp_path / "seg.nii.gz", label, moving_affine, dtype=np.uint8)

    result = read_label(path, reference_shape, reference_affine)
    reference_world = _world(reference_affine, reference_shape)
    expected = ((reference_world >= low[:, None, None, None]) & (reference_world <= high[:, None, None, None])).all(0)
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, np.where(expected, 4, 0))


@pytest.mark.parametrize("moving", ["shifted", "oblique"])
def test_fields_of_view_that_do_not_overlap_are_an_error(moving):
    reference_affine = np.eye(4)
    affine = _affine(np.eye(3), [500.0, 0, 0]) if moving == "shifted" else \
        _affine(_rotation(30.0), [0.0, 0.0, 400.0])
    with pytest.raises(ImageError, match="do not overlap"):
        resample_to_reference(np.ones((8, 8, 8), dtype=np.float32), affine, (8, 8, 8), reference_affine,
                              name="t2.nii.gz")


def test_channel_from_another_patient_position_is_reported_by_name(tmp_path):
    volume = np.arange(8 ** 3, dtype=np.float32).reshape(8, 8, 8)  # not constant: that is refused first
    first = write_image(tmp_path / "flair.nii.gz", volume, np.eye(4))
    far = write_image(tmp_path / "t1.nii.gz", volume, _affine(np.eye(3), [0, 0, 900.0]))
    with pytest.raises(ImageError, match=r"t1\.nii\.gz.*do not overlap"):
        read_case([first, far])


def test_files_that_slicer_would_place_elsewhere_are_flagged(tmp_path, caplog):
    image = nib.Nifti1Image(np.ones((4, 4, 4), dtype=np.float32), None)
    image.set_sform(_affine(np.eye(3), [10.0, 0, 0]), code=2)  # "aligned": Slicer ignores it, nibabel uses it
    image.set_qform(np.eye(4), code=1)
    nib.save(image, tmp_path / "mixed.nii.gz")
    with caplog.at_level("WARNING", logger="BratsUNetLib.data.images"):
        assert read_image(tmp_path / "mixed.nii.gz").affine[0, 3] == 10.0
    assert "mixed.nii.gz" in caplog.text and "Slicer" in caplog.text


def test_trailing_singleton_dimension_is_squeezed(tmp_path):
    path = tmp_path / "single.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((5, 6, 7, 1), dtype=np.float32), np.eye(4)), path)
    assert read_image(path).shape == (5, 6, 7)


def _bad_file(tmp_path, kind):
    path = tmp_path / f"{kind}.nii.gz"
    if kind == "missing":
        return path, "does not exist"
    if kind == "text":
        path.write_text("this is not an image\n")
        return path, "not a readable image"
    if kind == "plain-text-gz":
        path.write_bytes(gzip.compress(b"hello " * 100))
        return path, "not a readable image"
    if kind == "truncated":
        nib.save(nib.Nifti1Image(np.random.default_rng(0).random((20, 20, 20)).astype(np.float32), np.eye(4)), path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path, "truncated"
    if kind == "four-d":
        nib.save(nib.Nifti1Image(np.ones((5, 5, 5, 2), dtype=np.float32), np.eye(4)), path)
        return path, "4-D image"
    if kind == "nan":
        array = np.ones((6, 6, 6), dtype=np.float32)
        array[0, 0, :3] = np.nan
        array[1, 1, 1] = np.inf
        nib.save(nib.Nifti1Image(array, np.eye(4)), path)
        return path, "contains 4 NaN or infinite"
    if kind == "empty":
        nib.save(nib.Nifti1Image(np.ones((4, 0, 4), dtype=np.float32), np.eye(4)), path)
        return path, "is empty"
    if kind == "degenerate":
        image = nib.Nifti1Image(np.ones((4, 4, 4), dtype=np.float32), None)
        image.set_sform(np.diag([1.0, 0.0, 1.0, 1.0]), code=1)
        nib.save(image, path)
        return path, "degenerate voxel-to-world"
    if kind == "folder":
        path.mkdir()
        return path, "is a folder"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing", "text", "plain-text-gz", "truncated", "four-d", "nan", "empty",
                                  "degenerate", "folder"])
def test_bad_image_files_give_one_line_errors_naming_the_file(tmp_path, kind):
    path, message = _bad_file(tmp_path, kind)
    with pytest.raises(ImageError, match=message) as info:
        read_image(path)
    text = str(info.value)
    assert str(path) in text and "\n" not in text


def test_a_probability_map_is_not_accepted_as_a_label(tmp_path):
    path = write_image(tmp_path / "probabilities.nii.gz", np.full((4, 4, 4), 0.7), np.eye(4))
    with pytest.raises(ImageError, match="not a label map"):
        read_label_image(path)
    negative = write_image(tmp_path / "negative.nii.gz", np.full((4, 4, 4), -1.0), np.eye(4))
    with pytest.raises(ImageError, match="outside 0..255"):
        read_label(negative, (4, 4, 4), np.eye(4))


def test_voxel_spacing_is_the_length_of_each_axis():
    np.testing.assert_allclose(voxel_spacing(AFFINES["oblique"]), [0.8, 1.1, 2.5])
    assert voxel_spacing(AFFINES["LPS"]) == (1.0, 1.0, 1.0)


# ------------------------------------------------------------------ hostile files: refused before they are read

def _header_only_file(path, shape, dtype=np.float32):
    """An uncompressed NIfTI file whose header claims ``shape`` but holds only a few bytes of voxels."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_sform(np.eye(4), code=1)
    path.write_bytes(header.binaryblock + b"\0" * 4 + b"\0" * 1024)
    return path


def test_a_header_claiming_terabytes_is_refused_before_reading(tmp_path, monkeypatch):
    path = _header_only_file(tmp_path / "huge.nii", (30000, 30000, 30000))
    reads = []
    monkeypatch.setattr(nib.Nifti1Image, "get_fdata", lambda *a, **k: reads.append(a))
    with pytest.raises(ImageError) as info:
        read_image(path)
    message = str(info.value)
    assert reads == []  # refused from the header alone
    assert message.startswith(f"Reading '{path}' (30000x30000x30000 voxels of float32) would need about ")
    assert "TB of memory but" in message and "its header may be damaged" in message and "\n" not in message


@pytest.mark.parametrize(("dtype", "message"), [
    (np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")]), r"is an RGB colour image \(voxels of R, G, B\)"),
    (np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1"), ("A", "u1")]), "is an RGB colour image"),
    (np.complex64, r"is a complex-valued image \(complex64\).*give the magnitude image"),
])
def test_non_scalar_images_are_refused_by_name(tmp_path, dtype, message):
    path = tmp_path / "colour.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), dtype=dtype), np.eye(4)), path)
    with pytest.raises(ImageError, match=message) as info:
        read_image(path)
    assert str(path) in str(info.value) and "not a scalar image" in str(info.value)


def test_structured_voxels_other_than_colour_are_refused():
    with pytest.raises(ImageError, match=r"is an image of structured voxels \(voxels of a, b\)"):
        imageio._check_scalar(np.dtype([("a", "f4"), ("b", "f4")]), "x.nii")


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_special_files_are_refused_before_they_are_opened(tmp_path, kind):
    """A FIFO with no writer would block a read for ever, /dev/zero would never end: refused unopened."""
    import os

    if kind == "fifo":
        path = tmp_path / "flair.nii.gz"
        os.mkfifo(path)
        expected = "is a named pipe (FIFO), not a regular file"
    elif kind == "device":
        path, expected = "/dev/zero", "is a character device, not a regular file"
    else:
        path = tmp_path / "flair.nii.gz"
        path.mkdir()
        expected = "is a folder, not a regular file"
    with pytest.raises(ImageError) as info:
        read_image(path)
    assert str(info.value) == f"Image file '{path}' {expected}; give a NIfTI file (.nii or .nii.gz)."


def test_a_file_without_orientation_is_read_with_the_fallback_affine_and_a_warning(tmp_path, caplog):
    """The documented rule (module docstring): qform and sform codes 0 -> nibabel's fallback affine, one warning."""
    image = nib.Nifti1Image(np.arange(64, dtype=np.float32).reshape(4, 4, 4), None)
    image.header.set_zooms((2.0, 3.0, 4.0))
    assert int(image.header["sform_code"]) == int(image.header["qform_code"]) == 0
    path = tmp_path / "no_orientation.nii.gz"
    nib.save(image, path)
    with caplog.at_level("WARNING", logger="BratsUNetLib.data.images"):
        read = read_image(path)
    np.testing.assert_allclose(read.affine, nib.load(path).header.get_base_affine())
    assert read.spacing == (2.0, 3.0, 4.0)
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "no_orientation.nii.gz" in warnings[0]
    assert "qform and sform codes are 0" in warnings[0] and "voxel size 2x3x4 mm" in warnings[0]


def test_a_file_with_an_orientation_gives_no_warning(tmp_path, caplog):
    path = write_image(tmp_path / "oriented.nii.gz", np.ones((4, 4, 4)), np.eye(4))
    with caplog.at_level("WARNING", logger="BratsUNetLib.data.images"):
        read_image(path)
    assert caplog.records == []


def test_axis_codes_of_a_fifo_are_refused_unopened(tmp_path):
    import os

    path = tmp_path / "flair.nii.gz"
    os.mkfifo(path)
    with pytest.raises(ImageError, match=r"is a named pipe \(FIFO\), not a regular file"):
        imageio.read_axis_codes(path)


def test_header_repairs_are_one_warning_line_for_a_usable_file(tmp_path, caplog):
    """nibabel prints each header repair on its own line; a usable file gets one line naming it instead."""
    path = write_image(tmp_path / "repaired.nii", np.arange(64, dtype=np.float32).reshape(4, 4, 4), np.eye(4))
    data = bytearray(path.read_bytes())
    data[0:4] = (0).to_bytes(4, "little")  # sizeof_hdr, which nibabel resets to 348
    path.write_bytes(bytes(data))
    with caplog.at_level("WARNING"):
        read_image(path)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1, messages
    assert "repaired.nii' has a damaged header that nibabel repaired (sizeof_hdr should be 348" in messages[0]
