"""``bratsunet models``: the models available by name (:mod:`BratsUNetLib.models.store`)."""

from __future__ import annotations

import argparse

from BratsUNetLib.cancel import CancelToken, stop_on_signals
from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.models.catalogue import find_entry, load_catalogue
from BratsUNetLib.models.downloads import models_dir
from BratsUNetLib.models.store import download_model, import_model, list_models


def run(args: argparse.Namespace) -> int:
    reporter = ProgressReporter(args.progress)
    if args.action != "import" and (args.name or args.overwrite):
        raise BratsUNetError(f"--name and --overwrite are for models import; models {args.action} takes neither.")
    if args.action == "list":
        if args.target:
            raise BratsUNetError("models list takes no name; leave it out.")
        models = list_models(catalogue=args.catalogue)
        rows = [{"name": model.name, "state": model.state, "path": str(model.checkpoint or ""),
                 "title": model.entry.title if model.entry else "imported MONAI bundle"} for model in models]
        reporter.emit("result", models=rows, folder=str(models_dir()))
        if reporter.mode != "json":
            width = max([len(row["name"]) for row in rows] + [4])
            print(f"Models folder: {models_dir()}")
            for row in rows:
                print(f"{row['name']:<{width}}  {row['state']:<12}  {row['title']}"
                      + (f"  ({row['path']})" if row["path"] else ""))
        return 0
    if not args.target:
        what = "the model's name (see `bratsunet models list`)" if args.action == "download" else "the bundle"
        raise BratsUNetError(f"models {args.action} needs {what}.")
    if args.action == "download":
        entry = find_entry(args.target, load_catalogue(args.catalogue))
        token = CancelToken()
        with stop_on_signals(token, "Stopping the download; run the same command again to resume it."):
            path = download_model(entry, reporter=reporter, cancel=token)
    else:
        path = import_model(args.target, args.name, overwrite=args.overwrite)
    reporter.close()
    reporter.emit("result", model=str(path))
    if reporter.mode != "json":
        print(f"Model: {path} (use it with --model {path.stem})")
    return 0
