"""Cases on their way to the network: image files and their geometry (:mod:`.images`), where cases come from
(:mod:`.cases`), BraTS labels and regions (:mod:`.labels`), the deterministic preprocessing (:mod:`.preprocessing`)
and the prepared-case cache (:mod:`.cache`)."""
