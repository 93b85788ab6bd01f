"""A MONAI bundle (a MONAI Model Zoo zip, or its folder) read as data and turned into a BratsUNet checkpoint.

A bundle describes its model in JSON (``configs/inference.json``, ``configs/metadata.json``) and keeps its weights
in ``models/model.pt``. MONAI runs a bundle by evaluating its config: ``$`` strings are Python expressions and
``_target_`` names any importable callable, so running one would run whatever a download holds. Here the configs
are only read: ``_target_`` names are looked up in this project's allowlists, ``@name`` references are followed to
literal values, and a ``$`` expression is refused, except the one form bundles use to turn region channels into
labels (a ``Lambdad`` of nested ``torch.where``), which is parsed (``ast``), never run. What cannot be mapped onto a
BratsUNet model description is refused with one line naming it. Weights load with ``torch.load(weights_only=True)``.

What is mapped (everything else is refused):

- ``network_def``: an allowlisted ``monai.networks.nets`` class and its literal arguments.
- ``preprocessing``: ``LoadImaged``, ``EnsureChannelFirstd``, ``EnsureTyped``, ``ToTensord`` (nothing to do: the
  channels are read one file each, channel-first), ``Orientationd`` (``dataset.orientation``) and one
  ``NormalizeIntensityd`` (``dataset.normalization_kwargs``). No crop, no resize: the model runs at native resolution.
- ``inferer``: ``SlidingWindowInferer`` (the checkpoint's ``inference`` block, run in windows by default) or
  ``SimpleInferer`` (one pass over the whole volume).
- ``postprocessing``: ``Activationsd`` (sigmoid or softmax), ``Invertd``, ``AsDiscreted`` (threshold 0.5), the
  labelling ``Lambdad`` and ``SaveImaged`` (BratsUNet writes its own files).
- ``metadata.json``: the input channels' names (``T1c`` → ``t1ce``, ...) and the output channels' regions.

The network's outputs are reordered to WT, TC, ET (the order of every BratsUNet model) by permuting its last
convolution, checked on a small input, so the rest of the library needs to know nothing of the bundle.
"""

from __future__ import annotations

import ast
import io
import json
import re
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from BratsUNetLib.config.allowlists import allowed_names
from BratsUNetLib.config.loading import load_config
from BratsUNetLib.errors import CheckpointError, ConfigError
from BratsUNetLib.inputfiles import require_regular_file
from BratsUNetLib.modalities import MODALITIES, canonical_channel
from BratsUNetLib.models.checkpoint import DEFAULT_REGIONS as REGIONS
from BratsUNetLib.models.checkpoint import load_weights, save_checkpoint
from BratsUNetLib.models.networks import build_network

INFERENCE_CONFIG = "configs/inference.json"
METADATA = "configs/metadata.json"
WEIGHTS = "models/model.pt"
#: Larger config files are not a bundle's (the model zoo's are a few kB).
MAX_JSON_BYTES = 4 * 2**20
#: Larger weights are refused before they are read (BraTS networks are tens of MB).
MAX_WEIGHTS_BYTES = 4 * 2**30
#: A zip with more members is not a bundle (a zip bomb of tiny files is refused before any is read).
MAX_MEMBERS = 10_000

# Names bundles give their channels (metadata channel_def), lower-cased, and the BratsUNet names they stand for.
_CHANNEL_NAMES = {"t1c": "t1ce", "t1ce": "t1ce", "t1gd": "t1ce", "t1-gd": "t1ce", "t1 post": "t1ce", "t1": "t1",
                  "t1n": "t1", "t2": "t2", "t2w": "t2", "flair": "flair", "t2-flair": "flair", "t2 flair": "flair",
                  "t2f": "flair"}
_REGION_NAMES = {"whole tumor": "WT", "whole tumour": "WT", "wt": "WT", "tumor core": "TC", "tumour core": "TC",
                 "tc": "TC", "enhancing tumor": "ET", "enhancing tumour": "ET", "et": "ET"}
_NO_OP_TRANSFORMS = ("LoadImaged", "LoadImage", "EnsureChannelFirstd", "EnsureTyped", "ToTensord")
_IGNORED_POSTPROCESSING = ("Invertd", "SaveImaged")
# Fine-tuning an imported model starts from these (a bundle's training config is not read).
_FINE_TUNING = {"optimizer": {"name": "Adam", "lr": 1e-4}, "training": {"batch_size": 1}}


