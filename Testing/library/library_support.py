"""Shared pieces of the library tests (importable because ``conftest.py`` puts this folder on ``sys.path``)."""

from __future__ import annotations

from tiny_config import tiny_config

# Tests copy it before changing it.
TINY_CONFIG = tiny_config(32)
