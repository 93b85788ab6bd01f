"""``bratsunet phantom``: write synthetic BraTS-style cases (four MRI contrasts and a tumour label map)."""

from __future__ import annotations

import argparse
from pathlib import Path

from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.phantoms.generate import check_shape, generate_cohort


def run(args: argparse.Namespace) -> int:

    if args.n_cases < 1:
        raise BratsUNetError(f"--n-cases must be at least 1, got {args.n_cases}.")
    shape = check_shape(args.shape)
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise BratsUNetError(f"--output '{output}' is a file; give a folder to write the cases into.")
    progress = ProgressReporter(args.progress)
    try:
        case_dirs = generate_cohort(output, args.n_cases, shape, args.seed, args.left_handed, progress=progress,
                                    overwrite=args.overwrite)
    finally:
        progress.close()
    progress.message(f"Wrote {len(case_dirs)} phantom case(s) of {shape[0]}×{shape[1]}×{shape[2]} voxels to {output}")
    progress.emit("result", output=str(output), cases=[str(path) for path in case_dirs])
    return 0
