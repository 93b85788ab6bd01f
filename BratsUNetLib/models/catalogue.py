"""The model catalogue: the downloadable models, by name, with what a model card shows about each.

The catalogue shipped with the library is ``catalogue.json`` beside this file; ``$BRATSUNET_MODEL_CATALOGUE``
(a file or an http(s) URL) replaces it, for sites with mirrors and for tests. Its form::

    {"models": [{"name": "brats_mri_segmentation", "url": "https://...zip", "sha256": null, "md5": null,
                 "format": "monai-bundle", "title": "...", ...}]}

``name``, ``url`` and ``format`` are required; ``format`` is ``bratsunet`` (this project's checkpoints) or
``monai-bundle`` (a MONAI bundle zip, read by :mod:`.bundle`). The other keys are shown on the model card; keys
this version does not know are kept in ``extra``. Names are the only way to a download: a name that is not in
the catalogue is an error, and nothing downloaded is ever run.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from BratsUNetLib.errors import ConfigError
from BratsUNetLib.inputfiles import require_regular_file

CATALOGUE_ENV = "BRATSUNET_MODEL_CATALOGUE"
SHIPPED_CATALOGUE = Path(__file__).with_name("catalogue.json")
FORMATS = ("bratsunet", "monai-bundle")
#: A catalogue lists models; one larger than this is not one.
MAX_CATALOGUE_BYTES = 1 << 20
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_HEX = {"sha256": 64, "md5": 32}
_TEXT_FIELDS = ("title", "description", "licence", "citation", "training_data", "outputs", "label_scheme",
                "preprocessing", "inference")


@dataclass(frozen=True)
class CatalogueEntry:
    """One downloadable model. ``size_bytes`` as published (None when not); ``accuracy`` e.g. ``{"WT": 0.903}``;
    ``weights`` a separately published weights file (``{"path", "url", "sha256" or "md5"}``) for bundles whose zip
    does not hold them."""

    name: str
    url: str
    format: str
    sha256: str | None = None
    md5: str | None = None
    title: str = ""
    description: str = ""
    size_bytes: int | None = None
    licence: str = ""
    citation: str = ""
    training_data: str = ""
    channels: tuple[str, ...] = ()
    outputs: str = ""
    label_scheme: str = ""
    preprocessing: str = ""
    inference: str = ""
    accuracy: Mapping[str, Any] = field(default_factory=dict)
    weights: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def is_model_name(text: str | os.PathLike) -> bool:
    """Whether ``text`` is a model's name rather than a file: a name's form, no folder, no checkpoint or bundle
    suffix, and no file of that name in the current folder."""
    text = str(text)
    return (bool(NAME_PATTERN.fullmatch(text)) and not text.endswith((".pth", ".pt", ".zip"))
            and not Path(text).exists())


def load_catalogue(source: str | os.PathLike | None = None) -> list[CatalogueEntry]:
    """The entries of the catalogue ``source`` (default ``$BRATSUNET_MODEL_CATALOGUE``, else the shipped one).

    ConfigError (one line naming the catalogue and the entry) for anything that is not a valid catalogue.
    """
    source = source or os.environ.get(CATALOGUE_ENV) or SHIPPED_CATALOGUE
    text = _read(str(source))
    try:
        content = json.loads(text)
    except (ValueError, RecursionError):
        raise ConfigError(f"The model catalogue '{source}' is not valid JSON; fix it or point "
                          f"{CATALOGUE_ENV} at another.") from None
    if not isinstance(content, Mapping) or not isinstance(content.get("models"), list):
        raise ConfigError(f"The model catalogue '{source}' must be an object {{\"models\": [...]}}.")
    entries = [_entry(item, index, source) for index, item in enumerate(content["models"])]
    names = [entry.name for entry in entries]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"The model catalogue '{source}' lists {', '.join(repeated)} more than once; names "
                          "must be unique.")
    return entries


def find_entry(name: str, entries: Sequence[CatalogueEntry]) -> CatalogueEntry:
    """The entry called ``name``; ConfigError listing the names there are otherwise."""
    for entry in entries:
        if entry.name == name:
            return entry
    listed = ", ".join(entry.name for entry in entries) or "none"
    raise ConfigError(f"No model called '{name}' in the catalogue (its models: {listed}).")


def catalogue_card(entry: CatalogueEntry) -> str:
    """What the catalogue says of a model, as lines for a model card (title first, then what is known)."""
    lines = [entry.title or entry.name]
    if entry.description:
        lines.append(entry.description)
    facts = (("Name", entry.name), ("Format", entry.format), ("Licence", entry.licence),
             ("Trained on", entry.training_data), ("Inputs", ", ".join(entry.channels)), ("Outputs", entry.outputs),
             ("Labels", entry.label_scheme), ("Preprocessing", entry.preprocessing), ("Inference", entry.inference),
             ("Reported accuracy", ", ".join(f"{key} {value}" for key, value in entry.accuracy.items())),
             ("Download", f"{entry.size_bytes / 2**20:.0f} MB" if entry.size_bytes else ""),
             ("Cite", entry.citation))
    lines += [f"{label}: {value}" for label, value in facts if value]
    return "\n".join(lines)


def _read(source: str) -> str:
    if source.startswith(("http://", "https://")):
        import requests  # on use: only a catalogue at a URL needs it (and it costs every start-up 60-90 ms)

        try:
            with requests.get(source, stream=True, timeout=30) as response:
                response.raise_for_status()
                data = response.raw.read(MAX_CATALOGUE_BYTES + 1, decode_content=True)
        except requests.RequestException as exc:
            raise ConfigError(f"The model catalogue '{source}' cannot be fetched "
                              f"({' '.join(str(exc).split())[:100]}); check the URL in {CATALOGUE_ENV}.") from None
    else:
        path = require_regular_file(source, "Model catalogue", "give a JSON file", error=ConfigError)
        if path.stat().st_size > MAX_CATALOGUE_BYTES:
            raise ConfigError(f"The model catalogue '{source}' is larger than a catalogue can be "
                              f"({MAX_CATALOGUE_BYTES // 1024} kB); check that this is the right file.")
        data = path.read_bytes()
    if len(data) > MAX_CATALOGUE_BYTES:
        raise ConfigError(f"The model catalogue '{source}' is larger than a catalogue can be "
                          f"({MAX_CATALOGUE_BYTES // 1024} kB).")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"The model catalogue '{source}' is not UTF-8 text.") from None


def _entry(item: Any, index: int, source: Any) -> CatalogueEntry:
    where = f"The model catalogue '{source}', entry {index + 1}"
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where} is not an object.")
    name = item.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"{where}: name {name!r} must be lower-case letters, digits, '_', '-' or '.' (1-64).")
    where = f"The model catalogue '{source}', model '{name}'"
    url = item.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: url must be an http(s) URL.")
    if item.get("format") not in FORMATS:
        raise ConfigError(f"{where}: format must be one of {', '.join(FORMATS)}, not {item.get('format')!r}.")
    hashes = {kind: _hash(item.get(kind), kind, where) for kind in _HEX}
    weights = item.get("weights")
    if weights is not None:
        if not isinstance(weights, Mapping) or not str(weights.get("url", "")).startswith(("http://", "https://")):
            raise ConfigError(f"{where}: weights must be an object with an http(s) url.")
        for kind in _HEX:
            _hash(weights.get(kind), kind, f"{where}, weights")
    size = item.get("size_bytes")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise ConfigError(f"{where}: size_bytes must be a whole number of bytes.")
    channels = item.get("channels") or []
    if not isinstance(channels, list) or not all(isinstance(channel, str) for channel in channels):
        raise ConfigError(f"{where}: channels must be a list of names, e.g. [\"t1ce\", \"t1\", \"t2\", \"flair\"].")
    accuracy = item.get("accuracy") or {}
    if not isinstance(accuracy, Mapping):
        raise ConfigError(f"{where}: accuracy must be an object, e.g. {{\"WT\": 0.9}}.")
    texts = {key: str(item.get(key) or "") for key in _TEXT_FIELDS}
    known = {"name", "url", "format", "size_bytes", "channels", "accuracy", "weights", *_HEX, *_TEXT_FIELDS}
    return CatalogueEntry(name=name, url=url, format=item["format"], size_bytes=size, channels=tuple(channels),
                          accuracy=dict(accuracy), weights=dict(weights) if weights else None,
                          extra={key: value for key, value in item.items() if key not in known},
                          **hashes, **texts)


def _hash(value: Any, kind: str, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(f"[0-9a-fA-F]{{{_HEX[kind]}}}", value):
        raise ConfigError(f"{where}: {kind} must be {_HEX[kind]} hexadecimal digits or null.")
    return value.lower()
