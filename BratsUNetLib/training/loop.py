"""Training a network from a config in the original 3DUnetCNN format: the epoch loop.

:func:`train` reads cases (the config's ``training_filenames`` / ``validation_filenames``, or in-memory
:class:`~BratsUNetLib.data.cases.Case` objects), prepares and caches them, then runs epochs 1..``n_epochs``: one
training pass (or ``training_iterations_per_epoch`` passes) over the samples, validation (loss and Dice per
output region), a row of ``training_log.csv``, the scheduler step and the checkpoints (see
:mod:`BratsUNetLib.training.state`). It runs on the CPU, a CUDA GPU (automatic mixed precision when the config
sets ``amp``), Apple MPS, or several GPUs with DistributedDataParallel under torchrun.

Reproducibility: every random choice derives from one seed (``--seed``, or drawn and recorded when not
given): network initialisation, sample order and per-sample augmentation (:mod:`BratsUNetLib.training.samples`), and
torch's generator state saved with every checkpoint. A run resumed after epoch k therefore ends, on the CPU,
with the same weights and log as a run that was never interrupted.

Stopping: the :class:`~BratsUNetLib.cancel.CancelToken` is checked after every step; the partial epoch is
dropped, ``model.pth`` (the end of the last complete epoch) is marked as interrupted, and
:class:`~BratsUNetLib.errors.Cancelled` says how to resume.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from monai.metrics import compute_dice

from BratsUNetLib.training import distributed
from BratsUNetLib.cancel import CancelToken
from BratsUNetLib.data.cache import start_fork_server
from BratsUNetLib.data.cases import CaseSource
from BratsUNetLib.errors import Cancelled
from BratsUNetLib.events import ProgressReporter, eta_seconds
from BratsUNetLib.training.lock import RunLock
from BratsUNetLib.training.files import BEST_FILENAME, MODEL_FILENAME
from BratsUNetLib.training.state import TrainingRun
from BratsUNetLib.training.log import dice_column
from BratsUNetLib.training.samples import derive_seed
from BratsUNetLib.training.settings import TrainingSettings
from BratsUNetLib.training.setup import CheckedConfig, check_training_config, discretize
from BratsUNetLib.config.loading import filename_groups
from BratsUNetLib.fileio import check_not_inputs


@dataclass
class TrainingResult:
    """What a finished training left behind (paths on rank 0; ``is_main`` False on other ranks)."""

    work_dir: Path
    model: Path
    best_model: Path | None
    epochs: int  # the last epoch completed
    stop_reason: str | None = None  # early stopping / divergence message, None when n_epochs were run
    is_main: bool = True
    # steps, step_seconds, data_wait_seconds, and the same for the first step (worker start-up included)
    timing: dict[str, float] = field(default_factory=dict)


def train(config: Any, work_dir: str | Path, *, cases: Sequence[CaseSource] | None = None,
          validation_cases: Sequence[CaseSource] | None = None, settings: TrainingSettings | None = None,
          reporter: ProgressReporter | None = None, cancel: CancelToken | None = None) -> TrainingResult:
    """Train (or resume training) the config's network in ``work_dir``; see the module docstring.

    ``config``: a config path or dict (checked here by :func:`~BratsUNetLib.training.setup.check_training_config`),
    or what that check returned (a :class:`~BratsUNetLib.training.setup.CheckedConfig`, not checked again). ``cases`` /
    ``validation_cases`` replace the config's file lists when given (e.g. volumes from a Slicer scene).
    Raises :class:`BratsUNetError` subclasses for unusable inputs before any epoch runs, and
    :class:`Cancelled` when ``cancel`` is set.
    """

    settings = settings or TrainingSettings()
    start_fork_server(settings.n_workers)
    context = distributed.start(settings.device)
    reporter = reporter if reporter is not None and context.is_main else ProgressReporter("none")
    cancel = cancel or CancelToken()
    # One folder, one run: rank 0 locks the work folder once it exists (see BratsUNetLib.training.lock) until the end.
    lock = RunLock(work_dir) if context.is_main else None
    try:
        # Every check `train` and `validate-config` make (training memory included), also for the library's
        # callers (the Slicer module), before anything is written.
        checked = config if isinstance(config, CheckedConfig) else check_training_config(
            config, device=context.device, batch_size=settings.batch_size)
        _check_log_is_not_an_input(checked, settings)
        run = TrainingRun(checked.config, Path(work_dir), settings, context, reporter, lock=lock)
        run.setup(cases, validation_cases, cancel)
        return _loop(run, cancel)
    finally:
        if lock is not None:
            lock.release()
        # The DistributedDataParallel wrapper goes before the process group: released after it, its reducer would
        # hold the group's last reference and destroy it with the GIL held, while gloo's worker thread waits for
        # the GIL to free its last work's tensors, and the process hangs at exit (pytorch/pytorch#56297).
        run = None
        if context.distributed:
            gc.collect()
        distributed.finish(context)


def _check_log_is_not_an_input(checked: CheckedConfig, settings: TrainingSettings) -> None:
    """The training log (``--training_log_filename`` can name any file) must not be the config, the pretrained
    model or an image or label of the config's lists: the run appends to it and rewrites it."""

    if settings.log_filename is None:  # <work_dir>/training_log.csv: the run's own file
        return
    inputs: list[tuple[str, Any]] = [("--pretrained_model_filename", settings.pretrained_model)]
    if checked.path is not None:
        inputs.append(("--config_filename", checked.path))
    for group, entries in filename_groups(checked.config).items():
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict):
                label = entry.get("label")
                paths = [*(entry.get("image") or []), *(label if isinstance(label, list) else [label])]
                inputs.extend((f"image or label of a case in '{group}_filenames'", path)
                              for path in paths if isinstance(path, str))
    check_not_inputs({"--training_log_filename": settings.log_filename}, inputs)


