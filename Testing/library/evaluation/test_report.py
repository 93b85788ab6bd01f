"""Report pictures and page: real PNGs of the documented size, labels drawn in colour, an HTML page that links
every picture and shows the metrics."""

import html
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from matplotlib import image as mpimg

from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.evaluation.metrics import region_metrics
from BratsUNetLib.phantoms.generate import generate_case
from BratsUNetLib.evaluation.report import STRIP_PX, plot_training_curves, write_case_slices, write_html_report


@pytest.fixture(scope="module")
def case():
    return generate_case((48, 48, 40), 11)


def _panels(png: np.ndarray) -> np.ndarray:
    """The image panels of a slices PNG, without the title and legend strips (RGB)."""
    return png[STRIP_PX:-STRIP_PX, :, :3]


def _label_coloured(rgb: np.ndarray) -> int:
    """How many pixels are clearly coloured (a label overlay) rather than grey."""
    return int(np.count_nonzero(rgb.max(axis=-1) - rgb.min(axis=-1) > 0.15))


def test_case_slices_png_has_the_documented_size_and_coloured_labels(tmp_path, case):
    prediction = np.roll(case.label, 2, axis=0)
    images = {"FLAIR": case.images["flair"], "T1ce": case.images["t1ce"]}
    both = mpimg.imread(write_case_slices(tmp_path / "both.png", images, case.label, prediction, case.affine,
                                          title="case", panel_px=120))
    assert both.shape == (3 * 120 + 2 * STRIP_PX, 4 * 120, 4)  # 3 views × (2 images × 2 label maps)
    assert _label_coloured(_panels(both)) > 200

    reference_only = mpimg.imread(write_case_slices(tmp_path / "ref.png", images, case.label, None, case.affine,
                                                    panel_px=100))
    assert reference_only.shape == (3 * 100 + 2 * STRIP_PX, 2 * 100, 4)
    plain = mpimg.imread(write_case_slices(tmp_path / "plain.png", {"T1": case.images["t1"]}, panel_px=100))
    assert plain.shape == (3 * 100 + 2 * STRIP_PX, 100, 4)
    assert _label_coloured(_panels(plain)) == 0 and _panels(plain).max() > 0.5  # grey brain, no overlay
    assert sorted(p.name for p in tmp_path.iterdir()) == ["both.png", "plain.png", "ref.png"]  # no temp files


def test_case_slices_look_the_same_whatever_the_voxel_order(tmp_path):
    shape = (40, 44, 36)
    lps, left = generate_case(shape, 2), generate_case(shape, 2, left_handed=True)
    pictures = [mpimg.imread(write_case_slices(tmp_path / f"{name}.png", {"FLAIR": c.images["flair"]}, c.label,
                                               None, c.affine, panel_px=100))
                for name, c in (("lps", lps), ("left", left))]
    np.testing.assert_array_equal(pictures[0], pictures[1])
    stored_order = mpimg.imread(write_case_slices(tmp_path / "raw.png", {"FLAIR": left.images["flair"]}, left.label,
                                                  None, None, panel_px=100))
    assert not np.array_equal(stored_order, pictures[1])  # without the affine, the flipped storage shows


def _write_log(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "".join(row + "\n" for row in rows))
    return path


def test_training_curves_png_with_and_without_dice(tmp_path):
    full = _write_log(tmp_path / "training_log.csv", "epoch,loss,lr,val_loss,dice_WT,dice_TC,dice_ET,epoch_seconds",
                      [f"{e},{1 / e},{1e-3 * 0.9 ** e},{1.2 / e},{0.9 - 0.5 / e},{0.8 - 0.5 / e},{0.7 - 0.5 / e},2.5"
                       for e in range(1, 6)])
    png = mpimg.imread(plot_training_curves(full, tmp_path / "curves.png", width_px=640, height_px=300))
    assert png.shape == (300, 640, 4) and png[..., :3].std() > 0.05

    original = _write_log(tmp_path / "original.csv", "epoch,loss,lr,val_loss", ["1,0.9,0.001,", "2,0.7,0.001,"])
    assert mpimg.imread(plot_training_curves(original, tmp_path / "original.png")).shape == (360, 960, 4)


def test_training_curves_reject_unusable_logs(tmp_path):
    with pytest.raises(BratsUNetError, match="no epochs"):
        plot_training_curves(_write_log(tmp_path / "empty.csv", "epoch,loss,lr,val_loss", []), tmp_path / "a.png")
    with pytest.raises(BratsUNetError, match="not a training log"):
        plot_training_curves(_write_log(tmp_path / "other.csv", "a,b", ["1,2"]), tmp_path / "b.png")
    with pytest.raises(BratsUNetError, match="missing.csv.* does not exist; check the path"):
        plot_training_curves(tmp_path / "missing.csv", tmp_path / "c.png")
    assert not list(tmp_path.glob("*.png"))


def test_html_report_links_every_png_and_shows_the_metrics(tmp_path, case):
    pictures = tmp_path / "pictures"
    slices = {cid: write_case_slices(pictures / f"{cid}.png", {"FLAIR": case.images["flair"]}, case.label,
                                     np.roll(case.label, shift, axis=1), case.affine, panel_px=80)
              for cid, shift in (("BraTS20_Phantom_001", 1), ("Case <2> & co", 3))}
    log = _write_log(tmp_path / "training_log.csv", "epoch,loss,lr,val_loss", ["1,0.9,0.001,0.8"])
    curves = plot_training_curves(log, pictures / "curves.png")
    metrics = {cid: region_metrics(np.roll(case.label, shift, axis=1), case.label, (1.0, 1.0, 1.0))
               for cid, shift in (("BraTS20_Phantom_001", 1), ("Case <2> & co", 3))}

    page = write_html_report(tmp_path / "report" / "index.html", metrics, curves_png=curves, slice_pngs=slices,
                             title="Demo", notes=["Trained on 2 phantoms."])
    text = page.read_text()
    sources = [unquote(html.unescape(src)) for src in re.findall(r'<img src="([^"]+)"', text)]
    assert len(sources) == 3
    for source in sources:  # relative links that resolve to the PNGs written
        assert not Path(source).is_absolute() and (page.parent / source).resolve().is_file()
    assert {(page.parent / s).resolve() for s in sources} == {p.resolve() for p in (curves, *slices.values())}

    assert "Case &lt;2&gt; &amp; co" in text and "Trained on 2 phantoms." in text
    for cid, values in metrics.items():
        for region in ("WT", "TC", "ET"):
            assert f"<td>{values[region]['dice']:.3f}</td>" in text
            assert f"<td>{values[region]['hd95']:.2f}</td>" in text
            assert f"<td>{values[region]['volume_reference_ml']:.1f}</td>" in text
    mean_wt_dice = np.mean([values["WT"]["dice"] for values in metrics.values()])
    mean_row = re.search(r'<tr class="mean">(.*?)</tr>', text).group(1)
    assert "Mean of 2 cases" in mean_row and f"<td>{mean_wt_dice:.3f}</td>" in mean_row
