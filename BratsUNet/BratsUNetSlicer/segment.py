"""One segmentation run: check the inputs, hand them to ``bratsunet segment`` in the worker, import the result.

The inputs are checked, and exported where their files cannot be used as they are, before the job starts (a
bad input fails at once, with nothing changed);
the result is imported when the job ends, in the thread that polls it. The temporary folder is removed however
the job ends. A failed or cancelled job leaves the scene exactly as it was: the whole job is a
:class:`~BratsUNetSlicer.transaction.SceneTransaction` (nodes it added are removed, nodes it refilled restored).
A result the user edited since BratsUNet wrote it (its content digest, :data:`DIGEST_ATTRIBUTE`, changed) is
never refilled: the new result goes to a new node, and ``job.result["note"]`` says so.
The result records what made it (its input volumes as node references, the model's path as an attribute), so a
corrected result can become a training case and be fine-tuned on (:mod:`BratsUNetSlicer.cases`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from BratsUNetLib.cli.command_line import command_argv
from BratsUNetLib.errors import BratsUNetError, CheckpointError, ImageError
from BratsUNetLib.models.catalogue import is_model_name
from BratsUNetSlicer import results, scene_io
from BratsUNetSlicer.jobs import start_job, temporary_folder
from BratsUNetSlicer.models import downloaded_checkpoint
from BratsUNetSlicer.transaction import SceneTransaction, segmentation_digest
from BratsUNetSlicer.worker import Job, WorkerClient

TABLE_ROLE = "BratsUNetVolumes"
# Node reference roles of a result's input volumes ("BratsUNetInputflair"...) and the attribute naming its model.
INPUT_ROLE = "BratsUNetInput"
MODEL_ATTRIBUTE = "BratsUNet.Model"
MODEL_CONFIG_ATTRIBUTE = "BratsUNet.ModelConfig"  # the config an original 3DUnetCNN checkpoint came with
# Set on a result the user corrected and added to the training cases: it is a reference label from then on.
TRAINING_LABEL_ATTRIBUTE = "BratsUNet.TrainingLabel"
# Set on a corrected result once a training that used it succeeded: the model it went into.
TRAINED_INTO_ATTRIBUTE = "BratsUNet.TrainedInto"
# The digest of the segments BratsUNet wrote into a result: another digest now means the user edited it.
DIGEST_ATTRIBUTE = "BratsUNet.ResultDigest"


@dataclass(frozen=True)
class SegmentationOptions:
    """How to segment; ``device`` is a ``bratsunet --device`` value (auto, cpu, cuda, mps)."""

    device: str = "auto"
    precision: str | None = None  # bratsunet segment --precision (None: fp32, mixed precision on a GPU)
    native_resolution: bool = False  # bratsunet segment --native (auto: one pass if it fits, else windows)
    tta: bool = False
    scheme: str = "brats2020"
    probability_maps: bool = False
    show_3d: bool = True  # the result as closed surfaces in the 3D views


def check_channels(channels: list[str], model: str = "") -> None:
    """Refuse a model (the checkpoint ``model``) whose inputs are not among FLAIR, T1, T1ce and T2."""
    unknown = [name for name in channels if name not in scene_io.MODALITIES]
    if unknown or not channels:
        raise CheckpointError(f"The model {f'{str(model)!r} ' if model else ''}expects the inputs "
                              f"{', '.join(channels) or '(none)'}; BratsUNet in Slicer provides FLAIR, T1, T1ce and T2 "
                              "only. Choose a model trained on those.")


def check_inputs(inputs: dict[str, Any], channels: list[str]) -> None:
    """Refuse unusable input volumes, and inputs that do not overlap the reference (the first channel's) in space."""
    for name in channels:
        scene_io.check_volume(inputs.get(name), scene_io.MODALITY_TITLES[name])
    reference = inputs[channels[0]]
    reference_case = _case_id(reference)
    for name in channels[1:]:
        other_case = _case_id(inputs[name])
        if reference_case and other_case and other_case != reference_case:
            raise ImageError(f"The {scene_io.MODALITY_TITLES[name]} input '{inputs[name].GetName()}' is named as "
                             f"another case than the {scene_io.MODALITY_TITLES[channels[0]]} input "
                             f"'{reference.GetName()}'; choose the four volumes of one case (or rename the volume if "
                             "it belongs to this one).")
        if not scene_io.boxes_overlap(scene_io.ras_bounds(inputs[name]), scene_io.ras_bounds(reference)):
            raise ImageError(f"The {scene_io.MODALITY_TITLES[name]} input '{inputs[name].GetName()}' does not overlap "
                             f"the {scene_io.MODALITY_TITLES[channels[0]]} input '{reference.GetName()}' in space; "
                             "check that the volumes belong to the same case.")


def _case_id(volume: Any) -> str | None:
    """The case a volume is named after (``BraTS20_Training_001`` of ``BraTS20_Training_001_t1``), lower case, when
    its name has a modality suffix and a case number; None otherwise (e.g. "registered_t1": any case)."""
    prefix, role = scene_io.split_name(volume.GetName())
    return prefix.lower() if role in scene_io.MODALITIES and any(c.isdigit() for c in prefix) else None


def check_output(segmentation: Any) -> None:
    """Refuse to refill a segmentation that holds segments BratsUNet did not make (e.g. a user's own), or a
    result the user corrected and added to the training cases."""
    if segmentation is not None and segmentation.GetAttribute(TRAINING_LABEL_ATTRIBUTE):
        raise BratsUNetError(f"The output segmentation '{segmentation.GetName()}' is a corrected training case, "
                             "which segmenting would replace; choose \"Create new Segmentation\" as the output.")
    if (segmentation is not None and segmentation.GetSegmentation().GetNumberOfSegments()
            and segmentation.GetNodeReference(TABLE_ROLE) is None):
        raise BratsUNetError(f"The output segmentation '{segmentation.GetName()}' holds segments BratsUNet did not "
                             "make, which segmenting would replace; choose \"Create new Segmentation\" or an earlier "
                             "BratsUNet result as the output.")


def edited_since_written(segmentation: Any) -> bool:
    """Whether ``segmentation`` (a BratsUNet result) holds other segments than the ones BratsUNet last wrote.

    A result without a recorded digest (e.g. from an older version) counts as edited: refilling it could lose work.
    """
    written = segmentation.GetAttribute(DIGEST_ATTRIBUTE)
    return not written or written != segmentation_digest(segmentation)


def start(worker: WorkerClient, inputs: dict[str, Any], model: str, config: str, channels: list[str],
          regions: list[str], options: SegmentationOptions, segmentation: Any = None, table: Any = None,
          on_event: Callable[[dict], None] | None = None, transaction: SceneTransaction | None = None) -> Job:
    """Start segmenting ``inputs`` (modality -> volume node) with the checkpoint ``model``.

    ``channels`` are the model's inputs in network order; the first one is the reference: the result lies on
    its grid. ``regions`` name the model's outputs (the probability maps). ``segmentation`` / ``table`` are
    refilled when given, else made (or found through the segmentation's references) when the result arrives.
    After the job, ``job.result`` holds the nodes under ``segmentation``, ``table`` and ``probabilities``
    beside the worker's payload, and ``note`` when an edited ``segmentation`` was kept and a new node made.
    ``transaction`` (made here when None) undoes the job's scene changes unless it succeeds.
    """
    check_channels(channels, model)
    check_inputs(inputs, channels)
    check_output(segmentation)
    reference = inputs[channels[0]]
    folder = temporary_folder("segment")
    try:
        images: dict[str, str] = {}  # modality (segment's option name) -> the file the worker reads
        exported: dict[str, str] = {}  # a temporary file's path -> the input it holds, for the worker's messages
        for name in channels:
            path = scene_io.input_file(inputs[name], folder / f"{name}.nii")
            images[name] = str(path)
            if path.parent == folder:
                exported[f"'{path}'"] = f"the {scene_io.MODALITY_TITLES[name]} input '{inputs[name].GetName()}'"
        labels_path, probabilities_path = folder / "labels.nii.gz", folder / "probabilities.nii.gz"
        argv = command_argv(
            "segment", model=[str(model)], config=str(config) if config else None, **images, output=str(labels_path),
            probabilities=str(probabilities_path) if options.probability_maps else None, device=options.device,
            precision=options.precision or None, native="auto" if options.native_resolution else None,
            tta=options.tta, labels=options.scheme)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise

    transaction = transaction or SceneTransaction(reference.GetScene())

    def finish(job: Job) -> None:
        for path, title in exported.items():  # the user knows the node, not the file it was exported to
            if job.error:
                job.error = job.error.replace(path, title)
        if job.state == "succeeded":
            target, target_table = segmentation, table
            if target is not None and edited_since_written(target):
                target, target_table = None, None  # the user's edits are kept; the result goes to a new node
            for node in (target, target_table):
                transaction.keep(node)
            if target is not None:
                for region in regions:
                    transaction.keep(target.GetNodeReference(f"{results.PROBABILITY_ROLE}{region}"))
            _import(job, reference, regions, options, target, target_table, labels_path, probabilities_path)
            node = job.result["segmentation"]
            _record_origin(node, inputs, model, config)
            node.SetAttribute(DIGEST_ATTRIBUTE, segmentation_digest(node))
            if segmentation is not None and target is None:
                job.result["note"] = (f"'{segmentation.GetName()}' was edited since BratsUNet filled it, so it "
                                      f"is kept as it is; the new result is in '{node.GetName()}'.")
                if on_event is not None:
                    on_event({"event": "message", "text": job.result["note"]})

    return start_job(worker, argv, transaction, on_event=on_event, on_finish=finish, folder=folder)


def _import(job: Job, reference: Any, regions: list[str], options: SegmentationOptions, segmentation: Any,
            table: Any, labels_path: Path, probabilities_path: Path) -> None:
    """Put the worker's files in the scene; everything is read and checked before the first node changes."""
    channels = scene_io.read_channels(probabilities_path, reference) if options.probability_maps else None
    if channels is not None and len(channels) != len(regions):
        raise ImageError(f"'{probabilities_path}' holds {len(channels)} probability maps for the "
                         f"{len(regions)} outputs {', '.join(regions)}; segment again.")
    node = results.import_segmentation(labels_path, reference, options.scheme, segmentation)
    results.show_in_3d(node, options.show_3d)
    job.result["segmentation"] = node
    if channels is not None:
        job.result["probabilities"] = results.import_probabilities(channels, node, reference, regions)
    table = table or node.GetNodeReference(TABLE_ROLE)
    if table is None:
        table = node.GetScene().AddNewNodeByClass("vtkMRMLTableNode", f"{node.GetName()} volumes")
    node.SetNodeReferenceID(TABLE_ROLE, table.GetID())
    results.update_volumes_table(table, job.result.get("volumes_ml") or {})
    results.place_beside(table, reference)
    job.result["table"] = table


def _record_origin(segmentation: Any, inputs: dict[str, Any], model: str, config: str = "") -> None:
    """Keep with the result the volumes it was made from and the model that made it (saved with the scene)."""
    for modality in scene_io.MODALITIES:
        node = inputs.get(modality)
        segmentation.SetNodeReferenceID(f"{INPUT_ROLE}{modality}", node.GetID() if node is not None else None)
    # A catalogue model's name stands for the checkpoint the worker downloaded: the file is what fine-tuning needs.
    model_file = downloaded_checkpoint(model) if is_model_name(model) else None
    segmentation.SetAttribute(MODEL_ATTRIBUTE, str(model_file or Path(model).resolve()))
    if config:
        segmentation.SetAttribute(MODEL_CONFIG_ATTRIBUTE, str(Path(config).resolve()))
    else:
        segmentation.RemoveAttribute(MODEL_CONFIG_ATTRIBUTE)
