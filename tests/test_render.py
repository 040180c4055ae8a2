"""Properties every operation must have, the fast kernel against the reference formulas, and
independent cross-checks (colour-science) of Exposure and Temperature."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monet_cli import colorspaces as cs
from monet_cli import operations as ops
from monet_cli.catalog import catalog
from monet_cli.errors import PlanError
from monet_cli.render import render_linear, render_pixels

OPS = list(catalog().ops)
RNG = np.random.default_rng(7)


def photo_like(h=48, w=64, seed=0):
    """Working-space linear RGB covering all hues, many chromas and 9 stops of luminance."""
    rng = np.random.default_rng(seed)
    hue = rng.uniform(0, 6, (h, w))
    sat = rng.uniform(0, 0.9, (h, w))
    val = 2.0 ** rng.uniform(-9, 0.3, (h, w))
    return ops._hsv_to_rgb(hue, sat, val).astype(np.float32)


def grey_ramp(n=64):
    v = np.geomspace(1e-4, 1.5, n)
    return np.repeat(v[None, :, None], 3, axis=2).astype(np.float32)


def band_colour(band: str, sat=0.6, val=0.4):
    centre = {b.name: b.centre for b in catalog().bands}[band]
    h = np.linspace(0, 6, 6 * 512, endpoint=False)
    nh = ops.named_hue(h)
    diff = np.abs((nh - centre + 180) % 360 - 180)
    return ops._hsv_to_rgb(np.array([[h[np.argmin(diff)]]]), sat, val).astype(np.float32)


# ------------------------------------------------------------------ identity


def test_all_zero_plan_returns_input_bit_for_bit():
    px = (RNG.random((32, 40, 3)) * 65535).astype(np.uint16)
    out = render_pixels(px, {n: 0 for n in OPS}, cs.SRGB)
    assert out is px


@pytest.mark.parametrize("name", OPS)
def test_op_at_zero_is_identity_next_to_others(name):
    x = photo_like()
    base = {"Exposure": 10, "Saturation": 15, "HueAdjustmentBlue": 20}
    with_zero = dict(base, **{name: 0}) if name not in base else base
    np.testing.assert_array_equal(render_linear(x, with_zero), render_linear(x, base))


# ------------------------------------------------------------------ monotone


def _hue_deg(rgb):
    return ops.named_hue(ops.hexagonal_hue(rgb.astype(np.float64)))


def _measure(name):
    """A statistic that must increase with the op's value, on a suitable test image."""
    x = photo_like()
    Y = lambda r: ops.luminance(r)  # noqa: E731
    if name == "Exposure":
        return x, lambda r: Y(r).mean()
    if name == "Contrast":
        return x, lambda r: np.std(np.log2(np.maximum(Y(r), 1e-6)))
    if name == "Highlights":
        g = grey_ramp()
        return g, lambda r: Y(r)[0, -20:-8].mean()
    if name == "Shadows":
        g = grey_ramp()
        return g, lambda r: Y(r)[0, 15:35].mean()
    if name == "Whites":
        g = grey_ramp()
        return g, lambda r: Y(r)[0, -6:].mean()
    if name == "Blacks":
        g = grey_ramp()
        return g, lambda r: Y(r)[0, :10].mean()
    if name == "Temperature":
        g = grey_ramp()
        return g, lambda r: (r[..., 0] - r[..., 2]).mean()
    if name == "Tint":
        g = grey_ramp()
        return g, lambda r: ((r[..., 0] + r[..., 2]) / 2 - r[..., 1]).mean()
    if name == "Saturation":
        return x, lambda r: np.abs(r - Y(r)[..., None]).mean()
    op = catalog().ops[name]
    c = band_colour(op.band)
    if op.kind == "HueAdjustment":
        h0 = _hue_deg(c)[0, 0]
        return c, lambda r: (_hue_deg(r)[0, 0] - h0 + 180) % 360 - 180
    if op.kind == "SaturationAdjustment":
        return c, lambda r: float(np.abs(r - Y(r)[..., None]).sum())
    return c, lambda r: float(Y(r).sum())


