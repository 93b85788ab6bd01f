"""The packaged extension contains only what CMake lists: every shipped file must be listed; the pip package
(``pyproject.toml``) names every package of the library."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _listed_files(cmake_file: Path) -> set[Path]:
    """Paths named in a CMakeLists.txt, relative to its folder (``${MODULE_NAME}`` expanded)."""
    text = cmake_file.read_text()
    module = re.search(r"set\(MODULE_NAME\s+(\w+)\)", text)
    if module:
        text = text.replace("${MODULE_NAME}", module.group(1))
    names = re.findall(r"^\s*([\w./-]+\.(?:py|png|ui|json|svg))\s*$", text, flags=re.MULTILINE)
    return {(cmake_file.parent / name).resolve() for name in names}


def _shipped_files(folder: Path, patterns: tuple[str, ...]) -> set[Path]:
    return {p.resolve() for pattern in patterns for p in folder.rglob(pattern) if "__pycache__" not in p.parts}


def test_every_library_file_is_listed_in_cmake():
    listed = _listed_files(ROOT / "BratsUNetLib" / "CMakeLists.txt")
    shipped = _shipped_files(ROOT / "BratsUNetLib", ("*.py", "*.json"))
    assert shipped - listed == set(), "add these to BratsUNetLib/CMakeLists.txt"
    assert listed - shipped == set(), "CMake lists files that do not exist"


def test_every_library_package_is_in_the_pip_package():
    packages = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "BratsUNetLib").rglob("__init__.py")}
    assert found - packages == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert packages - found == set(), "pyproject.toml names packages that do not exist"


def test_every_module_file_and_resource_is_listed_in_cmake():
    module_dir = ROOT / "BratsUNet"
    listed = _listed_files(module_dir / "CMakeLists.txt")
    shipped = _shipped_files(module_dir, ("*.py",)) | _shipped_files(module_dir / "Resources", ("*.*",))
    assert shipped - listed == set(), "add these to BratsUNet/CMakeLists.txt"
    assert listed - shipped == set(), "CMake lists files that do not exist"


def test_extension_description_names_the_cmake_metadata():
    s4ext = dict(
        line.split(" ", 1) for line in (ROOT / "BratsUNet.s4ext").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert s4ext["category"] == re.search(r'EXTENSION_CATEGORY "([^"]+)"', cmake).group(1)
    assert s4ext["depends"] == re.search(r'EXTENSION_DEPENDS "([^"]+)"', cmake).group(1)
    assert s4ext["iconurl"] == re.search(r'EXTENSION_ICONURL "([^"]+)"', cmake).group(1)
    assert "add_subdirectory(BratsUNet)" in cmake and "add_subdirectory(BratsUNetLib)" in cmake
