"""`monet eval` and monet_cli.evaluate: every metric against an independent computation,
pairing by name, the best/mean-over-targets rules, the common size, reports and LPIPS gating."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import fixtures as fx
from monet_cli import evaluate as ev
from monet_cli.errors import OutputError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    colour = pytest.importorskip("colour")
skm = pytest.importorskip("skimage.metrics")
skcolor = pytest.importorskip("skimage.color")
ndimage = pytest.importorskip("scipy.ndimage")


def monet(*args, check=None):
    exe = Path(sys.executable).parent / "monet"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "monet_cli"]
    p = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "COLUMNS": "200"})
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


@pytest.fixture(scope="module")
def pair():
    """A 64×64 8-bit photo (as [0, 1] floats) and a changed version: warmer, brighter, noisier."""
    a = fx.astronaut().astype(np.float64) / 255.0
    rng = np.random.default_rng(0)
    b = np.clip(a * [1.08, 1.0, 0.9] + 0.03 + rng.normal(0, 0.02, a.shape), 0, 1)
    return a, np.round(b * 255) / 255


def _hi(x, y, bins, rng):
    """Histogram intersection by numpy.histogram (independent of ev.histogram_counts)."""
    hx, _ = np.histogram(np.clip(x, *rng), bins=bins, range=rng)
    hy, _ = np.histogram(np.clip(y, *rng), bins=bins, range=rng)
    return 100.0 * np.minimum(hx / hx.sum(), hy / hy.sum()).sum()


# ---------------------------------------------------------------------------- metrics


def test_identical_images_score_perfectly(pair):
    a, _ = pair
    m = ev.image_metrics(a, a)
    assert m["psnr"] == math.inf
    assert m["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert m["delta_e"] == 0.0 and m["l1"] == 0.0
    for k in ("histogram", "hist_luminance", "hist_contrast", "hist_saturation"):
        assert m[k] == 100.0
    assert ev.capped(m)["psnr"] == ev.PSNR_CAP


def test_psnr_ssim_l1_delta_e_against_references(pair):
    a, b = pair
    m = ev.image_metrics(a, b)
    assert m["psnr"] == pytest.approx(skm.peak_signal_noise_ratio(a, b, data_range=1.0), rel=1e-12)
    assert m["ssim"] == pytest.approx(skm.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                                                use_sample_covariance=False, data_range=1.0,
                                                                channel_axis=-1), abs=1e-9)
    assert m["l1"] == pytest.approx(np.abs(a - b).mean(), rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d65 = colour.CCS_ILLUMINANTS["CIE 1931 2 Degree Standard Observer"]["D65"]
        lab = [colour.XYZ_to_Lab(colour.sRGB_to_XYZ(x), illuminant=d65) for x in (a, b)]
        de = colour.delta_E(lab[0], lab[1], method="CIE 2000").mean()
    assert m["delta_e"] == pytest.approx(de, rel=1e-3)
    assert 0 < m["delta_e"] < 20 and 0 < m["ssim"] < 1


def test_histogram_intersections_against_numpy_and_skimage(pair):
    a, b = pair
    m = ev.image_metrics(a, b)
    La, Lb = skcolor.rgb2lab(a)[..., 0], skcolor.rgb2lab(b)[..., 0]
    tol = 3 * 100.0 / La.size  # a pixel on a bin edge may fall either side between implementations
    assert m["hist_luminance"] == pytest.approx(_hi(La, Lb, 64, (0, 100)), abs=tol)
    Sa, Sb = skcolor.rgb2hsv(a)[..., 1], skcolor.rgb2hsv(b)[..., 1]
    assert m["hist_saturation"] == pytest.approx(_hi(Sa, Sb, 64, (0, 1)), abs=tol)

    def contrast(L):  # scipy's Gaussian, radius int(3σ + 0.5) = 3 for σ = 1 (64 px · 1 %)
        mu = ndimage.gaussian_filter(L, 1.0, mode="reflect", truncate=3.0)
        return np.sqrt(np.maximum(ndimage.gaussian_filter(L * L, 1.0, mode="reflect", truncate=3.0) - mu * mu, 0))

    np.testing.assert_allclose(ev.local_contrast(La), contrast(La), atol=1e-4)
    assert m["hist_contrast"] == pytest.approx(_hi(contrast(La), contrast(Lb), 64, ev.CONTRAST_RANGE), abs=tol)
    assert m["histogram"] == pytest.approx(np.mean([m["hist_luminance"], m["hist_contrast"], m["hist_saturation"]]))
    assert all(0 < m[k] < 100 for k in ("hist_luminance", "hist_saturation"))


def test_histogram_intersection_definition():
    assert ev.intersection(np.array([2, 2, 0]), np.array([0, 2, 2])) == 50.0
    assert ev.intersection(np.array([4, 0]), np.array([0, 7])) == 0.0
    assert ev.intersection(np.array([1, 3]), np.array([2, 6])) == 100.0  # normalised: sizes may differ
    assert list(ev.histogram_counts([-5, 0, 49.9, 50, 100, 300], 0, 100, bins=2)) == [3, 3]
    flat = np.full((20, 20), 50.0)
    assert ev.local_contrast(flat).max() == 0.0
    assert ev.hsv_saturation(np.array([[[0.0, 0.0, 0.0], [1.0, 0.5, 0.0]]]))[0].tolist() == [0.0, 1.0]


def test_best_and_mean_over_targets():
    t1 = {"psnr": 30.0, "ssim": 0.90, "delta_e": 4.0, "l1": 0.02, "histogram": 80.0}
    t2 = {"psnr": 20.0, "ssim": 0.95, "delta_e": 2.0, "l1": 0.04, "histogram": 90.0}
    c = ev.combine([t1, t2])
    # best is per metric: each in its own direction, possibly from different targets
    assert c["best"] == {"psnr": 30.0, "ssim": 0.95, "delta_e": 2.0, "l1": 0.02, "histogram": 90.0}
    assert c["mean"] == pytest.approx({"psnr": 25.0, "ssim": 0.925, "delta_e": 3.0, "l1": 0.03, "histogram": 85.0})
    assert ev.combine([t1]) == {"best": t1, "mean": t1}


# ---------------------------------------------------------------------------- pairing


def _png(path, px):
    return fx.make_png(path, px)


def test_pairing_by_name(tmp_path):
    img = fx.chelsea()
    preds, t1, t2 = tmp_path / "preds", tmp_path / "t1", tmp_path / "t2"
    for d in (preds, t1, t2):
        d.mkdir()
    fx.make_jpeg(preds / "a.monet.jpg", img)
    _png(preds / "a.png", img)  # the source beside monet's output: the output is the prediction
    _png(preds / "B.png", img)
    _png(preds / "c.png", img)  # no target anywhere
    (preds / "a.png.monet.json").write_text("{}")  # sidecars are not photos
    fx.make_tiff(t1 / "a.tif", img)
    _png(t1 / "b.png", img)
    _png(t1 / "d.png", img)  # no prediction
    _png(t2 / "a.png", img)  # t2 lacks b
    p = ev.pair_by_name(preds, [t1, t2])
    assert [(x.key, x.prediction.name, [t.name if t else None for t in x.targets]) for x in p.pairs] == [
        ("a", "a.monet.jpg", ["a.tif", "a.png"]), ("b", "B.png", ["b.png", None])]
    assert [(Path(m).name, why) for m, why in p.missing] == [("c.png", f"no target of this name in {t1}, {t2}")]
    assert [(Path(m).name, why) for m, why in p.gaps] == [("B.png", f"no target in {t2}")]
    assert p.unmatched_targets == {str(t1): 1, str(t2): 0}
    assert ev.pair_key("a0001.monet.JPG") == ev.pair_key("A0001.tif") == "a0001"


def test_ambiguous_names_are_reported(tmp_path):
    preds, t = tmp_path / "p", tmp_path / "t"
    preds.mkdir(), t.mkdir()
    _png(preds / "x.png", fx.chelsea())
    fx.make_jpeg(preds / "x.jpg", fx.chelsea())
    _png(t / "x.png", fx.chelsea())
    p = ev.pair_by_name(preds, [t])
    assert not p.pairs and "ambiguous name: x.jpg, x.png" in p.missing[0][1]


# ---------------------------------------------------------------------------- evaluation


@pytest.fixture
def fivek_like(tmp_path):
    """Two predictions and two expert folders: expert 1 equals the predictions, expert 2 is warmer."""
    preds, e1, e2 = (tmp_path / n for n in ("preds", "e1", "e2"))
    for d in (preds, e1, e2):
        d.mkdir()
    for name, px in (("a", fx.astronaut()), ("b", fx.coffee())):
        big = np.repeat(np.repeat(px, 2, axis=0), 2, axis=1)  # predictions at twice the size
        _png(preds / f"{name}.monet.png", big)
        _png(e1 / f"{name}.png", px)
        warm = np.clip(px.astype(int) + [18, 0, -18], 0, 255).astype(np.uint8)
        _png(e2 / f"{name}.png", warm)
    return preds, e1, e2


def test_evaluate_two_targets_common_size_and_rules(fivek_like):
    preds, e1, e2 = fivek_like
    r = ev.evaluate(preds, [e1, e2])
    assert [x.key for x in r.scored] == ["a", "b"] and r.exit_code == 0
    for img in r.scored:
        same, warm = img.per_target
        # 2×2 replicated pixels box-filter back exactly to the target: a perfect score at the common size
        assert same["psnr"] == ev.PSNR_CAP and same["delta_e"] == 0.0 and same["histogram"] == 100.0
        assert warm["delta_e"] > 1.0 and warm["psnr"] < 40
        assert img.best["delta_e"] == 0.0 and img.best["psnr"] == ev.PSNR_CAP
        assert img.mean["delta_e"] == pytest.approx(warm["delta_e"] / 2)
        assert img.mean["psnr"] == pytest.approx((ev.PSNR_CAP + warm["psnr"]) / 2)
    s = r.summary()
    assert s["best"]["delta_e"]["mean"] == 0.0 and s["mean"]["delta_e"]["mean"] > 0.5
    assert "LPIPS" in r.lpips


def test_common_size_and_aspect(tmp_path):
    px = fx.astronaut(step=2)  # 256×256
    _png(tmp_path / "t.png", px)
    _png(tmp_path / "p.png", px[:, :200])
    ref, out = ev.common_renditions(tmp_path / "t.png", tmp_path / "t.png", size=100)
    assert ref.shape == out.shape == (100, 100, 3) and np.all(np.round(ref * 255) == ref * 255)
    with pytest.raises(Exception, match="aspect ratio"):
        ev.common_renditions(tmp_path / "t.png", tmp_path / "p.png")


def test_reports_csv_json_plots_and_force(fivek_like, tmp_path):
    preds, e1, e2 = fivek_like
    r = ev.evaluate(preds, [e1, e2])
    rows = r.csv_text().splitlines()
    head = rows[0].split(",")
    assert head[:4] == ["name", "prediction", "n_targets", "best_psnr"] and "mean_delta_e" in head
    assert "e1:delta_e" in head and "e2:histogram" in head and len(rows) == 3
    plans = [{"Exposure": 10, "Temperature": -5}, {"Exposure": -20}]
    out = tmp_path / "report"
    written = ev.write_outputs(r, out, plans=plans)
    assert sorted(p.name for p in written) == ["eval.csv", "eval.json", "metrics.png", "plan_values.png"]
    d = json.loads((out / "eval.json").read_text())
    assert d["counts"]["scored"] == 2 and d["images"][0]["targets"]["e1"]["metrics"]["delta_e"] == 0.0
    from PIL import Image

    assert Image.open(out / "metrics.png").size[0] > 500
    with pytest.raises(OutputError, match="--force"):
        ev.write_outputs(r, out, plans=plans)
    ev.write_outputs(r, out, plans=plans, force=True)


# ---------------------------------------------------------------------------- LPIPS


def test_lpips_says_why_it_is_not_available(monkeypatch, tmp_path):
    monkeypatch.setattr(ev, "find_spec", lambda name: None)
    ok, why = ev.lpips_status()
    assert not ok and why == "LPIPS not computed: torch is not installed (pip install torch)"
    # packages present but the weights not on disk: never downloaded, says where it looked
    (tmp_path / "lpips").mkdir()
    fake = SimpleNamespace(origin=str(tmp_path / "lpips" / "__init__.py"))
    monkeypatch.setattr(ev, "find_spec", lambda name: fake)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ok, why = ev.lpips_status()
    assert not ok and "weights not on disk" in why and "never downloads" in why


def test_lpips_is_absent_from_scores_when_unavailable(fivek_like, monkeypatch):
    monkeypatch.setattr(ev, "lpips_status", lambda: (False, "LPIPS not computed: torch is not installed"))
    preds, e1, _ = fivek_like
    r = ev.evaluate(preds, [e1])
    assert r.lpips == "LPIPS not computed: torch is not installed"
    assert "lpips" not in r.metric_names and "lpips" not in r.scored[0].best


# ---------------------------------------------------------------------------- CLI


def test_cli_eval(fivek_like, tmp_path):
    preds, e1, e2 = fivek_like
    _png(preds / "orphan.png", fx.chelsea())
    p = monet("eval", preds, "-t", e1, "-t", e2, "--json", check=1)  # exit 1: one prediction has no target
    d = json.loads(p.stdout)
    assert d["counts"] == {"scored": 2, "failed": 0, "missing": 1, "partial": 0}
    assert d["missing"][0]["path"].endswith("orphan.png")
    assert d["summary"]["best"]["delta_e"]["mean"] == 0.0
    (preds / "orphan.png").unlink()
    p = monet("eval", preds, "-t", e1, "-t", e2, "--out", tmp_path / "rep", check=0)
    assert "best · mean" in p.stdout and "ΔE2000" in p.stdout and "LPIPS" in p.stdout
    assert (tmp_path / "rep" / "eval.csv").exists()
    assert "--force" in monet("eval", preds, "-t", e1, "--out", tmp_path / "rep", check=1).stderr
    p = monet("eval", tmp_path / "nope", "-t", e1, check=1)
    assert p.stderr.startswith("monet: error:") and "no such folder" in p.stderr
    assert "Examples" in monet("eval", "--help", check=0).stdout
