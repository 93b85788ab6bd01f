"""Samples for the network: prepared cases + the per-sample random transforms, drawn by a reproducible sampler.

The sampler decides everything random about an epoch in the main process: which cases, in which order, and
one seed per sample for the random transforms. It derives all of it from ``(seed, epoch, pass)``, so an epoch
gives the same batches whether it runs with or without data-loader workers, on one process or several
(each rank takes its share), in a fresh run or after a resume.
"""

from __future__ import annotations


import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose
from torch.utils.data import DataLoader, Dataset, Sampler

from BratsUNetLib.training.augmentation import seed_pipeline
from BratsUNetLib.data.cache import PreparedCases, worker_options
from BratsUNetLib.data.images import write_image


def derive_seed(*numbers: int) -> int:
    """A well-mixed 63-bit seed from a tuple of integers (e.g. run seed, epoch, pass)."""
    return int(np.random.SeedSequence([int(n) for n in numbers]).generate_state(1, dtype=np.uint64)[0] >> 1)


class EpochSampler(Sampler):
    """Yields ``(case index, sample seed)`` pairs for one pass of an epoch (see the module docstring).

    ``n_samples`` (the config's ``samples_per_epoch``) sets the pass length; by default one visit per case.
    With ``shuffle``, visits follow fresh random permutations of the cases (several when ``n_samples`` exceeds
    the number of cases); without, cases in order. With several ranks the list is padded to a multiple of
    ``world_size`` by repeating its start (as ``DistributedSampler`` does) and rank ``r`` takes items r, r+W, ...
    """

    def __init__(self, n_items: int, seed: int, *, shuffle: bool = True, n_samples: int | None = None,
                 rank: int = 0, world_size: int = 1):
        self.n_items = n_items
        self.seed = seed
        self.shuffle = shuffle
        self.total = int(n_samples or n_items)
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.iteration = 1

    def set_epoch(self, epoch: int, iteration: int = 1) -> None:
        self.epoch = epoch
        self.iteration = iteration

    def __len__(self) -> int:
        return math.ceil(self.total / self.world_size)

    def __iter__(self):
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, self.iteration))
        if self.shuffle:
            rounds = math.ceil(self.total / self.n_items)
            order = torch.cat([torch.randperm(self.n_items, generator=generator) for _ in range(rounds)])
        else:
            order = torch.arange(self.total) % self.n_items
        pairs = list(zip(order[: self.total].tolist(),
                         torch.randint(0, 2**31 - 1, (self.total,), generator=generator).tolist()))
        padded = len(self) * self.world_size
        pairs += pairs[: padded - len(pairs)]
        return iter(pairs[self.rank::self.world_size])


class SampleDataset(Dataset):
    """Network inputs from prepared cases: ``dataset[(index, seed)]`` -> ``{"image", "label"}`` float32 tensors.

    ``image`` is (C, X, Y, Z); ``label`` (L, X, Y, Z) holds 0/1 region channels (absent for unlabelled cases).
    """

    def __init__(self, cases: PreparedCases, per_sample: Compose | None):
        self.cases = cases
        self.per_sample = per_sample

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        sample = self.sample(*key)
        return {name: value.as_tensor().to(torch.float32) for name, value in sample.items()}

    def sample(self, index: int, seed: int) -> dict[str, MetaTensor]:
        """Case ``index`` after the per-sample transforms drawn from ``seed``, as MetaTensors with their affine."""
        prepared = self.cases[index]
        image = prepared["image"]
        if self.per_sample is not None:
            image = image.clone()  # the random steps and MONAI's normalization must not alter the cache
        data = {"image": MetaTensor(image, affine=prepared["affine"].clone())}
        if "label" in prepared:
            data["label"] = MetaTensor(prepared["label"].to(torch.float32), affine=prepared["affine"].clone())
        if self.per_sample is not None:
            seed_pipeline(self.per_sample, seed)
            data = self.per_sample(data)
        return data

    def case_id(self, index: int) -> str:
        return self.cases.cases[index].id


def make_loader(dataset: SampleDataset, sampler: Sampler, batch_size: int, n_workers: int = 0,
                pin_memory: bool = False, prefetch_factor: int | None = None) -> DataLoader:
    """A DataLoader over ``dataset`` in ``sampler`` order.

    With ``n_workers`` > 0, samples load in worker processes while the network computes (persistent across
    epochs; the sampler, not the workers, carries the randomness). ``prefetch_factor`` only applies then:
    passing it without workers is what made the original crash with ``--nthreads 0``.
    """
    options: dict[str, Any] = {}
    if n_workers > 0:
        options = {"persistent_workers": True, **worker_options(n_workers)}
        if prefetch_factor:
            options["prefetch_factor"] = int(prefetch_factor)
    # Its own generator: a DataLoader otherwise draws from torch's global one at every epoch, which would make
    # the global state (and so a resumed run) depend on how many epochs this process has run.
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=n_workers,
                      pin_memory=pin_memory, generator=torch.Generator(), **options)


def write_examples(dataset: SampleDataset, count: int, folder: str | Path, seed: int) -> list[Path]:
    """Write the first ``count`` samples as NIfTI for checking the pipeline by eye (the original's ``test_input``).

    ``input_test_<case>.nii.gz``: the network input, float32 (X, Y, Z, C); ``target_test_<case>.nii.gz``: the
    target channels, uint8 (X, Y, Z, L); both with the sample's affine (after crop / resize), so they overlay
    the original images in a viewer.
    """

    folder = Path(folder)
    written = []
    for index in range(min(int(count), len(dataset))):
        sample = dataset.sample(index, derive_seed(seed, index))
        name = dataset.case_id(index)
        affine = sample["image"].affine.numpy()
        written.append(write_image(folder / f"input_test_{name}.nii.gz",
                                   np.moveaxis(sample["image"].numpy(), 0, -1), affine, np.float32))
        if "label" in sample:
            written.append(write_image(folder / f"target_test_{name}.nii.gz",
                                       np.moveaxis(sample["label"].numpy(), 0, -1), affine, np.uint8))
    return written
