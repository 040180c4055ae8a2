"""`monet preview` and monet_cli.preview: panels, their sizes and contents, contact sheets, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import fixtures as fx
from monet_cli import preview as pv
from monet_cli.degrade import srgb8_to_working, working_to_srgb8
from monet_cli.plan import Plan, save_plan, sidecar_path
from monet_cli.render import render_linear
from test_evaluate import monet

PLAN = {"Exposure": 50, "Contrast": 10, "Temperature": 20, "SaturationAdjustmentOrange": -30}


@pytest.fixture
def photo(tmp_path):
    """A 64×48 PNG with a sidecar plan."""
    path = fx.make_png(tmp_path / "cat.png", fx.coffee(step=8)[:48, :64])
    save_plan(Plan.from_adjustments(PLAN), sidecar_path(path))
    return path


def _height(panels_h: int) -> int:
    return 26 + panels_h + pv.CAPTION_H + pv.GAP  # header + panel + caption strip + margin


def test_before_after_panels():
    proxy = srgb8_to_working(fx.coffee(step=8)[:48, :64])
    panels = pv.plan_panels(proxy, Plan.from_adjustments(PLAN))
    assert [p.title for p in panels] == ["original", "after"]
    np.testing.assert_array_equal(panels[0].pixels, working_to_srgb8(proxy))
    np.testing.assert_array_equal(panels[1].pixels, working_to_srgb8(render_linear(proxy, PLAN)))
    assert panels[1].pixels.mean() > panels[0].pixels.mean() + 20  # +1 EV is visibly brighter
    assert "Exposure +50" in panels[1].detail and "Sat Orange -30" in panels[1].detail


def test_stage_panels_accumulate_to_the_full_plan():
    proxy = srgb8_to_working(fx.coffee(step=8))
    plan = Plan.from_adjustments(PLAN)
    panels = pv.plan_panels(proxy, plan, stages=True)
    assert [p.title for p in panels] == ["original", "1 Lighting", "2 Colour", "3 HSL"]
    assert panels[1].detail == "Exposure +50, Contrast +10" and panels[2].detail == "Temperature +20"
    full = working_to_srgb8(render_linear(proxy, PLAN))
    assert np.abs(panels[3].pixels.astype(int) - full).max() <= 1  # staged = one render (float rounding)
    assert not np.array_equal(panels[1].pixels, panels[2].pixels)  # each stage shows its own change


def test_preview_sizes(photo):
    plan = Plan.from_adjustments(PLAN)
    img = pv.preview_photo(photo, plan)  # never enlarged: panels keep the 64×48 photo size
    assert img.shape == (_height(48), 2 * 64 + 3 * pv.GAP, 3) and img.dtype == np.uint8
    img = pv.preview_photo(photo, plan, stages=True, size=32)  # long side 32: 32×24 panels
    assert img.shape == (_height(24), 4 * 32 + 5 * pv.GAP, 3)
    np.testing.assert_array_equal(img[26:26 + 24, pv.GAP:pv.GAP + 32],
                                  working_to_srgb8(pv.load_proxy(photo, 32)))


def test_contact_sheet_grid():
    plan = Plan.from_adjustments(PLAN)
    cells = [(f"p{i}.png", pv.plan_panels(srgb8_to_working(fx.astronaut(step=16)), plan)) for i in range(3)]
    sheet = pv.contact_sheet(cells, columns=2, thumb=32, title="t")
    cell = pv.compose(cells[0][1], header="p0.png", box=32, small=True)
    assert sheet.shape == (30 + 2 * cell.shape[0], 2 * cell.shape[1], 3)
    with pytest.raises(ValueError):
        pv.contact_sheet([])


def test_cli_preview(photo, tmp_path):
    out = monet("preview", photo, check=0)
    target = photo.parent / "cat.monet.preview.jpg"
    assert target.exists() and "2 panels" in out.stdout
    assert Image.open(target).size == (2 * 64 + 3 * pv.GAP, _height(48))
    assert "--force" in monet("preview", photo, "-o", target, check=1).stderr  # never overwrites silently
    monet("preview", photo, "--stages", "-o", tmp_path / "s.png", check=0)
    assert Image.open(tmp_path / "s.png").size[0] == 4 * 64 + 5 * pv.GAP
    # a batch: one photo without a plan fails with a hint, the sheet has the other
    bare = fx.make_png(tmp_path / "bare.png", fx.coffee())
    p = monet("preview", photo, bare, "--sheet", tmp_path / "sheet.jpg", "--json", check=1)
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    assert {x["status"] for x in lines[:2]} == {"ok", "failed"}
    assert any("monet plan" in x.get("error", "") for x in lines)
    assert lines[-1]["sheet"].endswith("sheet.jpg") and lines[-1]["photos"] == 1
    assert Image.open(tmp_path / "sheet.jpg").size == (lines[-1]["width"], lines[-1]["height"])
    assert "Examples" in monet("preview", "--help", check=0).stdout