@dataclass
class BundleModel:
    """What a bundle describes, as BratsUNet needs it.

    ``config`` is a BratsUNet config (model, loss for the activation, dataset, inference); ``channels`` the input
    channels in the network's order (BratsUNet names); ``state_dict`` the weights as the bundle stores them, whose
    outputs are the regions ``output_regions`` in that order.
    """

    name: str
    version: str
    config: dict
    channels: list[str]
    output_regions: list[str]
    state_dict: dict[str, torch.Tensor]
    metadata: dict = field(default_factory=dict)


class BundleError(ConfigError):
    """A bundle this project cannot run as its publisher does (one line: what and why)."""


def read_bundle(source: str | Path, weights: str | Path | None = None) -> BundleModel:
    """Read the bundle ``source`` (a ``.zip`` or a folder) without running any of it.

    ``weights`` replaces the bundle's ``models/model.pt`` (a model zoo bundle whose weights are published
    apart, ``large_files.yml``). Raises :class:`BundleError` for what cannot be mapped, CheckpointError for
    weights that are not plain tensors.
    """
    label = f"bundle '{source}'"
    with _BundleFiles(Path(source)) as files:
        inference = files.json(INFERENCE_CONFIG)
        metadata = files.json(METADATA)
        model_block = _network(inference, label)
        channels = _input_channels(metadata, model_block, label)
        regions = _output_regions(metadata, model_block, label)
        activation, rule = _postprocessing(inference, regions, label)
        inferer, strategy = _inferer(inference, label)
        dataset = {"labels": [2, 1, 4], "setup_label_hierarchy": True, "resample": False, "crop_foreground": False,
                   **_preprocessing(inference, label), "label_rule": rule, "native_strategy": strategy}
        config = {"model": model_block, "loss": {"name": "DiceLoss", activation: True}, "dataset": dataset,
                  **_FINE_TUNING, **({"inference": inferer} if inferer else {})}
        try:
            config = load_config(config)
        except ConfigError as exc:
            raise BundleError(f"The {label} describes a model BratsUNet cannot build: {exc}") from None
        state = _weights(Path(weights) if weights else None, files, label)
        name = str(metadata.get("name") or files.root_name)
    return BundleModel(name=name, version=str(metadata.get("version", "")), config=config, channels=channels,
                       output_regions=regions, state_dict=state, metadata=metadata)


def import_bundle(source: str | Path, destination: str | Path, weights: str | Path | None = None) -> Path:
    """Write the model of the bundle ``source`` as a BratsUNet checkpoint at ``destination`` (atomically).

    The network is built, the weights loaded with strict checks, and its outputs reordered to WT, TC, ET; the
    checkpoint records where it came from (``extra["source"]``).
    """
    model = read_bundle(source, weights)
    network = build_network(model.config["model"])
    load_weights(network, model.state_dict, source=f"{source} ({WEIGHTS})")
    order = [model.output_regions.index(region) for region in REGIONS]
    if order != list(range(len(REGIONS))):
        reorder_outputs(network, order, model.config["model"].get("in_channels") or len(model.channels))
    source_record = {"kind": "monai-bundle", "name": model.name, "version": model.version,
                     "output_regions": model.output_regions}
    return save_checkpoint(destination, network, config=model.config, channels=model.channels,
                           extra={"source": source_record}, regions=REGIONS)