@pytest.mark.parametrize("name", OPS)
def test_effect_is_monotone_in_value(name):
    img, stat = _measure(name)
    values = [-100, -60, -25, -5, 0, 5, 25, 60, 100]
    s = [stat(render_linear(img, {name: v})) for v in values]
    assert np.all(np.diff(s) > 0), (name, s)


@pytest.mark.parametrize("name", ["Contrast", "Highlights", "Shadows", "Whites", "Blacks"])
@pytest.mark.parametrize("value", [-100, -40, 40, 100])
def test_tone_curves_are_monotone_in_luminance(name, value):
    Y = np.geomspace(1e-6, 8, 4000)
    a = {name: value}
    out = ops.tone_curve(Y, a) + ops.blacks_pedestal(ops.tone_curve(Y, a), a.get("Blacks", 0))
    assert np.all(np.diff(out) >= 0)


# ------------------------------------------------------------------ bounded


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(OPS), st.floats(-100, 100, allow_nan=False), min_size=1, max_size=33),
       st.sampled_from([0.0, 1e-9, 0.5, 1.0, 4.0, 60.0]))
def test_no_nan_or_inf_for_any_values(adjustments, level):
    x = np.concatenate([photo_like(8, 8), np.full((8, 8, 3), level, np.float32),
                        np.zeros((8, 8, 3), np.float32)], axis=0)
    x[0, 0] = [level, 0, 0]
    x[0, 1] = [0, 0, level]
    out = render_linear(x, adjustments)
    assert np.isfinite(out).all()


def test_16bit_render_stays_in_range_and_uses_full_depth():
    px = (np.linspace(0, 1, 256 * 3) ** 2 * 65535).astype(np.uint16).reshape(16, 16, 3)
    out = render_pixels(px, {"Exposure": 5, "Contrast": 30, "HueAdjustmentRed": 40}, cs.SRGB)
    assert out.dtype == np.uint16
    assert len(np.unique(out)) > 500  # not quantised to 8 bits


# ------------------------------------------------------------------ neutrals and anchors


@pytest.mark.parametrize("name", ["Saturation"] + [n for n in OPS if catalog().ops[n].stage == "hsl"])
def test_neutral_greys_untouched(name):
    g = grey_ramp()
    for v in (-100, 55, 100):
        np.testing.assert_allclose(render_linear(g, {name: v}), g, rtol=2e-6, atol=1e-9)


def test_neutral_greys_untouched_in_16bit_srgb():
    v = np.arange(0, 65536, 257, dtype=np.uint16)
    px = np.repeat(v[None, :, None], 3, axis=2)
    a = {"Saturation": 80, "SaturationAdjustmentGreen": 100, "HueAdjustmentRed": -100,
         "LuminanceAdjustmentBlue": 100}
    out = render_pixels(px, a, cs.SRGB).astype(int)
    assert np.abs(out - px).max() <= 1


def test_exposure_plus_50_is_exactly_one_ev():
    x = photo_like()
    np.testing.assert_array_equal(render_linear(x, {"Exposure": 50}), x * 2)
    np.testing.assert_array_equal(render_linear(x, {"Exposure": -100}), x / 4)


@pytest.mark.parametrize("value", [-100, -30, 30, 100])
def test_contrast_keeps_middle_grey(value):
    g = np.full((1, 1, 3), 0.18, np.float32)
    np.testing.assert_allclose(render_linear(g, {"Contrast": value}), g, rtol=1e-6)


def test_tone_ops_keep_hue_and_saturation():
    x = photo_like()
    out = render_linear(x, {"Contrast": 40, "Highlights": -50, "Shadows": 60, "Whites": -30, "Blacks": -20})
    Y0, Y1 = ops.luminance(x), ops.luminance(out)
    ok = (Y0 > 1e-3) & (Y1 > 1e-3)
    r0 = x[ok] / Y0[ok][:, None]
    r1 = out[ok] / Y1[ok][:, None]
    np.testing.assert_allclose(r1, r0, rtol=1e-4, atol=1e-5)


