"""Image-difference metrics (pure numpy): PSNR, CIEDE2000 ΔE, SSIM and L1.

They compare two *display renditions* of a photo — sRGB-encoded values, as a viewer sees
them — not the linear working data: that is what a person judges and what the published
MonetGPT evaluation reports. :func:`srgb_rendition` makes such a rendition from
working-space linear RGB (clip to the sRGB gamut, encode, optionally quantise to 8 bits).

Inputs are ``(H, W, 3)`` arrays: ``uint8`` / ``uint16`` (scaled by their maximum code) or
floats in [0, 1]. Every function returns a Python float (or a float array for the per-pixel
:func:`delta_e2000`). ``monet eval`` and ```monet bench restore``` use this module.

References:

- CIEDE2000: CIE 142-2001; G. Sharma, W. Wu, E. N. Dalal, "The CIEDE2000 color-difference
  formula: implementation notes, supplementary test data, and mathematical observations",
  Color Res. Appl. 30(1), 2005 (the formula below follows their eqs. 1–23).
- SSIM: Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment:
  from error visibility to structural similarity", IEEE TIP 13(4), 2004 (Gaussian window
  σ = 1.5, K1 = 0.01, K2 = 0.03), computed per channel and averaged.
- CIELAB: CIE 15:2004, with the D65 white of sRGB (IEC 61966-2-1).
"""

from __future__ import annotations

import numpy as np

from monet_cli import colorspaces as cs

_SRGB_TO_XYZ = cs.SRGB.to_xyz  # linear sRGB → XYZ (D65, Y of white = 1)
_WHITE_XYZ = cs.xy_to_XYZ(cs.D65_XY)
_WORKING_TO_SRGB = cs.WORKING.matrix_to(cs.SRGB.linear())


def as_unit_float(img) -> np.ndarray:
    """``uint8``/``uint16`` codes → float64 in [0, 1]; floats are returned as float64 unchanged."""
    a = np.asarray(img)
    if a.dtype.kind == "u":
        return a.astype(np.float64) / float(np.iinfo(a.dtype).max)
    if a.dtype.kind == "b" or a.dtype.kind == "i":
        raise TypeError(f"expected unsigned integer or float pixels, got {a.dtype}")
    return a.astype(np.float64)


