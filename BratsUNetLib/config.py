"""The original 3DUnetCNN config format (one JSON object): read, validate, normalize, resolve names.

A config is checked up front and *every* problem is reported at once (:func:`validate_config`), each as one
line naming the block, the key, the bad value and what is allowed. :func:`load_config` returns the config in
the original format with two normalizations, so that old files keep working without silent changes:

- ``cross_validation`` written in the old list form ``[{"folds": 5, "seed": 25}]`` becomes
  ``{"n_folds": 5, "random_seed": 25}`` *with the values given* (the original silently used its defaults);
- ``dataset.normalization: "zero_mean"`` (the original's alias) becomes ``"NormalizeIntensityD"``.

Every ``"name"`` in a config is resolved through an allowlist built once from the libraries' namespaces by
class checks (:func:`allowed_names`); user strings are never used for attribute lookup or ``eval``.
torch and MONAI are imported only when a name is first resolved, so importing this module is cheap.
"""

from __future__ import annotations

import copy
import difflib
import functools
import inspect
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from BratsUNetLib.errors import ConfigError

REQUIRED_BLOCKS = ("model", "optimizer", "loss", "dataset", "training")
OPTIONAL_BLOCKS = ("scheduler", "cross_validation", "inference")
FILENAMES_SUFFIX = "_filenames"
# Groups whose cases are used for learning, so every case needs a label map.
LABELLED_GROUPS = ("training", "validation")
DATASET_NAMES = ("SegmentationDataset", "SegmentationDatasetPersistent")

# Defaults of the original (ORIGINAL.md §1). Keys accepted only for compatibility: ``inference`` ("auto":
# labels are loaded when the file list has them), ``cache_dir`` (SegmentationDatasetPersistent's cache),
# ``verbose`` (set by the original's --debug).
DATASET_DEFAULTS: dict[str, Any] = {
    "name": "SegmentationDataset",
    "labels": None,
    "setup_label_hierarchy": False,
    "desired_shape": None,
    "resample": False,
    "random_crop": False,
    "crop_foreground": False,
    "foreground_percentile": 0.1,
    "normalization": "NormalizeIntensityD",
    "normalization_kwargs": {},
    "orientation": None,
    "reader": None,
    "spatial_augmentations": [],
    "intensity_augmentations": [],
    "inference": "auto",
    "cache_dir": None,
    "verbose": False,
}
DATASET_SPLITS = ("training", "validation")

# ``prefetch_factor`` None leaves torch's DataLoader default (the original's 1 crashed without workers).
TRAINING_DEFAULTS: dict[str, Any] = {
    "batch_size": 1,
    "validation_batch_size": 1,
    "n_epochs": 1000,
    "early_stopping_patience": None,
    "save_best": True,
    "save_every_n_epochs": None,
    "save_last_n_models": None,
    "amp": False,
    "samples_per_epoch": None,
    "training_iterations_per_epoch": 1,
    "prefetch_factor": None,
    "test_input": 1,
}

CROSS_VALIDATION_DEFAULTS = {"n_folds": 5, "random_seed": 25}
# The old spelling of each cross-validation key (README of the original: {"folds": 5, "seed": 25}).
_CROSS_VALIDATION_OLD_KEYS = {"folds": "n_folds", "seed": "random_seed"}

# The original's name for z-score normalization.
_NORMALIZATION_ALIASES = {"zero_mean": "NormalizeIntensityD"}

# Constructor arguments that BratsUNet passes itself: a config must not set them.
_SUPPLIED_ARGUMENTS = {
    "optimizer": {"params": "the network's parameters"},
    "scheduler": {"optimizer": "the optimizer"},
    "transform": {"keys": "the image/label keys"},
}

# kind -> (what to call it in messages, where names come from, a few names to show when the list is long)
_KINDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
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
_MAX_PROBLEMS_PER_GROUP = 5


# --------------------------------------------------------------------------------------------- allowlists

def _public_classes(module: Any, accept: Callable[[type], bool]) -> dict[str, type]:
    """Public, concrete classes of ``module`` (by its namespace, so MONAI's aliases are included)."""
    return {name: obj for name, obj in vars(module).items()
            if not name.startswith("_") and isinstance(obj, type) and not inspect.isabstract(obj) and accept(obj)}


