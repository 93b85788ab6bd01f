"""Segmenting cases with a trained network: read, preprocess, run, undo the preprocessing, write
(:mod:`.pipeline`), on the fastest execution backend that gives the same answer (:mod:`.backends`)."""