def _loop(run: TrainingRun, cancel: CancelToken) -> TrainingResult:
    """Epochs from the one after the last completed until ``n_epochs`` or an early stop."""
    context, reporter = run.context, run.reporter
    first = run.last_epoch + 1
    n_epochs = int(run.options["n_epochs"])
    started = time.monotonic()
    stop_reason = None
    for epoch in range(first, n_epochs + 1):
        # Rank 0 decides for all: the time budget depends on each process's clock.
        stop_reason = distributed.share(run.log.stop_reason(run.monitor, run.options["early_stopping_patience"])
                                        or _over_budget(run, started, epoch - first), context)
        if stop_reason:
            reporter.message(stop_reason)
            break
        epoch_start = time.monotonic()
        loss = _train_epoch(run, epoch, cancel, RunClock(started, first, n_epochs))
        if loss is None or distributed.any_across(cancel.cancelled, context):
            run.mark_interrupted()
            raise Cancelled(_stopped_message(run))
        val_loss, dice = distributed.share(_validate(run) if context.is_main and run.validation else (None, {}),
                                           context)
        row = {"epoch": epoch, "loss": loss, "lr": float(run.optimizer.param_groups[0]["lr"]),
               "val_loss": val_loss, "epoch_seconds": time.monotonic() - epoch_start,
               **{dice_column(region): value for region, value in dice.items()}}
        run.end_epoch(row)
        reporter.emit("epoch", epoch=epoch, loss=loss, val_loss=val_loss, dice=dice, lr=row["lr"],
                      seconds=row["epoch_seconds"],
                      eta_seconds=eta_seconds(started, epoch - first + 1, n_epochs - first + 1))
    best = run.work_dir / BEST_FILENAME
    result = TrainingResult(run.work_dir, run.work_dir / MODEL_FILENAME, best if best.exists() else None,
                            run.last_epoch, stop_reason, context.is_main, dict(run.timing))
    reporter.emit("result", work_dir=str(result.work_dir), model=str(result.model),
                  best_model=str(result.best_model) if result.best_model else None, epochs=result.epochs)
    return result


def _over_budget(run: TrainingRun, started: float, epochs_done: int) -> str | None:
    """A stop reason when one more epoch (as long as the mean so far) would end after ``max_seconds``."""
    budget = run.settings.max_seconds
    if budget is None or epochs_done == 0:
        return None
    elapsed = time.monotonic() - started
    if elapsed + elapsed / epochs_done <= budget:
        return None
    return f"Stopped after epoch {run.last_epoch}: the time budget of {budget / 60:g} minutes is reached."


