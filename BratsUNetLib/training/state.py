"""One training run's state: set up fresh or resumed from ``model.pth``, and the files written after each epoch.

A fresh run starts from random weights, from ``--pretrained_model_filename``, or (as in the original) from a
``model.pth`` already in the work folder. Setting up checks every input before the first step: the case lists
(empty, missing files, channel count, labels), then every case is read and preprocessed once (unreadable
images and unexpected label values fail here, naming the file). Resuming happens when the work folder has a
``training_log.csv`` with rows: the run continues after the epoch of ``model.pth`` with its weights,
optimizer, scheduler, AMP scaler and random generator states, and the seed recorded in it.

Outputs after each epoch (rank 0 only), log first so that a kill in between never leaves a checkpoint the
log does not know: ``training_log.csv``; ``model.pth`` (resumable, self-describing); ``model_best.pth`` on
a new minimum of the monitored metric (``save_best``); ``model_<epoch>.pth`` every ``save_every_n_epochs``
and for the last ``save_last_n_models`` epochs (older ones of that window are deleted, as in the original).
"""

from __future__ import annotations

import datetime
import random
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.utils import set_determinism

from BratsUNetLib.cancel import CancelToken
from BratsUNetLib.config.loading import activation_of, dataset_options, guidance_options, training_options
from BratsUNetLib.config.validation import image_channel_count
from BratsUNetLib.data.cache import PreparedCases
from BratsUNetLib.data.cases import CaseSource, check_cases, file_cases
from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.fileio import atomic_path, check_output_folder, remove_interrupted_writes
from BratsUNetLib.hardware.cpu import has_bf16_units
from BratsUNetLib.models.checkpoint import (capture_rng_state, load_checkpoint, load_weights, restore_rng_state,
                                            save_checkpoint)
from BratsUNetLib.models.networks import build_network
from BratsUNetLib.training import distributed
from BratsUNetLib.training.augmentation import split_pipeline
from BratsUNetLib.training.files import BEST_FILENAME, EXAMPLES_FOLDER, LOG_FILENAME, MODEL_FILENAME
from BratsUNetLib.training.lock import RunLock
from BratsUNetLib.training.log import TrainingLog, dice_column
from BratsUNetLib.training.samples import EpochSampler, SampleDataset, make_loader, write_examples
from BratsUNetLib.training.settings import TrainingSettings
from BratsUNetLib.training.guided import GuidedInputs
from BratsUNetLib.training.setup import (build_inferer, build_loss, build_optimizer, build_scheduler, channel_names,
                                         output_names, step_scheduler)



# The training summary's record of where a fine-tuned model comes from, kept when its run is resumed.
LINEAGE_KEYS = ("fine_tuned_from", "fine_tuned_on")
LINEAGE_CASES = 20  # case names listed at most (a summary, not the config)


def draw_seed() -> int:
    """A fresh seed for runs started without ``--seed`` (recorded in the checkpoints so resuming is exact)."""
    return random.SystemRandom().randrange(2**31)


