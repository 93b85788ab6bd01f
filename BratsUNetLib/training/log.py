"""``training_log.csv``: one row per epoch, and the decisions taken from it (best epoch, early stopping).

Columns: the original's ``epoch,loss,lr,val_loss`` first (tools written for 3DUnetCNN keep working), then
``dice_<region>`` for each output channel (WT, TC, ET for BraTS) and ``epoch_seconds``. ``val_loss`` and the
Dice columns are empty without validation data. The whole file is rewritten atomically after every epoch, so
an interrupted run never leaves half a line. Values are written with ``repr`` so that a resumed run reads back
exactly the numbers the uninterrupted run would have compared.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.fileio import write_text_atomic
from BratsUNetLib.inputfiles import require_regular_file

BASE_COLUMNS = ("epoch", "loss", "lr", "val_loss")
# A row is about 150 bytes: even a million epochs stay far below this; a larger file is not a log.
MAX_LOG_BYTES = 256 * 2 ** 20
MOVE_AWAY = "move it away (or delete it) to start the training over, or train into a new --output_dir"


def dice_column(region: str) -> str:
    return f"dice_{region}"


class TrainingLog:
    """The rows of a training log (``{column: float | None}``, ``epoch`` an int) and the file they live in."""

    def __init__(self, path: str | Path, regions: Sequence[str]):
        self.path = Path(path)
        self.columns = (*BASE_COLUMNS, *(dice_column(r) for r in regions), "epoch_seconds")
        self.rows: list[dict[str, float | int | None]] = []

    @classmethod
    def read(cls, path: str | Path, regions: Sequence[str]) -> TrainingLog:
        """Read an existing log (written by BratsUNet or by the original 3DUnetCNN).

        Columns the log lacks (an original log has no Dice) are empty; unknown columns are dropped. A file that
        is not a log (binary, garbled, not a regular file, absurdly large) is a one-line BratsUNetError that
        names it and says to move it away; the file itself is left as it is.
        """
        log = cls(path, regions)
        require_regular_file(path, "Training log", MOVE_AWAY)
        try:
            if Path(path).stat().st_size > MAX_LOG_BYTES:
                raise BratsUNetError(f"Training log '{path}' is larger than {MAX_LOG_BYTES // 2 ** 20} MB, far more "
                                     f"than a log of any run; {MOVE_AWAY}.")
            with open(path, newline="", encoding="utf-8") as stream:
                reader = csv.DictReader(stream)
                header = tuple(reader.fieldnames or ())
                if header[: len(BASE_COLUMNS)] != BASE_COLUMNS:
                    shown = ", ".join(header)
                    shown = shown if len(shown) <= 80 else shown[:77] + "..."
                    raise BratsUNetError(f"'{path}' is not a training log (its columns are {shown or 'none'}, "
                                         f"expected {','.join(BASE_COLUMNS)} first); move it away or choose "
                                         f"another --output_dir.")
                for line, record in enumerate(reader, 2):
                    log.rows.append({column: _parse(record.get(column), column, path, line) for column in log.columns})
                    log.rows[-1]["epoch"] = _epoch(log.rows[-1]["epoch"], path, line)
        except OSError as exc:
            raise BratsUNetError(f"Cannot read the training log '{path}': {exc.strerror or exc}.") from None
        except UnicodeDecodeError:
            raise BratsUNetError(f"Training log '{path}' is not text (a binary file, or one overwritten by another "
                                 f"program); {MOVE_AWAY}.") from None
        except csv.Error as exc:  # NUL bytes, a field larger than csv's limit, ...
            raise BratsUNetError(f"Training log '{path}' is garbled ({exc}); {MOVE_AWAY}.") from None
        return log

    @property
    def last_epoch(self) -> int:
        """The last epoch logged (0 when none)."""
        return int(self.rows[-1]["epoch"]) if self.rows else 0

    def append(self, row: dict[str, float | int | None]) -> None:
        self.rows.append({column: row.get(column) for column in self.columns})

    def keep_until(self, epoch: int) -> None:
        """Drop rows after ``epoch`` (epochs whose checkpoint was never written)."""
        self.rows = [row for row in self.rows if int(row["epoch"]) <= epoch]

    def write(self) -> None:
        stream = io.StringIO()
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow(["" if row[c] is None else repr(row[c]) for c in self.columns])
        write_text_atomic(self.path, stream.getvalue())

    def values(self, column: str) -> list[float]:
        """The column as floats (NaN where empty)."""
        return [math.nan if row[column] is None else float(row[column]) for row in self.rows]

    def best_row(self, monitor: str) -> dict | None:
        """The first row with the smallest ``monitor`` value (NaN rows ignored); None if there is none."""
        candidates = [(value, i) for i, value in enumerate(self.values(monitor)) if not math.isnan(value)]
        return self.rows[min(candidates)[1]] if candidates else None

    def is_new_best(self, monitor: str) -> bool:
        """Whether the last row set a new minimum of ``monitor`` (ties do not count, as in the original)."""
        return bool(self.rows) and self.best_row(monitor) is self.rows[-1]

    def stop_reason(self, monitor: str, patience: int | None) -> str | None:
        """Why training should stop before the next epoch, or None.

        Stops when the last ``monitor`` value is NaN (the run diverged) or when it has not reached a new minimum
        for ``patience`` epochs. (The original compared one epoch too early and stopped after patience - 1.)
        """
        values = self.values(monitor)
        if not values:
            return None
        if math.isnan(values[-1]):
            return f"Stopping: {monitor} is not a number at epoch {self.last_epoch} (training diverged)."
        best = self.best_row(monitor)
        since = len(self.rows) - 1 - self.rows.index(best)
        if patience and since >= patience:
            return (f"Early stopping: {monitor} has not improved for {since} epochs (patience {patience}); "
                    f"best {best[monitor]:.4g} at epoch {best['epoch']}.")
        return None


def _parse(text: str | None, column: str, path: str | Path, line: int) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise BratsUNetError(f"Training log '{path}' line {line}: {column} value {shown!r} is not a number; fix "
                             f"the line, or {MOVE_AWAY}.") from None


def _epoch(value: float | None, path: str | Path, line: int) -> int:
    """The epoch of a row: a whole number of 1 or more (NaN, infinite or empty epochs are not a log's)."""
    if value is None or not math.isfinite(value) or value < 1 or value != int(value):
        raise BratsUNetError(f"Training log '{path}' line {line}: the epoch {value} is not a whole number of 1 or "
                             f"more; fix the line, or {MOVE_AWAY}.")
    return int(value)