@dataclass(frozen=True)
class RunClock:
    """Where a run's progress is measured from: its start (time.monotonic()), its first epoch (after a resume, the
    one after the last completed) and its last."""

    started: float
    first_epoch: int
    n_epochs: int

    def progress(self, epoch: int, step: int, steps: int) -> tuple[float, float | None]:
        """``(fraction, seconds_left)`` of the whole run at ``step`` of ``steps`` in ``epoch``."""
        fraction = ((epoch - 1) * steps + step) / (self.n_epochs * steps)
        done_here = fraction - (self.first_epoch - 1) / self.n_epochs  # of this process's share of the run
        left = (time.monotonic() - self.started) / done_here * (1.0 - fraction) if done_here > 0 else None
        return fraction, left


def _train_epoch(run: TrainingRun, epoch: int, cancel: CancelToken, clock: RunClock) -> float | None:
    """One epoch of optimisation; the sample-weighted mean loss over all ranks, or None when cancelled."""
    network, device, scaler = run.network, run.context.device, run.scaler
    network.train()
    passes = int(run.options["training_iterations_per_epoch"])
    total_steps = len(run.loader) * passes
    task = f"epoch {epoch}"
    run.reporter.start(task, total_steps, epoch=epoch, epochs=clock.n_epochs)
    loss_sum, samples, step = 0.0, 0, 0
    for iteration in range(1, passes + 1):
        run.sampler.set_epoch(epoch, iteration)
        waited = time.perf_counter()
        for batch in run.loader:
            computing = time.perf_counter()
            image = batch["image"].to(device, non_blocking=True)
            label = batch["label"].to(device, non_blocking=True)
            if run.guided is not None:  # a guided model: simulated clicks on its own prediction
                image = run.guided.with_simulated_clicks(network, image, label,
                                                         derive_seed(run.seed, epoch, iteration, step))
            run.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=run.amp_dtype, enabled=run.use_amp):
                loss = run.loss(network(image), label)
            # With AMP off the scaler passes everything through unchanged (one code path for both).
            scaler.scale(loss).backward()
            scaler.step(run.optimizer)
            scaler.update()
            value = float(loss.detach())
            loss_sum += value * image.shape[0]
            samples += image.shape[0]
            step += 1
            done = time.perf_counter()
            if run.timing["steps"] == 0:
                run.timing["first_data_wait_seconds"] = computing - waited
                run.timing["first_step_seconds"] = done - waited
            run.timing["steps"] += 1
            run.timing["data_wait_seconds"] += computing - waited
            run.timing["step_seconds"] += done - waited
            waited = done
            fraction, seconds_left = clock.progress(epoch, step, total_steps)
            run.reporter.advance(task, step, total_steps, fraction=fraction, seconds_left=seconds_left,
                                 epoch=epoch, epochs=clock.n_epochs, loss=loss_sum / samples)
            if distributed.any_across(cancel.cancelled, run.context):
                return None
    return distributed.mean_across(loss_sum / max(samples, 1), samples, run.context)


def _validate(run: TrainingRun) -> tuple[float, dict[str, float]]:
    """Mean loss and Dice per output region over the validation cases (on rank 0, the unwrapped network).

    Dice per case and channel is MONAI's ``compute_dice`` on thresholded outputs with ``ignore_empty=False``:
    an empty reference gives 1 when the prediction is empty too and 0 otherwise (the BraTS convention, see
    METRICS.md); the result is its mean over the cases. (``DiceMetric`` would gather its buffers from every
    rank when a process group exists, and only rank 0 validates.)
    """


    network = distributed.unwrap(run.network)
    device = run.context.device
    network.eval()
    per_case: list[torch.Tensor] = []
    loss_sum, samples = 0.0, 0
    with torch.no_grad():
        for batch in run.validation_loader:
            image, label = batch["image"].to(device), batch["label"].to(device)
            if run.guided is not None:  # validated as it segments without clicks
                image = run.guided.automatic(image)
            with torch.autocast(device_type=device.type, dtype=run.amp_dtype, enabled=run.use_amp):
                output = run.inferer(image, network) if run.inferer is not None else network(image)
                loss = run.loss(output, label)
            loss_sum += float(loss) * image.shape[0]
            samples += image.shape[0]
            per_case.append(compute_dice(discretize(output.float(), run.activation), label, ignore_empty=False))
    dice = torch.cat(per_case).mean(dim=0).tolist()
    return loss_sum / max(samples, 1), dict(zip(run.regions, (float(d) for d in dice)))


def _stopped_message(run: TrainingRun) -> str:
    if run.last_epoch == 0:
        return "Training stopped during the first epoch; nothing was saved. Start it again to train."
    return f"Training stopped after epoch {run.last_epoch}; to resume, {run.settings.resume_hint}"

