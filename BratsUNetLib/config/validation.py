"""Validation of a config in the original 3DUnetCNN format: every problem, one line each.

:func:`validate_config` checks a parsed config up front and reports *every* problem at once, each naming the
block, the key, the bad value and what is allowed; names are checked against :mod:`BratsUNetLib.config.allowlists`,
and keywords against the named class's signature. The constants of the format (blocks, file groups, dataset
names, cross-validation keys) are defined here, where they are checked.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from BratsUNetLib.config.allowlists import KINDS, allowed_names, did_you_mean, name_problem, show_value
from BratsUNetLib.hardware.memory import downsampling_factors

REQUIRED_BLOCKS = ("model", "optimizer", "loss", "dataset", "training")
OPTIONAL_BLOCKS = ("scheduler", "cross_validation", "inference", "guidance")
FILENAMES_SUFFIX = "_filenames"
# Groups whose cases are used for learning, so every case needs a label map.
LABELLED_GROUPS = ("training", "validation")
DATASET_NAMES = ("SegmentationDataset", "SegmentationDatasetPersistent")
# Sub-dicts of the dataset block whose options apply to one split only.
DATASET_SPLITS = ("training", "validation")

CROSS_VALIDATION_DEFAULTS = {"n_folds": 5, "random_seed": 25}
# The old spelling of each cross-validation key (README of the original: {"folds": 5, "seed": 25}).
_CROSS_VALIDATION_OLD_KEYS = {"folds": "n_folds", "seed": "random_seed"}

# The original's name for z-score normalization.
NORMALIZATION_ALIASES = {"zero_mean": "NormalizeIntensityD"}

# Constructor arguments that BratsUNet passes itself: a config must not set them.
_SUPPLIED_ARGUMENTS = {
    "optimizer": {"params": "the network's parameters"},
    "scheduler": {"optimizer": "the optimizer"},
    "transform": {"keys": "the image/label keys"},
}

_MAX_PROBLEMS_PER_GROUP = 5
# JSON deeper than this is not a config (the format nests 4 levels); deeper structures would exhaust Python's
# recursion limit in the code that copies or compares them.
MAX_NESTING = 32


# ------------------------------------------------------------------------------------------ value checks

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


#: How region probabilities become labels (``dataset.label_rule``): ``nested`` as ORIGINAL.md §3 (strictly above the
#: threshold, an inner region only inside the outer ones), ``priority`` as MONAI's bundles do it (at or above the
#: threshold, as ``AsDiscreted``; enhancing wherever ET is, else necrotic wherever TC is, else edema wherever WT is).
LABEL_RULES = ("nested", "priority")

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
    "label_rule": (_optional(lambda value: value in LABEL_RULES),
                   "null, \"nested\" (ORIGINAL.md §3) or \"priority\" (MONAI bundles)"),
    "native_strategy": (_optional(lambda value: value in ("auto", "whole", "windows")),
                        "null, \"auto\", \"whole\" or \"windows\" (how the model runs at native resolution)"),
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
            problems.append(f"{where}.{key}: unknown key{did_you_mean(key, known)}; known keys: {', '.join(known)}")
            continue
        check, allowed = checks[key]
        if not check(value):
            problems.append(f"{where}.{key}: {show_value(value)} is not valid; expected {allowed}")
    return problems


def _block_problem(value: Any, where: str) -> str | None:
    if isinstance(value, dict):
        return None
    return f"{where}: expected an object {{...}}, got {show_value(value)}"


def _not_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _finite(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value)


def _positive_number(value: Any) -> bool:
    return _finite(value) and value > 0


def _non_negative_number(value: Any) -> bool:
    return _finite(value) and value >= 0


def _fraction_below_one(value: Any) -> bool:
    return _finite(value) and 0 < value < 1


def _betas(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(_finite(v) and 0 <= v < 1 for v in value)


def _non_negative_numbers(value: Any) -> bool:
    """One number of 0 or more, or a list of them (ReduceLROnPlateau's min_lr per parameter group)."""
    values = value if isinstance(value, list) else [value]
    return bool(values) and all(_non_negative_number(v) for v in values)


_POSITIVE_NUMBER = "a positive number"
_NON_NEGATIVE_NUMBER = "a number of 0 or more"
# Numeric keyword arguments of optimizers and schedulers whose values the classes do not all check (torch's SGD
# takes a NaN learning rate, Adam an infinite one), so a config can ask for a run that only makes NaNs.
_NUMERIC_ARGUMENTS: dict[str, dict[str, tuple[Callable[[Any], bool], str]]] = {
    "optimizer": {
        # 0 is allowed: torch accepts it, and it freezes the weights (e.g. to check a pretrained network).
        "lr": (_non_negative_number, _NON_NEGATIVE_NUMBER + ", e.g. 0.001"),
        "weight_decay": (_non_negative_number, _NON_NEGATIVE_NUMBER),
        "momentum": (_non_negative_number, _NON_NEGATIVE_NUMBER),
        "dampening": (_non_negative_number, _NON_NEGATIVE_NUMBER),
        "eps": (_non_negative_number, _NON_NEGATIVE_NUMBER + ", e.g. 1e-8"),
        "alpha": (_non_negative_number, _NON_NEGATIVE_NUMBER),
        "rho": (_non_negative_number, _NON_NEGATIVE_NUMBER),
        "lr_decay": (_non_negative_number, _NON_NEGATIVE_NUMBER),
        "betas": (_betas, "two numbers from 0 up to (not including) 1, e.g. [0.9, 0.999]"),
    },
    "scheduler": {
        "factor": (_fraction_below_one, "a number between 0 and 1, e.g. 0.5"),
        "gamma": (_positive_number, _POSITIVE_NUMBER + ", e.g. 0.1"),
        "min_lr": (_non_negative_numbers, _NON_NEGATIVE_NUMBER),
        "eta_min": (_non_negative_number, _NON_NEGATIVE_NUMBER),
        "max_lr": (_positive_number, _POSITIVE_NUMBER),
        "threshold": (_non_negative_number, _NON_NEGATIVE_NUMBER),
        "patience": (lambda v: _is_int(v) and v >= 0, "a whole number of 0 or more"),
        "cooldown": (lambda v: _is_int(v) and v >= 0, "a whole number of 0 or more"),
        "step_size": (_positive_int, _POSITIVE),
        "T_max": (_positive_int, _POSITIVE),
    },
}


def _numeric_argument_problems(kind: str, block: Any, where: str) -> list[str]:
    """Values out of range for the numeric keywords of an optimizer or scheduler block."""
    if not isinstance(block, dict):
        return []
    problems = []
    for key, (check, allowed) in _NUMERIC_ARGUMENTS.get(kind, {}).items():
        # NaN and infinities are already reported by non_finite_problems.
        if key in block and not check(block[key]) and not _not_finite(block[key]):
            problems.append(f"{where}.{key}: {show_value(block[key])} is not valid; expected {allowed}")
    return problems


def _walk(raw: Any) -> Any:
    """``(path, value, depth)`` for every value of a parsed JSON document, without recursion (any depth)."""
    stack = [("", raw, 0)]
    while stack:
        path, value, depth = stack.pop()
        yield path, value, depth
        if isinstance(value, dict):
            stack.extend((f"{path}.{key}" if path else str(key), item, depth + 1) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item, depth + 1) for index, item in enumerate(value))