def reorder_outputs(network: torch.nn.Module, order: Sequence[int], in_channels: int) -> None:
    """Make ``network``'s output channel ``i`` what its channel ``order[i]`` was, by permuting its last convolution.

    The last convolution is found by running a small input (16 voxels a side, which every BraTS network divides)
    and taking the last module called; the reordered network is checked against the old one on the same input.
    CheckpointError when the outputs do not come straight from a convolution.
    """
    probe = torch.randn(1, in_channels, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    called: list[torch.nn.Module] = []
    hooks = [module.register_forward_hook(lambda module, _inputs, _output: called.append(module))
             for module in network.modules() if not list(module.children())]
    network.eval()
    try:
        with torch.inference_mode():
            before = network(probe)
    finally:
        for hook in hooks:
            hook.remove()
    last = called[-1] if called else None
    if not isinstance(last, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)) or last.out_channels != len(order):
        raise CheckpointError(f"The network's outputs do not come from a final convolution "
                              f"({type(last).__name__}); BratsUNet cannot reorder them to WT, TC, ET.")
    index = torch.as_tensor(list(order))
    with torch.no_grad():
        # ConvTranspose3d keeps its output channels on the second axis of its weight.
        axis = 0 if isinstance(last, torch.nn.Conv3d) else 1
        last.weight.copy_(last.weight.index_select(axis, index))
        if last.bias is not None:
            last.bias.copy_(last.bias[index])
        after = network(probe)
    if not torch.allclose(after, before[:, index], atol=1e-5, rtol=1e-4):
        raise CheckpointError("Reordering the network's outputs to WT, TC, ET changed them; BratsUNet cannot "
                              "import this bundle.")


# ----------------------------------------------------------------------------------------------- the bundle's files

class _BundleFiles:
    """The members of a bundle zip or folder, read with size limits (the zip's own sizes are checked first)."""

    def __init__(self, source: Path) -> None:
        self.source = source
        if source.is_dir():
            self.zip = None
            self.root = source
            self.root_name = source.name
            return
        require_regular_file(source, "Bundle", "give a MONAI bundle (.zip) or its folder", error=BundleError)
        try:
            self.zip = zipfile.ZipFile(source)
            names = self.zip.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            raise BundleError(f"'{source}' is not a MONAI bundle: not a zip file (or a damaged one); give the "
                              "bundle's .zip or its folder.") from None
        if len(names) > MAX_MEMBERS:
            raise BundleError(f"'{source}' holds {len(names)} files, more than a bundle has ({MAX_MEMBERS}).")
        # The bundle's folder inside the zip: the one that holds configs/inference.json, at most one level down.
        roots = [name[: -len(INFERENCE_CONFIG)] for name in names if name.endswith(INFERENCE_CONFIG)
                 and name[: -len(INFERENCE_CONFIG)].count("/") <= 1]
        if not roots:
            raise BundleError(f"'{source}' is not a MONAI bundle: it has no {INFERENCE_CONFIG}.")
        self.prefix = min(roots, key=len)
        self.root_name = self.prefix.strip("/") or source.stem

    def __enter__(self) -> _BundleFiles:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.zip is not None:
            self.zip.close()

    def _member(self, name: str, limit: int) -> zipfile.ZipInfo | Path | None:
        if self.zip is None:
            path = self.root / name
            if not path.exists():
                return None
            require_regular_file(path, "Bundle file", "restore the bundle", error=BundleError)
            if path.stat().st_size > limit:
                raise BundleError(f"'{path}' is larger than a bundle's {name} ({limit // 2**20} MB at most).")
            return path
        try:
            info = self.zip.getinfo(self.prefix + name)
        except KeyError:
            return None
        if info.file_size > limit:
            raise BundleError(f"The bundle's {name} in '{self.source}' is larger than such a file can be "
                              f"({limit // 2**20} MB at most).")
        return info

    def read(self, name: str, limit: int) -> bytes | None:
        """The bytes of member ``name`` (a path inside the bundle), None when absent."""
        member = self._member(name, limit)
        if member is None:
            return None
        if isinstance(member, Path):
            return member.read_bytes()
        try:
            with self.zip.open(member) as handle:
                data = handle.read(limit + 1)  # never more than the limit, whatever the zip's header said
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError):
            raise BundleError(f"The bundle '{self.source}' is damaged ({name} cannot be read); download it "
                              "again.") from None
        if len(data) > limit:
            raise BundleError(f"The bundle's {name} in '{self.source}' is larger than its header says.")
        return data

    def json(self, name: str) -> dict:
        data = self.read(name, MAX_JSON_BYTES)
        if data is None:
            raise BundleError(f"The bundle '{self.source}' has no {name}; it is not a MONAI bundle BratsUNet reads.")
        try:
            value = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise BundleError(f"The bundle's {name} in '{self.source}' is not valid JSON; download the bundle "
                              "again.") from None
        if not isinstance(value, dict):
            raise BundleError(f"The bundle's {name} in '{self.source}' is not a JSON object.")
        return value


