"""Image statistics on synthetic images with known answers, and the area resampler."""

from __future__ import annotations

import numpy as np
import pytest

from monet_cli import colorspaces as cs
from monet_cli import measure as ms
from monet_cli import operations as ops


def grey(Y) -> np.ndarray:
    """Neutral working RGB of luminance ``Y`` (any shape) → (..., 3)."""
    return np.repeat(np.asarray(Y, dtype=np.float64)[..., None], 3, axis=-1)


def textured_grey(h=192, w=256, seed=0) -> np.ndarray:
    """An achromatic image with edges at many scales (blocks + noise), luminance 0.03–0.8."""
    rng = np.random.default_rng(seed)
    blocks = rng.uniform(0.03, 0.8, (h // 16, w // 16))
    Y = np.kron(blocks, np.ones((16, 16))) * rng.uniform(0.9, 1.1, (h, w))
    return grey(Y)


def srgb_image(rgb8) -> np.ndarray:
    """Working-space linear RGB of 8-bit sRGB codes."""
    lin = cs.SRGB_TRC.decode(np.asarray(rgb8, dtype=np.float64) / 255.0)
    return lin @ cs.SRGB.linear().matrix_to(cs.WORKING).T


# ----------------------------------------------------------------------------- resampling


def _brute_area(a, edges):
    out = []
    for x0, x1 in zip(edges[:-1], edges[1:]):
        s = sum(max(0.0, min(x1, i + 1) - max(x0, i)) * a[i] for i in range(a.shape[0]))
        out.append(s / (x1 - x0))
    return np.array(out)


@pytest.mark.parametrize("n, m", [(10, 3), (100, 37), (7, 7), (13, 1), (1280, 512), (9, 4)])
def test_area_integrate_is_the_exact_box_filter(n, m):
    a = np.random.default_rng(n).random((n, 2))
    e = np.arange(m + 1) * (n / m)
    np.testing.assert_allclose(ms.area_integrate(a, e), _brute_area(a, e), atol=1e-12)
    np.testing.assert_allclose(ms.area_integrate(a.T, e, axis=1), _brute_area(a, e).T, atol=1e-12)


def test_area_integrate_arbitrary_edges_and_rejects_upscaling():
    a = np.random.default_rng(0).random((50, 3))
    e = np.array([0.3, 1.5, 4.0, 7.25, 20.0, 49.99])
    np.testing.assert_allclose(ms.area_integrate(a, e), _brute_area(a, e), atol=1e-12)
    with pytest.raises(ValueError):
        ms.area_integrate(a, np.array([0.0, 0.5, 1.0]))


@pytest.mark.parametrize("shape, long_side", [((100, 150), 55), ((853, 1280), 512), ((600, 400), 200), ((13, 13), 1)])
def test_compiled_box_filter_matches_reference(shape, long_side):
    x = np.random.default_rng(1).random(shape + (3,))
    h, w = ms.area_size(*shape, long_side)
    ref = ms.area_integrate(ms.area_integrate(x, np.arange(h + 1) * (shape[0] / h), 0),
                            np.arange(w + 1) * (shape[1] / w), 1)
    out = ms.area_downscale(x, long_side)
    assert out.shape == (h, w, 3)
    np.testing.assert_allclose(out, ref, atol=1e-12)
    assert out.mean() == pytest.approx(x.mean(), abs=1e-12)  # light is conserved


def test_area_downscale_leaves_small_images_alone():
    x = np.random.default_rng(2).random((40, 30, 3)).astype(np.float32)
    assert ms.area_downscale(x, 64) is x


# ----------------------------------------------------------------------------- statistics


def test_uniform_middle_grey():
    m = ms.measure(grey(np.full((64, 96), 0.18)))
    for p in (m.p1, m.p5, m.p50, m.p95, m.p99, m.black_point):
        assert p == pytest.approx(0.18, rel=1e-5)
    assert m.median_ev == pytest.approx(0.0, abs=1e-5)
    assert m.white_point == pytest.approx(0.18, rel=1e-5)
    assert m.headroom_ev == pytest.approx(np.log2(0.9 / 0.18), rel=1e-4)
    assert m.clipped_white == 0.0 and m.clipped_black == 0.0 and m.clipped_highlights == 0.0
    assert m.key == pytest.approx(0.18 + 1e-4, rel=1e-4)
    assert m.spread == pytest.approx(0.0, abs=1e-9)
    assert m.chroma == pytest.approx(0.0, abs=1e-3)
    assert m.colourfulness == pytest.approx(0.0, abs=1e-3)
    assert m.gamut_edge == 0.0
    assert m.neutral.confidence == 0.0  # no edges: nothing to estimate from


def test_luminance_ramp_percentiles_and_spread():
    Y = np.linspace(0.0, 1.0, 100 * 101).reshape(100, 101)
    m = ms.measure(grey(Y))
    for got, q in ((m.p1, 1), (m.p5, 5), (m.p50, 50), (m.p95, 95), (m.p99, 99)):
        assert got == pytest.approx(np.percentile(Y, q), abs=1e-4)
    assert m.spread == pytest.approx((ms.lstar(np.percentile(Y, 99)) - ms.lstar(np.percentile(Y, 1))) / 100, abs=1e-3)
    assert m.clipped_white == pytest.approx(np.mean(Y >= 0.98), abs=1e-3)
    assert m.clipped_black == pytest.approx(np.mean(Y <= 0.002), abs=1e-3)


def test_clipped_fractions_and_key_of_a_two_tone_image():
    Y = np.full((40, 100), 0.001)
    Y[:, 30:] = 1.0  # 70 % white, 30 % (near) black
    m = ms.measure(grey(Y))
    assert m.clipped_white == pytest.approx(0.7)
    assert m.clipped_highlights == pytest.approx(0.7)
    assert m.clipped_black == pytest.approx(0.3)
    assert m.key == pytest.approx(np.exp(0.3 * np.log(0.001 + 1e-4) + 0.7 * np.log(1.0 + 1e-4)), rel=1e-5)


def test_clipping_is_per_display_channel():
    # a saturated red: luminance far below white but its red channel at full scale
    img = srgb_image(np.tile([255, 40, 40], (32, 32, 1)))
    m = ms.measure(img)
    assert m.p50 < 0.3
    assert m.clipped_white == pytest.approx(1.0)
    assert m.clipped_highlights == 0.0  # a pinned colour, not a blown highlight


def test_resolution_independence():
    rng = np.random.default_rng(3)
    small = rng.random((120, 180, 3)) ** 2
    twice = np.repeat(np.repeat(small, 6, 0), 6, 1)  # 720×1080
    thrice = np.repeat(np.repeat(small, 9, 0), 9, 1)  # 1080×1620
    a, b = ms.measure(twice), ms.measure(thrice)
    assert (a.height, a.width) == (b.height, b.width) == (341, 512)
    for field in ("p1", "p5", "p50", "p95", "p99", "black_point", "white_point", "key", "spread", "chroma",
                  "colourfulness", "clipped_white", "clipped_highlights", "clipped_black", "gamut_edge"):
        assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-4, abs=1e-6), field
    assert a.neutral.cct == pytest.approx(b.neutral.cct, rel=1e-4)


def test_lstar_roundtrip():
    Y = np.array([0.0, 0.001, 0.008856, 0.18, 0.5, 1.0])
    np.testing.assert_allclose(ms.lstar_inverse(ms.lstar(Y)), Y, atol=1e-12)
    assert float(ms.lstar(0.18)) == pytest.approx(49.5, abs=0.1)
    assert float(ms.lstar(1.0)) == pytest.approx(100.0)


# ----------------------------------------------------------------------------- colour


def test_cct_of_d65_and_illuminant_a():
    cct, duv = ms.cct_duv(np.ones(3))
    assert cct == pytest.approx(6504, abs=5)
    assert duv == pytest.approx(0.0032, abs=3e-4)
    # CIE illuminant A: xy (0.44757, 0.40745), 2856 K on the locus
    xyz = cs.xy_to_XYZ((0.44757, 0.40745))
    rgb = np.linalg.solve(cs.WORKING.to_xyz, xyz)
    cct, duv = ms.cct_duv(rgb)
    assert cct == pytest.approx(2856, abs=10)
    assert abs(duv) < 3e-4


def test_neutral_of_a_grey_scene_is_d65_with_confidence():
    n = ms.measure(textured_grey()).neutral
    np.testing.assert_allclose(n.rgb, [1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(n.rgb_bright, [1, 1, 1], atol=1e-6)
    assert n.cct == pytest.approx(6504, abs=5)
    assert n.confidence > 0.95


@pytest.mark.parametrize("temperature, tint", [(35, 0), (-30, 0), (0, 25), (20, -15)])
def test_neutral_recovers_a_white_balance_cast(temperature, tint):
    from monet_cli.planners.auto import solve_white_balance

    img = textured_grey() @ ops.white_balance_matrix(temperature, tint).T
    n = ms.measure(img).neutral
    assert n.confidence > 0.9  # both estimates see the same cast
    truth = solve_white_balance(ops.white_balance_matrix(temperature, tint) @ np.ones(3))
    got = solve_white_balance(n.rgb)
    assert got[0] == pytest.approx(truth[0], abs=1.0)
    assert got[1] == pytest.approx(truth[1], abs=1.0)
    if temperature > 0:
        assert n.cct < 6000  # warmer white, lower colour temperature
    if temperature < 0:
        assert n.cct > 7000


def test_disagreeing_estimates_lower_the_confidence():
    # grey texture whose brightest surfaces are orange lamps: the two estimates disagree
    img = textured_grey() * 0.4
    img[:48, :64] = srgb_image([250, 150, 40])
    img[100:140, 180:240] = srgb_image([250, 150, 40])
    n = ms.measure(img).neutral
    assert n.spread > 0.01
    assert n.confidence < 0.5


def test_colourfulness_matches_hasler_susstrunk_formula():
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 256, (50, 60, 3))
    rg = codes[..., 0] - codes[..., 1]
    yb = 0.5 * (codes[..., 0] + codes[..., 1]) - codes[..., 2]
    expected = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    m = ms.measure(srgb_image(codes))
    assert m.colourfulness == pytest.approx(expected, rel=1e-3)
    assert ms.colourfulness_word(m.colourfulness) in [w for _, w in ms.COLOURFULNESS_WORDS]
    assert ms.colourfulness_word(10) == "not colourful" and ms.colourfulness_word(70) == "quite colourful"


def test_gamut_edge_counts_pinned_colours_not_neutral_whites():
    img = np.zeros((20, 100, 3), np.uint8) + 128
    img[:, :25] = [255, 0, 0]  # pinned red
    img[:, 25:40] = [255, 255, 255]  # clipped white: neutral, not pinned
    img[:, 40:50] = [200, 120, 60]  # an ordinary orange inside the gamut
    m = ms.measure(srgb_image(img))
    assert m.gamut_edge == pytest.approx(0.25)
    assert m.band_gamut_edge["Red"] > 0.2


def test_band_statistics_follow_the_hsl_bands():
    import colorsys

    # an sRGB colour at the blue band's centre (215° of sRGB-encoded HSV) on a grey background
    r, g, b = colorsys.hsv_to_rgb(215 / 360, 0.7, 0.8)
    img = np.zeros((40, 40, 3), np.uint8) + 100
    img[:, :20] = np.round(np.array([r, g, b]) * 255)
    m = ms.measure(srgb_image(img))
    assert set(m.band_share) == {"Red", "Orange", "Yellow", "Green", "Aqua", "Blue", "Purple", "Magenta"}
    assert sum(m.band_share.values()) == pytest.approx(1.0)
    assert m.band_share["Blue"] > 0.95
    assert m.band_chroma["Blue"] > 30
    assert m.to_dict()["band_share"]["Blue"] == m.band_share["Blue"]


def test_non_finite_pixels_do_not_poison_statistics():
    img = textured_grey()
    img[0, 0] = np.nan
    img[1, 1] = np.inf
    m = ms.measure(img)
    assert np.isfinite([m.p50, m.key, m.spread, m.chroma, m.colourfulness]).all()


def test_rejects_bad_shapes():
    with pytest.raises(ValueError):
        ms.measure(np.zeros((10, 10)))
