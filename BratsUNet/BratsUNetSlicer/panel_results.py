"""The panel's results section: the running job's progress, status and log, and what a finished job made
(shown in the views and adopted by the parameter node)."""

from __future__ import annotations

import logging
from typing import Any, Callable

import qt
import slicer
from BratsUNetSlicer import training
from BratsUNetSlicer.worker import Job
from slicer.i18n import tr as _

log = logging.getLogger(__name__)

POLL_MSEC = 200  # how often the panel looks at the running job's output


class ResultsSection:
    """One job at a time, started by a section's button: polls it with a ``qt.QTimer`` (the GUI thread never
    waits), shows its events, and on success points the parameter node at its outputs.

    ``panel`` is the module widget (``ui``, ``logic``, ``parameters``, ``models``, ``dependencies``,
    ``updateButtons``).
    """

    def __init__(self, panel: Any) -> None:
        self.panel = panel
        self.ui = panel.ui
        self.job: Job | None = None
        self.kind = ""  # "segment" or "train": which section's bar, status and button follow the job
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_MSEC)
        self.timer.connect("timeout()", self.onPollJob)

    @property
    def running(self) -> bool:
        return self.job is not None and not self.job.finished

    def stop(self) -> None:
        self.timer.stop()

    def startOrCancel(self, kind: str, failure: str, start: Callable[[], Job]) -> None:
        """A job button: cancels the running job, else starts ``start()`` once the dependencies are installed."""
        if self.running:
            self.job.cancel()
            return
        if not self.panel.dependencies.ensure():
            return
        with slicer.util.tryWithErrorDisplay(failure, waitCursor=True):
            self.startJob(kind, start())

    def startJob(self, kind: str, job: Job) -> None:
        self.job, self.kind = job, kind
        self._bar().setRange(0, 0)  # busy until the first counted task starts
        self._status(_("Running..."))
        self._log(f"bratsunet {' '.join(job.argv)}")
        if job.result.get("chart") is not None:  # training: follow the curves as epochs end
            slicer.modules.plots.logic().ShowChartInLayout(job.result["chart"])
        self.panel.updateButtons()
        self.timer.start()

    def onPollJob(self) -> None:
        if self.job is None or not self.job.poll():
            return
        self.timer.stop()
        job = self.job
        bar = self._bar()
        bar.setRange(0, 1)
        bar.value = 1 if job.state == "succeeded" else 0
        if job.state == "succeeded":
            # Which backend and precision ran the network: the panel's speed is the command line's.
            ran = job.result.get("backend")
            self._status(job.result.get("note") or (_("Done ({backend}).").format(backend=ran) if ran else _("Done.")))
            if job.result.get("note"):  # an edited result was kept and the new one made beside it
                self._log(job.result["note"])
            parameters = self.panel.parameters
            self.panel.logic.adoptResult(parameters, job)
            self.panel.models.refresh()
            if self.kind == "segment":
                slicer.util.setSliceViewerLayers(background=parameters.flair, fit=True)
        elif job.state == "cancelled":
            self._status(_("Cancelled."))
        else:
            self._status(_("Failed: {error}").format(error=job.error))
            slicer.util.errorDisplay(job.error or _("The job failed."))
        self.panel.updateButtons()

    def onJobEvent(self, event: dict) -> None:
        kind = event.get("event")
        bar = self._bar()
        if kind == "start":
            bar.setRange(0, max(1, int(event.get("total") or 1)))
            bar.value = 0
            self._status(str(event.get("task", "")))
        elif kind == "progress":
            bar.setRange(0, max(1, int(event.get("total") or 1)))
            bar.value = int(event.get("done") or 0)
        elif kind in ("message", "error"):
            self._log(str(event.get("text") or event.get("message") or ""))
        elif kind == "epoch":
            self._log(training.describe_epoch(event))
            self._status(training.describe_epoch(event))

    def _bar(self):
        return self.ui.progressBar if self.kind == "segment" else self.ui.trainingProgressBar

    def _status(self, text: str) -> None:
        label = self.ui.statusLabel if self.kind != "train" else self.ui.trainingStatusLabel
        label.text = text

    def _log(self, text: str) -> None:
        self.ui.logText.appendPlainText(text)
        log.info("BratsUNet: %s", text)
