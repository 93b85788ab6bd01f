"""Reduced precision (``--precision bf16|int8``): refused where it cannot run, and close to fp32 where it does.

Run in a process of their own by ``test_precision.py`` (OpenVINO's thread pools, see ``test_backends.py``). The
Dice tests train a small DynUNet on phantoms (seeded, a fixed number of epochs) and compare the label maps of
held-out phantoms at each precision with the truth: the mean Dice per region may move by at most
:data:`PUBLISHED_DICE_CHANGE`, the bound benchmarks/README.md publishes.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.networks.nets import DynUNet

from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.hardware.cpu import has_bf16_units
from BratsUNetLib.inference import backends

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "support"))
from tiny_config import tiny_config  # noqa: E402

PUBLISHED_DICE_CHANGE = 0.01
MODALITIES = ("flair", "t1", "t1ce", "t2")
needs_openvino = pytest.mark.skipif(not all(backends._installed(m) for m in ("openvino", "onnxscript", "nncf")),
                                    reason="bratsunet[fast] (OpenVINO, NNCF) is not installed")


def small_network() -> torch.nn.Module:
    torch.manual_seed(0)
    return DynUNet(3, 4, 3, kernel_size=[3, 3, 3], strides=[1, 2, 2], upsample_kernel_size=[2, 2],
                   filters=[4, 8, 16]).eval()


def random_inputs(shape) -> list[np.ndarray]:
    return [np.random.default_rng(index).standard_normal(shape).astype(np.float32) for index in range(2)]


# ------------------------------------------------------------------------------------------ refusals


def test_the_command_line_offers_every_precision():
    from BratsUNetLib.cli.arguments import inference

    assert inference.PRECISIONS == backends.PRECISIONS  # spelled out there so that --help needs no torch


def test_bf16_is_refused_on_a_cpu_without_bf16_units(monkeypatch):
    monkeypatch.setattr(backends, "has_bf16_units", lambda: False)
    with pytest.raises(BratsUNetError, match=r"has no bf16 units \(AVX512-BF16 or AMX\).*--precision fp32") as error:
        backends.prepare(small_network(), precision="bf16")
    assert "\n" not in str(error.value)


@pytest.mark.skipif(has_bf16_units(), reason="this CPU has bf16 units")
def test_bf16_is_refused_on_this_cpu_which_has_no_bf16_units():
    with pytest.raises(BratsUNetError, match="has no bf16 units"):
        backends.prepare(small_network(), precision="bf16")


def test_precisions_a_backend_or_device_cannot_run_are_refused(monkeypatch):
    network = small_network()
    with pytest.raises(BratsUNetError, match="runs on OpenVINO, not --backend eager"):
        backends.prepare(network, backend="eager", precision="int8")
    with pytest.raises(BratsUNetError, match="amp computes in reduced precision"):
        backends.prepare(network, backend="amp", precision="fp32")
    with pytest.raises(BratsUNetError, match="int8 runs on the CPU"):
        backends.prepare(network, device="cuda", precision="int8")  # refused before any CUDA call
    with pytest.raises(BratsUNetError, match="Unknown precision 'fp16'"):
        backends.prepare(network, precision="fp16")
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(BratsUNetError, match=r"int8 on the CPU needs nncf.*bratsunet\[fast\]"):
        backends.prepare(network, precision="int8")


def test_segment_refuses_bf16_in_one_line_and_writes_nothing(monkeypatch, tmp_path, capsys):
    from BratsUNetLib.cli.main import main
    from BratsUNetLib.config.loading import load_config
    from BratsUNetLib.models.checkpoint import save_checkpoint
    from BratsUNetLib.phantoms.generate import generate_case, write_case

    monkeypatch.setattr(backends, "has_bf16_units", lambda: False)
    save_checkpoint(tmp_path / "model.pth", small_network(), config=load_config(tiny_config(32)),
                    channels=list(MODALITIES))
    images = write_case(generate_case((40, 44, 36), seed=5), tmp_path, "case")
    before = sorted(path.name for path in tmp_path.iterdir())
    argv = ["segment", "--model", str(tmp_path / "model.pth"), "--output", str(tmp_path / "labels.nii.gz"),
            "--progress", "none", "--precision", "bf16", *(f"--{name}={images[name]}" for name in MODALITIES)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "has no bf16 units" in err and "--precision fp32" in err and len(err.splitlines()) == 1
    assert "Traceback" not in err
    assert sorted(path.name for path in tmp_path.iterdir()) == before


# ------------------------------------------------------------------------------------------ the int8 cache


@needs_openvino
def test_int8_is_quantized_once_then_loaded_and_a_damaged_copy_is_redone(monkeypatch, tmp_path):
    network, shape = small_network(), (1, 4, 32, 32, 32)
    batch = torch.from_numpy(random_inputs(shape)[0])
    notes: list[str] = []
    first = backends.prepare(network, precision="int8", cache_dir=tmp_path, calibration=random_inputs,
                             log=notes.append)
    logits = first(batch)
    assert first.description == "openvino, int8"
    assert logits.shape == (1, 3, 32, 32, 32) and torch.isfinite(logits).all()
    assert any("Quantizing the network to int8" in note for note in notes)
    folder = tmp_path / f"{backends.model_fingerprint(network)}-1x4x32x32x32-int8"
    assert sorted(path.name for path in folder.iterdir()) == ["model.bin", "model.xml"]
    assert any((tmp_path / "openvino").iterdir())  # OpenVINO's compiled network, for the next process

    def no_quantization(*args):
        raise AssertionError("quantized again")
    monkeypatch.setattr(backends, "quantize_int8", no_quantization)
    again = backends.prepare(network, precision="int8", cache_dir=tmp_path, calibration=random_inputs)
    assert torch.equal(again(batch), logits)

    monkeypatch.undo()
    (folder / "model.bin").write_bytes(b"damaged")
    notes.clear()
    redone = backends.prepare(network, precision="int8", cache_dir=tmp_path, calibration=random_inputs,
                              log=notes.append)
    assert torch.equal(redone(batch), logits)
    assert any("damaged" in note for note in notes)
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # no temporary folder left


def test_int8_calibration_is_phantoms_through_the_models_preprocessing_and_checks_memory(monkeypatch, tmp_path):
    from BratsUNetLib.config.loading import load_config
    from BratsUNetLib.hardware import memory
    from BratsUNetLib.inference.calibration import CALIBRATION_CASES, calibration_inputs
    from BratsUNetLib.inference.loaded_model import load_models
    from BratsUNetLib.models.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "model.pth", small_network(), config=load_config(tiny_config(32)),
                    channels=list(MODALITIES))
    model = load_models([tmp_path / "model.pth"], device="cpu")[0]
    inputs = calibration_inputs(model, (1, 4, 32, 32, 32))
    assert len(inputs) == CALIBRATION_CASES and all(x.shape == (1, 4, 32, 32, 32) for x in inputs)
    # z-scored per channel, as the model's normalization makes its inputs; different cases
    assert all(abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-2 for x in inputs)
    assert not np.array_equal(inputs[0], inputs[1])
    monkeypatch.setattr(memory, "available_memory_bytes", lambda device="cpu": 10 * 2**20)
    with pytest.raises(BratsUNetError, match=r"Quantizing this network to int8 for 32×32×32 inputs .* would need "
                                             r"about .* use --precision bf16 or fp32"):
        calibration_inputs(model, (1, 4, 32, 32, 32))


# ------------------------------------------------------------------------------------------ Dice on a trained model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small DynUNet trained for 16 epochs on 8 phantoms (64³, resized to 32³), and 4 held-out phantoms."""
    from BratsUNetLib.phantoms.generate import generate_cohort
    from BratsUNetLib.training.loop import train
    from BratsUNetLib.training.settings import TrainingSettings

    folder = tmp_path_factory.mktemp("trained")
    cases = generate_cohort(folder / "cases", 13, (64, 64, 64), seed=3)

    def entry(case: Path) -> dict:
        return {"image": [str(case / f"{case.name}_{m}.nii.gz") for m in MODALITIES],
                "label": str(case / f"{case.name}_seg.nii.gz")}
    config = tiny_config(32, n_epochs=16)
    config["model"].update(filters=[8, 16, 32, 64], strides=[1, 2, 2, 2], kernel_size=[3] * 4,
                           upsample_kernel_size=[2] * 3)
    config["optimizer"]["lr"] = 0.01
    config["loss"] = {"name": "DiceCELoss", "sigmoid": True}
    config["training_filenames"] = [entry(case) for case in cases[:8]]
    config["validation_filenames"] = [entry(case) for case in cases[8:9]]
    (folder / "config.json").write_text(json.dumps(config))
    result = train(folder / "config.json", folder / "training", settings=TrainingSettings(device="cpu", seed=0))
    return result.model, [entry(case) for case in cases[9:]], folder