class TrainingRun:
    """Network, optimizer, data and log of one run."""

    def __init__(self, config: dict, work_dir: Path, settings: TrainingSettings, context: distributed.Context,
                 reporter: ProgressReporter, lock: RunLock | None = None):
        self.config = config
        self.lock = lock  # taken in setup once the folder exists; released by the caller
        self.work_dir = work_dir
        self.settings = settings
        self.context = context
        self.reporter = reporter
        self.options = training_options(config)
        if settings.batch_size:
            self.options["batch_size"] = int(settings.batch_size)
        self.model_path = work_dir / MODEL_FILENAME
        self.last_epoch = 0
        # A fine-tuned model's parent and the cases it was fine-tuned on (its model card shows them).
        self.lineage: dict[str, Any] = {}
        # The run's first step includes starting the data-loading workers; it is also kept apart.
        self.timing = {"steps": 0, "data_wait_seconds": 0.0, "step_seconds": 0.0, "first_data_wait_seconds": 0.0,
                       "first_step_seconds": 0.0}

    # ------------------------------------------------------------------------------------------- set-up

    def setup(self, cases: Sequence[CaseSource] | None, validation_cases: Sequence[CaseSource] | None,
              cancel: CancelToken | None = None) -> None:
        model_block = self.config["model"]
        in_channels = image_channel_count(self.config)  # a guided model's click channels come from no file
        if cases is None:
            cases = file_cases(self.config.get("training_filenames") or [], "training")
        if validation_cases is None and self.config.get("validation_filenames"):
            validation_cases = file_cases(self.config["validation_filenames"], "validation")
        check_cases(cases, "training", in_channels, need_labels=True)
        if validation_cases:
            check_cases(validation_cases, "validation", in_channels, need_labels=True)
        self.cases, self.validation_cases = list(cases), list(validation_cases or [])
        if not self.config["dataset"].get("orientation"):
            # Without an explicit orientation every case is turned to the voxel order of the first one, and the
            # checkpoints record it, so a model sees the same order in training and in inference whichever way
            # each file (or Slicer's export of it) stores its voxels.
            self.config["dataset"]["orientation"] = self.cases[0].axis_codes
        self.validation = bool(self.validation_cases)
        self.monitor = "val_loss" if self.validation else "loss"
        self.regions = output_names(dataset_options(self.config, "training"), model_block.get("out_channels"))
        self.channels = channel_names(in_channels, self.settings.channels)

        check_output_folder(self.work_dir, "the work folder")  # made here; one line if it cannot be
        if self.lock is not None:  # before anything in the folder is read or changed
            self.lock.acquire(self._notice)
        if self.context.is_main:  # files half-written by a run that was killed
            remove_interrupted_writes(self.work_dir)
        resume = self._resume_point()
        self._seed(resume)
        self._build_model(resume)
        self._build_data(cancel)
        if resume is not None:
            self._restore(resume)
            if self.context.is_main:  # a kill may have cut the last epoch's copies short
                self._save_copies(self.last_epoch)

    def _notice(self, text: str) -> None:
        """A message the user must see even with ``--progress none`` (then on stderr)."""
        if self.reporter.mode == "none":
            print(text, file=sys.stderr, flush=True)
        else:
            self.reporter.message(text)

    def _resume_point(self) -> dict | None:
        """The checkpoint to resume from (None for a fresh run); sets ``self.log`` and ``self.last_epoch``."""
        log_path = Path(self.settings.log_filename or self.work_dir / LOG_FILENAME)
        if not log_path.exists():
            self.log = TrainingLog(log_path, self.regions)
            return None
        self.log = TrainingLog.read(log_path, self.regions)
        if not self.log.rows:
            return None
        if not self.model_path.exists() and self.log.last_epoch == 1:
            # Killed after logging its first epoch and before saving it (the log is written first): start over.
            self.log.keep_until(0)
            return None
        if not self.model_path.exists():
            raise BratsUNetError(f"'{log_path}' records {len(self.log.rows)} epoch(s) but '{self.model_path}' is "
                                 f"missing, so training cannot resume; put model.pth back, or delete the log "
                                 f"to start over.")
        checkpoint = load_checkpoint(self.model_path)
        epoch = checkpoint.get("epoch") or self.log.last_epoch
        if epoch > self.log.last_epoch:
            raise BratsUNetError(f"'{self.model_path}' is from epoch {epoch} but '{log_path}' ends at epoch "
                                 f"{self.log.last_epoch}; they belong to different runs. Delete both to start over.")
        self.log.keep_until(epoch)
        self.last_epoch = epoch
        if checkpoint.get("optimizer") is None:
            self.reporter.message(f"'{self.model_path}' holds weights only (3DUnetCNN format); resuming after "
                                  f"epoch {epoch} with a new optimizer and scheduler.")
        if self.settings.pretrained_model:
            self.reporter.message("Resuming from model.pth; --pretrained_model_filename applies only when a run "
                                  "starts.")
        self.reporter.message(f"Resuming after epoch {epoch} from '{self.model_path}'.")
        return checkpoint

    def _seed(self, resume: dict | None) -> None:
        extra = (resume or {}).get("extra") or {}
        if extra.get("seed") is not None:
            self.seed, self.seeded = int(extra["seed"]), bool(extra.get("seeded"))
            if self.settings.seed is not None and self.settings.seed != self.seed:
                self.reporter.message(f"Keeping the seed {self.seed} of the run being resumed (--seed "
                                      f"{self.settings.seed} ignored).")
        else:
            self.seeded = self.settings.seed is not None
            self.seed = int(self.settings.seed) if self.seeded else draw_seed()
        if self.seeded:
            set_determinism(seed=self.seed)  # also makes cuDNN deterministic
        else:
            torch.manual_seed(self.seed)
            np.random.seed(self.seed % 2**32)
            random.seed(self.seed)

    def _build_model(self, resume: dict | None) -> None:
        device = self.context.device
        network = build_network(self.config["model"])
        if resume is not None:
            load_weights(network, resume["state_dict"], source=str(self.model_path))
            self.lineage = {key: value for key, value in (resume.get("training") or {}).items()
                            if key in LINEAGE_KEYS}
        elif self.settings.pretrained_model or self.model_path.exists():
            # As in the original, a model.pth already in the work folder (without a log) is the starting point.
            path = Path(self.settings.pretrained_model or self.model_path).expanduser()
            parent = load_checkpoint(path)
            load_weights(network, parent["state_dict"], source=str(path))
            self.reporter.message(f"Starting from the weights of '{path}' (fine-tuning).")
            parent_channels = parent.get("channels")
            if not self.settings.channels and isinstance(parent_channels, list) and \
                    len(parent_channels) == len(self.channels):
                # The parent's input order: the config lists each case's images in it (fine-tuning keeps it).
                self.channels = [str(name) for name in parent_channels]
            names = sorted({case.id for case in self.cases})
            # A model.pth of the work folder is written over by this run's first epoch: the lineage says so rather
            # than naming a file that will hold the new model.
            parent_name = str(path.resolve()) if self.settings.pretrained_model else (
                f"{path.resolve()} (as it was before this run, which replaced it)")
            self.lineage = {"fine_tuned_from": parent_name,
                            "fine_tuned_on": names[:LINEAGE_CASES] + (
                                [f"... {len(names) - LINEAGE_CASES} more"] if len(names) > LINEAGE_CASES else [])}
        network.to(device)
        self.loss = build_loss(self.config).to(device)
        self.optimizer = build_optimizer(self.config, network.parameters())
        self.scheduler = build_scheduler(self.config, self.optimizer)
        self.inferer = build_inferer(self.config)
        self.activation = activation_of(self.config)
        guidance = guidance_options(self.config)
        self.guided = GuidedInputs(guidance, self.activation) if guidance is not None else None
        # Mixed precision: fp16 (scaled) on CUDA; bf16 on CPUs with bf16 units, where emulated bf16 would be slower
        # than fp32 (bf16 keeps fp32's range, so its gradients need no scaling).
        cpu_bf16 = device.type == "cpu" and has_bf16_units()
        self.use_amp = bool(self.options["amp"]) and (device.type == "cuda" or cpu_bf16)
        self.amp_dtype = torch.bfloat16 if cpu_bf16 else None  # None: the device's default (fp16 on CUDA)
        if self.options["amp"] and not self.use_amp:
            self.reporter.message(f"training.amp applies to CUDA GPUs and to CPUs with bf16 units (AVX512-BF16 or "
                                  f"AMX); training in float32 on this {device.type}.")
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.use_amp and device.type == "cuda")
        self.network = distributed.wrap(network, self.context)

    def _build_data(self, cancel: CancelToken | None) -> None:
        settings, context = self.settings, self.context
        pin = bool(settings.pin_memory) and context.device.type == "cuda"
        datasets = {}
        groups = [("training", self.cases)] + ([("validation", self.validation_cases)]
                                               if self.validation and context.is_main else [])
        for group, cases in groups:
            options = dataset_options(self.config, group)
            cached, per_sample = split_pipeline(options)
            prepared = PreparedCases(cases, options, cached, settings.cache, self.work_dir / "cache" / group)
            prepared.prepare(settings.n_workers, self.reporter, f"prepare {group} cases", cancel)
            datasets[group] = SampleDataset(prepared, per_sample)
            if settings.debug:
                self._describe(group, datasets[group])
        self.sampler = EpochSampler(len(self.cases), self.seed, n_samples=self.options["samples_per_epoch"],
                                    rank=context.rank, world_size=context.world_size)
        self.loader = make_loader(datasets["training"], self.sampler, self.options["batch_size"],
                                  settings.n_workers, pin, self.options["prefetch_factor"])
        self.validation_loader = None
        if "validation" in datasets:
            self.validation_loader = make_loader(
                datasets["validation"], EpochSampler(len(self.validation_cases), self.seed, shuffle=False),
                self.options["validation_batch_size"], settings.n_workers, pin, self.options["prefetch_factor"])
        n_examples = settings.n_examples if settings.n_examples is not None else self.options["test_input"]
        if n_examples and context.is_main:
            write_examples(datasets["training"], n_examples, self.work_dir / EXAMPLES_FOLDER, self.seed)

    def _describe(self, group: str, dataset: Any) -> None:
        """--debug: what the network will see of each case (shape after preprocessing, target voxels)."""
        for index in range(len(dataset)):
            sample = dataset.sample(index, 0)
            counts = sample["label"].flatten(1).sum(1).int().tolist() if "label" in sample else []
            self.reporter.message(f"{group} case {dataset.case_id(index)}: input {tuple(sample['image'].shape)}, "
                                  f"target voxels per channel {dict(zip(self.regions, counts))}")

    def _restore(self, checkpoint: dict) -> None:
        """Optimizer, scheduler, scaler and generator states of the checkpoint (last, just before epoch 1 + k)."""
        if checkpoint.get("optimizer") is not None:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint.get("scheduler") is not None and self.scheduler is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        scaler_state = (checkpoint.get("extra") or {}).get("scaler")
        if scaler_state and self.scaler.is_enabled():
            self.scaler.load_state_dict(scaler_state)
        if checkpoint.get("rng_state") is not None:
            restore_rng_state(checkpoint["rng_state"])

    # ---------------------------------------------------------------------------------------- outputs

    def end_epoch(self, row: dict) -> None:
        """Log the epoch, step the scheduler, write the checkpoints (rank 0), keep the ranks together."""
        self.log.append(row)
        self.last_epoch = int(row["epoch"])
        if self.context.is_main:
            self.log.write()
        step_scheduler(self.scheduler, row[self.monitor])
        if self.context.is_main:
            self._save_checkpoints(self.last_epoch)
        distributed.barrier(self.context)

    def _save_checkpoints(self, epoch: int) -> None:
        self._write_model(self.network, optimizer=self.optimizer, scheduler=self.scheduler, epoch=epoch,
                          rng_state=capture_rng_state(), training=self.summary(),
                          extra={"seed": self.seed, "seeded": self.seeded, "scaler": self.scaler.state_dict(),
                                 "interrupted": False})
        self._save_copies(epoch)

    def _save_copies(self, epoch: int) -> None:
        """The copies of ``model.pth`` (of ``epoch``): ``model_best.pth`` on a new best, ``model_<epoch>.pth``,
        and the rolling window's older files deleted. Safe to repeat, so a resumed run redoes it for the epoch it
        resumes after (the run may have been killed before it finished)."""
        if self.options["save_best"] and self.log.is_new_best(self.monitor):
            _copy(self.model_path, self.work_dir / BEST_FILENAME)
        every, last_n = self.options["save_every_n_epochs"], self.options["save_last_n_models"]
        if every and epoch % every == 0:
            _copy(self.model_path, self.work_dir / f"model_{epoch}.pth")
        if last_n:
            # Every expired file, not only the one of epoch - last_n: a killed run may have left older ones.
            # Files that also belong to the save_every_n_epochs series stay.
            for path in self.work_dir.glob("model_*.pth"):
                number = path.stem[len("model_"):]
                if number.isdigit() and int(number) <= epoch - last_n and not (every and int(number) % every == 0):
                    path.unlink(missing_ok=True)
            _copy(self.model_path, self.work_dir / f"model_{epoch}.pth")

    def _write_model(self, network: torch.nn.Module, **state: Any) -> None:
        save_checkpoint(self.model_path, network, config=self.config, channels=self.channels,
                        regions=self.regions, **state)

    def summary(self) -> dict:
        """The training summary stored in checkpoints (the model card of the Slicer module shows it)."""
        summary = {"cases": len(self.cases), "validation_cases": len(self.validation_cases),
                   "epochs": self.last_epoch, "monitor": self.monitor, "seed": self.seed,
                   "date": datetime.date.today().isoformat(), **self.lineage}
        best = self.log.best_row(self.monitor)
        if best is not None:
            summary.update({"best_epoch": best["epoch"], f"best_{self.monitor}": best[self.monitor]})
            if self.validation:
                summary["best_dice"] = {region: best[dice_column(region)] for region in self.regions}
        return summary

    def mark_interrupted(self) -> None:
        """Rewrite ``model.pth`` (the end of the last complete epoch) with ``extra["interrupted"] = True``.

        The partial epoch is dropped: the network is reloaded from the file, so the file stays exactly the
        state a resume needs.
        """
        if not self.context.is_main or self.last_epoch == 0 or not self.model_path.exists():
            return
        saved = load_checkpoint(self.model_path)
        network = distributed.unwrap(self.network)
        load_weights(network, saved["state_dict"], source=str(self.model_path))
        self._write_model(network, optimizer=saved.get("optimizer"), scheduler=saved.get("scheduler"),
                          epoch=saved.get("epoch"), rng_state=saved.get("rng_state"),
                          training=saved.get("training"), extra={**(saved.get("extra") or {}), "interrupted": True})


def _copy(source: Path, target: Path) -> None:
    """Copy a checkpoint atomically (a reader never sees half a file)."""
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