def _check_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_unit_float(a), as_unit_float(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return a, b


def srgb_rendition(linear_working, bits: int | None = 8) -> np.ndarray:
    """Working-space linear RGB → sRGB-encoded float64 in [0, 1] as a display shows it.

    Converts to linear sRGB (BT.2020 → sRGB matrix, both D65), clips to [0, 1] (the display's
    gamut and range), encodes with the sRGB transfer function and, for ``bits`` = 8 or 16,
    rounds to that many bits (``None``: no quantisation).
    """
    lin = np.asarray(linear_working, dtype=np.float64) @ _WORKING_TO_SRGB.T
    enc = cs.SRGB_TRC.encode(np.clip(lin, 0.0, 1.0))
    if bits is not None:
        q = float(2**bits - 1)
        enc = np.round(enc * q) / q
    return enc


# ----------------------------------------------------------------------------- simple


def l1(a, b) -> float:
    """Mean absolute difference of the two images' values (on the [0, 1] scale)."""
    a, b = _check_pair(a, b)
    return float(np.mean(np.abs(a - b)))


def mse(a, b) -> float:
    a, b = _check_pair(a, b)
    return float(np.mean((a - b) ** 2))


def psnr(a, b, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: ``10·log10(data_range² / MSE)``; ``inf`` if identical.

    ``data_range`` is on the [0, 1] scale the inputs are brought to (integers are divided by
    their maximum code), so the default suits every input kind.

    >>> round(psnr(np.zeros((2, 2, 3)), np.full((2, 2, 3), 0.1)), 3)
    20.0
    """
    m = mse(a, b)
    if m == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / m))


# ----------------------------------------------------------------------------- colour


def srgb_to_lab(srgb) -> np.ndarray:
    """sRGB-encoded values (``uint`` or floats in [0, 1]) → CIELAB (D65 reference white)."""
    enc = as_unit_float(srgb)
    xyz = cs.SRGB_TRC.decode(enc) @ _SRGB_TO_XYZ.T
    return xyz_to_lab(xyz)


def xyz_to_lab(xyz, white=_WHITE_XYZ) -> np.ndarray:
    """CIE XYZ → CIELAB (CIE 15:2004, eq. 8.6–8.10); ``white`` is the reference white's XYZ."""
    t = np.asarray(xyz, dtype=np.float64) / np.asarray(white, dtype=np.float64)
    eps, kappa = 216.0 / 24389.0, 24389.0 / 27.0
    f = np.where(t > eps, np.cbrt(t), (kappa * t + 16.0) / 116.0)
    L = 116.0 * f[..., 1] - 16.0
    a = 500.0 * (f[..., 0] - f[..., 1])
    b = 200.0 * (f[..., 1] - f[..., 2])
    return np.stack([L, a, b], axis=-1)


def delta_e2000(lab1, lab2, kL: float = 1.0, kC: float = 1.0, kH: float = 1.0) -> np.ndarray:
    """CIEDE2000 colour difference of CIELAB arrays ``(..., 3)`` (Sharma et al. 2005).

    Hue angles in degrees; the hue mean and difference follow the paper's case rules for the
    achromatic (``C′ = 0``) and wrap-around cases.

    >>> float(np.round(delta_e2000([50, 2.6772, -79.7751], [50, 0, -82.7485]), 4))
    2.0425
    """
    lab1 = np.asarray(lab1, dtype=np.float64)
    lab2 = np.asarray(lab2, dtype=np.float64)
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]

    c_bar = 0.5 * (np.hypot(a1, b1) + np.hypot(a2, b2))
    c7 = c_bar**7
    g = 0.5 * (1.0 - np.sqrt(c7 / (c7 + 25.0**7)))
    a1p, a2p = (1.0 + g) * a1, (1.0 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360.0
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360.0
    h1p = np.where((a1p == 0) & (b1 == 0), 0.0, h1p)
    h2p = np.where((a2p == 0) & (b2 == 0), 0.0, h2p)

    dLp = L2 - L1
    dCp = c2p - c1p
    cprod = c1p * c2p
    dh = h2p - h1p
    dhp = np.where(dh > 180.0, dh - 360.0, np.where(dh < -180.0, dh + 360.0, dh))
    dhp = np.where(cprod == 0, 0.0, dhp)
    dHp = 2.0 * np.sqrt(cprod) * np.sin(np.radians(dhp) / 2.0)

    Lbp = 0.5 * (L1 + L2)
    Cbp = 0.5 * (c1p + c2p)
    hsum = h1p + h2p
    hbp = np.where(np.abs(h1p - h2p) <= 180.0, hsum / 2.0,
                   np.where(hsum < 360.0, (hsum + 360.0) / 2.0, (hsum - 360.0) / 2.0))
    hbp = np.where(cprod == 0, hsum, hbp)

    T = (1.0 - 0.17 * np.cos(np.radians(hbp - 30.0)) + 0.24 * np.cos(np.radians(2.0 * hbp))
         + 0.32 * np.cos(np.radians(3.0 * hbp + 6.0)) - 0.20 * np.cos(np.radians(4.0 * hbp - 63.0)))
    d_theta = 30.0 * np.exp(-(((hbp - 275.0) / 25.0) ** 2))
    cb7 = Cbp**7
    Rc = 2.0 * np.sqrt(cb7 / (cb7 + 25.0**7))
    Sl = 1.0 + 0.015 * (Lbp - 50.0) ** 2 / np.sqrt(20.0 + (Lbp - 50.0) ** 2)
    Sc = 1.0 + 0.045 * Cbp
    Sh = 1.0 + 0.015 * Cbp * T
    Rt = -np.sin(np.radians(2.0 * d_theta)) * Rc

    tl, tc, th = dLp / (kL * Sl), dCp / (kC * Sc), dHp / (kH * Sh)
    return np.sqrt(np.maximum(tl * tl + tc * tc + th * th + Rt * tc * th, 0.0))


def mean_delta_e2000(a, b) -> float:
    """Mean CIEDE2000 over all pixels of two sRGB-encoded images (0 if identical)."""
    a, b = _check_pair(a, b)
    return float(np.mean(delta_e2000(srgb_to_lab(a), srgb_to_lab(b))))


# ----------------------------------------------------------------------------- SSIM

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # window radius int(3.5·1.5 + 0.5) = 5: the 11×11 window of Wang et al.
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _gaussian_kernel(sigma: float, truncate: float) -> np.ndarray:
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _filter_axis(img: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """Correlate along ``axis`` with a symmetric kernel, edges mirrored (``d c b a | a b c d``)."""
    r = kernel.size // 2
    pad = [(0, 0)] * img.ndim
    pad[axis] = (r, r)
    p = np.pad(img, pad, mode="symmetric")
    n = img.shape[axis]
    out = np.zeros_like(img)
    for i, w in enumerate(kernel):
        out += w * np.take(p, np.arange(i, i + n), axis=axis)
    return out


def _gaussian_blur(img: np.ndarray) -> np.ndarray:
    k = _gaussian_kernel(SSIM_SIGMA, SSIM_TRUNCATE)
    return _filter_axis(_filter_axis(img, k, 0), k, 1)


def ssim(a, b, data_range: float = 1.0) -> float:
    """Mean structural similarity (Wang et al. 2004), per channel then averaged; 1 if identical.

    Local statistics use an 11×11 Gaussian window (σ = 1.5) with mirrored edges and
    population (not sample) covariances; the mean is taken over the pixels at least 5 from
    the border. With these choices it equals ``skimage.metrics.structural_similarity(a, b,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=…,
    channel_axis=-1)``.
    """
    a, b = _check_pair(a, b)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    pad = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    if min(a.shape[0], a.shape[1]) <= 2 * pad:
        raise ValueError(f"images of {a.shape[0]}×{a.shape[1]} are too small for SSIM (need > {2 * pad} px)")
    vals = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch], b[..., ch]
        ux, uy = _gaussian_blur(x), _gaussian_blur(y)
        vx = _gaussian_blur(x * x) - ux * ux
        vy = _gaussian_blur(y * y) - uy * uy
        vxy = _gaussian_blur(x * y) - ux * uy
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        vals.append(s[pad:-pad, pad:-pad].mean())
    return float(np.mean(vals))


# ----------------------------------------------------------------------------- all


def compare(a, b) -> dict[str, float]:
    """All four metrics of rendition ``b`` against reference ``a``:
    ``{"delta_e": …, "psnr": …, "ssim": …, "l1": …}``."""
    a, b = _check_pair(a, b)
    return {"delta_e": mean_delta_e2000(a, b), "psnr": psnr(a, b), "ssim": ssim(a, b), "l1": l1(a, b)}
