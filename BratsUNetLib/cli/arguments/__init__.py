"""Each command's name, one-line help and flags, one module per command (the command's work is the module of the
same name in :mod:`BratsUNetLib.cli`), and the flags shared by several commands (:mod:`.inference`).

These modules import nothing beyond the standard library and the library's light modules (a contract in
``pyproject.toml`` keeps torch, MONAI, numpy, scipy and nibabel out), so that ``--help`` is instant and the
Slicer module writes its jobs' command lines (:meth:`~BratsUNetLib.cli.command_line.Command.to_argv`) before
those packages are installed.
"""
