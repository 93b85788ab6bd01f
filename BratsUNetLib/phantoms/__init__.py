"""Synthetic BraTS-style cases from a seed: healthy anatomy (:mod:`.anatomy`), gliomas (:mod:`.tumour`), and whole
cases and cohorts written as BraTS folders (:mod:`.generate`)."""
