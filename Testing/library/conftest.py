"""Makes ``library_support.py`` importable by the library tests (pytest's importlib mode adds no folder to
``sys.path``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