def _weights(path: Path | None, files: _BundleFiles, label: str) -> dict[str, torch.Tensor]:
    """The bundle's state dict: a plain one, or the ``model`` entry of a saved dict, loaded as tensors only."""
    if path is not None:
        require_regular_file(path, "Bundle weights", "give the bundle's model.pt", error=CheckpointError)
        if path.stat().st_size > MAX_WEIGHTS_BYTES:
            raise CheckpointError(f"'{path}' is larger than a network's weights can be here "
                                  f"({MAX_WEIGHTS_BYTES // 2**30} GB); check that this is the right file.")
        data = path.read_bytes()
    else:
        data = files.read(WEIGHTS, MAX_WEIGHTS_BYTES)
        if data is None:
            raise BundleError(f"The {label} has no {WEIGHTS} (its weights are published apart, see its "
                              "large_files.yml); download them and give them with the bundle.")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore")
            content = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # damaged or foreign files fail in many ways inside torch
        unsafe = re.search(r"\bGLOBAL ([\w.]+)", str(exc))
        reason = f"loading them would run code ({unsafe.group(1)})" if unsafe else "they are damaged or of another kind"
        raise CheckpointError(f"The weights of the {label} were refused: {reason}; only plain weights are ever "
                              "loaded.") from None
    if isinstance(content, Mapping) and isinstance(content.get("model"), Mapping):
        content = content["model"]  # what MONAI's CheckpointSaver writes: {"model": state_dict, ...}
    if not (isinstance(content, Mapping) and content
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in content.items())):
        raise CheckpointError(f"The weights of the {label} are not a network's state dict.")
    return dict(content)


# --------------------------------------------------------------------------------------------- reading the configs

def _literal(value: Any, root: Mapping, where: str, depth: int = 0) -> Any:
    """``value`` with ``@id`` references (``@a#b`` for nested ids) followed to literal values; a ``$`` expression
    or a ``%`` file reference is refused: nothing of a bundle is run."""
    if depth > 20:
        raise BundleError(f"{where}: the references of the bundle's config go round in a circle.")
    if isinstance(value, str) and value.startswith("@"):
        target: Any = root
        for part in value[1:].split("#"):
            if isinstance(target, Mapping) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                raise BundleError(f"{where}: the reference '{value}' names nothing in the bundle's config.")
        return _literal(target, root, where, depth + 1)
    if isinstance(value, str) and value.startswith(("$", "%")):
        raise BundleError(f"{where} is the expression '{value[:60]}', which BratsUNet does not evaluate (a "
                          "downloaded file runs no code); this bundle cannot be imported.")
    if isinstance(value, list):
        return [_literal(item, root, where, depth + 1) for item in value]
    if isinstance(value, dict):
        return {key: _literal(item, root, where, depth + 1) for key, item in value.items()}
    return value


def _target(block: Any, where: str) -> str:
    """The class name a config block's ``_target_`` names, without its module path."""
    if not isinstance(block, Mapping) or not isinstance(block.get("_target_"), str):
        raise BundleError(f"{where} is not a component (an object with \"_target_\").")
    return block["_target_"].rsplit(".", 1)[-1]


def _arguments(block: Mapping, root: Mapping, where: str, ignored: Sequence[str] = ()) -> dict:
    """A component's arguments as literals, without ``_target_`` and the keys in ``ignored``."""
    return {key: _literal(value, root, f"{where}.{key}") for key, value in block.items()
            if key not in ("_target_", "_disabled_", "_requires_", "_desc_", *ignored)}


def _network(inference: Mapping, label: str) -> dict:
    block = inference.get("network_def")
    name = _target(block, f"{label}: network_def")
    if name not in allowed_names("network"):
        raise BundleError(f"{label}: network_def names '{name}', which is not a MONAI network BratsUNet builds.")
    return {"name": name, **_arguments(block, inference, f"{label}: network_def")}


