"""Training from the scene: export the cases, write an original-format config, run ``bratsunet train``.

The run lives in a folder the user chooses: ``cases/`` (labels, and volumes edited in Slicer, as NIfTI),
``bratsunet_slicer.json`` (the config, in 3DUnetCNN's format, so the same run can be repeated on a cluster with
the command line) and the work directory ``bratsunet_slicer/`` that ``train`` fills with ``model.pth`` (after
every epoch), ``model_best.pth`` and ``training_log.csv``. Each ``epoch`` event becomes a row of a table node
that a plot chart shows. Cancel kills the worker between two checkpoint writes (they are atomic), so the last
good ``model.pth`` stays; Resume runs the folder's config again (with the epoch count now asked for, and without
needing the cases in the scene), and the library continues after the last logged epoch.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import slicer
from slicer.i18n import tr as _

from BratsUNetLib.cli.command_line import command_argv
from BratsUNetLib.config.brats import brats_training_config
from BratsUNetLib.config.fine_tuning import fine_tuning_config
from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.fileio import check_output_path, write_text_atomic
from BratsUNetLib.models.catalogue import is_model_name
from BratsUNetLib.training.files import BEST_FILENAME, LOG_FILENAME, MODEL_FILENAME
from BratsUNetSlicer import cases, dependencies, results, scene_io, segment
from BratsUNetSlicer.jobs import start_job
from BratsUNetSlicer.models import ModelRegistry, downloaded_checkpoint
from BratsUNetSlicer.transaction import SceneTransaction
from BratsUNetSlicer.worker import Job, WorkerClient

CONFIG_NAME = "bratsunet_slicer"
FINE_TUNING_STEM = "fine_tune"  # the panel's fine-tuning runs: <output folder>/fine_tune, fine_tune_2...

# DynUNet sizes offered in the panel: per level (filters, stride). "brats" is the BraTS 2020 example of the
# original (24.9 M parameters); "small" (351 k parameters) trains on a CPU in minutes per epoch.
NETWORKS = {
    "small": ((8, 1), (16, 2), (32, 2), (64, 2)),
    "brats": ((64, 1), (96, 2), (128, 2), (192, 2), (256, 2), (384, 2)),
}


@dataclass(frozen=True)
class TrainingOptions:
    """How to train: what the panel's training section sets (the library's own
    :class:`BratsUNetLib.training.settings.TrainingSettings` is how ``bratsunet train`` runs, built from the command
    line). ``patch_size`` is the edge of the cube the network sees."""

    epochs: int = 50
    learning_rate: float = 0.001
    batch_size: int = 1
    patch_size: int = 128
    validation_cases: int = 1
    network: str = "small"
    seed: int = 0
    device: str = "auto"


# The name this class had before (the README's console example, scripts written against it): still accepted.
TrainingSettings = TrainingOptions


def network_block(network: str) -> dict[str, Any]:
    """The config's ``model`` block: a DynUNet with 4 inputs (FLAIR, T1, T1ce, T2) and 3 outputs (WT, TC, ET)."""
    if network not in NETWORKS:
        raise BratsUNetError(f"Unknown network size '{network}'; use one of {', '.join(NETWORKS)}.")
    levels = NETWORKS[network]
    return {
        "name": "DynUNet", "spatial_dims": 3, "in_channels": len(scene_io.MODALITIES), "out_channels": 3,
        "filters": [filters for filters, _ in levels],
        "strides": [[stride] * 3 for _, stride in levels],
        "kernel_size": [[3, 3, 3] for _ in levels],
        "upsample_kernel_size": [[stride] * 3 for _, stride in levels[1:]],
        "deep_supervision": False,
    }


def training_config(settings: TrainingOptions, training_files: list[dict], validation_files: list[dict]) -> dict:
    """An original-format config for BraTS (labels [2, 1, 4] as the WT/TC/ET hierarchy, sigmoid Dice loss)."""
    edge = settings.patch_size
    downsampling = 2 ** (len(NETWORKS.get(settings.network, ())) - 1)
    if edge % downsampling:
        raise BratsUNetError(f"The patch size {edge} must be a multiple of {downsampling} for the "
                             f"'{settings.network}' network.")
    return brats_training_config(
        network_block(settings.network), [edge, edge, edge],
        {"batch_size": settings.batch_size, "validation_batch_size": 1, "n_epochs": settings.epochs,
         "save_best": True, "amp": False, "early_stopping_patience": None},
        training_files, validation_files or None, learning_rate=settings.learning_rate)


