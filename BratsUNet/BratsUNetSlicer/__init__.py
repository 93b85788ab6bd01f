"""The Slicer side of BratsUNet: everything the module's logic delegates to.

- :mod:`.parameters`: the module's parameter node, a ``slicer.parameterNodeWrapper`` (inputs as node
  references, options as typed fields).
- The panel, one file per section: :mod:`.panel_model` (model selector and card), :mod:`.panel_inputs` (case
  inputs, options, Apply), :mod:`.panel_training` (training cases, Train, Resume, fine-tuning),
  :mod:`.panel_results` (the running job's progress, status and log, and what it made),
  :mod:`.panel_dependencies` (what is missing, Install, the device); :mod:`.panel_binding` keeps the widgets and
  the parameter node equal.
- :mod:`.scene_io`: scene volumes to NIfTI files and back, through Slicer's own storage nodes.
- :mod:`.worker`: the worker process that runs the library (``python -m BratsUNetLib worker``) and its protocol.
- :mod:`.jobs`: a job started in the worker as one scene transaction (segmenting, training).
- :mod:`.results`: segmentation nodes with named, coloured segments, volume tables, training plots.
- :mod:`.cases`: training cases found in the scene.
- :mod:`.training`: training and fine-tuning jobs from the scene; :mod:`.segment`: the segmentation job.
- :mod:`.testing`: a generated case and a small model, for the module's self-test.
- :mod:`.models`: the models the panel offers and their cards.
- :mod:`.dependencies`: torch and MONAI, installed on first use.

Nothing here imports torch or MONAI at import time: the panel must open before they are installed. The library
(:mod:`BratsUNetLib`) is pure Python without them at import time too and is used for its errors and file names.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _library_parent() -> Path:
    """The folder that holds the ``BratsUNetLib`` package.

    An installed extension puts ``BratsUNetLib`` beside the module file (``BratsUNet.py``); a source checkout
    has it one level up, beside the ``BratsUNet/`` folder. The worker process gets this folder on its
    ``PYTHONPATH`` so that it runs the same library as Slicer.
    """
    module_dir = Path(__file__).resolve().parent.parent
    for candidate in (module_dir, module_dir.parent):
        if (candidate / "BratsUNetLib" / "__init__.py").is_file():
            return candidate
    raise ImportError(f"The BratsUNetLib library was not found beside '{module_dir}'; reinstall the BratsUNet "
                      "extension.")


LIBRARY_PARENT = _library_parent()
if str(LIBRARY_PARENT) not in sys.path:
    sys.path.append(str(LIBRARY_PARENT))
