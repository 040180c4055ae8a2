"""`monet bench restore` and monet_cli.bench: seeded degradations, restored vs degraded vs
baselines, reports, the bundled photos, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fixtures as fx
from monet_cli import bench
from monet_cli import degrade as dg
from monet_cli.planners.auto import AutoPlanner
from test_evaluate import monet

pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def report():
    refs = [("coffee", bench.reference(fx.coffee(step=4), size=96)),
            ("chelsea", bench.reference(fx.chelsea(step=4), size=96))]
    return bench.run_restore(refs, AutoPlanner(), kinds=["under", "over+warm"], seeds=1, size=96)


def test_restored_beats_degraded_and_reports_baselines(report):
    assert [c.kind for c in report.cases] == ["original", "under", "over+warm"] * 2
    s = report.summary()
    assert report.rows == ["under", "over+warm", bench.ALL, bench.ORIGINAL]
    for row in report.rows:
        assert set(s[row]) == set(bench.METHODS)
        for m in bench.METHODS:
            assert {"psnr", "ssim", "delta_e", "l1", "histogram"} <= set(s[row][m])
    for row in ("under", "over+warm", bench.ALL):
        assert s[row]["restored"]["delta_e"] < s[row]["degraded"]["delta_e"] - 1.0
        assert s[row]["restored"]["psnr"] > s[row]["degraded"]["psnr"]
        assert s[row]["restored"]["histogram"] > s[row]["degraded"]["histogram"]
    # the untouched photo scores perfectly as "degraded"; degraded cases really are damaged
    assert s[bench.ORIGINAL]["degraded"]["delta_e"] == 0.0 and s[bench.ORIGINAL]["degraded"]["psnr"] == 100.0
    assert report.changes()["better"] == 4 and report.changes()["worse"] == 0


def test_cases_are_the_documented_seeded_degradations(report):
    for c in report.cases:
        if c.kind != bench.ORIGINAL:
            assert c.degradation == dg.degradation(c.kind, c.seed)
            assert c.plan.get("Exposure", 0) * c.degradation["Exposure"] < 0  # exposure pushed back
    ref = bench.reference(fx.coffee(step=4), size=96)
    again = bench.run_case("coffee", ref, "under", 0, AutoPlanner())
    assert again.scores == report.cases[1].scores  # deterministic


def test_report_formats(report, tmp_path):
    rows = report.csv_text().splitlines()
    assert rows[0].startswith("photo,kind,seed,method,degradation,plan,psnr,ssim,delta_e")
    assert len(rows) == 1 + len(report.cases) * len(bench.METHODS)
    md = report.markdown()
    assert md.startswith("| degradation | degraded ΔE / PSNR | rules | autocontrast | grey world |")
    assert "| **all degraded** |" in md and "| under-exposed |" in md
    d = report.to_dict()
    assert d["delta_e_changes"]["better"] == 4 and len(d["cases"]) == 6
    json.dumps(d)  # finite numbers only
    written = bench.write_outputs(report, tmp_path / "out")
    assert {p.name for p in written} == {"bench.csv", "bench.json", "bench.md", "metrics.png", "plan_values.png"}


def test_references_and_bundled_photos(tmp_path):
    ref = bench.reference(fx.astronaut(step=2), size=100)  # 256² → 100², 8-bit sRGB
    assert ref.shape == (100, 100, 3) and ref.dtype == np.uint8
    (p,) = bench.export_skimage_photos(tmp_path / "refs", names=("chelsea",))
    assert p.name == "chelsea.png"
    refs, failed = bench.load_references(tmp_path / "refs", size=64)
    assert [n for n, _ in refs] == ["chelsea.png"] and refs[0][1].shape[1] == 64 and not failed
    np.testing.assert_array_equal(refs[0][1], bench.reference(bench.skimage_photo("chelsea"), size=64))


def test_cli_bench_restore(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    fx.make_png(folder / "coffee.png", fx.coffee(step=4))
    p = monet("bench", "restore", folder, "--kinds", "under", "--seeds", "1", "--size", "64", "--json", check=0)
    d = json.loads(p.stdout)
    assert d["backend"] == "auto" and d["photos"] == ["coffee.png"] and "LPIPS" in d["lpips"]
    s = d["summary"]["all degraded"]
    assert s["restored"]["delta_e"] < s["degraded"]["delta_e"]
    p = monet("bench", "restore", folder, "--kinds", "under", "--seeds", "1", "--size", "64", check=0)
    assert "autocontrast" in p.stdout and "grey world" in p.stdout and "under-exposed" in p.stdout
    p = monet("bench", "restore", folder, "--kinds", "sideways", check=2)
    assert "unknown degradation 'sideways'" in p.stderr
    assert "Examples" in monet("bench", "restore", "--help", check=0).stdout
