"""Every error out of the module's logic is a one-line :class:`~BratsUNetLib.errors.BratsUNetError`.

The panel shows an error's text in one message box and a console user reads one line; a ``RuntimeError`` from a
package manager, an ``OSError`` from a full disk or a bug's ``TypeError`` would otherwise reach them as a
traceback. :func:`user_errors` wraps the logic's public methods: a BratsUNetError passes with its text made one
line (and the command-line flags it names put as the panel's controls, :func:`panel_words`), an ``OSError`` says what failed on which file, and anything else (a bug) is logged with its traceback and
reported as one line that points to the log.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

from BratsUNetLib.errors import BratsUNetError

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


# The library's messages speak of its command line; in Slicer the same choices are the panel's controls.
PANEL_CONTROLS = {
    "--config": "the 3DUnetCNN config field", "--model": "the Model selector",
    "--flair": "the FLAIR input", "--t1": "the T1 input", "--t1ce": "the T1ce input", "--t2": "the T2 input",
    "--device": "the Device choice", "--native": "Native resolution", "--tta": "Test-time augmentation",
    "--labels": "BraTS 2021+ labels", "--probabilities": "Probability maps",
    "--pretrained_model_filename": "the selected model", "--output_dir": "the training folder",
    "--epochs": "Epochs", "--batch_size": "Batch size",
}
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*")


def panel_words(text: str) -> str:
    """``text`` with the command-line flags it names replaced by the panel's controls ("pass --config" -> "pass
    the 3DUnetCNN config field"); flags without a control stay as they are."""
    return _FLAG.sub(lambda match: PANEL_CONTROLS.get(match.group(0), match.group(0)), text)


def one_line(text: str) -> str:
    """``text`` with its lines joined (what a one-line message box or log line can show)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def user_errors(method: F) -> F:
    """Decorate a logic method so that whatever it raises is a one-line BratsUNetError (see the module)."""
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except BratsUNetError as exc:
            text = panel_words(one_line(str(exc)))
            if text == str(exc):
                raise
            raise type(exc)(text) from None
        except OSError as exc:
            where = f" on '{exc.filename}'" if exc.filename else ""
            raise BratsUNetError(f"{exc.strerror or one_line(str(exc)) or type(exc).__name__}{where}; check that "
                                 "the folder exists, is writable and has free space, then try again.") from None
        except Exception as exc:
            log.exception("BratsUNet: %s failed", method.__name__)
            raise BratsUNetError(f"BratsUNet could not {method.__name__} ({type(exc).__name__}: "
                                 f"{one_line(str(exc))[:200]}); see the application log.") from None

    return wrapper  # type: ignore[return-value]
