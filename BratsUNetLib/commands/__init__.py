"""Subcommands of ``bratsunet``; see :mod:`BratsUNetLib.cli` for the contract each module follows."""