@functools.lru_cache(maxsize=None)
def allowed_names(kind: str) -> dict[str, type]:
    """The allowlist for ``kind`` (network|loss|optimizer|scheduler|transform|inferer): name -> class."""
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
        return {name: cls for name, cls in _public_classes(
            monai.transforms, lambda c: issubclass(c, monai.transforms.MapTransform)).items()
            if name.endswith(("d", "D", "Dict"))}
    if kind == "inferer":
        import monai.inferers
        return _public_classes(monai.inferers, lambda c: issubclass(c, monai.inferers.Inferer))
    raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(_KINDS)}")


def _did_you_mean(word: str, candidates: list[str] | tuple[str, ...]) -> str:
    """`` (did you mean 'X'?)`` for the closest candidate (a case-insensitive match first), or ''."""
    by_lower = {c.lower(): c for c in candidates}
    match = by_lower.get(word.lower())
    if match is None:
        close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
        match = close[0] if close else None
    return f" (did you mean {match!r}?)" if match else ""


def _allowed_listing(kind: str) -> str:
    names = sorted(allowed_names(kind), key=str.lower)
    _, source, examples = _KINDS[kind]
    if len(names) <= _MAX_LISTED_NAMES:
        return ", ".join(names)
    return f"any of the {len(names)} classes of {source}, e.g. {', '.join(examples)}"


def _name_problem(kind: str, name: Any, where: str) -> str | None:
    label = _KINDS[kind][0]
    if not isinstance(name, str) or not name:
        return (f"{where}: expected the name of a {label} as a string, got {_show(name)}; "
                f"allowed: {_allowed_listing(kind)}")
    names = allowed_names(kind)
    if name in names:
        return None
    # Suggest a class's own spelling (DynUNet) before MONAI's aliases of it (DynUnet, Dynunet).
    canonical = [n for n, cls in names.items() if cls.__name__ == n]
    hint = _did_you_mean(name, canonical) or _did_you_mean(name, list(names))
    return f"{where}: {name!r} is not a known {label}{hint}; allowed: {_allowed_listing(kind)}"


def resolve_name(kind: str, name: Any, block: str, key: str = "name") -> type:
    """The class called ``name`` in the allowlist of ``kind``; ConfigError naming ``block.key`` otherwise."""
    problem = _name_problem(kind, name, f"{block}.{key}")
    if problem:
        raise ConfigError(problem)
    return allowed_names(kind)[name]


# ------------------------------------------------------------------------------------------ value checks

