"""The end-to-end demo on built-in data: phantoms, training, segmentation, evaluation and a report (:mod:`.run`)."""