def mean_dice(trained, precision: str) -> tuple[dict[str, float], str]:
    from BratsUNetLib.data.images import read_label_image
    from BratsUNetLib.evaluation.metrics import region_metrics
    from BratsUNetLib.inference.loaded_model import load_models
    from BratsUNetLib.inference.options import InferenceOptions
    from BratsUNetLib.inference.pipeline import segment_case

    model, held_out, _ = trained
    models = load_models([model], device="cpu")
    dice: dict[str, list[float]] = {}
    for case in held_out:
        result = segment_case(case["image"], models, InferenceOptions(precision=precision))
        metrics = region_metrics(result.labels, read_label_image(case["label"]).array, (1.0, 1.0, 1.0))
        for region, values in metrics.items():
            dice.setdefault(region, []).append(values["dice"])
    return {region: float(np.mean(values)) for region, values in dice.items()}, result.backend


@needs_openvino
@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_reduced_precision_keeps_dice_within_the_published_change(trained, precision, monkeypatch):
    if precision == "bf16" and not has_bf16_units():
        pytest.skip("this CPU has no bf16 units (bf16 is refused here, tested above)")
    monkeypatch.setenv("BRATSUNET_CACHE_DIR", str(trained[2] / "cache"))
    reference, reference_backend = mean_dice(trained, "fp32")
    assert reference["WT"] > 0.5  # a model that segments, or the comparison says nothing
    reduced, backend = mean_dice(trained, precision)
    assert backend == f"openvino, {precision}" and reference_backend.endswith("fp32")
    for region in ("WT", "TC", "ET"):
        assert abs(reduced[region] - reference[region]) <= PUBLISHED_DICE_CHANGE, (region, reference, reduced)



@needs_openvino
def test_nncf_is_loaded_without_its_usage_telemetry():
    """Quantizing must send nothing home: NNCF's telemetry is its stub (checked outside pytest, which NNCF itself
    treats as a reason to stay quiet)."""
    program = ("import threading\nfrom BratsUNetLib.inference.openvino_engine import import_quietly\n"
               "import_quietly('nncf')\nfrom nncf.telemetry import wrapper\n"
               "stub = isinstance(wrapper.telemetry, wrapper.NNCFTelemetryStub)\n"
               "print(stub, [thread.name for thread in threading.enumerate()])\n"
               "import openvino_telemetry\n")  # still importable for anyone else who wants it
    environment = {key: value for key, value in os.environ.items() if key not in ("CI", "NNCF_CI", "NNCF_DEV")}
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                            env=environment)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "['MainThread']"]
