"""The README's Python console block, run as it is written there on a generated case and a small model.

Only its paths and its epoch count are put to this test's (each replacement must find its text, so a README edit
that this test cannot follow fails here rather than going untested). ``slicer.util.loadVolume`` and
``loadLabelVolume`` need the desktop application; here they load through the real Volumes logic (scene_io).
"""

from __future__ import annotations

import re
from pathlib import Path

import slicer
from BratsUNetSlicer import scene_io

README = Path(__file__).resolve().parents[2] / "README.md"


def console_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("The same from the Python console"):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readme_console_example_runs(scene, module, worker, training_worker, phantom_cases, small_model,
                                         tmp_path, monkeypatch, capsys):
    case = phantom_cases["BraTS20_Training_001"]
    prefix = str(case["flair"]).removesuffix("_flair.nii.gz")
    code = console_block()
    for old, new in (("/data/BraTS20_Training_001/BraTS20_Training_001", prefix),
                     ("/models/model_best.pth", str(small_model)), ("/data/my_training_run", str(tmp_path / "run")),
                     ("epochs=50", "epochs=1"), ('device="auto"', 'device="cpu"')):
        assert old in code, f"the README's console block no longer has {old!r}"
        code = code.replace(old, new)

    def name_of(path: str) -> str:  # as Slicer names a loaded file's node
        return Path(path).name.split(".")[0]

    monkeypatch.setattr(slicer.util, "loadVolume", lambda path: scene_io.load_volume(path, name_of(path)),
                        raising=False)
    monkeypatch.setattr(slicer.util, "loadLabelVolume",
                        lambda path: scene_io.load_volume(path, name_of(path), labelmap=True), raising=False)
    monkeypatch.setattr(module, "shared_worker",
                        lambda purpose, command=None: training_worker if purpose == "train" else worker)
    namespace = {"slicer": slicer}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 (the README's own code)

    segmentation, volumes = namespace["segmentation"], namespace["volumes"]
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 3 and volumes.GetNumberOfRows() > 0
    model = Path(namespace["model"])
    assert model.is_file() and model.is_relative_to(tmp_path / "run") and small_model.is_file()
    job = namespace["job"]
    assert job.state == "succeeded" and job.result["segmentation"] is not segmentation
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1].startswith("succeeded {") and "100%" in printed  # the progress of the job, to its end
    assert printed[-2] == "succeeded"  # onFinished, once
