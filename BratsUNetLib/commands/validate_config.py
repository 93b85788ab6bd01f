"""``bratsunet validate-config CONFIG``: report every problem of a config file, or summarize a valid one."""

from __future__ import annotations

import argparse
import sys

NAME = "validate-config"
HELP = ("Check a training config (the original 3DUnetCNN JSON format) and list every problem at once; "
        "exit status 2 when there are any.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG", help="the JSON config file to check")


def run(args: argparse.Namespace) -> int:
    from BratsUNetLib.config import filename_groups, load_config, read_config_file
    from BratsUNetLib.config_validation import validate_config
    from BratsUNetLib.errors import ConfigError
    from BratsUNetLib.events import ProgressReporter
    from BratsUNetLib.models import build_network, count_parameters

    reporter = ProgressReporter(args.progress)
    problems = validate_config(read_config_file(args.config))
    summary = None
    if not problems:
        config = load_config(args.config)
        try:
            # Building catches values that only the network's constructor can judge (e.g. stride lengths).
            network = build_network(config["model"])
        except ConfigError as exc:
            problems = [str(exc)]
        else:
            groups = filename_groups(config)
            group_text = ", ".join(f"{name} {len(cases)} cases" for name, cases in groups.items()) or "no file lists"
            summary = (f"{config['model']['name']} ({count_parameters(network):,} parameters), dataset "
                       f"{config['dataset'].get('name', 'SegmentationDataset')}, groups: {group_text}")

    if args.progress == "json":
        reporter.emit("result", config=args.config, ok=not problems, problems=problems, summary=summary)
    elif problems:
        for problem in problems:
            print(f"{args.config}: {problem}", file=sys.stderr)
        print(f"{len(problems)} problem{'s' if len(problems) > 1 else ''} found in {args.config}.", file=sys.stderr)
    else:
        print(f"OK: {summary}")
    return 2 if problems else 0
