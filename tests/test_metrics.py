"""Metrics against independent references: Sharma et al.'s CIEDE2000 test data, colour-science
and scikit-image."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from monet_cli import metrics as mt

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    colour = pytest.importorskip("colour")
skimage_metrics = pytest.importorskip("skimage.metrics")
skimage_data = pytest.importorskip("skimage.data")

# G. Sharma, W. Wu, E. N. Dalal (2005), Table 1: (Lab1, Lab2, ΔE00)
SHARMA = [
    ((50.0000, 2.6772, -79.7751), (50.0000, 0.0000, -82.7485), 2.0425),
    ((50.0000, 3.1571, -77.2803), (50.0000, 0.0000, -82.7485), 2.8615),
    ((50.0000, 2.8361, -74.0200), (50.0000, 0.0000, -82.7485), 3.4412),
    ((50.0000, -1.3802, -84.2814), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, 0.0000, 0.0000), (50.0000, -1.0000, 2.0000), 2.3669),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0009), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0011), 7.2195),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0009, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0011, -2.4900), 4.7461),
    ((50.0000, 2.5000, 0.0000), (50.0000, 0.0000, -2.5000), 4.3065),
    ((50.0000, 2.5000, 0.0000), (73.0000, 25.0000, -18.0000), 27.1492),
    ((50.0000, 2.5000, 0.0000), (61.0000, -5.0000, 29.0000), 22.8977),
    ((50.0000, 2.5000, 0.0000), (56.0000, -27.0000, -3.0000), 31.9030),
    ((50.0000, 2.5000, 0.0000), (58.0000, 24.0000, 15.0000), 19.4535),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.1736, 0.5854), 1.0000),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((63.0109, -31.0961, -5.8663), (62.8187, -29.7946, -4.0864), 1.2630),
    ((61.2901, 3.7196, -5.3901), (61.4292, 2.2480, -4.9620), 1.8731),
    ((35.0831, -44.1164, 3.7933), (35.0232, -40.0716, 1.5901), 1.8645),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((36.4612, 47.8580, 18.3852), (36.2715, 50.5065, 21.2231), 1.4146),
    ((90.8027, -2.0831, 1.4410), (91.1528, -1.6435, 0.0447), 1.4441),
    ((90.9257, -0.5406, -0.9208), (88.6381, -0.8985, -0.7239), 1.5381),
    ((6.7747, -0.2908, -2.4247), (5.8714, -0.0985, -2.2286), 0.6377),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


@pytest.fixture(scope="module")
def photo():
    return skimage_data.astronaut()[96:224, 160:320]  # 128×160 uint8 crop


def test_identical_images(photo):
    assert mt.psnr(photo, photo) == math.inf
    assert mt.mean_delta_e2000(photo, photo) == 0.0
    assert mt.ssim(photo, photo) == pytest.approx(1.0, abs=1e-12)
    assert mt.l1(photo, photo) == 0.0
    c = mt.compare(photo, photo)
    assert c["delta_e"] == 0.0 and c["psnr"] == math.inf and c["ssim"] == pytest.approx(1.0)


@pytest.mark.parametrize("lab1, lab2, expected", SHARMA)
def test_ciede2000_sharma_table(lab1, lab2, expected):
    assert float(mt.delta_e2000(lab1, lab2)) == pytest.approx(expected, abs=5e-5)
    # symmetric
    assert float(mt.delta_e2000(lab2, lab1)) == pytest.approx(expected, abs=5e-5)


def test_ciede2000_matches_colour_science_on_random_pairs():
    rng = np.random.default_rng(7)
    n = 4000
    lab1 = np.column_stack([rng.uniform(0, 100, n), rng.uniform(-110, 110, n), rng.uniform(-110, 110, n)])
    lab2 = lab1 + rng.normal(0, 12, (n, 3))
    # stress the special cases: achromatic colours, hue differences near 180°
    lab1[:200, 1:] = 0.0
    lab2[200:400, 1:] = -lab1[200:400, 1:] + rng.normal(0, 0.01, (200, 2))
    ours = mt.delta_e2000(lab1, lab2)
    ref = colour.delta_E(lab1, lab2, method="CIE 2000")
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9)


def test_srgb_to_lab_matches_colour_science():
    from monet_cli import colorspaces as cs

    rng = np.random.default_rng(1)
    rgb = rng.random((500, 3))
    ours = mt.srgb_to_lab(rgb)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d65 = colour.CCS_ILLUMINANTS["CIE 1931 2 Degree Standard Observer"]["D65"]
        linear = colour.cctf_decoding(rgb, function="sRGB")
        iec = colour.RGB_COLOURSPACES["sRGB"].matrix_RGB_to_XYZ
    # our sRGB matrix is derived from the primaries; IEC 61966-2-1 prints it to 4 decimals
    np.testing.assert_allclose(cs.SRGB.to_xyz, iec, atol=1e-4)
    ref = colour.XYZ_to_Lab(linear @ cs.SRGB.to_xyz.T, illuminant=d65)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    assert mt.srgb_to_lab(np.array([255, 255, 255], np.uint8)) == pytest.approx([100.0, 0.0, 0.0], abs=1e-6)


def test_mean_delta_e_of_a_uniform_shift():
    a = np.full((8, 8, 3), 0.5)
    b = a.copy()
    b[..., 0] = 0.55
    expected = float(mt.delta_e2000(mt.srgb_to_lab(a[0, 0]), mt.srgb_to_lab(b[0, 0])))
    assert mt.mean_delta_e2000(a, b) == pytest.approx(expected)
    assert expected > 1.0


def test_psnr_against_skimage(photo):
    rng = np.random.default_rng(3)
    noisy = np.clip(photo.astype(int) + rng.integers(-9, 10, photo.shape), 0, 255).astype(np.uint8)
    ref = skimage_metrics.peak_signal_noise_ratio(photo, noisy, data_range=255)
    assert mt.psnr(photo, noisy) == pytest.approx(ref, rel=1e-12)
    assert mt.psnr(np.zeros((2, 2, 3)), np.full((2, 2, 3), 0.1)) == pytest.approx(20.0)


def test_ssim_against_skimage(photo):
    rng = np.random.default_rng(4)
    a = photo.astype(np.float64) / 255.0
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    b[:, :40] = np.roll(b[:, :40], 3, axis=0)  # some structure change too
    ref = skimage_metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                                use_sample_covariance=False, data_range=1.0, channel_axis=-1)
    assert mt.ssim(a, b) == pytest.approx(ref, abs=1e-9)
    assert 0.0 < mt.ssim(a, b) < 1.0


def test_l1_and_input_kinds(photo):
    f = photo / 255.0
    assert mt.l1(photo, photo // 2) == pytest.approx(np.mean(np.abs(f - (photo // 2) / 255.0)))
    u16 = (photo.astype(np.uint16) * 257)
    assert mt.psnr(photo, u16) == math.inf  # same values on the [0, 1] scale
    with pytest.raises(ValueError):
        mt.psnr(photo, photo[:-1])
    with pytest.raises(TypeError):
        mt.l1(photo.astype(np.int32), photo.astype(np.int32))


def test_srgb_rendition_clips_and_quantises():
    from monet_cli import colorspaces as cs

    lin = np.array([[[0.18, 0.18, 0.18], [2.0, 2.0, 2.0], [-0.1, 0.0, 0.0]]])
    enc = mt.srgb_rendition(lin, bits=8)
    assert enc[0, 0] == pytest.approx(np.round(cs.SRGB_TRC.encode(0.18) * 255) / 255, abs=1e-9)
    assert np.all(enc[0, 1] == 1.0)  # beyond white: clipped
    assert enc.min() >= 0.0 and enc.max() <= 1.0  # out of gamut: clipped
    assert np.all(np.round(enc * 255) == enc * 255)
    assert mt.srgb_rendition(lin, bits=None)[0, 0, 0] == pytest.approx(cs.SRGB_TRC.encode(0.18), abs=1e-9)
