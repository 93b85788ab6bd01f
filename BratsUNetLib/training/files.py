"""The names of the files a training run writes in its work folder.

Kept apart from :mod:`.state` so that callers that only look at a work folder (the Slicer panel finding a run to
resume, a report reading the log) need neither torch nor MONAI to do so.
"""

MODEL_FILENAME = "model.pth"  # the newest checkpoint, resumable
BEST_FILENAME = "model_best.pth"  # the checkpoint with the lowest monitored metric so far
LOG_FILENAME = "training_log.csv"  # one row per finished epoch
EXAMPLES_FOLDER = "data_loader_testing"  # augmented samples written for a look before training
