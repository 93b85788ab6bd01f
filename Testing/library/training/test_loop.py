"""Training: outputs, exact resume, cancel, fine-tuning, bad inputs, the `bratsunet train` command, DDP."""

import copy
import csv
import io
import json
import shutil
import signal
import subprocess
import sys
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch

from BratsUNetLib import cancel
from BratsUNetLib.cli import main as cli
from BratsUNetLib.cancel import CancelToken, stop_on_signals
from BratsUNetLib.models.checkpoint import load_checkpoint
from BratsUNetLib.data.cases import Case
from BratsUNetLib.errors import BratsUNetError, Cancelled, CheckpointError, ConfigError, ExitCode, ImageError
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.phantoms.generate import MODALITIES, generate_case, write_case
from BratsUNetLib.training.loop import train
from BratsUNetLib.training.settings import TrainingSettings

SHAPE = (32, 32, 32)
LOG_COLUMNS = ["epoch", "loss", "lr", "val_loss", "dice_WT", "dice_TC", "dice_ET", "epoch_seconds"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Five 32³ phantom cases on disk, as config entries."""
    folder = tmp_path_factory.mktemp("cohort")
    entries = []
    for seed in range(5):
        paths = write_case(generate_case(SHAPE, seed=seed), folder, f"P{seed}")
        entries.append({"image": [str(paths[m]) for m in MODALITIES], "label": str(paths["seg"])})
    return entries


def make_config(cohort, **training):
    """A tiny DynUNet (filters 4-8-16) on 32³ inputs with random patches and augmentations."""
    return {
        "model": {"name": "DynUNet", "spatial_dims": 3, "in_channels": 4, "out_channels": 3,
                  "kernel_size": [3, 3, 3], "strides": [1, 2, 2], "upsample_kernel_size": [2, 2],
                  "filters": [4, 8, 16]},
        "optimizer": {"name": "Adam", "lr": 0.02},
        "loss": {"name": "DiceLoss", "sigmoid": True},
        "scheduler": {"name": "ReduceLROnPlateau", "patience": 5, "factor": 0.5},
        "dataset": {"name": "SegmentationDataset", "labels": [2, 1, 4], "setup_label_hierarchy": True,
                    "crop_foreground": True, "desired_shape": [32, 32, 32], "resample": True,
                    "normalization": "NormalizeIntensityD", "normalization_kwargs": {"channel_wise": True},
                    "training": {"random_crop": True, "desired_shape": [24, 24, 24], "resample": False,
                                 "spatial_augmentations": [{"name": "RandFlipd", "prob": 0.5, "spatial_axis": 0}],
                                 "intensity_augmentations": [{"name": "RandScaleIntensityd", "factors": 0.1,
                                                              "prob": 1.0}]}},
        "training": {"batch_size": 2, "n_epochs": 3, **training},
        "training_filenames": cohort[:3],
        "validation_filenames": cohort[3:4],
    }


def settings(**kwargs):
    return TrainingSettings(**{"device": "cpu", "seed": 5, "n_workers": 0, **kwargs})


def log_rows(work_dir):
    with open(work_dir / "training_log.csv", newline="") as stream:
        return list(csv.reader(stream))


def without_seconds(rows):
    return [row[:-1] for row in rows]


def assert_same_weights(path_a, path_b):
    a, b = load_checkpoint(path_a), load_checkpoint(path_b)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    state_a, state_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(state_a[k]["exp_avg_sq"], state_b[k]["exp_avg_sq"]) for k in state_a)
    assert a["scheduler"] == b["scheduler"] and a["epoch"] == b["epoch"]


@pytest.fixture(scope="module")
def reference_run(cohort, tmp_path_factory):
    """An uninterrupted 3-epoch run with seed 5 (the run that resumed runs must reproduce)."""
    work_dir = tmp_path_factory.mktemp("reference")
    train(make_config(cohort), work_dir, settings=settings())
    return work_dir


class CancelAt(ProgressReporter):
    """Reports nothing; sets the cancel token when step ``step`` of epoch ``epoch`` is done (like Ctrl-C)."""

    def __init__(self, token, epoch, step):
        super().__init__("none")
        self.token, self.task, self.step = token, f"epoch {epoch}", step

    def advance(self, task, done, total, **details):
        if task == self.task and done == self.step:
            self.token.cancel()


# ----------------------------------------------------------------------------------------------- a short run

def test_short_run_lowers_the_loss_and_writes_every_output(cohort, tmp_path):
    stream = io.StringIO()
    config = make_config(cohort, n_epochs=6, save_every_n_epochs=3, save_last_n_models=2)
    result = train(config, tmp_path, settings=settings(), reporter=ProgressReporter("json", stream=stream))

    rows = log_rows(tmp_path)
    assert rows[0] == LOG_COLUMNS
    assert [int(r[0]) for r in rows[1:]] == [1, 2, 3, 4, 5, 6]
    losses = [float(r[1]) for r in rows[1:]]
    assert losses[-1] < losses[0]
    assert all(0 <= float(value) <= 1 for r in rows[1:] for value in r[4:7])

    names = sorted(p.name for p in tmp_path.glob("*.pth"))
    # model_3 from save_every_n_epochs; model_5/model_6 the last two epochs (model_4 rolled out of the window).
    assert names == ["model.pth", "model_3.pth", "model_5.pth", "model_6.pth", "model_best.pth"]
    assert result.epochs == 6 and result.best_model == tmp_path / "model_best.pth"

    checkpoint = load_checkpoint(tmp_path / "model.pth")
    assert checkpoint["format"] == "bratsunet" and checkpoint["epoch"] == 6
    assert checkpoint["channels"] == ["flair", "t1", "t1ce", "t2"] and checkpoint["regions"] == ["WT", "TC", "ET"]
    assert checkpoint["optimizer"]["state"] and checkpoint["scheduler"]["last_epoch"] == 6
    assert checkpoint["extra"]["seed"] == 5 and checkpoint["extra"]["interrupted"] is False
    summary = checkpoint["training"]
    assert summary["cases"] == 3 and summary["validation_cases"] == 1 and summary["epochs"] == 6
    best_epoch = min(rows[1:], key=lambda r: float(r[3]))
    assert summary["best_epoch"] == int(best_epoch[0]) and summary["best_val_loss"] == float(best_epoch[3])
    assert set(summary["best_dice"]) == {"WT", "TC", "ET"}
    assert load_checkpoint(tmp_path / "model_best.pth")["epoch"] == int(best_epoch[0])

    # Debug examples: the network input (a random 24³ patch, 4 channels) and its 3 target channels.
    image = nib.load(tmp_path / "data_loader_testing" / "input_test_P0_flair.nii.gz")
    target = nib.load(tmp_path / "data_loader_testing" / "target_test_P0_flair.nii.gz")
    assert image.shape == (24, 24, 24, 4) and target.shape == (24, 24, 24, 3)
    assert set(np.unique(np.asarray(target.dataobj))) <= {0, 1}

    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4, 5, 6]
    assert set(epochs[0]["dice"]) == {"WT", "TC", "ET"} and epochs[-1]["eta_seconds"] == 0
    steps = [e for e in events if e["event"] == "progress" and e["task"] == "epoch 1"]
    assert [e["done"] for e in steps] == [1, 2] and all("loss" in e for e in steps)
    # One measure of the whole run: its fraction only grows, to 1 at the last step, with the time left beside it.
    run = [e for e in events if e["event"] == "progress" and e["task"].startswith("epoch")]
    fractions = [e["fraction"] for e in run]
    assert len(run) == 12 and fractions == sorted(fractions) and fractions[0] > 0 and fractions[-1] == 1.0
    assert fractions[1] == pytest.approx(2 / 12, abs=1e-6) and {e["epochs"] for e in run} == {6}
    assert all(e["seconds_left"] >= 0 for e in run) and run[-1]["seconds_left"] == 0
    assert events[-1] == {"event": "result", "work_dir": str(tmp_path), "model": str(tmp_path / "model.pth"),
                          "best_model": str(tmp_path / "model_best.pth"), "epochs": 6}


# ------------------------------------------------------------------------------------- resume and cancel

def test_resumed_run_ends_exactly_like_an_uninterrupted_one(cohort, reference_run, tmp_path):
    train(make_config(cohort, n_epochs=2), tmp_path, settings=settings())
    # The second part loads with a worker process: the batches and the result must not change.
    train(make_config(cohort, n_epochs=3), tmp_path, settings=settings(n_workers=1))
    assert_same_weights(reference_run / "model.pth", tmp_path / "model.pth")
    assert without_seconds(log_rows(tmp_path)) == without_seconds(log_rows(reference_run))


def test_a_cancelled_run_keeps_the_last_epoch_and_resumes_exactly(cohort, reference_run, tmp_path):
    token = CancelToken()
    with pytest.raises(Cancelled) as stopped:
        train(make_config(cohort), tmp_path, settings=settings(resume_hint="run it again"),
              reporter=CancelAt(token, epoch=2, step=1), cancel=token)
    assert str(stopped.value) == "Training stopped after epoch 1; to resume, run it again"
    assert len(log_rows(tmp_path)) == 2  # header + epoch 1: the partial epoch 2 is dropped
    saved = load_checkpoint(tmp_path / "model.pth")
    assert saved["epoch"] == 1 and saved["extra"]["interrupted"] is True

    train(make_config(cohort), tmp_path, settings=settings())
    assert_same_weights(reference_run / "model.pth", tmp_path / "model.pth")
    assert without_seconds(log_rows(tmp_path)) == without_seconds(log_rows(reference_run))
    assert load_checkpoint(tmp_path / "model.pth")["extra"]["interrupted"] is False


def test_resuming_a_run_of_the_original_3dunetcnn(cohort, tmp_path):
    """Its log has only epoch,loss,lr,val_loss and its model.pth is a bare state_dict: training continues."""
    from BratsUNetLib.models.networks import build_network

    config = make_config(cohort)
    torch.save(build_network(config["model"]).state_dict(), tmp_path / "model.pth")
    (tmp_path / "training_log.csv").write_text("epoch,loss,lr,val_loss\n1,0.9,0.02,0.95\n2,0.8,0.02,0.9\n")
    messages = []
    reporter = ProgressReporter("none")
    reporter.message = messages.append
    result = train(config, tmp_path, settings=settings(), reporter=reporter)
    assert result.epochs == 3 and any("holds weights only" in m for m in messages)
    rows = log_rows(tmp_path)
    assert rows[0] == LOG_COLUMNS
    assert rows[1] == ["1", "0.9", "0.02", "0.95", "", "", "", ""] and rows[3][0] == "3" and rows[3][4] != ""
    assert load_checkpoint(tmp_path / "model.pth")["format"] == "bratsunet"


def test_cancel_during_the_first_epoch_saves_nothing(cohort, tmp_path):
    token = CancelToken()
    with pytest.raises(Cancelled, match="during the first epoch; nothing was saved"):
        train(make_config(cohort), tmp_path, settings=settings(), reporter=CancelAt(token, 1, 1), cancel=token)
    assert not (tmp_path / "model.pth").exists() and not (tmp_path / "training_log.csv").exists()


def test_same_seed_same_run_on_the_cpu(cohort, reference_run, tmp_path):
    train(make_config(cohort), tmp_path, settings=settings())
    assert_same_weights(reference_run / "model.pth", tmp_path / "model.pth")


# ------------------------------------------------------------------------------------------------ fine-tuning

@pytest.mark.parametrize("how", ["flag", "model.pth in the work folder"])
def test_fine_tuning_starts_from_the_pretrained_weights(cohort, reference_run, tmp_path, how):
    config = make_config(cohort, n_epochs=1)
    config["optimizer"] = {"name": "SGD", "lr": 0.0}  # no update: the weights must be the pretrained ones
    if how == "flag":
        train(config, tmp_path, settings=settings(pretrained_model=reference_run / "model.pth"))
    else:  # the original's default: a model.pth already in the work folder (and no log) is the starting point
        shutil.copyfile(reference_run / "model.pth", tmp_path / "model.pth")
        train(config, tmp_path, settings=settings())
    pretrained = load_checkpoint(reference_run / "model.pth")["state_dict"]
    tuned = load_checkpoint(tmp_path / "model.pth")
    assert tuned["epoch"] == 1
    assert all(torch.equal(pretrained[key], tuned["state_dict"][key]) for key in pretrained)
    # The lineage names the parent; the work folder's model.pth is this model now, which the lineage says.
    parent = tuned["training"]["fine_tuned_from"]
    if how == "flag":
        assert parent == str((reference_run / "model.pth").resolve())
    else:
        assert parent.startswith(str((tmp_path / "model.pth").resolve())) and "before this run" in parent


def test_a_wrong_pretrained_path_is_an_error_before_training(cohort, tmp_path):
    with pytest.raises(CheckpointError, match="no_such_model.pth' does not exist"):
        train(make_config(cohort), tmp_path / "work",
              settings=settings(pretrained_model=tmp_path / "no_such_model.pth"))
    assert not (tmp_path / "work" / "model.pth").exists()


# ---------------------------------------------------------------------------------------------- bad inputs

def _missing_file(config, tmp_path):
    config["training_filenames"][1] = {**config["training_filenames"][1], "label": str(tmp_path / "gone_seg.nii.gz")}


def _unreadable_image(config, tmp_path):
    broken = tmp_path / "broken_t2.nii.gz"
    broken.write_bytes(b"\x1f\x8b truncated")
    entry = config["training_filenames"][0]
    config["training_filenames"][0] = {**entry, "image": [*entry["image"][:3], str(broken)]}


def _unexpected_label(config, tmp_path):
    case = generate_case(SHAPE, seed=9)
    case.label[case.label == 4] = 3  # BraTS 2021 labels with a 2020 config
    paths = write_case(case, tmp_path, "B21")
    config["validation_filenames"] = [{"image": [str(paths[m]) for m in MODALITIES], "label": str(paths["seg"])}]


def _three_channels(config, tmp_path):
    config["training_filenames"] = [{**e, "image": e["image"][:3]} for e in config["training_filenames"]]


def _empty_training_list(config, tmp_path):
    config["training_filenames"] = []


@pytest.mark.parametrize("spoil, error, message", [
    (_missing_file, ImageError, "gone_seg.nii.gz"),
    (_unreadable_image, ImageError, "broken_t2.nii.gz' is not a readable image"),
    (_unexpected_label, ImageError, r"B21_seg.nii.gz' contains label values \[3\]"),
    (_three_channels, ConfigError, "3 images given but model.in_channels is 4"),
    (_empty_training_list, ConfigError, "training list is empty"),
])
def test_bad_inputs_fail_early_with_a_clear_error(cohort, tmp_path, spoil, error, message):
    config = copy.deepcopy(make_config(cohort))
    spoil(config, tmp_path)
    with pytest.raises(error, match=message) as caught:
        train(config, tmp_path / "work", settings=settings())
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "work" / "model.pth").exists()
    assert not (tmp_path / "work" / "training_log.csv").exists()


def test_in_memory_cases_with_a_different_channel_count_are_rejected(cohort, tmp_path):
    config = make_config(cohort)
    case = Case("scene", np.zeros((2, *SHAPE), np.float32), np.eye(4), np.zeros(SHAPE, np.uint8))
    with pytest.raises(BratsUNetError, match="'scene' has 2 image channel"):
        train(config, tmp_path, cases=[case], settings=settings())


# -------------------------------------------------------------------------------- scheduler, early stopping

def test_plateau_scheduler_steps_with_the_monitored_metric(cohort, tmp_path):
    config = make_config(cohort, n_epochs=3)
    # A learning rate too small to move the validation loss by the scheduler's threshold: a plateau.
    config["optimizer"] = {"name": "Adam", "lr": 1e-6}
    config["scheduler"] = {"name": "ReduceLROnPlateau", "patience": 0, "factor": 0.5}
    train(config, tmp_path, settings=settings(n_examples=0))
    # The log shows the rate each epoch used: halved after the first epoch without improvement.
    assert [float(r[2]) for r in log_rows(tmp_path)[1:]] == [1e-6, 1e-6, 5e-7]
    assert not (tmp_path / "data_loader_testing").exists()


def test_early_stopping_after_patience_epochs_without_a_new_best(cohort, tmp_path):
    config = make_config(cohort, n_epochs=10, early_stopping_patience=2)
    config["optimizer"] = {"name": "SGD", "lr": 0.0}  # the validation loss never improves after epoch 1
    result = train(config, tmp_path, settings=settings(n_examples=0))
    assert [int(r[0]) for r in log_rows(tmp_path)[1:]] == [1, 2, 3]
    assert result.epochs == 3 and "not improved for 2 epochs (patience 2)" in result.stop_reason
    assert load_checkpoint(tmp_path / "model_best.pth")["epoch"] == 1


# -------------------------------------------------------------------------------- in-memory cases (Slicer)

def test_training_on_in_memory_cases_without_file_lists(cohort, tmp_path):
    config = make_config(cohort, n_epochs=1)
    del config["training_filenames"], config["validation_filenames"]
    cases = []
    for seed in (0, 1):
        phantom = generate_case(SHAPE, seed=seed)
        cases.append(Case(f"scene{seed}", np.stack([phantom.images[m] for m in MODALITIES]).astype(np.float32),
                          phantom.affine, phantom.label))
    result = train(config, tmp_path, cases=cases, settings=settings(cache="disk"))
    assert result.epochs == 1 and len(list((tmp_path / "cache" / "training").glob("scene*.pt"))) == 2
    rows = log_rows(tmp_path)
    assert rows[1][3] == "" and load_checkpoint(result.model)["training"]["monitor"] == "loss"


# --------------------------------------------------------------------------------------------- the command

@pytest.fixture
def config_checks(monkeypatch):
    """The configs that ``check_training_config`` checks during a test, wherever it is called from (the command
    and the library's ``train`` each look it up in their own module)."""
    import BratsUNetLib.cli.train
    import BratsUNetLib.training.loop
    from BratsUNetLib.training.setup import check_training_config

    checked = []

    def counting(config, **options):
        checked.append(config)
        return check_training_config(config, **options)

    for module in (BratsUNetLib.cli.train, BratsUNetLib.training.loop):
        monkeypatch.setattr(module, "check_training_config", counting)
    return checked


def test_train_command_trains_and_predicts_the_other_groups(cohort, tmp_path, capsys, config_checks):
    config = make_config(cohort, n_epochs=1, samples_per_epoch=6, training_iterations_per_epoch=2)
    config["test_filenames"] = [{"image": cohort[4]["image"]}]
    config_path = tmp_path / "brats_tiny.json"
    config_path.write_text(json.dumps(config))
    code = cli.main(["train", "--config_filename", str(config_path), "--nthreads", "0", "--ngpus", "0",
                     "--seed", "1", "--progress", "json", "--batch_size", "3", "--n_examples", "2"])
    assert code == 0
    assert config_checks == [config_path]  # checked once: the command's check is the run's
    work = tmp_path / "brats_tiny"
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert any(e["event"] == "epoch" for e in events)
    steps = [e for e in events if e["event"] == "progress" and e["task"] == "epoch 1"]
    # 6 samples per pass in batches of 3 (--batch_size overrides the config's 2), two passes per epoch.
    assert [e["done"] for e in steps] == [1, 2, 3, 4] and steps[0]["total"] == 4
    assert len(list((work / "data_loader_testing").glob("input_test_*.nii.gz"))) == 2
    # Every group but training is predicted (as the original did): probabilities on the first input's grid.
    for group, case in (("validation", "P3_flair"), ("test", "P4_flair")):
        assert nib.load(work / group / f"{case}.nii.gz").shape == (*SHAPE, 3)


def test_cross_validation_trains_every_fold_in_its_folder(cohort, tmp_path, config_checks):
    config = make_config(cohort, n_epochs=1)
    config["training_filenames"] = cohort[:3]
    config["cross_validation"] = {"n_folds": 3, "random_seed": 25}
    del config["validation_filenames"]
    config_path = tmp_path / "cv.json"
    config_path.write_text(json.dumps(config))
    assert cli.main(["train", "--config_filename", str(config_path), "--nthreads", "0", "--progress", "none",
                     "--device", "cpu", "--n_examples", "0"]) == 0
    assert config_checks == [config_path]  # the folds are parts of the config checked before they were written
    for fold in (1, 2, 3):
        fold_dir = tmp_path / "cv" / f"fold{fold}"
        fold_config = json.loads((tmp_path / "cv" / f"fold{fold}.json").read_text())
        (validation_case,) = fold_config["validation_filenames"]
        name = validation_case["image"][0].split("/")[-1].split(".")[0]
        assert (fold_dir / "model.pth").exists() and (fold_dir / "validation" / f"{name}.nii.gz").exists()


def test_machine_config_replaces_the_flags(cohort, tmp_path, capsys):
    machine = tmp_path / "machine.json"
    machine.write_text(json.dumps({"n_workers": 0, "n_gpus": 5}))
    config_path = tmp_path / "m.json"
    config_path.write_text(json.dumps(make_config(cohort, n_epochs=1)))
    code = cli.main(["train", "--config_filename", str(config_path), "--machine_config_filename", str(machine),
                     "--progress", "none"])
    assert code == ExitCode.USER_ERROR
    assert "--ngpus 5 asks for 5 GPUs but 0 CUDA GPU(s) are visible" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- distributed

def test_distributed_training_with_two_processes_under_torchrun(cohort, tmp_path):
    """Two CPU processes (gloo) started by torchrun: each trains on its share, rank 0 validates and writes."""
    config = make_config(cohort, n_epochs=2)
    config["test_filenames"] = [{"image": cohort[4]["image"]}]
    config_path = tmp_path / "ddp.json"
    config_path.write_text(json.dumps(config))
    process = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                              "-m", "BratsUNetLib", "train", "--config_filename", str(config_path), "--device", "cpu",
                              "--nthreads", "0", "--seed", "3", "--progress", "json", "--n_examples", "0"],
                             check=False, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-2000:]
    events = [json.loads(line) for line in process.stdout.splitlines()]
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2]  # rank 0 alone reports
    # Three cases over two ranks: each rank takes two samples (one padded), one batch of 2 per epoch.
    assert {e["total"] for e in events if e["event"] == "progress" and e["task"].startswith("epoch")} == {1}
    assert len(log_rows(tmp_path / "ddp")) == 3
    checkpoint = load_checkpoint(tmp_path / "ddp" / "model.pth")
    assert checkpoint["epoch"] == 2 and not any(key.startswith("module.") for key in checkpoint["state_dict"])
    assert nib.load(tmp_path / "ddp" / "test" / "P4_flair.nii.gz").shape == (*SHAPE, 3)


