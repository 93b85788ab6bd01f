"""``bratsunet phantom``: write synthetic BraTS-style cases (four MRI contrasts and a tumour label map)."""

from __future__ import annotations

import argparse

NAME = "phantom"
HELP = ("write synthetic BraTS 2020-style cases (<case>/<case>_flair.nii.gz, _t1, _t1ce, _t2, _seg) with brain "
        "anatomy, gliomas and realistic MRI contrasts, reproducible from a seed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, metavar="DIR", help="folder to write the case folders into")
    parser.add_argument("--n-cases", type=int, required=True, metavar="N", help="number of cases to write")
    parser.add_argument("--shape", type=int, nargs=3, default=[240, 240, 155], metavar=("X", "Y", "Z"),
                        help="grid size in 1 mm voxels (default: 240 240 155, as BraTS; e.g. 64 64 64 for "
                             "quick experiments, the brain is scaled to fit)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed (default 0); case i is the same for a seed whatever --n-cases is")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace case files that exist (without it, nothing is written when any exists)")
    parser.add_argument("--left-handed", action="store_true",
                        help="store the images with a left-handed affine diag(-1, 1, 1) instead of BraTS's LPS "
                             "diag(-1, -1, 1); the anatomy stays at the same world positions")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from BratsUNetLib.errors import BratsUNetError
    from BratsUNetLib.events import ProgressReporter
    from BratsUNetLib.phantoms.generate import check_shape, generate_cohort

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
