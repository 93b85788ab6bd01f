"""The four MRI contrasts of a BraTS case, named as BraTS 2020 files name them, in the order models take them.

The one definition every layer shares (phantoms write them, checkpoints default to them, the Slicer module fills
its inputs by them), and BraTS 2023's names for the same contrasts.
"""

MODALITIES = ("flair", "t1", "t1ce", "t2")

#: BraTS 2023 channel names and the BraTS 2020 names they stand for.
CHANNEL_ALIASES = {"t2f": "flair", "t1n": "t1", "t1c": "t1ce", "t2w": "t2"}


def canonical_channel(name: str) -> str:
    """The BraTS 2020 name of a channel (``t2f`` → ``flair``, ...); other names are only lower-cased."""
    name = str(name).strip().lower()
    return CHANNEL_ALIASES.get(name, name)