# ------------------------------------------------------------------------------------------------- signals

def test_signal_handlers_set_the_token_and_are_restored(monkeypatch):
    """``signal.raise_signal`` runs the handler before it returns (``os.kill`` of this process may land on
    another thread a moment later), and the clock that tells one request from a second Ctrl-C is the test's:
    the verdict does not depend on how fast the lines run."""
    clock = [1000.0]
    monkeypatch.setattr(cancel, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    before = signal.getsignal(signal.SIGINT)
    token = CancelToken()
    with stop_on_signals(token, "stopping"):
        signal.raise_signal(signal.SIGTERM)
        assert token.cancelled and token.reason == "SIGTERM"
        clock[0] += cancel.REPEAT_SECONDS
        signal.raise_signal(signal.SIGINT)  # arriving together with the first: not a second request
        clock[0] += 0.001
        with pytest.raises(KeyboardInterrupt):  # later: an impatient user, stop at once
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


# ``python -m BratsUNetLib ARGV``, held right after it reports epoch 1 (saved) until a line comes on stdin: the
# signal then always arrives between epochs 1 and 2, however fast the machine runs the training.
HELD_AFTER_FIRST_EPOCH = (
    "import sys\n"
    "from BratsUNetLib.cli.main import run_console\n"
    "from BratsUNetLib.events import ProgressReporter\n"
    "real_emit = ProgressReporter.emit\n"
    "def emit(self, event, **fields):\n"
    "    real_emit(self, event, **fields)\n"
    "    if event == 'epoch' and fields['epoch'] == 1:\n"
    "        sys.stdin.readline()\n"
    "ProgressReporter.emit = emit\n"
    "run_console()\n")


def test_sigint_stops_the_command_after_the_current_step_with_a_resume_hint(cohort, tmp_path):
    config_path = tmp_path / "long.json"
    config_path.write_text(json.dumps(make_config(cohort, n_epochs=3)))
    process = subprocess.Popen([sys.executable, "-c", HELD_AFTER_FIRST_EPOCH, "train", "--config_filename",
                                str(config_path), "--progress", "json", "--nthreads", "1", "--device", "cpu"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        epochs = (json.loads(line) for line in process.stdout)
        assert any(event["event"] == "epoch" for event in epochs), process.stderr.read()[-2000:]
        process.send_signal(signal.SIGINT)  # the run waits for stdin: the handler runs before it goes on
        _, stderr = process.communicate("go on\n", timeout=120)  # a hang guard only
    finally:
        process.kill()
    assert process.returncode == ExitCode.CANCELLED
    assert "Training stopped after epoch 1" in stderr and f"--config_filename {config_path}" in stderr
    assert "Traceback" not in stderr
    saved = load_checkpoint(tmp_path / "long" / "model.pth")
    assert saved["extra"]["interrupted"] is True and saved["epoch"] == 1
    assert len(log_rows(tmp_path / "long")) == 2  # the header and epoch 1


# ------------------------------------------------------------------------------------------- mixed precision

@pytest.mark.parametrize("bf16_units", [True, False])
def test_amp_on_the_cpu_trains_in_bf16_only_where_the_cpu_has_bf16_units(cohort, tmp_path, monkeypatch, bf16_units):
    """``training.amp`` on the CPU: bf16 autocast with bf16 units (the network's convolutions see bf16), fp32 with
    a message elsewhere, where emulated bf16 would be slower than fp32."""
    from BratsUNetLib.training import state

    monkeypatch.setattr(state, "has_bf16_units", lambda: bf16_units)
    seen: set[torch.dtype] = set()
    real_conv = torch.nn.Conv3d._conv_forward

    def conv_forward(self, input, weight, bias):
        output = real_conv(self, input, weight, bias)
        seen.add(output.dtype)
        return output
    monkeypatch.setattr(torch.nn.Conv3d, "_conv_forward", conv_forward)
    config = make_config(cohort, n_epochs=1)
    config["training"]["amp"] = True
    messages = []
    reporter = ProgressReporter("none")
    reporter.message = messages.append
    result = train(config, tmp_path, settings=settings(n_examples=0), reporter=reporter)
    assert result.epochs == 1 and (tmp_path / "model.pth").is_file()
    assert (torch.bfloat16 in seen) is bf16_units
    assert any("training in float32" in message for message in messages) is not bf16_units