def test_temperature_warms_and_tint_goes_magenta_keeping_luminance_of_white():
    white = np.ones((1, 1, 3), np.float32)
    warm = render_linear(white, {"Temperature": 50})[0, 0]
    magenta = render_linear(white, {"Tint": 50})[0, 0]
    assert warm[0] > 1 > warm[2]
    assert magenta[1] < min(magenta[0], magenta[2])
    assert ops.luminance(warm) == pytest.approx(1.0, abs=1e-6)
    assert ops.luminance(magenta) == pytest.approx(1.0, abs=1e-6)


def test_results_do_not_depend_on_resolution():
    x = photo_like(64, 96, seed=3)
    a = {n: float(v) for n, v in zip(OPS, RNG.uniform(-80, 80, len(OPS)))}
    full = render_linear(x, a)
    half = render_linear(np.ascontiguousarray(x[::2, ::2]), a)
    np.testing.assert_array_equal(full[::2, ::2], half)


# ------------------------------------------------------------------ kernel vs reference


@pytest.mark.parametrize("stage", ["lighting", "color", "hsl", None])
def test_kernel_matches_reference_formulas(stage):
    x = photo_like(32, 32, seed=5) * 1.5
    names = catalog().ops_in(stage) if stage else OPS
    for seed in range(3):
        rng = np.random.default_rng(seed)
        a = {n: float(rng.uniform(-100, 100)) for n in names}
        ref = ops.render_reference(x.astype(np.float64), a)
        fast = render_linear(x, a)
        np.testing.assert_allclose(fast, ref, rtol=2e-3, atol=2e-4)


def test_16bit_kernel_matches_reference_within_one_code():
    px = (RNG.random((24, 24, 3)) * 65535).astype(np.uint16)
    a = {"Exposure": 12, "Contrast": -20, "Shadows": 35, "Temperature": 25, "Saturation": 10}
    out = render_pixels(px, a, cs.SRGB, cs.ADOBE_RGB).astype(np.int64)
    lin = cs.SRGB_TRC.decode(px / 65535.0) @ cs.SRGB.linear().matrix_to(cs.WORKING).T
    ref = ops.render_reference(lin, a) @ cs.WORKING.matrix_to(cs.ADOBE_RGB.linear()).T
    ref = np.round(np.clip(cs.ADOBE_TRC.encode(np.clip(ref, 0, 1)), 0, 1) * 65535).astype(np.int64)
    assert np.abs(out - ref).max() <= 2


# ------------------------------------------------------------------ independent references


def test_exposure_against_colour_science_srgb_decoding():
    colour = pytest.importorskip("colour")
    px = (np.linspace(0.0, 0.7, 300) * 65535).astype(np.uint16).reshape(10, 10, 3)
    out = render_pixels(px, {"Exposure": 50}, cs.SRGB) / 65535.0
    lin = colour.cctf_decoding(px / 65535.0, function="sRGB")
    expected = colour.cctf_encoding(np.clip(lin * 2.0, 0, 1), function="sRGB")
    np.testing.assert_allclose(out, expected, atol=1.5 / 65535)