def _show(value: Any, limit: int = 60) -> str:
    """A value as the user wrote it in JSON (true/null, not True/None), shortened."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    return _is_int(value) and value > 0


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_string(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _shape3(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 3 and all(_positive_int(v) for v in value)


def _labels(value: Any) -> bool:
    def label(v: Any) -> bool:
        return _is_int(v) and v >= 0
    return isinstance(value, list) and bool(value) and all(
        label(v) or (isinstance(v, list) and bool(v) and all(label(x) for x in v)) for v in value)


def _orientation(value: Any) -> bool:
    """Three axis codes, one from each pair L/R, A/P, S/I (e.g. "RAS", "LPS")."""
    if not isinstance(value, str) or len(value) != 3:
        return False
    axes = {"L": 0, "R": 0, "A": 1, "P": 1, "S": 2, "I": 2}
    return all(c in axes for c in value) and sorted(axes[c] for c in value) == [0, 1, 2]


def _percentile(value: Any) -> bool:
    return _is_number(value) and 0 <= value < 1


def _inference_flag(value: Any) -> bool:
    return value == "auto" or _is_bool(value)


def _kwargs_dict(value: Any) -> bool:
    return value is None or isinstance(value, dict)


def _transform_list(value: Any) -> bool:
    return value is None or isinstance(value, list)


# key -> (check, what is allowed). ``normalization`` and the augmentation lists are also resolved by name.
_DATASET_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "labels": (_labels, "a non-empty list of label values, a nested list merging values into one channel, "
                        "e.g. [2, 1, 4]"),
    "setup_label_hierarchy": (_is_bool, "true or false"),
    "desired_shape": (_optional(_shape3), "null or a list of 3 positive integers, e.g. [128, 128, 128]"),
    "resample": (_is_bool, "true or false"),
    "random_crop": (_is_bool, "true or false"),
    "crop_foreground": (_is_bool, "true or false"),
    "foreground_percentile": (_percentile, "a number from 0 up to (not including) 1, e.g. 0.1"),
    "normalization": (_optional(_is_string), "null or the name of a MONAI dictionary transform, e.g. "
                                             "\"NormalizeIntensityD\""),
    "normalization_kwargs": (_kwargs_dict, "null or an object of keyword arguments"),
    "orientation": (_optional(_orientation), "null or three axis codes such as \"RAS\" or \"LPS\""),
    "reader": (_optional(_is_string), "null or the name of a MONAI image reader"),
    "spatial_augmentations": (_transform_list, "null or a list of {\"name\": <MONAI dictionary transform>, ...}"),
    "intensity_augmentations": (_transform_list, "null or a list of {\"name\": <MONAI dictionary transform>, ...}"),
    "inference": (_inference_flag, "\"auto\", true or false"),
    "cache_dir": (_optional(_is_string), "null or a folder path"),
    "verbose": (_is_bool, "true or false"),
}

_POSITIVE = "a positive integer"
_OPTIONAL_POSITIVE = "null or a positive integer"
_TRAINING_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "batch_size": (_positive_int, _POSITIVE),
    "validation_batch_size": (_positive_int, _POSITIVE),
    "n_epochs": (_positive_int, _POSITIVE),
    "early_stopping_patience": (_optional(_positive_int), _OPTIONAL_POSITIVE),
    "save_best": (_is_bool, "true or false"),
    "save_every_n_epochs": (_optional(_positive_int), _OPTIONAL_POSITIVE),
    "save_last_n_models": (_optional(_positive_int), _OPTIONAL_POSITIVE),
    "amp": (_is_bool, "true or false"),
    "samples_per_epoch": (_optional(_positive_int), _OPTIONAL_POSITIVE),
    "training_iterations_per_epoch": (_positive_int, _POSITIVE),
    "prefetch_factor": (_optional(_positive_int), _OPTIONAL_POSITIVE),
    "test_input": (lambda v: v is None or v is False or (_is_int(v) and v >= 0),
                   "a number of examples (0 or more) or null"),
}


def _typed_keys_problems(block: Mapping, where: str, checks: Mapping[str, tuple[Callable[[Any], bool], str]],
                         extra_keys: tuple[str, ...] = ()) -> list[str]:
    """Unknown keys and values of the wrong type in a block with a fixed set of keys."""
    problems = []
    known = sorted([*checks, *extra_keys])
    for key, value in block.items():
        if key in extra_keys:
            continue
        if key not in checks:
            problems.append(f"{where}.{key}: unknown key{_did_you_mean(key, known)}; known keys: {', '.join(known)}")
            continue
        check, allowed = checks[key]
        if not check(value):
            problems.append(f"{where}.{key}: {_show(value)} is not valid; expected {allowed}")
    return problems


def _block_problem(value: Any, where: str) -> str | None:
    if isinstance(value, dict):
        return None
    return f"{where}: expected an object {{...}}, got {_show(value)}"


# ------------------------------------------------------------------------------------------ named blocks

def _keyword_problems(cls: type, kwargs: Mapping[str, Any], where: str, kind: str) -> list[str]:
    """Keywords ``cls`` does not accept, keywords BratsUNet sets itself, and required keywords missing."""
    supplied = _SUPPLIED_ARGUMENTS.get(kind, {})
    problems = [f"{where}.{key}: set by BratsUNet ({what}); remove it" for key, what in supplied.items()
                if key in kwargs]
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # builtins without a signature: nothing to check against
        return problems
    named = {name: p for name, p in parameters.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if not any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        accepted = sorted(name for name in named if name not in supplied)
        for key in kwargs:
            if key not in named and key not in supplied:
                problems.append(f"{where}.{key}: {cls.__name__} does not accept the keyword {key!r}"
                                f"{_did_you_mean(key, accepted)}; accepted: {', '.join(accepted)}")
    for name, parameter in named.items():
        if parameter.default is parameter.empty and name not in kwargs and name not in supplied:
            problems.append(f"{where}: {cls.__name__} needs the keyword {name!r}; add \"{name}\": <value>")
    return problems


def named_block_problems(kind: str, block: Any, where: str) -> list[str]:
    """Problems of a ``{"name": ..., **kwargs}`` block: type, name in the allowlist, accepted keywords."""
    problem = _block_problem(block, where)
    if problem:
        return [problem]
    if "name" not in block:
        label, _, examples = _KINDS[kind]
        return [f"{where}: has no \"name\"; add the {label} to use, e.g. \"name\": \"{examples[0]}\""]
    problem = _name_problem(kind, block["name"], f"{where}.name")
    if problem:
        return [problem]
    kwargs = {k: v for k, v in block.items() if k != "name"}
    return _keyword_problems(allowed_names(kind)[block["name"]], kwargs, where, kind)


def model_problems(model: Any) -> list[str]:
    """Problems of the ``model`` block, including settings BratsUNet does not support."""
    problems = named_block_problems("network", model, "model")
    if isinstance(model, dict) and model.get("deep_supervision") is True:
        problems.append("model.deep_supervision: true is not supported (the network would return one output per "
                        "decoder level and predictions would be wrong); set it to false")
    return problems


def _transform_problems(name: Any, kwargs: Any, where_name: str, where_kwargs: str) -> list[str]:
    """The normalization transform: a name in the allowlist, keyword arguments it accepts."""
    name = _NORMALIZATION_ALIASES.get(name, name) if isinstance(name, str) else name
    problem = _name_problem("transform", name, where_name)
    if problem:
        return [problem]
    return _keyword_problems(allowed_names("transform")[name], kwargs or {}, where_kwargs, "transform")


# ----------------------------------------------------------------------------------------- block checks

def _dataset_problems(dataset: Mapping, where: str = "dataset", nested: bool = False) -> list[str]:
    """Problems of the dataset block, or (``nested``) of its ``training``/``validation`` sub-dicts."""
    extra = () if nested else ("name", *DATASET_SPLITS)
    problems = _typed_keys_problems(dataset, where, _DATASET_CHECKS, extra)
    if not nested:
        if "name" in dataset and dataset["name"] not in DATASET_NAMES:
            name = dataset["name"]
            hint = _did_you_mean(name, DATASET_NAMES) if isinstance(name, str) else ""
            problems.append(f"{where}.name: {_show(name)} is not a known dataset{hint}; "
                            f"allowed: {', '.join(DATASET_NAMES)}")
        for split in DATASET_SPLITS:
            if split in dataset:
                sub = dataset[split]
                problem = _block_problem(sub, f"{where}.{split}")
                problems.extend([problem] if problem else _dataset_problems(sub, f"{where}.{split}", nested=True))
    # Names and keywords of the transforms, once their basic types are right.
    if (isinstance(dataset.get("normalization"), str) and dataset["normalization"]
            and _kwargs_dict(dataset.get("normalization_kwargs"))):
        problems.extend(_transform_problems(dataset["normalization"], dataset.get("normalization_kwargs"),
                                            f"{where}.normalization", f"{where}.normalization_kwargs"))
    for key in ("spatial_augmentations", "intensity_augmentations"):
        if isinstance(dataset.get(key), list):
            for index, item in enumerate(dataset[key]):
                problems.extend(named_block_problems("transform", item, f"{where}.{key}[{index}]"))
    return problems


def _training_problems(training: Mapping) -> list[str]:
    return _typed_keys_problems(training, "training", _TRAINING_CHECKS)


def _normalize_cross_validation(value: Any) -> tuple[dict | None, list[str]]:
    """``{"n_folds", "random_seed"}`` from either form (old list form and old key names honoured)."""
    where = "cross_validation"
    form = value
    if isinstance(value, list):
        if len(value) != 1 or not isinstance(value[0], dict):
            return None, [f"{where}: {_show(value)} is not valid; expected {{\"n_folds\": 5, \"random_seed\": 25}} "
                          f"(or the old form [{{\"folds\": 5, \"seed\": 25}}])"]
        form = value[0]
    if not isinstance(form, dict):
        return None, [f"{where}: expected an object {{\"n_folds\": 5, \"random_seed\": 25}}, got {_show(value)}"]
    result: dict[str, Any] = {}
    problems = []
    known = [*CROSS_VALIDATION_DEFAULTS, *_CROSS_VALIDATION_OLD_KEYS]
    for key, item in form.items():
        target = _CROSS_VALIDATION_OLD_KEYS.get(key, key)
        if target not in CROSS_VALIDATION_DEFAULTS:
            problems.append(f"{where}.{key}: unknown key{_did_you_mean(key, known)}; known keys: n_folds, random_seed")
        elif target in result:
            problems.append(f"{where}.{key}: given twice (as {key!r} and its other spelling); keep one")
        else:
            result[target] = item
    n_folds = result.setdefault("n_folds", CROSS_VALIDATION_DEFAULTS["n_folds"])
    seed = result.setdefault("random_seed", CROSS_VALIDATION_DEFAULTS["random_seed"])
    if not (_is_int(n_folds) and n_folds >= 2):
        problems.append(f"{where}.n_folds: {_show(n_folds)} is not valid; expected an integer of 2 or more")
    # numpy.random.seed takes 0 .. 2**32 - 1.
    if not (_is_int(seed) and 0 <= seed < 2 ** 32):
        problems.append(f"{where}.random_seed: {_show(seed)} is not valid; expected an integer from 0 to 4294967295")
    return (None if problems else {"n_folds": n_folds, "random_seed": seed}), problems


def _case_problems(case: Any, where: str, n_channels: int | None, needs_label: bool) -> list[str]:
    if not isinstance(case, dict):
        return [f"{where}: expected {{\"image\": [paths...], \"label\": path}}, got {_show(case)}"]
    problems = [f"{where}.{key}: unknown key{_did_you_mean(key, ['image', 'label'])}; known keys: image, label"
                for key in case if key not in ("image", "label")]
    images = case.get("image")
    if not (isinstance(images, list) and images and all(_is_string(p) for p in images)):
        problems.append(f"{where}.image: {_show(images)} is not valid; expected a list of image paths, "
                        f"one per channel (e.g. flair, t1, t1ce, t2)")
    elif n_channels is not None and len(images) != n_channels:
        problems.append(f"{where}.image: {len(images)} images given but model.in_channels is {n_channels}; "
                        f"give one image per input channel")
    label = case.get("label")
    if label is None:
        if needs_label:
            problems.append(f"{where}: has no \"label\"; cases used for training need a label map")
    elif not _is_string(label):
        problems.append(f"{where}.label: {_show(label)} is not valid; expected the path of a label map")
    return problems


def _filenames_problems(key: str, value: Any, n_channels: int | None) -> list[str]:
    group = key[: -len(FILENAMES_SUFFIX)]
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", group):
        return [f"{key}: {group!r} is not a usable group name (it becomes a folder name); use letters, digits, "
                f"'_', '-' or '.', e.g. \"test_filenames\""]
    if not isinstance(value, list):
        return [f"{key}: expected a list of {{\"image\": [paths...], \"label\": path}} entries, got {_show(value)} "
                f"(file lists stored in .npy files are not supported)"]
    problems: list[str] = []
    bad_cases = 0
    for index, case in enumerate(value):
        found = _case_problems(case, f"{key}[{index}]", n_channels, needs_label=group in LABELLED_GROUPS)
        if found:
            bad_cases += 1
            if bad_cases <= _MAX_PROBLEMS_PER_GROUP:
                problems.extend(found)
    if bad_cases > _MAX_PROBLEMS_PER_GROUP:
        problems.append(f"{key}: and {bad_cases - _MAX_PROBLEMS_PER_GROUP} more entries with problems")
    return problems


# ------------------------------------------------------------------------------------------ entry points

def validate_config(raw: Any) -> list[str]:
    """Every problem of a config (parsed JSON), one line each; an empty list when it is valid."""
    if not isinstance(raw, dict):
        return [f"the config must be a JSON object {{\"model\": ..., \"dataset\": ...}}, got {_show(raw)}"]
    problems: list[str] = []
    for key in raw:
        if key not in REQUIRED_BLOCKS and key not in OPTIONAL_BLOCKS and not key.endswith(FILENAMES_SUFFIX):
            allowed = [*REQUIRED_BLOCKS, *OPTIONAL_BLOCKS]
            problems.append(f"{key}: unknown top-level block{_did_you_mean(key, allowed)}; allowed: "
                            f"{', '.join(allowed)} and <group>_filenames lists")
    for block in REQUIRED_BLOCKS:
        if block not in raw:
            problems.append(f"{block}: required block is missing; add \"{block}\": {{...}}")

    if "model" in raw:
        problems.extend(model_problems(raw["model"]))
    for block, kind in (("optimizer", "optimizer"), ("loss", "loss"), ("scheduler", "scheduler"),
                        ("inference", "inferer")):
        if block in raw:
            problems.extend(named_block_problems(kind, raw[block], block))
    if "dataset" in raw:
        problem = _block_problem(raw["dataset"], "dataset")
        problems.extend([problem] if problem else _dataset_problems(raw["dataset"]))
    if "training" in raw:
        problem = _block_problem(raw["training"], "training")
        problems.extend([problem] if problem else _training_problems(raw["training"]))
    if "cross_validation" in raw:
        problems.extend(_normalize_cross_validation(raw["cross_validation"])[1])

    model = raw.get("model")
    n_channels = model.get("in_channels") if isinstance(model, dict) else None
    n_channels = n_channels if _positive_int(n_channels) else None
    for key, value in raw.items():
        if key.endswith(FILENAMES_SUFFIX):
            problems.extend(_filenames_problems(key, value, n_channels))
    dataset = raw.get("dataset")
    if (isinstance(dataset, dict) and dataset.get("labels") is None
            and any(raw.get(group + FILENAMES_SUFFIX) for group in LABELLED_GROUPS)):
        problems.append("dataset.labels: missing; training needs the label values the network predicts, "
                        "e.g. \"labels\": [2, 1, 4] with \"setup_label_hierarchy\": true for BraTS")
    return problems


def read_config_file(path: str | os.PathLike) -> Any:
    """The parsed JSON of a config file; ConfigError with the path when it is missing or not JSON."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"Config file '{path}' does not exist; check the path.")
    if path.is_dir():
        raise ConfigError(f"Config '{path}' is a folder; give the path of the .json config file.")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read the config file '{path}': {exc.strerror or exc}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"Config file '{path}' is not a text (UTF-8 JSON) file; give the .json config.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"Config file '{path}' is not valid JSON: {exc.msg} at line {exc.lineno}, "
                          f"column {exc.colno}.") from None


