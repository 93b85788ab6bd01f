"""Networks: built from a config's ``model`` block (:mod:`.networks`), saved and loaded as checkpoints, BratsUNet's
self-describing ones and the original's bare state_dicts (:mod:`.checkpoint`)."""