def describe_epoch(event: dict[str, Any]) -> str:
    """One log line for an ``epoch`` event."""
    parts = [f"epoch {event.get('epoch')}: loss {event.get('loss', float('nan')):.4f}"]
    if event.get("val_loss") is not None:
        parts.append(f"validation loss {event['val_loss']:.4f}")
    dice = {k: v for k, v in (event.get("dice") or {}).items() if v is not None}
    if dice:
        parts.append("Dice " + " ".join(f"{k} {v:.3f}" for k, v in dice.items()))
    if event.get("eta_seconds") is not None:
        parts.append(f"about {event['eta_seconds'] / 60:.0f} min left")
    return ", ".join(parts)


def describe_step(event: dict[str, Any]) -> str:
    """The status line while a training step runs: ``epoch 2 of 5, step 3 of 10, loss 0.4321``."""
    text = (f"epoch {event.get('epoch')} of {event.get('epochs')}, step {event.get('done')} of "
            f"{event.get('total')}")
    loss = event.get("loss")
    return text + (f", loss {loss:.4f}" if isinstance(loss, (int, float)) else "")


def logged_epochs(log_path: Path) -> list[dict[str, Any]]:
    """The rows of a run's ``training_log.csv`` as ``epoch`` events (to show a resumed run's history)."""
    # Imported on use: the labels bring numpy and scipy, which the panel may still have to install.
    from BratsUNetLib.data.labels import REGIONS
    from BratsUNetLib.training.log import TrainingLog, dice_column

    return [{"event": "epoch", "epoch": row["epoch"], "loss": row["loss"], "val_loss": row["val_loss"],
             "lr": row["lr"], "seconds": row["epoch_seconds"],
             "dice": {region: row[dice_column(region)] for region in REGIONS}}
            for row in TrainingLog.read(log_path, REGIONS).rows]


def fresh_folder(folder: str | Path, stem: str) -> Path:
    """``folder/<stem>``, else ``<stem>_2``, ``<stem>_3``...: the first that holds no training run yet."""
    folder = Path(folder)
    candidates = (folder / (stem if number == 1 else f"{stem}_{number}") for number in itertools.count(1))
    return next(path for path in candidates if not (path / CONFIG_NAME / LOG_FILENAME).exists())


def latest_run(folder: str | Path, stem: str) -> Path:
    """The newest of ``folder/<stem>``, ``<stem>_2``... that holds a model to resume; ``folder`` when none does."""
    folder = Path(folder)
    latest = folder
    for number in itertools.count(1):
        path = folder / (stem if number == 1 else f"{stem}_{number}")
        if not path.is_dir():
            return latest
        if (path / CONFIG_NAME / MODEL_FILENAME).exists():
            latest = path


def fine_tuning_settings(settings: TrainingOptions | None) -> TrainingOptions:
    """``settings`` (default :class:`TrainingOptions`) holding out at most all usable cases of the scene but one
    for validation: fine-tuning on a single corrected case validates on none."""
    usable = sum(found.usable for found in cases.discover_cases(slicer.mrmlScene))
    settings = settings or TrainingOptions()
    return dataclasses.replace(settings, validation_cases=max(0, min(settings.validation_cases, usable - 1)))


def fine_tuning_run(folder: str | Path, settings: TrainingOptions, *, resume: bool) -> tuple[str, TrainingOptions]:
    """Where and how the panel fine-tunes (Train or Resume with "Fine-tune" ticked): a new run goes to a folder of
    its own in ``folder`` (:func:`fresh_folder`), so an earlier model is never written over; Resume continues the
    newest of them (:func:`latest_run`)."""
    if not folder:
        return "", settings  # start() says that a folder must be chosen
    if resume:
        return str(latest_run(folder, FINE_TUNING_STEM)), settings
    return str(fresh_folder(folder, FINE_TUNING_STEM)), fine_tuning_settings(settings)