def load_config(path_or_dict: str | os.PathLike | Mapping) -> dict:
    """Read (if a path), validate and normalize a config; ConfigError listing every problem otherwise.

    The result is a new dict in the original format (see the module docstring for the two normalizations);
    the input is not modified.
    """
    if isinstance(path_or_dict, Mapping):
        raw, label = dict(path_or_dict), "config"
    else:
        raw, label = read_config_file(path_or_dict), str(path_or_dict)
    problems = validate_config(raw)
    if problems:
        raise ConfigError(f"{label}: " + "; ".join(problems))
    config = copy.deepcopy(raw)
    if "cross_validation" in config:
        config["cross_validation"] = _normalize_cross_validation(config["cross_validation"])[0]
    for dataset in (config["dataset"], *(config["dataset"].get(s) or {} for s in DATASET_SPLITS)):
        if dataset.get("normalization") in _NORMALIZATION_ALIASES:
            dataset["normalization"] = _NORMALIZATION_ALIASES[dataset["normalization"]]
    return config


def dataset_options(config: Mapping, split: str | None = "training") -> dict:
    """The dataset block with defaults filled, for ``split`` "training", "validation" or None (base only).

    The ``training``/``validation`` sub-dict of the block is merged over the base for its split (the
    original used the ``validation`` options for predicted groups too). Null lists/dicts become empty.
    """
    if split is not None and split not in DATASET_SPLITS:
        raise ValueError(f"split must be one of {DATASET_SPLITS} or None, got {split!r}")
    dataset = config["dataset"]
    options = copy.deepcopy(DATASET_DEFAULTS)
    options.update(copy.deepcopy({k: v for k, v in dataset.items() if k not in DATASET_SPLITS}))
    if split is not None:
        options.update(copy.deepcopy(dataset.get(split) or {}))
    for key in ("normalization_kwargs", "spatial_augmentations", "intensity_augmentations"):
        if options[key] is None:
            options[key] = type(DATASET_DEFAULTS[key])()
    return options


def training_options(config: Mapping) -> dict:
    """The training block with the original's defaults filled in."""
    return {**TRAINING_DEFAULTS, **copy.deepcopy(dict(config.get("training") or {}))}


def filename_groups(config: Mapping) -> dict[str, list]:
    """``{group: cases}`` for every ``<group>_filenames`` list of the config, in file order."""
    return {key[: -len(FILENAMES_SUFFIX)]: value for key, value in config.items() if key.endswith(FILENAMES_SUFFIX)}


def config_for_checkpoint(config: Mapping) -> dict:
    """A copy of the config without its ``*_filenames`` lists (what a checkpoint stores)."""
    return {key: copy.deepcopy(value) for key, value in config.items() if not key.endswith(FILENAMES_SUFFIX)}
