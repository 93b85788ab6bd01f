"""The ``bratsunet`` command line: one subcommand per module in :mod:`BratsUNetLib.cli`.

Each command is a module of flags in :mod:`.arguments` (``NAME``, ``HELP``, ``add_arguments(parser)``) and a module
of work of the same name here (``run(args) -> int``), imported only when the command runs, so that ``--help`` stays
instant; :class:`.command_line.Command` makes the pair an object that parses its command line and writes one back.
User errors (:class:`BratsUNetError`) print one line on stderr and exit with status 2; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import atexit
import errno
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

from BratsUNetLib import __version__
from BratsUNetLib.cli.command_line import Command
from BratsUNetLib.errors import BratsUNetError, Cancelled, ExitCode
from BratsUNetLib.events import discard_bars


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bratsunet",
        description="Brain tumour segmentation of BraTS-style MRI (FLAIR, T1, T1ce, T2) with a 3D U-Net.",
    )
    parser.add_argument("--version", action="version", version=f"bratsunet {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in Command.every():
        command.add_arguments(commands.add_parser(command.name, help=command.help, description=command.help))
    return parser


def execute(args: argparse.Namespace, report_error: Callable[[str], None]) -> int:
    """Run a parsed command; user errors go to ``report_error`` as one line and become an exit status."""
    try:
        return int(args.run(args) or 0)
    except Cancelled as exc:
        discard_bars()
        report_error(str(exc))
        return ExitCode.CANCELLED
    except KeyboardInterrupt:
        discard_bars()
        report_error("interrupted.")
        return ExitCode.CANCELLED
    except BratsUNetError as exc:
        discard_bars()
        report_error(f"{args.command}: error: {exc}")
        return ExitCode.USER_ERROR
    except OSError as exc:
        # A name too long for the file system is the user's to fix wherever a path is used; commands check their
        # outputs (fileio.check_output_path), this catches what reaches the OS elsewhere. Other OS errors are bugs
        # and keep their traceback.
        if exc.errno != errno.ENAMETOOLONG:
            raise
        discard_bars()
        name = str(exc.filename or "")
        shown = f" ('{name[:60]}...')" if name else ""
        report_error(f"{args.command}: error: a file name{shown} is longer than this file system allows; choose a "
                     "shorter name.")
        return ExitCode.USER_ERROR


def main(argv: list[str] | None = None, *, own_process: bool = False) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return its exit status.

    ``own_process``: the caller is the bratsunet program itself, which may change what only its own process
    sees: MONAI is then imported without its unused optional packages (:func:`import_monai_without_unused_extras`).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 0
    if own_process:
        import_monai_without_unused_extras()
    return execute(args, lambda line: print(f"bratsunet {line}", file=sys.stderr, flush=True))


def run_console() -> NoReturn:
    """The ``bratsunet`` program (and ``python -m BratsUNetLib``, e.g. the Slicer module's worker): :func:`main`
    in a process of its own, ended by :func:`exit_now`."""
    exit_now(main(own_process=True))


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` without interpreter finalization.

    Finalization tears down torch, OpenVINO and MONAI module by module: 1.5–2 s after a BraTS segmentation
    (benchmarks/README.md), with nothing left to do, since every output is already written, closed and
    renamed. So after the ``atexit`` handlers (logging, multiprocessing children, temporary folders) and a
    flush, the process ends at once; it exits normally while any non-daemon Python thread still runs.
    """
    if any(thread.is_alive() and not thread.daemon for thread in threading.enumerate()
           if thread is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # e.g. a closed pipe (bratsunet ... | head): what could not be written is lost either way
        pass
    os._exit(code)


# Optional packages that MONAI's package import loads for features BratsUNet never uses: plots (matplotlib), CSV
# datasets and profiling (pandas), downloads (requests), embedding metrics (scikit-learn), and signal and
# ultrasound transforms (scipy.signal, which brings scipy.stats).
MONAI_EXTRAS_UNUSED = ("matplotlib", "pandas", "requests", "sklearn", "scipy.signal")


def import_monai_without_unused_extras() -> None:
    """Import MONAI without :data:`MONAI_EXTRAS_UNUSED`: 1.5–2.5 s less start-up in every bratsunet process.

    ``import monai`` imports every MONAI subpackage, and those load these packages through ``optional_import``:
    more time than importing torch (benchmarks/README.md, start-up). MONAI has no switch for this, so they are
    marked missing while it loads (a ``None`` entry in ``sys.modules`` makes an import fail); MONAI keeps
    placeholders that raise only if such a feature is used, and the marks are removed at once, so the packages
    stay importable for everything else (nilearn, for phantoms, imports several). Only the bratsunet program
    does this, in its own process: BratsUNetLib imported inside Slicer or a user's script leaves MONAI as it
    is. Nothing changes when MONAI is already imported, and a MONAI that cannot load without one of them is
    imported again as it is.
    """
    if "monai" in sys.modules:
        return
    marked = [name for name in MONAI_EXTRAS_UNUSED if name not in sys.modules]
    sys.modules.update(dict.fromkeys(marked))
    try:
        import monai  # noqa: F401
        return
    except ImportError:
        for name in [name for name in sys.modules if name == "monai" or name.startswith("monai.")]:
            del sys.modules[name]
    finally:
        for name in marked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    import monai  # noqa: F401