def start(worker: WorkerClient, found: list[cases.TrainingCase], folder: str | Path, settings: TrainingOptions,
          *, resume: bool = False, pretrained: str = "", pretrained_config: str = "", table: Any = None,
          on_event: Callable[[dict], None] | None = None, registry: ModelRegistry | None = None,
          transaction: SceneTransaction | None = None) -> Job:
    """Start training on the usable cases of ``found``; the last ``validation_cases`` of them validate.

    ``resume`` continues the run in ``folder``; otherwise ``folder`` must not hold a run yet. ``pretrained``
    fine-tunes that model (a checkpoint, an original 3DUnetCNN checkpoint with ``pretrained_config``, or a
    downloaded catalogue model) with its own network, preprocessing and labels (:func:`fine_tuning_config`);
    ``settings``' network and patch size then apply only to a model that sees whole volumes (its patch size).
    The new model is written in ``folder``, never over the old one. ``table`` (made when None, once the checks passed) gets one row per epoch
    (a resumed run's earlier epochs first) and a chart: ``job.result["table"]``, ``job.result["chart"]``. When
    the job ends (success or cancel) the newest model is registered in ``registry`` and put in
    ``job.result["model"]``. The scene changes (the table and chart, and their rows) are a
    ``transaction`` (made here when None): a run that fails or is cancelled takes them away again and gives a
    given ``table`` back its rows, so the scene is as it was; the checkpoints written stay on disk (Resume).
    """
    if not folder:
        raise BratsUNetError("Choose a folder for the training run (checkpoints and log are written there).")
    transaction = transaction or SceneTransaction(slicer.mrmlScene)
    folder = Path(folder)
    work_dir = folder / CONFIG_NAME
    config_path = check_output_path(folder / f"{CONFIG_NAME}.json")  # the folder can be made and written to
    if resume:
        if not (work_dir / MODEL_FILENAME).exists() or not config_path.exists():
            raise BratsUNetError(f"There is no training run to resume in '{folder}'; press Train to start one.")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
            config["training"]["n_epochs"] = settings.epochs
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            raise BratsUNetError(f"The training config '{config_path}' cannot be read ({type(exc).__name__}); "
                                 "restore it, or start a new run in an empty folder.") from None
    else:
        if (work_dir / LOG_FILENAME).exists():
            raise BratsUNetError(f"'{folder}' already holds a training run; press Resume to continue it or choose "
                                 "an empty folder.")
        usable = [case for case in found if case.usable]
        if len(usable) <= settings.validation_cases:
            listing = cases.describe_cases(found) or "no case found"
            raise BratsUNetError(f"Training needs more than {settings.validation_cases} usable case(s) (the "
                                 f"validation cases) and found {len(usable)}: {listing}.")
        description, scheme = None, "brats2020"
        if pretrained:  # read once: its label values are the exported labels' (BraTS 2021 models: ET = 3)
            pretrained = resolved_model(pretrained)
            description = (registry or ModelRegistry()).describe(pretrained, pretrained_config)
            scheme = model_label_scheme(description["config"])
        with transaction.recording():  # whatever exporting puts in the scene goes if the run does not start
            for case in usable:  # every case is checked before any is written
                cases.check_case(case)
            entries = [cases.export_case(case, folder / "cases", scheme) for case in usable]
        split = len(entries) - settings.validation_cases
        if description is not None:
            config = fine_tuning_config_of(pretrained, description, settings, entries[:split], entries[split:])
        else:
            config = training_config(settings, entries[:split], entries[split:])
    write_text_atomic(config_path, json.dumps(config, indent=2))
    argv = command_argv("train", config_filename=str(config_path), output_dir=str(folder), seed=settings.seed,
                        device=settings.device,
                        pretrained_model_filename=str(pretrained) if pretrained and not resume else None)
    with transaction.recording():
        transaction.keep(table)
        if table is None:
            table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "BratsUNet training")
        results.reset_training_table(table)
        for event in logged_epochs(work_dir / LOG_FILENAME) if resume else []:
            results.add_epoch_row(table, event)
        chart = results.training_chart(table)

    def handle(event: dict) -> None:
        if event.get("event") == "epoch":
            results.add_epoch_row(table, event)
        if on_event is not None:
            on_event(event)

    corrected = [] if resume else [case.label for case in usable
                                   if case.label.GetAttribute(segment.TRAINING_LABEL_ATTRIBUTE)]

    def finish(job: Job) -> None:
        if job.state in ("succeeded", "cancelled"):
            model = next((p for p in (work_dir / BEST_FILENAME, work_dir / MODEL_FILENAME) if p.exists()), None)
            if model is not None:
                if registry is not None:
                    registry.add(model, trained_here=True)
                job.result["model"] = str(model)
                if job.state == "succeeded":  # the cases list says which model learnt from each correction
                    for label in corrected:
                        label.SetAttribute(segment.TRAINED_INTO_ATTRIBUTE, str(model))

    job = start_job(worker, argv, transaction, on_event=handle, on_finish=finish)
    job.result.update(table=table, chart=chart)
    return job


def resolved_model(model: str) -> str:
    """The checkpoint file of ``model``: a file as it is, a catalogue model's downloaded checkpoint."""
    if Path(model).is_file() or not is_model_name(model):
        return str(model)
    checkpoint = downloaded_checkpoint(model)
    if checkpoint is None:
        raise BratsUNetError(_("'{name}' is not downloaded yet: segment a case with it first (Apply downloads it), "
                               "then fine-tune it.").format(name=model))
    return str(checkpoint)