def _transforms(inference: Mapping, key: str, label: str) -> list[Mapping]:
    block = inference.get(key)
    if block is None:
        return []
    if _target(block, f"{label}: {key}") != "Compose" or not isinstance(block.get("transforms"), list):
        raise BundleError(f"{label}: {key} is not a Compose of transforms.")
    return [item for item in block["transforms"] if not (isinstance(item, Mapping) and item.get("_disabled_"))]


def _preprocessing(inference: Mapping, label: str) -> dict:
    """The dataset options that reproduce the bundle's preprocessing."""
    options: dict[str, Any] = {}
    for index, item in enumerate(_transforms(inference, "preprocessing", label)):
        where = f"{label}: preprocessing transform {index + 1}"
        name = _target(item, where)
        if name in _NO_OP_TRANSFORMS:
            continue
        arguments = _arguments(item, inference, where, ignored=("keys", "allow_missing_keys"))
        if name == "Orientationd" and set(arguments) <= {"axcodes", "labels"} and arguments.get("axcodes"):
            options["orientation"] = str(arguments["axcodes"])
        elif name == "NormalizeIntensityd" and "normalization" not in options \
                and set(arguments) <= {"nonzero", "channel_wise", "subtrahend", "divisor"}:
            options["normalization"] = "NormalizeIntensityD"
            options["normalization_kwargs"] = arguments
        else:
            raise BundleError(f"{where} is {name}({', '.join(arguments)}), which BratsUNet cannot run as the bundle "
                              "does; it runs LoadImaged, EnsureChannelFirstd, EnsureTyped, Orientationd(axcodes) and "
                              "one NormalizeIntensityd.")
    if "normalization" not in options:
        raise BundleError(f"{label}: its preprocessing has no NormalizeIntensityd; BratsUNet runs every model "
                          "with an intensity normalization.")
    return options


def _inferer(inference: Mapping, label: str) -> tuple[dict | None, str]:
    """The checkpoint's ``inference`` block and the native strategy that run the network as the bundle does."""
    block = inference.get("inferer")
    if block is None:
        return None, "whole"
    name = _target(block, f"{label}: inferer")
    arguments = _arguments(block, inference, f"{label}: inferer")
    if name == "SimpleInferer" and not arguments:
        return None, "whole"
    if name == "SlidingWindowInferer" and "roi_size" in arguments:
        return {"name": name, **arguments}, "windows"
    raise BundleError(f"{label}: its inferer is {name}; BratsUNet runs SlidingWindowInferer(roi_size=...) and "
                      "SimpleInferer.")


def _postprocessing(inference: Mapping, regions: Sequence[str], label: str) -> tuple[str, str]:
    """The activation (``sigmoid``) and the dataset's label rule, from the bundle's postprocessing."""
    activation, rule = None, "priority"
    for index, item in enumerate(_transforms(inference, "postprocessing", label)):
        where = f"{label}: postprocessing transform {index + 1}"
        name = _target(item, where)
        if name in _IGNORED_POSTPROCESSING:
            continue
        if name == "Lambdad":
            rule = _label_rule(item.get("func"), regions, where)
            continue
        arguments = _arguments(item, inference, where, ignored=("keys", "allow_missing_keys"))
        if name == "Activationsd" and (arguments.get("sigmoid") or arguments.get("softmax")):
            activation = "sigmoid" if arguments.get("sigmoid") else "softmax"
        elif name == "AsDiscreted" and set(arguments) == {"threshold"} and arguments["threshold"] == 0.5:
            continue
        else:
            raise BundleError(f"{where} is {name}({', '.join(arguments)}), which BratsUNet cannot run as the bundle "
                              "does; it runs Activationsd, Invertd, AsDiscreted(threshold=0.5), the labelling "
                              "Lambdad and SaveImaged.")
    if activation != "sigmoid":
        raise BundleError(f"{label}: its outputs are not sigmoid region channels (WT, TC, ET); BratsUNet imports "
                          "bundles whose outputs are the three BraTS regions.")
    return activation, rule


