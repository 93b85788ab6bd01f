"""The panel's results section: the running job's progress, status and log, and what a finished job made
(shown in the views and adopted by the parameter node)."""

from __future__ import annotations

import logging
from typing import Any, Callable

import slicer
from BratsUNetSlicer import results, training
from BratsUNetSlicer.worker import Job
from slicer.i18n import tr as _

log = logging.getLogger(__name__)

PROGRESS_STEPS = 1000  # the progress bar's range for a fraction: 0.1 % steps


def time_left(seconds: Any) -> str:
    """", about 3 min left" for a progress bar's text (empty while unknown)."""
    if not isinstance(seconds, (int, float)) or seconds < 0:
        return ""
    if seconds < 90:
        return _(", {seconds} s left").format(seconds=int(round(seconds)))
    if seconds < 5400:
        return _(", about {minutes} min left").format(minutes=int(round(seconds / 60)))
    return _(", about {hours:.1f} h left").format(hours=seconds / 3600)


class ResultsSection:
    """The running jobs, one segmentation and one training at a time (they run side by side, in workers of their
    own): Slicer's event loop moves them (``jobs.start_job``, so the GUI thread never waits); this section shows
    each one's events in its section's bar and status, and on success points the parameter node at its outputs.

    ``panel`` is the module widget (``ui``, ``logic``, ``parameters``, ``models``, ``dependencies``,
    ``updateButtons``).
    """

    KINDS = ("segment", "train")

    def __init__(self, panel: Any) -> None:
        self.panel = panel
        self.ui = panel.ui
        self.jobs: dict[str, Job] = {}  # kind -> its latest job
        self.ui.show3DCheckBox.connect("toggled(bool)", self.onShow3DToggled)

    def onShow3DToggled(self, shown: bool) -> None:
        """Show or hide the output segmentation in 3D at once (the option also applies to the next results)."""
        segmentation = self.panel.parameters.outputSegmentation if self.panel.hasParameterNode else None
        if segmentation is not None and not self.panel.updatingGUI:
            with slicer.util.tryWithErrorDisplay(_("The segmentation could not be shown in 3D."), waitCursor=True):
                results.show_in_3d(segmentation, shown)

    def isRunning(self, kind: str) -> bool:
        job = self.jobs.get(kind)
        return job is not None and not job.finished

    @property
    def runningKinds(self) -> set[str]:
        return {kind for kind in self.KINDS if self.isRunning(kind)}

    def startOrCancel(self, kind: str, failure: str, start: Callable[[Callable[[dict], None]], Job]) -> None:
        """A job button: cancels the running job of ``kind``, else starts ``start(onEvent)`` once the dependencies
        are installed (the other kind's job, if one runs, goes on)."""
        if self.isRunning(kind):
            self.jobs[kind].cancel()
            return
        if not self.panel.dependencies.ensure():
            return
        with slicer.util.tryWithErrorDisplay(failure, waitCursor=True):
            self.startJob(kind, start(self.eventsOf(kind)))

    def eventsOf(self, kind: str) -> Callable[[dict], None]:
        """The ``onEvent`` of a job of ``kind``: its events go to that section's bar, status and the log."""
        return lambda event: self.onJobEvent(kind, event)

    def startJob(self, kind: str, job: Job) -> None:
        self.jobs[kind] = job
        self._bar(kind).setRange(0, 0)  # busy until the first counted task starts
        self.showStatus(kind, _("Running..."))
        self._log(f"bratsunet {' '.join(job.argv)}")
        if job.result.get("chart") is not None:  # training: follow the curves as epochs end
            slicer.modules.plots.logic().ShowChartInLayout(job.result["chart"])
        self.panel.updateButtons()
        # The event loop's timer (jobs.start_job) hands the job its events and its end, as it does for a job
        # started from the console: the section only listens.
        job.onFinished(lambda finished: self._finished(kind, finished))

    def _finished(self, kind: str, job: Job) -> None:
        bar = self._bar(kind)
        bar.setRange(0, 1)
        bar.value = 1 if job.state == "succeeded" else 0
        if job.state == "succeeded":
            # Which backend and precision ran the network: the panel's speed is the command line's.
            ran = job.result.get("backend")
            done = _("Done ({backend}).").format(backend=ran) if ran else _("Done.")
            if job.result.get("volumes_ml"):  # the table node has every row; the status the three regions
                done += " " + results.describe_volumes(job.result["volumes_ml"])
            self.showStatus(kind, job.result.get("note") or done)
            if job.result.get("note"):  # an edited result was kept and the new one made beside it
                self._log(job.result["note"])
            parameters = self.panel.parameters
            self.panel.logic.adoptResult(parameters, job)
            self.panel.models.refresh()
            if kind == "segment":
                slicer.util.setSliceViewerLayers(background=parameters.flair, fit=True)
        elif job.state == "cancelled":
            self.showStatus(kind, _("Cancelled."))
        else:
            self.showStatus(kind, _("Failed: {error}").format(error=job.error))
            slicer.util.errorDisplay(job.error or _("The job failed."))
        self.panel.updateButtons()

    def onJobEvent(self, kind: str, event: dict) -> None:
        """Show an event of the job of ``kind`` ("segment" or "train")."""
        what = event.get("event")
        bar = self._bar(kind)
        if what == "start":
            bar.setRange(0, max(1, int(event.get("total") or 1)))
            bar.value = 0
            self.showStatus(kind, str(event.get("task", "")))
        elif what == "progress":
            fraction = event.get("fraction")
            if isinstance(fraction, (int, float)):  # of the whole job (a training run: over all its epochs)
                bar.setRange(0, PROGRESS_STEPS)
                bar.value = int(round(min(max(fraction, 0.0), 1.0) * PROGRESS_STEPS))
                bar.format = "%p%" + time_left(event.get("seconds_left"))
            else:
                bar.setRange(0, max(1, int(event.get("total") or 1)))
                bar.value = int(event.get("done") or 0)
            if event.get("epochs"):
                self.showStatus(kind, training.describe_step(event))
        elif what in ("message", "error"):
            self._log(str(event.get("text") or event.get("message") or ""))
        elif what == "epoch":
            self._log(training.describe_epoch(event))
            self.showStatus(kind, training.describe_epoch(event))

    def _bar(self, kind: str):
        return self.ui.progressBar if kind == "segment" else self.ui.trainingProgressBar

    def showStatus(self, kind: str, text: str) -> None:
        """Say ``text`` in the status line of ``kind``'s section."""
        label = self.ui.statusLabel if kind == "segment" else self.ui.trainingStatusLabel
        label.text = text

    def _log(self, text: str) -> None:
        self.ui.logText.appendPlainText(text)
        log.info("BratsUNet: %s", text)
