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
import shlex
from pathlib import Path

from BratsUNetLib.cli.command_line import Command
from BratsUNetLib.hardware.machine import add_machine_arguments, machine_settings

NAME = "train"
HELP = "train a 3D U-Net from a config file (original train.py flags); resumes an interrupted run"

CACHE_CHOICES = ("memory", "disk", "none")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config_filename", required=True, help="JSON config in the 3DUnetCNN format")
    parser.add_argument("--output_dir", help="where the work folder <config name>/ is made (default: the config's "
                                             "folder)")
    parser.add_argument("--setup_crossval_only", action="store_true",
                        help="only write the cross-validation fold<k>.json configs (e.g. to train folds on a cluster)")
    parser.add_argument("--pretrained_model_filename",
                        help="start from these weights (fine-tuning); a resumed run continues from its model.pth")
    parser.add_argument("--training_log_filename", help="training log CSV (default <work folder>/training_log.csv)")
    parser.add_argument("--batch_size", type=int, help="override training.batch_size of the config")
    parser.add_argument("--debug", action="store_true", help="describe every case as the network will see it")
    parser.add_argument("--n_examples", type=int, default=None,
                        help="number of network input/target examples written to data_loader_testing/ as NIfTI "
                             "(default: training.test_input of the config, 1)")
    parser.add_argument("--seed", type=int, help="seed for a reproducible run (on the CPU: identical results)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--cache", choices=CACHE_CHOICES, default="memory",
                        help="keep preprocessed cases in memory (default), on disk in <work folder>/cache/, or "
                             "recompute them every epoch")
    add_machine_arguments(
        parser, "machine (as the original)", default=1,
        nthreads="data-loading worker processes (default 1; 0 loads in the training process)",
        ngpus="GPUs: 0 trains on the CPU, N > 1 runs N processes with DistributedDataParallel (started through "
              "torchrun)",
        pin_memory="page-locked batches for faster GPU copies")


def run(args: argparse.Namespace) -> int:
    from BratsUNetLib.training import distributed
    from BratsUNetLib.errors import BratsUNetError

    machine = machine_settings(args)
    if args.batch_size is not None and args.batch_size < 1:
        raise BratsUNetError(f"--batch_size must be at least 1, got {args.batch_size}.")
    n_gpus = machine["n_gpus"]
    if n_gpus > 1 and not distributed.launched_by_torchrun() and not args.setup_crossval_only:
        import torch

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
                  hint: str, checked: bool = False) -> None:
    """Train one config in ``<output_dir>/<config name>``; a cross-validation config trains each fold.

    The config first passes :func:`~BratsUNetLib.training.setup.check_training_config` (the checks
    ``validate-config`` runs), before any file is written; the fold configs written from it are not checked again.
    """
    from BratsUNetLib.cancel import CancelToken, stop_on_signals
    from BratsUNetLib.config.loading import filename_groups, load_config
    from BratsUNetLib.training.folds import write_fold_configs
    from BratsUNetLib.hardware.devices import resolve_device
    from BratsUNetLib.errors import ConfigError
    from BratsUNetLib.events import ProgressReporter
    from BratsUNetLib.training.loop import train
    from BratsUNetLib.training.settings import TrainingSettings
    from BratsUNetLib.training.setup import check_training_config

    reporter = ProgressReporter(args.progress)
    if checked:
        config = load_config(config_path)
    else:
        config = check_training_config(config_path, device=resolve_device(device), batch_size=args.batch_size).config
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
                _train_config(args, fold_path, work_dir, machine, device, hint, checked=True)
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
        result = train(config, work_dir, settings=settings, reporter=reporter, cancel=token)
    if not result.is_main:
        return
    for group, entries in filename_groups(config).items():
        if group != "training" and entries:
            _predict(config, result.model, group, work_dir / group, device, reporter)


def _predict(config: dict, model: Path, group: str, folder: Path, device: str, reporter) -> None:
    """Predict a file group with the final model, as the original did after training."""
    from BratsUNetLib.inference.writing import predict_group

    reporter.message(f"Predicting '{group}' into '{folder}'.")
    predict_group(config, model, group, folder, device=device, reporter=reporter)

