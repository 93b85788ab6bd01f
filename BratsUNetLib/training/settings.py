"""How to run a training beyond its config: the command-line flags and the machine settings, in one object that the
loop (:mod:`.loop`) and the run's state (:mod:`.state`) both read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class TrainingSettings:
    """How to run a training, beyond the config: the command-line flags and the machine config."""

    device: str = "auto"
    n_workers: int = 0
    pin_memory: bool = False
    batch_size: int | None = None  # overrides training.batch_size
    pretrained_model: str | Path | None = None  # fine-tune from these weights (a fresh run only)
    seed: int | None = None
    cache: str = "memory"  # memory | disk | none
    n_examples: int | None = None  # overrides training.test_input
    debug: bool = False
    log_filename: str | Path | None = None  # default <work_dir>/training_log.csv
    channels: Sequence[str] | None = None  # input channel names stored in the checkpoints
    resume_hint: str = "run the same training again with the same output folder"
    max_seconds: float | None = None  # wall-clock budget: no epoch starts that would end after it
