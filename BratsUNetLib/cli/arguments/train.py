"""``bratsunet train``'s flags (the original train.py's, and more).

The command's work is in :mod:`BratsUNetLib.cli.train`.
"""

from __future__ import annotations

import argparse

from BratsUNetLib.hardware.machine import add_machine_arguments

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
