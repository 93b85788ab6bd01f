"""The machine the work runs on: the torch device to use (:mod:`.devices`), the original's machine settings
(:mod:`.machine`), the memory work needs and may use (:mod:`.memory`), and what the CPU computes fast (:mod:`.cpu`)."""
