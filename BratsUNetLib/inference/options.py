"""What a user asks of a segmentation (:class:`InferenceOptions`), checked before any image is read.

Its own module because every step of :mod:`.pipeline` reads it (:mod:`.loaded_model`, :mod:`.execution`,
:mod:`.postprocessing`): kept beside ``segment_case`` it would make those modules and the pipeline import
each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.inference.backends import check_backend, check_precision

ACTIVATIONS = ("sigmoid", "softmax", "none")
#: How to run the network at native resolution: ``auto`` (one whole-volume pass when it fits in memory, else
#: sliding windows), ``whole`` or ``windows``.
NATIVE_STRATEGIES = ("auto", "whole", "windows")


@dataclass(frozen=True)
class InferenceOptions:
    """How to segment. ``None`` for ``activation`` / ``scheme`` / ``native`` means "as the model's config says"."""

    #: The original's ``--sliding-window``: the same as ``native="windows"``.
    sliding_window: bool = False
    #: One of :data:`NATIVE_STRATEGIES` to run at native resolution; ``None`` resizes to the model's
    #: ``desired_shape`` as it was trained (models without one run at native resolution, ``auto``).
    native: str | None = None
    tta: bool = False
    activation: str | None = None
    threshold: float = 0.5
    scheme: str | None = None
    min_island_voxels: int = 0
    #: Label a voxel where the sum of the channels exceeds the threshold (original ``--sum``); only for models
    #: whose channels are separate labels rather than a WT/TC/ET hierarchy.
    sum_then_threshold: bool = False
    #: How the network runs (:data:`BratsUNetLib.inference.backends.BACKENDS`); ``auto`` picks the fastest that agrees.
    backend: str = "auto"
    #: The arithmetic it runs in (:data:`BratsUNetLib.inference.backends.PRECISIONS`); None: fp32 (mixed for the
    #: ``amp`` backend).
    precision: str | None = None

    def __post_init__(self) -> None:
        if self.activation is not None and self.activation not in ACTIVATIONS:
            raise BratsUNetError(f"Unknown activation '{self.activation}'; use one of {', '.join(ACTIVATIONS)}.")
        if self.activation != "none" and not 0.0 <= self.threshold <= 1.0:
            raise BratsUNetError(f"Threshold {self.threshold} is outside 0..1, the range of the probabilities it "
                                 "is compared with.")
        if self.min_island_voxels < 0:
            raise BratsUNetError(f"--min-island-voxels must be 0 (off) or positive, got {self.min_island_voxels}.")
        if self.native is not None and self.native not in NATIVE_STRATEGIES:
            raise BratsUNetError(f"Unknown native-resolution strategy '{self.native}'; use one of "
                                 f"{', '.join(NATIVE_STRATEGIES)}.")
        if self.sliding_window and self.native not in (None, "windows"):
            raise BratsUNetError(f"--sliding-window means --native windows, which contradicts --native {self.native}; "
                                 "give one of them.")
        check_backend(self.backend)  # before any image is read
        check_precision(self.precision, self.backend)

    @property
    def native_strategy(self) -> str | None:
        """The native-resolution strategy asked for (:data:`NATIVE_STRATEGIES`), or None: as the model was trained."""
        return "windows" if self.sliding_window else self.native