@pytest.mark.parametrize("temperature,tint", [(40, 0), (-70, 0), (0, 60), (25, -30)])
def test_white_balance_against_colour_science(temperature, tint):
    colour = pytest.importorskip("colour")
    # independent: CCT→uv (Krystek), uv→xy, Bradford von Kries, BT.2020 matrices from colour-science
    m0 = 1e6 / 6504
    T1 = 1e6 / (m0 + temperature * 0.75)
    uv_d65 = colour.xy_to_UCS_uv(np.array(cs.D65_XY))
    uv = uv_d65 + colour.temperature.CCT_to_uv(T1, method="Krystek 1985") \
        - colour.temperature.CCT_to_uv(6504, method="Krystek 1985")
    u1 = colour.temperature.CCT_to_uv(6514, method="Krystek 1985")
    u0 = colour.temperature.CCT_to_uv(6494, method="Krystek 1985")
    t = (u1 - u0) / np.linalg.norm(u1 - u0)
    normal = np.array([-t[1], t[0]])
    normal = normal if normal[1] > 0 else -normal
    uv = uv - tint / 100 * 0.02 * normal
    target = colour.xy_to_XYZ(colour.UCS_uv_to_xy(uv))
    cat = colour.adaptation.matrix_chromatic_adaptation_VonKries(
        colour.xy_to_XYZ(np.array(cs.D65_XY)), target, transform="Bradford")
    space = colour.RGB_COLOURSPACES["ITU-R BT.2020"]
    M = space.matrix_XYZ_to_RGB @ cat @ space.matrix_RGB_to_XYZ
    x = photo_like(8, 8)
    expected = x.astype(np.float64) @ M.T
    out = render_linear(x, {"Temperature": temperature, "Tint": tint})
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_planck_locus_against_colour_science():
    colour = pytest.importorskip("colour")
    for T in (2000, 4000, 6504, 10000):
        np.testing.assert_allclose(cs.planck_uv(T),
                                   colour.temperature.CCT_to_uv(T, method="Krystek 1985"),
                                   atol=1e-9)


def test_working_space_matrices_against_colour_science():
    colour = pytest.importorskip("colour")
    for ours, theirs in [(cs.SRGB, "sRGB"), (cs.ADOBE_RGB, "Adobe RGB (1998)"), (cs.DISPLAY_P3, "Display P3")]:
        expected = colour.matrix_RGB_to_RGB(colour.RGB_COLOURSPACES[theirs], colour.RGB_COLOURSPACES["ITU-R BT.2020"],
                                            chromatic_adaptation_transform=None)
        np.testing.assert_allclose(ours.matrix_to(cs.WORKING), expected, atol=2e-4)


# ------------------------------------------------------------------ HSL bands


def test_band_weights_sum_to_one_and_peak_at_centres():
    h = np.linspace(0, 360, 3601)
    w = ops.band_weights(h)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-12)
    for i, b in enumerate(catalog().bands):
        assert ops.band_weights(np.array([b.centre]))[0, i] == pytest.approx(1.0)


def test_named_hue_is_strictly_increasing_around_the_circle():
    h = np.linspace(0, 6, 6000, endpoint=False)
    d = np.diff(np.unwrap(np.radians(ops.named_hue(h))))
    assert (d > 0).all()


def test_hsl_op_changes_its_band_far_more_than_others():
    red, blue = band_colour("Red"), band_colour("Blue")
    a = {"SaturationAdjustmentRed": -100}
    assert np.ptp(render_linear(red, a)) < 1e-3  # red turns grey
    np.testing.assert_allclose(render_linear(blue, a), blue, atol=1e-6)


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("bad,msg", [
    ({"Exposur": 10}, "did you mean Exposure"),
    ({"Exposure": "10"}, "expected a number"),
    ({"Exposure": float("nan")}, "finite"),
    ({"Exposure": True}, "expected a number"),
    ({"Contrast": 101}, "outside"),
    ({"Contrast": -100.5}, "outside"),
])
def test_bad_adjustments_are_refused(bad, msg):
    with pytest.raises(PlanError, match=msg):
        render_linear(photo_like(4, 4), bad)


def test_kernel_import_skips_numbas_blas_probe_and_leaves_scipy_usable():
    """Loading the kernel in a fresh single-threaded process does not import scipy.linalg for
    numba's BLAS probe (a start-up cost of `monet apply`), and SciPy works as usual after it."""
    import subprocess
    import sys

    pytest.importorskip("scipy")
    code = ("import sys\n"
            "from monet_cli import _kernel\n"
            "import numba.np.arraymath as a\n"
            "probed = 'scipy.linalg' in sys.modules\n"
            "import scipy.linalg\n"
            "assert abs(scipy.linalg.inv([[2.0]])[0][0] - 0.5) < 1e-12\n"
            "print(probed, a._HAVE_BLAS)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
