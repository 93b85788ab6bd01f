"""Configs in the original 3DUnetCNN's JSON format: reading and defaults (:mod:`.loading`), every check of their
keys, types and values (:mod:`.validation`), and the classes a config may name (:mod:`.allowlists`)."""
