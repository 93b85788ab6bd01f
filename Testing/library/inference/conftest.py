"""Makes ``segmentation_cases.py``, the test cases and models shared by the inference tests, importable (pytest's
importlib mode adds no folder to ``sys.path``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
