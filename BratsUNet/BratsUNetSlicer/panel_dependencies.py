"""The panel's dependencies line: which of torch and MONAI are missing, the Install button, the device found."""

from __future__ import annotations

from typing import Any

import qt
import slicer
from BratsUNetSlicer import dependencies
from slicer.i18n import tr as _


class DependenciesSection:
    """Shows what is missing (with the Install button) or the device torch found; installs after one
    confirmation. ``panel`` is the module widget (``ui``, ``models``)."""

    def __init__(self, panel: Any) -> None:
        self.panel = panel
        self.ui = panel.ui
        self.ui.installDependenciesButton.connect("clicked(bool)", self.ensure)

    def check(self) -> None:
        """Show what is missing, or (once the panel is shown: importing torch takes seconds) the device."""
        missing = dependencies.missing_packages()
        self.ui.installDependenciesButton.visible = bool(missing)
        if missing:
            self.ui.deviceInfoLabel.text = _("Not installed yet: {packages}").format(packages=", ".join(missing))
        else:
            qt.QTimer.singleShot(0, lambda: setattr(self.ui.deviceInfoLabel, "text", dependencies.detected_device()))
            qt.QTimer.singleShot(0, self.panel.models.showCard)

    def ensure(self) -> bool:
        """Install torch and MONAI after one confirmation when missing; whether they are there now."""
        installed = False  # stays False when the install fails (the error was shown)
        with slicer.util.tryWithErrorDisplay(_("Installing the dependencies failed."), waitCursor=True):
            installed = dependencies.install(slicer.util.confirmOkCancelDisplay)
        self.check()
        return installed
