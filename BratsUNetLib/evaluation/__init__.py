"""Judging segmentations: BraTS metrics (:mod:`.metrics`) and reports for people (:mod:`.report`)."""
