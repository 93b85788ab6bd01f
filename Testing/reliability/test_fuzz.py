"""Seeded fuzzing of the files a user hands over: NIfTI headers, checkpoint bytes and JSON configs.

Each case corrupts one valid file at random (its own seed, so a failing case reruns alone and identically) and
runs it through the real command line in this process (``BratsUNetLib.cli.main``, the ``cli`` fixture):

- images and checkpoints go through ``segment``, which must either succeed (a corruption that leaves a usable
  file, e.g. a flipped bit in a weight) or exit 2 with exactly one visible line, ``bratsunet segment: error: ...``;
- configs go through ``validate-config`` (the checks ``train`` runs, without the training that a corrupted
  ``n_epochs`` could make endless), which must print ``OK`` or exit 2 with one line per problem;

never a traceback, never another exit status, warnings (a header nibabel repaired) one line each, and the
corrupted input byte-identical afterwards. The random cases are followed by the worst cases of each kind
written out (:func:`test_config_extremes`): deep nesting and numbers too long to convert. Each case runs
under its own hang guard (:func:`hang_guard`): a case still running after :data:`HANG_SECONDS` (a hundred times
what one takes) dumps every thread's stack and ends the test run loudly. The guard only ever catches a hang, a
blocked read or an endless loop; no verdict depends on how fast the machine is.
"""

from __future__ import annotations

import contextlib
import faulthandler
import hashlib
import json
import logging
import random
import struct
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from reliability_support import MODALITIES, TINY_CONFIG

CASES_PER_KIND = 60
HANG_SECONDS = 60


@contextlib.contextmanager
def hang_guard(seconds: float = HANG_SECONDS) -> Iterator[None]:
    """Dump all stacks to stderr and exit the test process if the block is still running after ``seconds``.

    faulthandler's watchdog is a C thread: it fires even when the main thread is blocked inside a system call
    (an ``open`` of a FIFO) or a C loop that a Python signal handler could never interrupt.
    """
    faulthandler.dump_traceback_later(seconds, exit=True, file=sys.__stderr__)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_outcome(code: int, stdout: str, errors: list[str], command: str) -> None:
    assert not any("Traceback" in line for line in [*errors, *stdout.splitlines()]), errors
    assert code in (0, 2), (code, errors)
    if code == 2:
        assert len(errors) == 1, errors
        assert errors[0].startswith(f"bratsunet {command}: error: "), errors[0]


# ------------------------------------------------------------------------------------------- NIfTI headers

# Header fields and values that break readers: sizes, types, offsets, scalings and orientation codes.
_FIELDS = ("dim", "datatype", "bitpix", "vox_offset", "pixdim", "scl_slope", "scl_inter", "qform_code",
           "sform_code", "srow_x", "srow_y", "quatern_b", "qoffset_x", "sizeof_hdr", "magic", "intent_code",
           "xyzt_units", "dim_info", "cal_max")
_EXTREMES = (0, 1, -1, 2, 7, 8, 255, 32767, -32768, 2 ** 31 - 1, float("nan"), float("inf"), -float("inf"),
             1e38, -1e38, 1e-38, 3.0e38)


def _set_field(header: np.ndarray, field: str, rng: random.Random) -> None:
    """Set ``field`` of the raw header record (all of it, or one element of an array field) to an extreme."""
    value = rng.choice(_EXTREMES)
    target = header[field]
    dtype = target.dtype
    if dtype.kind == "S":
        header[field] = bytes(rng.getrandbits(8) for _ in range(dtype.itemsize))
        return
    if dtype.kind == "f":
        converted = np.float32(value) if abs(value) <= 3.4e38 or not np.isfinite(value) else np.float32(3.4e38)
    else:  # integers: the extreme clipped to the field's range
        limits = np.iinfo(dtype)
        converted = dtype.type(min(max(int(value) if np.isfinite(value) else 0, limits.min), limits.max))
    if target.shape:
        index = rng.randrange(target.shape[0])
        header[field][index] = converted
    else:
        header[field] = converted