def _label_rule(func: Any, regions: Sequence[str], where: str) -> str:
    """The label rule of a labelling ``Lambdad``, read from its expression's syntax tree (never evaluated).

    The form bundles use: ``$lambda x: torch.where(x[[i]] > 0, L, torch.where(x[[j]] > 0, M, ...))``: the first
    channel listed wins. BratsUNet's ``priority`` rule is enhancing (ET) first, then necrotic (TC), then edema (WT).
    """
    unsupported = BundleError(f"{where} labels the outputs with an expression BratsUNet does not read "
                              f"('{str(func)[:80]}'); it reads nested torch.where(x[[channel]] > 0, label, ...).")
    if not isinstance(func, str) or not func.startswith("$") or len(func) > 1000:
        raise unsupported
    try:
        tree = ast.parse(func[1:].strip(), mode="eval").body
    except SyntaxError:
        raise unsupported from None
    if not isinstance(tree, ast.Lambda) or len(tree.args.args) != 1:
        raise unsupported
    variable, node, order = tree.args.args[0].arg, tree.body, []
    while isinstance(node, ast.Call):
        condition, label_value, rest = (node.args + [None, None, None])[:3]
        if not (isinstance(node.func, ast.Attribute) and node.func.attr == "where" and len(node.args) == 3
                and isinstance(condition, ast.Compare) and len(condition.ops) == 1
                and isinstance(condition.ops[0], ast.Gt) and isinstance(condition.comparators[0], ast.Constant)
                and condition.comparators[0].value == 0 and isinstance(label_value, ast.Constant)):
            raise unsupported
        channel = _indexed_channel(condition.left, variable)
        if channel is None or not 0 <= channel < len(regions):
            raise unsupported
        order.append((regions[channel], label_value.value))
        node = rest
    if not (isinstance(node, ast.Constant) and node.value == 0):
        raise unsupported
    if order not in ([("ET", 4), ("TC", 1), ("WT", 2)], [("ET", 3), ("TC", 1), ("WT", 2)]):
        raise BundleError(f"{where} labels the regions {order}; BratsUNet writes BraTS labels, enhancing tumour "
                          "first (4 or 3), then necrotic core 1, then edema 2.")
    return "priority"


def _indexed_channel(node: ast.AST, variable: str) -> int | None:
    """``i`` for ``x[[i]]`` or ``x[i]`` (``x`` being ``variable``), else None."""
    if not (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == variable):
        return None
    index = node.slice
    if isinstance(index, ast.List) and len(index.elts) == 1:
        index = index.elts[0]
    return index.value if isinstance(index, ast.Constant) and isinstance(index.value, int) else None


def _channel_definitions(metadata: Mapping, kind: str, key: str) -> list[str] | None:
    """The names of ``metadata.network_data_format.<kind>.<key>.channel_def`` in channel order, or None."""
    try:
        definitions = metadata["network_data_format"][kind][key]["channel_def"]
    except (KeyError, TypeError):
        return None
    if not isinstance(definitions, Mapping) or not all(str(k).isdigit() for k in definitions):
        return None
    return [str(definitions[k]) for k in sorted(definitions, key=lambda k: int(k))]


def _input_channels(metadata: Mapping, model_block: Mapping, label: str) -> list[str]:
    names = _channel_definitions(metadata, "inputs", "image")
    count = model_block.get("in_channels")
    if names is None or len(names) != count:
        raise BundleError(f"{label}: its metadata.json does not name its {count} input channels "
                          "(network_data_format.inputs.image.channel_def); BratsUNet needs to know which image "
                          "goes where.")
    channels = [_CHANNEL_NAMES.get(name.strip().lower(), canonical_channel(name)) for name in names]
    unknown = [name for name, channel in zip(names, channels) if channel not in MODALITIES]
    if unknown:
        raise BundleError(f"{label}: input channel(s) {', '.join(unknown)} are not BraTS MRI contrasts "
                          f"({', '.join(MODALITIES)}).")
    return channels


def _output_regions(metadata: Mapping, model_block: Mapping, label: str) -> list[str]:
    names = _channel_definitions(metadata, "outputs", "pred")
    regions = [_REGION_NAMES.get(name.strip().lower()) for name in names or []]
    if model_block.get("out_channels") != len(REGIONS) or sorted(filter(None, regions)) != sorted(REGIONS):
        raise BundleError(f"{label}: its outputs ({', '.join(names or ['not named'])}) are not the three BraTS "
                          "regions (whole tumor, tumor core, enhancing tumor).")
    return [str(region) for region in regions]