def model_label_scheme(model_config: dict) -> str:
    """The label scheme of a model's config: "brats2021" when its labels use 3 (not 4) for enhancing tumour."""
    # Imported on use: it brings numpy, which the panel may still have to install.
    from BratsUNetLib.inference.postprocessing import label_scheme

    return label_scheme(dict(model_config.get("dataset") or {}), None)


def fine_tuning_config_of(model: str, description: dict, settings: TrainingOptions, training_files: list[dict],
                          validation_files: list[dict]) -> dict:
    """The config that fine-tunes ``model`` (its :meth:`ModelRegistry.describe` is ``description``) on the exported
    cases, their images put in the model's channel order."""
    channels = list(description.get("channels") or scene_io.MODALITIES)
    unknown = [name for name in channels if name not in scene_io.MODALITIES]
    if unknown:
        raise BratsUNetError(_("The model '{model}' takes inputs the panel does not have ({names}); fine-tune it "
                               "with the command line.").format(model=model, names=", ".join(unknown)))

    def ordered(entry: dict) -> dict:  # exported in the panel's order (FLAIR, T1, T1ce, T2)
        return {**entry, "image": [entry["image"][scene_io.MODALITIES.index(name)] for name in channels]}

    return fine_tuning_config(description["config"], [ordered(e) for e in training_files],
                              [ordered(e) for e in validation_files], epochs=settings.epochs,
                              learning_rate=settings.learning_rate, batch_size=settings.batch_size,
                              patch_size=settings.patch_size)


def options_of(parameters: Any) -> TrainingOptions:
    """The training settings of the panel's parameter node (a ``BratsUNetParameterNode``)."""
    return TrainingOptions(
        epochs=parameters.epochs, learning_rate=parameters.learningRate, batch_size=parameters.batchSize,
        patch_size=parameters.patchSize, validation_cases=parameters.validationCases,
        network=parameters.networkSize, seed=parameters.seed, device=dependencies.device_argument(parameters.device))


def check_fine_tuning(segmentation: Any, folder: str | Path) -> tuple[str | None, str]:
    """:func:`corrected_model`, checked before a fine-tuning round, which also needs a folder."""
    if not folder:
        raise BratsUNetError(_("Choose a folder for the training run (checkpoints and log are written there)."))
    return corrected_model(segmentation)


def corrected_model(segmentation: Any) -> tuple[str | None, str]:
    """The model that made ``segmentation`` (a BratsUNet result the user corrected) and the config it came with
    (empty but for an original 3DUnetCNN checkpoint), checked: the node is a segmentation and its model is still
    there. The model is None when the node names none (:func:`cases.add_corrected_case` then refuses it as a
    segmentation BratsUNet did not make)."""
    scene_io.check_node_kind(segmentation, "vtkMRMLSegmentationNode", _("corrected segmentation"),
                             _("a segmentation"), _("choose the BratsUNet result you corrected"))
    model = segmentation.GetAttribute(segment.MODEL_ATTRIBUTE) if segmentation is not None else None
    config = (segmentation.GetAttribute(segment.MODEL_CONFIG_ATTRIBUTE) if segmentation is not None else None) or ""
    for path in (model, config):
        if path and not Path(path).is_file():
            raise BratsUNetError(_("The model that made '{name}' ({model}) is not there any more; put it back to "
                                   "fine-tune it.").format(name=segmentation.GetName(), model=path))
    return model, config


def fine_tuning_round(segmentation: Any, folder: str | Path, settings: TrainingOptions | None,
                      transaction: SceneTransaction) -> tuple[Path, TrainingOptions]:
    """Make the corrected ``segmentation`` a training case (in ``transaction``) and return the round's folder,
    ``<folder>/<case>_fine_tune`` (``_2``, ``_3``... later), and its settings: ``settings`` (default
    :class:`TrainingOptions`) with at most all usable cases but one held out for validation."""
    for node in slicer.util.getNodesByClass("vtkMRMLSegmentationNode", slicer.mrmlScene):
        if node.GetAttribute(segment.TRAINING_LABEL_ATTRIBUTE) or node is segmentation:
            transaction.keep(node)  # adding the case moves the "training label" mark between results
    case = cases.add_corrected_case(segmentation)  # refuses a segmentation BratsUNet did not make
    return fresh_folder(folder, f"{cases.file_name(case.name)}_{FINE_TUNING_STEM}"), fine_tuning_settings(settings)