def _corrupt_nifti(source: Path, target: Path, seed: int) -> Path:
    """A copy of the uncompressed ``source`` with a damaged header (or its bytes truncated, or gzip-damaged)."""
    rng = random.Random(f"nifti-{seed}")
    data = bytearray(source.read_bytes())
    how = rng.choice(("field", "field", "field", "fields", "bits", "truncate", "gzip"))
    if how in ("field", "fields"):
        header = np.frombuffer(bytes(data[:348]), dtype=nib.Nifti1Header.template_dtype).copy()
        for _ in range(1 if how == "field" else rng.randint(2, 5)):
            _set_field(header[0], rng.choice(_FIELDS), rng)
        data[:348] = header.tobytes()
    elif how == "bits":
        for _ in range(rng.randint(1, 12)):
            position = rng.randrange(352)
            data[position] ^= 1 << rng.randrange(8)
    elif how == "truncate":
        data = data[: rng.randrange(len(data))]
    if how == "gzip":
        import gzip

        compressed = bytearray(gzip.compress(bytes(data), compresslevel=1))
        for _ in range(rng.randint(1, 8)):
            compressed[rng.randrange(10, len(compressed))] = rng.getrandbits(8)
        target = target.with_name(target.name + ".gz")
        target.write_bytes(bytes(compressed))
    else:
        target.write_bytes(bytes(data))
    return target


@pytest.fixture(scope="module")
def plain_flair(case_files, tmp_path_factory) -> Path:
    """The case's FLAIR as an uncompressed ``.nii`` (its header bytes at a fixed place)."""
    path = tmp_path_factory.mktemp("plain") / "flair.nii"
    nib.save(nib.load(str(case_files["flair"])), str(path))
    return path


def _segment(case_files, models, folder: Path, **replaced: Path) -> list[str]:
    argv = ["segment", "--model", str(replaced.pop("model", models["model"])), "--output",
            str(folder / "out" / "labels.nii.gz"), "--device", "cpu"]
    for name in MODALITIES:
        argv += [f"--{name}", str(replaced.get(name, case_files[name]))]
    return argv


def _run_case(cli: Callable, argv: list[str], corrupted: Path, command: str, caplog) -> int:
    before = _digest(corrupted)
    with hang_guard(), caplog.at_level(logging.WARNING):
        code, stdout, errors = cli(argv)
    _check_outcome(code, stdout, errors, command)
    # Warnings (e.g. a header nibabel had to repair) are what a terminal shows besides the error: one line each.
    for record in caplog.records:
        assert "\n" not in record.getMessage() and not record.exc_info, record.getMessage()
    assert _digest(corrupted) == before, "the command changed its input"
    return code


@pytest.mark.parametrize("seed", range(CASES_PER_KIND))
def test_corrupted_nifti_header(seed, tmp_path, plain_flair, case_files, models, cli, caplog):
    corrupted = _corrupt_nifti(plain_flair, tmp_path / "flair_corrupted.nii", seed)
    code = _run_case(cli, _segment(case_files, models, tmp_path, flair=corrupted), corrupted, "segment", caplog)
    assert (tmp_path / "out" / "labels.nii.gz").exists() == (code == 0)


# ------------------------------------------------------------------------------------------ checkpoint bytes

def _corrupt_checkpoint(source: Path, target: Path, seed: int) -> Path:
    """A copy of ``source`` (a torch zip) with random bytes changed: mostly in its pickle, else anywhere."""
    rng = random.Random(f"checkpoint-{seed}")
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        pickle_entry = next(info for info in archive.infolist() if info.filename.endswith("data.pkl"))
    # The entry's data follows its 30-byte local header, file name and extra field.
    name_length, extra_length = struct.unpack_from("<HH", data, pickle_entry.header_offset + 26)
    pickle_start = pickle_entry.header_offset + 30 + name_length + extra_length
    pickle_range = (pickle_start, pickle_start + pickle_entry.compress_size)
    how = rng.choice(("pickle", "pickle", "pickle", "anywhere", "range", "truncate"))
    if how in ("pickle", "anywhere"):
        low, high = pickle_range if how == "pickle" else (0, len(data))
        for _ in range(rng.randint(1, 16)):
            data[rng.randrange(low, high)] = rng.getrandbits(8)
    elif how == "range":
        start = rng.randrange(len(data))
        length = rng.randint(1, 4096)
        fill = rng.choice((b"\0", b"\xff", None))
        data[start:start + length] = (fill * length if fill else bytes(rng.getrandbits(8) for _ in range(length)))
    else:
        data = data[: rng.randrange(len(data))]
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("seed", range(CASES_PER_KIND))
def test_corrupted_checkpoint(seed, tmp_path, case_files, models, cli, caplog):
    corrupted = _corrupt_checkpoint(models["model"], tmp_path / "model_corrupted.pth", seed)
    code = _run_case(cli, _segment(case_files, models, tmp_path, model=corrupted), corrupted, "segment", caplog)
    assert (tmp_path / "out" / "labels.nii.gz").exists() == (code == 0)


# -------------------------------------------------------------------------------------------- JSON configs

_WRONG_VALUES = ('"x"', "[]", "{}", "null", "true", "-1", "0", "1e308", "-1e308", "1e400", "NaN", "Infinity",
                 "-Infinity", '"' + "a" * 10000 + '"', "[[[[[[]]]]]]", '{"name": "DynUNet"}', "3.5", '""')


