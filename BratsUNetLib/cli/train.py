"""``bratsunet train``: the original train.py — train a network from a config, with cross-validation.

The work folder is ``<output_dir>/<config name without extension>`` (``--output_dir`` defaults to the config's
folder). A config with a ``cross_validation`` block is split into ``<work>/fold<k>.json`` files, each trained
in ``<work>/fold<k>/`` (``--setup_crossval_only`` writes the files and stops). After training, every file group
other than ``training_filenames`` (``validation``, ``test``, ...) is predicted into ``<work>/<group>/`` with
the final ``model.pth``, as the original did. Running the same command again resumes an interrupted run.
Ctrl-C (or SIGTERM) stops after the current step and keeps everything up to the last complete epoch.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from pathlib import Path

import torch

from BratsUNetLib.cancel import CancelToken, stop_on_signals
from BratsUNetLib.cli.arguments.train import NAME
from BratsUNetLib.cli.command_line import Command
from BratsUNetLib.config.loading import filename_groups, load_config
from BratsUNetLib.errors import BratsUNetError, ConfigError
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.hardware.devices import resolve_device
from BratsUNetLib.hardware.machine import machine_settings
from BratsUNetLib.inference.writing import predict_group
from BratsUNetLib.training import distributed
from BratsUNetLib.training.folds import write_fold_configs
from BratsUNetLib.training.loop import train
from BratsUNetLib.training.settings import TrainingSettings
from BratsUNetLib.training.setup import CheckedConfig, check_training_config


def run(args: argparse.Namespace) -> int:
    machine = machine_settings(args)
    if args.batch_size is not None and args.batch_size < 1:
        raise BratsUNetError(f"--batch_size must be at least 1, got {args.batch_size}.")
    n_gpus = machine["n_gpus"]
    if n_gpus > 1 and not distributed.launched_by_torchrun() and not args.setup_crossval_only:
        if torch.cuda.device_count() < n_gpus:
            raise BratsUNetError(f"--ngpus {n_gpus} asks for {n_gpus} GPUs but {torch.cuda.device_count()} CUDA "
                                 f"GPU(s) are visible; lower --ngpus (0 trains on the CPU).")
        # Under torchrun every process runs this same command line again (and trains, being launched by it).
        return distributed.relaunch(n_gpus, Command.named(NAME).argv_of(args))
    device = "cpu" if n_gpus == 0 else args.device
    config_path = Path(args.config_filename).expanduser().absolute()
    output_dir = Path(args.output_dir).expanduser().absolute() if args.output_dir else config_path.parent
    resume = Command.named(NAME).to_argv(config_filename=str(config_path), output_dir=str(output_dir))
    hint = f"run: bratsunet {shlex.join(resume)}"
    _train_config(args, config_path, output_dir, machine, device, hint)
    return 0


def _train_config(args: argparse.Namespace, config_path: Path, output_dir: Path, machine: dict, device: str,
                  hint: str, checked: CheckedConfig | None = None) -> None:
    """Train one config in ``<output_dir>/<config name>``; a cross-validation config trains each fold.

    The config passes :func:`~BratsUNetLib.training.setup.check_training_config` (the checks ``validate-config``
    runs) once, here, before any file is written; training takes the result as checked (``checked``: a fold's
    config, checked as part of the config it was split from).
    """
    reporter = ProgressReporter(args.progress)
    if checked is None:
        checked = check_training_config(config_path, device=resolve_device(device), batch_size=args.batch_size)
    config = checked.config
    work_dir = output_dir / config_path.name.split(".")[0]
    if "cross_validation" in config:
        if args.training_log_filename:
            raise ConfigError("--training_log_filename cannot be used with cross-validation: each fold keeps its "
                              "training_log.csv in its own folder; drop the flag.")
        fold_paths = write_fold_configs(config, work_dir)
        reporter.message(f"Cross-validation: wrote {len(fold_paths)} fold configs in '{work_dir}'.")
        if not args.setup_crossval_only:
            for fold_path in fold_paths:
                reporter.message(f"Training fold '{fold_path.stem}'.")
                fold = dataclasses.replace(checked, config=load_config(fold_path), path=fold_path)
                _train_config(args, fold_path, work_dir, machine, device, hint, checked=fold)
        return
    if args.setup_crossval_only:
        raise ConfigError(f"--setup_crossval_only: '{config_path}' has no cross_validation block to set up; add "
                          f'"cross_validation": {{"n_folds": 5, "random_seed": 25}} or drop the flag.')
    settings = TrainingSettings(
        device=device, n_workers=machine["n_workers"], pin_memory=machine["pin_memory"],
        batch_size=args.batch_size, pretrained_model=args.pretrained_model_filename, seed=args.seed,
        cache=args.cache, n_examples=args.n_examples, debug=args.debug, log_filename=args.training_log_filename,
        resume_hint=hint)
    token = CancelToken()
    notice = "Stopping after the current step; press Ctrl-C again to stop at once."
    with stop_on_signals(token, notice):
        result = train(checked, work_dir, settings=settings, reporter=reporter, cancel=token)
    if not result.is_main:
        return
    for group, entries in filename_groups(config).items():
        if group != "training" and entries:
            _predict(config, result.model, group, work_dir / group, device, reporter)


def _predict(config: dict, model: Path, group: str, folder: Path, device: str, reporter) -> None:
    """Predict a file group with the final model, as the original did after training."""
    reporter.message(f"Predicting '{group}' into '{folder}'.")
    predict_group(config, model, group, folder, device=device, reporter=reporter)