def nesting_problem(raw: Any) -> str | None:
    """A config nested deeper than :data:`MAX_NESTING` (the block where it happens), else None."""
    for path, _value, depth in _walk(raw):
        if depth > MAX_NESTING:
            block = re.split(r"[.\[]", path)[0] or "the config"
            return (f"{block}: nested more than {MAX_NESTING} levels deep (a config nests a few levels); check "
                    f"that this is the right file")
    return None


def non_finite_problems(raw: Any) -> list[str]:
    """Numbers that are not finite, anywhere: Python's JSON reader accepts NaN, Infinity and 1e999."""
    return sorted(f"{path or 'the config'}: {value} is not a finite number; give an ordinary number (JSON has no "
                  f"NaN or Infinity)" for path, value, _depth in _walk(raw) if _not_finite(value))


def _nearest_multiple(value: int, factor: int) -> int:
    return max(factor, (value + factor // 2) // factor * factor)  # halves round up


def _shape_fit_problems(raw: Mapping) -> list[str]:
    """Input shapes the network cannot divide: every axis must be a multiple of the product of the strides."""
    model = raw.get("model")
    factors = downsampling_factors(model) if isinstance(model, dict) else None
    if not factors or len(factors) != 3 or all(f == 1 for f in factors):
        return []
    dataset = raw.get("dataset") if isinstance(raw.get("dataset"), dict) else {}
    shapes = [("dataset.desired_shape", dataset.get("desired_shape"))]
    shapes += [(f"dataset.{split}.desired_shape", (dataset.get(split) or {}).get("desired_shape"))
               for split in DATASET_SPLITS if isinstance(dataset.get(split), dict)]
    inference = raw.get("inference")
    if isinstance(inference, dict):
        shapes.append(("inference.roi_size", inference.get("roi_size")))
    problems = []
    for where, shape in shapes:
        if not _shape3(shape):
            continue
        if not all(n % f == 0 for n, f in zip(shape, factors)):
            nearest = [_nearest_multiple(n, f) for n, f in zip(shape, factors)]
            problems.append(f"{where}: {shape} cannot pass through the network: model.strides downsample the axes "
                            f"by {factors}, so each edge must be a multiple of its factor; the nearest valid shape "
                            f"is {nearest}")
        elif all(n == f for n, f in zip(shape, factors)):
            # Instance (and batch-of-one) normalization needs more than one value per channel to train.
            problems.append(f"{where}: {shape} leaves a single voxel at the network's deepest level (model.strides "
                            f"downsample the axes by {factors}), which its normalization cannot train on; use at "
                            f"least {[2 * f for f in factors]}")
    return problems


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
                                f"{did_you_mean(key, accepted)}; accepted: {', '.join(accepted)}")
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
        label, _, examples = KINDS[kind]
        return [f"{where}: has no \"name\"; add the {label} to use, e.g. \"name\": \"{examples[0]}\""]
    problem = name_problem(kind, block["name"], f"{where}.name")
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
    name = NORMALIZATION_ALIASES.get(name, name) if isinstance(name, str) else name
    problem = name_problem("transform", name, where_name)
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
            hint = did_you_mean(name, DATASET_NAMES) if isinstance(name, str) else ""
            problems.append(f"{where}.name: {show_value(name)} is not a known dataset{hint}; "
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


# A guided model (click-guided refinement, BratsUNetLib.guidance) takes, after its image channels, 6 click maps
# (WT, TC, ET, each positive and negative) and the current segmentation as 3 region masks.
GUIDED_EXTRA_CHANNELS = 9
_GUIDANCE_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "sigma": (_positive_number, "a positive number of voxels (the width of a click's map)"),
    "margin": (_positive_int, "a positive number of voxels recomputed around a click"),
    "max_edge": (_positive_int, "a positive number of voxels (the largest box a click recomputes)"),
    "max_clicks": (_positive_int, "a positive integer (simulated clicks per training sample, at most)"),
    "no_click_fraction": (lambda value: _is_number(value) and 0 <= value <= 1, "a number from 0 to 1"),
}


def _guidance_problems(raw: Mapping) -> list[str]:
    """The guidance block's keys, and what a guided network must be: WT/TC/ET region outputs, and inputs for
    the click maps and the prior besides the images."""
    guidance = raw["guidance"]
    problem = _block_problem(guidance, "guidance")
    if problem:
        return [problem]
    problems = _typed_keys_problems(guidance, "guidance", _GUIDANCE_CHECKS)
    model, dataset = raw.get("model"), raw.get("dataset")
    if isinstance(model, dict):
        in_channels = model.get("in_channels")
        if _positive_int(in_channels) and in_channels <= GUIDED_EXTRA_CHANNELS:
            problems.append(f"model.in_channels: {in_channels} leaves no image channel; a guided model takes the "
                            f"images and {GUIDED_EXTRA_CHANNELS} guidance channels, e.g. 13 for FLAIR, T1, T1ce, T2")
        if model.get("out_channels") not in (None, 3):
            problems.append(f"model.out_channels: {show_value(model.get('out_channels'))}; a guided model predicts "
                            "the 3 regions WT, TC and ET")
    if isinstance(dataset, dict) and dataset.get("setup_label_hierarchy") is False:
        problems.append("dataset.setup_label_hierarchy: a guided model predicts the regions WT, TC, ET; set it to "
                        "true")
    return problems


def image_channel_count(config: Mapping) -> int | None:
    """How many image channels the network of ``config`` takes: ``model.in_channels``, less the guidance channels
    of a guided model; None when the config does not say."""
    model = config.get("model")
    in_channels = model.get("in_channels") if isinstance(model, Mapping) else None
    if not _positive_int(in_channels):
        return None
    return in_channels - GUIDED_EXTRA_CHANNELS if "guidance" in config else in_channels


def normalize_cross_validation(value: Any) -> tuple[dict | None, list[str]]:
    """``{"n_folds", "random_seed"}`` from either form (old list form and old key names honoured)."""
    where = "cross_validation"
    form = value
    if isinstance(value, list):
        if len(value) != 1 or not isinstance(value[0], dict):
            return None, [f"{where}: {show_value(value)} is not valid; expected "
                          f"{{\"n_folds\": 5, \"random_seed\": 25}} (or the old form [{{\"folds\": 5, \"seed\": 25}}])"]
        form = value[0]
    if not isinstance(form, dict):
        return None, [f"{where}: expected an object {{\"n_folds\": 5, \"random_seed\": 25}}, got {show_value(value)}"]
    result: dict[str, Any] = {}
    problems = []
    known = [*CROSS_VALIDATION_DEFAULTS, *_CROSS_VALIDATION_OLD_KEYS]
    for key, item in form.items():
        target = _CROSS_VALIDATION_OLD_KEYS.get(key, key)
        if target not in CROSS_VALIDATION_DEFAULTS:
            problems.append(f"{where}.{key}: unknown key{did_you_mean(key, known)}; known keys: n_folds, random_seed")
        elif target in result:
            problems.append(f"{where}.{key}: given twice (as {key!r} and its other spelling); keep one")
        else:
            result[target] = item
    n_folds = result.setdefault("n_folds", CROSS_VALIDATION_DEFAULTS["n_folds"])
    seed = result.setdefault("random_seed", CROSS_VALIDATION_DEFAULTS["random_seed"])
    if not (_is_int(n_folds) and n_folds >= 2):
        problems.append(f"{where}.n_folds: {show_value(n_folds)} is not valid; expected an integer of 2 or more")
    # numpy.random.seed takes 0 .. 2**32 - 1.
    if not (_is_int(seed) and 0 <= seed < 2 ** 32):
        problems.append(f"{where}.random_seed: {show_value(seed)} is not valid; expected an integer from 0 to "
                        f"4294967295")
    return (None if problems else {"n_folds": n_folds, "random_seed": seed}), problems


def _case_problems(case: Any, where: str, n_channels: int | None, needs_label: bool, guided: bool = False
                   ) -> list[str]:
    if not isinstance(case, dict):
        return [f"{where}: expected {{\"image\": [paths...], \"label\": path}}, got {show_value(case)}"]
    problems = [f"{where}.{key}: unknown key{did_you_mean(key, ['image', 'label'])}; known keys: image, label"
                for key in case if key not in ("image", "label")]
    images = case.get("image")
    if not (isinstance(images, list) and images and all(_is_string(p) for p in images)):
        problems.append(f"{where}.image: {show_value(images)} is not valid; expected a list of image paths, "
                        f"one per channel (e.g. flair, t1, t1ce, t2)")
    elif n_channels is not None and len(images) != n_channels:
        takes = (f"the guided network takes {n_channels} (model.in_channels less {GUIDED_EXTRA_CHANNELS} guidance "
                 "channels)") if guided else f"model.in_channels is {n_channels}"
        problems.append(f"{where}.image: {len(images)} images given but {takes}; give one image per input channel")
    label = case.get("label")
    if label is None:
        if needs_label:
            problems.append(f"{where}: has no \"label\"; cases used for training need a label map")
    elif not _is_string(label):
        problems.append(f"{where}.label: {show_value(label)} is not valid; expected the path of a label map")
    return problems


def _filenames_problems(key: str, value: Any, n_channels: int | None, guided: bool = False) -> list[str]:
    group = key[: -len(FILENAMES_SUFFIX)]
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", group):
        return [f"{key}: {group!r} is not a usable group name (it becomes a folder name); use letters, digits, "
                f"'_', '-' or '.', e.g. \"test_filenames\""]
    if not isinstance(value, list):
        return [f"{key}: expected a list of {{\"image\": [paths...], \"label\": path}} entries, got "
                f"{show_value(value)} (file lists stored in .npy files are not supported)"]
    problems: list[str] = []
    bad_cases = 0
    for index, case in enumerate(value):
        found = _case_problems(case, f"{key}[{index}]", n_channels, needs_label=group in LABELLED_GROUPS,
                               guided=guided)
        if found:
            bad_cases += 1
            if bad_cases <= _MAX_PROBLEMS_PER_GROUP:
                problems.extend(found)
    if bad_cases > _MAX_PROBLEMS_PER_GROUP:
        problems.append(f"{key}: and {bad_cases - _MAX_PROBLEMS_PER_GROUP} more entries with problems")
    return problems


# ------------------------------------------------------------------------------------------ entry points

def validate_config(raw: Any) -> list[str]:
    """Every problem of a config (parsed JSON), one line each; an empty list when it is valid.

    Besides each block's keys and types: no value anywhere may be NaN or infinite, optimizer and scheduler
    numbers must be in range, and every input shape (``desired_shape``, the inferer's ``roi_size``) must be
    divisible by the network's downsampling, and leave more than one voxel at its deepest level. ``bratsunet
    validate-config`` and ``bratsunet train`` both run these (through
    :func:`BratsUNetLib.training.setup.check_training_config`), as does every reader of a config.
    """
    too_deep = nesting_problem(raw)  # first: deeper structures would exhaust the recursion of what follows
    if too_deep:
        return [too_deep]
    if not isinstance(raw, dict):
        return [f"the config must be a JSON object {{\"model\": ..., \"dataset\": ...}}, got {show_value(raw)}"]
    problems: list[str] = non_finite_problems(raw)
    for key in raw:
        if key not in REQUIRED_BLOCKS and key not in OPTIONAL_BLOCKS and not key.endswith(FILENAMES_SUFFIX):
            allowed = [*REQUIRED_BLOCKS, *OPTIONAL_BLOCKS]
            problems.append(f"{key}: unknown top-level block{did_you_mean(key, allowed)}; allowed: "
                            f"{', '.join(allowed)} and <group>_filenames lists")
    for block in REQUIRED_BLOCKS:
        if block not in raw:
            problems.append(f"{block}: required block is missing; add \"{block}\": {{...}}")

    if "model" in raw:
        problems.extend(model_problems(raw["model"]))
    for block, kind in (("optimizer", "optimizer"), ("loss", "loss"), ("scheduler", "scheduler"),
                        ("inference", "inferer")):
        if block in raw:
            found = named_block_problems(kind, raw[block], block)
            problems.extend(found or _numeric_argument_problems(kind, raw[block], block))
    if "dataset" in raw:
        problem = _block_problem(raw["dataset"], "dataset")
        problems.extend([problem] if problem else _dataset_problems(raw["dataset"]))
    if "training" in raw:
        problem = _block_problem(raw["training"], "training")
        problems.extend([problem] if problem else _training_problems(raw["training"]))
    if "cross_validation" in raw:
        problems.extend(normalize_cross_validation(raw["cross_validation"])[1])
    if "guidance" in raw:
        problems.extend(_guidance_problems(raw))

    n_channels = image_channel_count(raw)
    n_channels = n_channels if _positive_int(n_channels) else None
    for key, value in raw.items():
        if key.endswith(FILENAMES_SUFFIX):
            problems.extend(_filenames_problems(key, value, n_channels, guided="guidance" in raw))
    dataset = raw.get("dataset")
    if (isinstance(dataset, dict) and dataset.get("labels") is None
            and any(raw.get(group + FILENAMES_SUFFIX) for group in LABELLED_GROUPS)):
        problems.append("dataset.labels: missing; training needs the label values the network predicts, "
                        "e.g. \"labels\": [2, 1, 4] with \"setup_label_hierarchy\": true for BraTS")
    if not problems:
        problems.extend(_shape_fit_problems(raw))
    return problems