def _leaf_spans(text: str) -> list[tuple[int, int]]:
    """Where the JSON text's scalar values are (after a colon or in a list), as (start, end)."""
    import re

    return [match.span(1) for match in re.finditer(r'[:\[,]\s*("(?:[^"\\]|\\.)*"|-?\d[\d.eE+-]*|true|false|null)',
                                                   text)]


def _corrupt_config(text: str, seed: int) -> bytes:
    rng = random.Random(f"config-{seed}")
    how = rng.choice(("flip", "truncate", "nesting", "number", "type", "type", "type", "bytes"))
    if how == "flip":
        data = bytearray(text.encode())
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if how == "truncate":
        return text.encode()[: rng.randrange(len(text))]
    if how == "bytes":
        data = bytearray(text.encode())
        start = rng.randrange(len(data))
        data[start:start + 16] = bytes(rng.getrandbits(8) for _ in range(16))
        return bytes(data)
    start, end = rng.choice(_leaf_spans(text))
    if how == "nesting":
        depth = rng.choice((100, 1000, 10_000, 100_000))
        bracket = rng.choice((("[", "]"), ('{"a":', "}")))
        value = bracket[0] * depth + "1" + bracket[1] * depth
    elif how == "number":
        value = rng.choice(("9" * rng.choice((400, 5000, 100_000)), "1e400", "-1e400", "1e-400",
                            str(2 ** 63), str(-(2 ** 63)), "123456789012345678901234567890"))
    else:
        value = rng.choice(_WRONG_VALUES)
    return (text[:start] + value + text[end:]).encode()


@pytest.fixture(scope="module")
def config_text(case_files) -> str:
    cases = [{"image": [str(case_files[m]) for m in MODALITIES], "label": str(case_files["seg"])}]
    return json.dumps({**TINY_CONFIG, "training_filenames": cases, "validation_filenames": cases}, indent=1)


@pytest.mark.parametrize("seed", range(CASES_PER_KIND))
def test_corrupted_config(seed, tmp_path, config_text, cli):
    corrupted = tmp_path / "config.json"
    corrupted.write_bytes(_corrupt_config(config_text, seed))
    before = _digest(corrupted)
    with hang_guard():
        code, stdout, errors = cli(["validate-config", str(corrupted)])
    _check_config_outcome(code, stdout, errors, corrupted)
    assert _digest(corrupted) == before


def _check_config_outcome(code: int, stdout: str, errors: list[str], corrupted: Path) -> None:
    assert not any("Traceback" in line for line in [*errors, *stdout.splitlines()]), errors
    assert code in (0, 2), (code, errors)
    if code == 0:
        assert stdout.startswith("OK: ") and errors == []
    elif len(errors) == 1:
        assert errors[0].startswith("bratsunet validate-config: error: "), errors[0]
    else:  # validate-config lists every problem: one line each, then their count
        assert all(line.startswith(f"{corrupted}: ") for line in errors[:-1]), errors
        assert errors[-1] == f"{len(errors) - 1} problems found in {corrupted}.", errors


@pytest.mark.parametrize("value", [
    "[" * 100_000 + "]" * 100_000,
    '{"a":' * 50_000 + "1" + "}" * 50_000,
    "9" * 5000,
    "-" + "1" * 100_000,
    "1e400",
    "NaN",
], ids=["deep-list", "deep-object", "5000-digits", "100000-digits", "1e400", "NaN"])
def test_config_extremes(value, tmp_path, config_text, cli):
    corrupted = tmp_path / "config.json"
    corrupted.write_text(config_text.replace('"n_epochs": 1', f'"n_epochs": {value}', 1))
    assert corrupted.read_text() != config_text
    with hang_guard():
        code, stdout, errors = cli(["validate-config", str(corrupted)])
    _check_config_outcome(code, stdout, errors, corrupted)


def test_the_corruptions_are_seeded(plain_flair, models, config_text, tmp_path):
    """The same seed gives the same corrupted bytes: a failing case reruns as it failed."""
    first = _corrupt_nifti(plain_flair, tmp_path / "a.nii", 3).read_bytes()
    assert _corrupt_nifti(plain_flair, tmp_path / "b.nii", 3).read_bytes() == first
    assert (_corrupt_checkpoint(models["model"], tmp_path / "a.pth", 5).read_bytes()
            == _corrupt_checkpoint(models["model"], tmp_path / "b.pth", 5).read_bytes())
    assert _corrupt_config(config_text, 7) == _corrupt_config(config_text, 7)
