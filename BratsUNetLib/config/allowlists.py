"""Allowlists: the classes a config may name, by kind, built once from the libraries' namespaces.

Every ``"name"`` of a config (network, loss, optimizer, scheduler, transform, inferer) is looked up here
(:func:`resolve_name`); the lists come from class checks on the libraries' namespaces (:func:`allowed_names`),
so user strings are never used for attribute lookup or ``eval``. torch and MONAI are imported only when a
kind's list is first needed, so importing this module is cheap. Unknown names get a did-you-mean hint.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import json
from collections.abc import Callable
from typing import Any

from BratsUNetLib.errors import ConfigError

# kind -> (what to call it in messages, where names come from, a few names to show when the list is long)
KINDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "network": ("network", "monai.networks.nets",
                ("AttentionUnet", "BasicUNet", "DynUNet", "SegResNet", "SwinUNETR", "UNETR", "UNet")),
    "loss": ("loss", "torch.nn and monai.losses",
             ("BCEWithLogitsLoss", "DiceCELoss", "DiceFocalLoss", "DiceLoss", "GeneralizedDiceLoss")),
    "optimizer": ("optimizer", "torch.optim", ("Adam", "AdamW", "SGD")),
    "scheduler": ("learning-rate scheduler", "torch.optim.lr_scheduler",
                  ("CosineAnnealingLR", "ReduceLROnPlateau", "StepLR")),
    "transform": ("MONAI dictionary transform", "monai.transforms",
                  ("NormalizeIntensityd", "RandAffined", "RandFlipd", "RandScaleIntensityd", "RandShiftIntensityd",
                   "ScaleIntensityd")),
    "inferer": ("inferer", "monai.inferers", ("SimpleInferer", "SlidingWindowInferer")),
}
_MAX_LISTED_NAMES = 20


def _public_classes(module: Any, accept: Callable[[type], bool]) -> dict[str, type]:
    """Public, concrete classes of ``module`` (by its namespace, so MONAI's aliases are included)."""
    return {name: obj for name, obj in vars(module).items()
            if not name.startswith("_") and isinstance(obj, type) and not inspect.isabstract(obj) and accept(obj)}


@functools.lru_cache(maxsize=None)
def allowed_names(kind: str) -> dict[str, type]:
    """The allowlist for ``kind`` (network|loss|optimizer|scheduler|transform|inferer): name -> class."""
    # torch and MONAI are imported when a name is first resolved, not with the config package: the Slicer
    # module builds and reads configs in a Python that may not have them yet.
    import torch

    if kind == "network":
        import monai.networks.nets as nets
        return _public_classes(nets, lambda c: issubclass(c, torch.nn.Module))
    if kind == "loss":
        import monai.losses
        base = torch.nn.modules.loss._Loss
        found = _public_classes(monai.losses, lambda c: issubclass(c, base))
        # torch.nn first, as in the original: its classes win a name clash.
        found.update(_public_classes(torch.nn, lambda c: issubclass(c, base) and c is not base))
        return found
    if kind == "optimizer":
        return _public_classes(torch.optim, lambda c: issubclass(c, torch.optim.Optimizer)
                               and c is not torch.optim.Optimizer)
    if kind == "scheduler":
        schedulers = torch.optim.lr_scheduler
        return _public_classes(schedulers, lambda c: c is not schedulers.LRScheduler and (
            issubclass(c, schedulers.LRScheduler) or issubclass(c, schedulers.ReduceLROnPlateau)))
    if kind == "transform":
        import monai.transforms
        # MapTransform is an ABC: issubclass() over MONAI's 650 transform names costs 0.2 s of every start-up
        # (ABC subclass hooks); real subclasses have it in their MRO, which is a plain tuple lookup.
        return {name: cls for name, cls in _public_classes(
            monai.transforms, lambda c: monai.transforms.MapTransform in c.__mro__).items()
            if name.endswith(("d", "D", "Dict"))}
    if kind == "inferer":
        import monai.inferers
        return _public_classes(monai.inferers, lambda c: issubclass(c, monai.inferers.Inferer))
    raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")


def show_value(value: Any, limit: int = 60) -> str:
    """A value as the user wrote it in JSON (true/null, not True/None), shortened."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    except RecursionError:  # a structure nested too deeply to print
        text = f"a deeply nested {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def did_you_mean(word: str, candidates: list[str] | tuple[str, ...]) -> str:
    """`` (did you mean 'X'?)`` for the closest candidate (a case-insensitive match first), or ''."""
    by_lower = {c.lower(): c for c in candidates}
    match = by_lower.get(word.lower())
    if match is None:
        close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
        match = close[0] if close else None
    return f" (did you mean {match!r}?)" if match else ""


def _allowed_listing(kind: str) -> str:
    names = sorted(allowed_names(kind), key=str.lower)
    _, source, examples = KINDS[kind]
    if len(names) <= _MAX_LISTED_NAMES:
        return ", ".join(names)
    return f"any of the {len(names)} classes of {source}, e.g. {', '.join(examples)}"


def name_problem(kind: str, name: Any, where: str) -> str | None:
    """The one-line problem with ``name`` as a ``kind`` at ``where`` (e.g. "model.name"), or None if allowed."""
    label = KINDS[kind][0]
    if not isinstance(name, str) or not name:
        return (f"{where}: expected the name of a {label} as a string, got {show_value(name)}; "
                f"allowed: {_allowed_listing(kind)}")
    names = allowed_names(kind)
    if name in names:
        return None
    # Suggest a class's own spelling (DynUNet) before MONAI's aliases of it (DynUnet, Dynunet).
    canonical = [n for n, cls in names.items() if cls.__name__ == n]
    hint = did_you_mean(name, canonical) or did_you_mean(name, list(names))
    return f"{where}: {name!r} is not a known {label}{hint}; allowed: {_allowed_listing(kind)}"


def resolve_name(kind: str, name: Any, block: str, key: str = "name") -> type:
    """The class called ``name`` in the allowlist of ``kind``; ConfigError naming ``block.key`` otherwise."""
    problem = name_problem(kind, name, f"{block}.{key}")
    if problem:
        raise ConfigError(problem)
    return allowed_names(kind)[name]
