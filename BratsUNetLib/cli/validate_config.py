"""``bratsunet validate-config CONFIG``: report every problem of a config file, or summarize a valid one."""

from __future__ import annotations

import argparse
import sys

from BratsUNetLib.config.loading import filename_groups, read_config_file
from BratsUNetLib.config.validation import validate_config
from BratsUNetLib.errors import ConfigError
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.models.networks import count_parameters
from BratsUNetLib.training.setup import check_training_config


def run(args: argparse.Namespace) -> int:
    reporter = ProgressReporter(args.progress)
    raw = read_config_file(args.config)
    # Every problem of the keys and values at once; then the rest of what train checks, which needs them right.
    problems = validate_config(raw)
    summary = None
    if not problems:
        try:
            checked = check_training_config(raw)
        except ConfigError as exc:
            problems = [str(exc)]
        else:
            config = checked.config
            groups = filename_groups(config)
            group_text = ", ".join(f"{name} {len(cases)} cases" for name, cases in groups.items()) or "no file lists"
            summary = (f"{config['model']['name']} ({count_parameters(checked.network):,} parameters), dataset "
                       f"{config['dataset'].get('name', 'SegmentationDataset')}, groups: {group_text}")

    if args.progress == "json":
        reporter.emit("result", config=args.config, ok=not problems, problems=problems, summary=summary)
    elif len(problems) == 1:
        # One problem is one error line, as every command reports one.
        raise ConfigError(f"{args.config}: {problems[0]}")
    elif problems:
        for problem in problems:
            print(f"{args.config}: {problem}", file=sys.stderr)
        print(f"{len(problems)} problems found in {args.config}.", file=sys.stderr)
    else:
        print(f"OK: {summary}")
    return 2 if problems else 0
