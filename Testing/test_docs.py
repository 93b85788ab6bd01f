"""The README's picture of the panel (``docs/panel.png``) is rendered from the panel's current .ui file.

``docs/render_panel.py`` writes the sha256 of the .ui it rendered into the picture (PNG text ``ui-sha256``); the
picture is read here with the standard library only (no PySide6 needed to run the tests).
"""

import hashlib
import struct
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PICTURE = ROOT / "docs" / "panel.png"
UI_FILE = ROOT / "BratsUNet" / "Resources" / "UI" / "BratsUNet.ui"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_texts(data: bytes) -> dict[str, str]:
    """The text chunks of a PNG (tEXt, zTXt and iTXt), keyword -> text."""
    texts = {}
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        position += 12 + length  # length, type, data, CRC
        keyword, _, rest = body.partition(b"\0")
        if kind == b"tEXt":
            texts[keyword.decode("latin-1")] = rest.decode("latin-1")
        elif kind == b"zTXt":  # compression method (0: zlib), compressed text
            texts[keyword.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        elif kind == b"iTXt":  # compressed?, method, language\0, translated keyword\0, text
            compressed, rest = rest[0], rest[2:]
            text = rest.split(b"\0", 2)[2]
            texts[keyword.decode("latin-1")] = (zlib.decompress(text) if compressed else text).decode("utf-8")
        elif kind == b"IEND":
            break
    return texts


def check_picture(picture: Path, ui_file: Path) -> None:
    assert picture.is_file(), f"{picture} is missing: run `python docs/render_panel.py` (needs PySide6)."
    data = picture.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{picture} is not a PNG file."
    rendered_from = png_texts(data).get("ui-sha256")
    assert rendered_from == hashlib.sha256(ui_file.read_bytes()).hexdigest(), (
        f"{picture.name} was not rendered from the current {ui_file.name}: after editing the .ui, run "
        "`python docs/render_panel.py` (with PySide6: `pip install PySide6-Essentials`) and commit the new picture.")


def test_the_panel_picture_is_rendered_from_the_current_ui():
    check_picture(PICTURE, UI_FILE)


def test_a_changed_ui_fails_the_check(tmp_path):
    changed = tmp_path / UI_FILE.name
    data = bytearray(UI_FILE.read_bytes())
    data[-2] ^= 1  # one byte
    changed.write_bytes(bytes(data))
    with pytest.raises(AssertionError, match="run `python docs/render_panel.py`"):
        check_picture(PICTURE, changed)


def test_the_readme_shows_the_panel():
    assert "](docs/panel.png)" in (ROOT / "README.md").read_text(encoding="utf-8")
