"""RGB colour spaces, transfer functions and chromatic adaptation (pure numpy).

monet renders in **scene-linear Rec. ITU-R BT.2020 RGB, D65 white** (the working space):
wide enough to hold every colour of sRGB, Display P3, Adobe RGB and nearly all of
ProPhoto without negative values, and with D65 white like the common output spaces.

Transfer functions are ICC parametric curves (ICC.1:2010, 10.18, function type 4)::

    Y = (a*X + b)**g      for X >= d
    Y = c*X               for X <  d

with ``X`` the encoded value and ``Y`` linear light, both in [0, 1]. Odd (sign-mirrored)
extension handles negative values, so nothing is clipped between operations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# CIE 1931 xy of the standard illuminants (CIE 15:2004, table T.3 / ICC.1).
D65_XY = (0.3127, 0.3290)
D50_XY = (0.3457, 0.3585)
# ICC's PCS white (ICC.1:2010, 7.2.16), XYZ with Y = 1.
D50_ICC_XYZ = np.array([0.9642, 1.0, 0.8249])

BRADFORD = np.array(
    [[0.8951, 0.2664, -0.1614],
     [-0.7502, 1.7135, 0.0367],
     [0.0389, -0.0685, 1.0296]]
)  # Lam (1985); as used by ICC.1 Annex E.


def xy_to_XYZ(xy, Y: float = 1.0) -> np.ndarray:
    """CIE xy chromaticity to XYZ with the given luminance ``Y``."""
    x, y = float(xy[0]), float(xy[1])
    return np.array([x * Y / y, Y, (1.0 - x - y) * Y / y])


def XYZ_to_xy(XYZ) -> tuple[float, float]:
    X, Y, Z = (float(v) for v in XYZ)
    s = X + Y + Z
    return (X / s, Y / s)


def uv1960_to_xy(u: float, v: float) -> tuple[float, float]:
    """CIE 1960 UCS (u, v) to CIE 1931 xy (CIE 15:2004, eq. 8.3 inverted)."""
    d = 2.0 * u - 8.0 * v + 4.0
    return (3.0 * u / d, 2.0 * v / d)


def xy_to_uv1960(xy) -> tuple[float, float]:
    x, y = float(xy[0]), float(xy[1])
    d = -2.0 * x + 12.0 * y + 3.0
    return (4.0 * x / d, 6.0 * y / d)


def planck_uv(T: float) -> tuple[float, float]:
    """CIE 1960 (u, v) of a black body at ``T`` kelvin, 1000 K ≤ T ≤ 15000 K.

    Krystek's rational approximation (M. Krystek, "An algorithm to calculate correlated
    colour temperature", Color Res. Appl. 10(1), 1985), within 1e-5 of Planck's law.

    >>> [round(c, 4) for c in planck_uv(6504)]
    [0.2005, 0.3103]
    """
    u = (0.860117757 + 1.54118254e-4 * T + 1.28641212e-7 * T * T) / (
        1.0 + 8.42420235e-4 * T + 7.08145163e-7 * T * T)
    v = (0.317398726 + 4.22806245e-5 * T + 4.20481691e-8 * T * T) / (
        1.0 - 2.89741816e-5 * T + 1.61456053e-7 * T * T)
    return (u, v)


def chromatic_adaptation_matrix(src_XYZ, dst_XYZ, cone=BRADFORD) -> np.ndarray:
    """von Kries adaptation in the ``cone`` space (Bradford by default).

    ``M = cone⁻¹ · diag(cone·dst / cone·src) · cone`` maps XYZ seen under white ``src``
    to the corresponding XYZ under white ``dst`` (Lam 1985; ICC.1:2010 Annex E).
    """
    src = cone @ np.asarray(src_XYZ, float)
    dst = cone @ np.asarray(dst_XYZ, float)
    return np.linalg.inv(cone) @ np.diag(dst / src) @ cone


def rgb_to_xyz_matrix(primaries, white) -> np.ndarray:
    """The 3×3 matrix from linear RGB to XYZ for xy ``primaries`` (3×2) and xy ``white``.

    Standard derivation (SMPTE RP 177-1993): columns are the primaries' XYZ scaled so that
    RGB (1, 1, 1) maps to the white with Y = 1.
    """
    P = np.stack([xy_to_XYZ(p) for p in primaries], axis=1)
    S = np.linalg.solve(P, xy_to_XYZ(white))
    return P * S


@dataclass(frozen=True)
class TransferFunction:
    """An ICC parametric curve (function type 4), or a sampled table (``curv`` with n > 1)."""

    g: float = 1.0
    a: float = 1.0
    b: float = 0.0
    c: float = 0.0
    d: float = 0.0
    table: tuple[float, ...] | None = None

    @property
    def is_linear(self) -> bool:
        return self.table is None and self.g == 1.0 and self.a == 1.0 and self.b == 0.0 and self.d == 0.0

    def decode(self, x: np.ndarray) -> np.ndarray:
        """Encoded value → linear light (float64 in, float64 out; odd extension below 0)."""
        x = np.asarray(x, dtype=np.float64)
        s, ax = np.where(x < 0, -1.0, 1.0), np.abs(x)
        if self.table is not None:
            t = np.asarray(self.table)
            grid = np.linspace(0.0, 1.0, t.size)
            y = np.interp(ax, grid, t)
            # continue beyond 1 with the last segment's slope
            slope = (t[-1] - t[-2]) * (t.size - 1)
            y = np.where(ax > 1.0, t[-1] + (ax - 1.0) * slope, y)
            return s * y
        with np.errstate(invalid="ignore"):
            hi = np.power(np.maximum(self.a * ax + self.b, 0.0), self.g)
        return s * np.where(ax >= self.d, hi, self.c * ax)

    def encode(self, y: np.ndarray) -> np.ndarray:
        """Linear light → encoded value, the exact inverse of :meth:`decode`."""
        y = np.asarray(y, dtype=np.float64)
        s, ay = np.where(y < 0, -1.0, 1.0), np.abs(y)
        if self.table is not None:
            t = np.asarray(self.table)
            grid = np.linspace(0.0, 1.0, t.size)
            return s * np.interp(ay, t, grid)  # tables are monotone (checked on read)
        yd = self.c * self.d if self.d > 0 else 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            hi = (np.power(ay, 1.0 / self.g) - self.b) / self.a
            lo = ay / self.c if self.c else np.zeros_like(ay)
        return s * np.where(ay >= yd, hi, lo)


SRGB_TRC = TransferFunction(g=2.4, a=1 / 1.055, b=0.055 / 1.055, c=1 / 12.92, d=0.04045)  # IEC 61966-2-1
ADOBE_TRC = TransferFunction(g=563 / 256)  # Adobe RGB (1998) spec 4.3.1.2: 2.19921875
PROPHOTO_TRC = TransferFunction(g=1.8, c=1 / 16, d=1 / 32)  # ROMM RGB, ISO 22028-2 (Et = 1/512)
REC2020_TRC = TransferFunction(g=1 / 0.45, a=1 / 1.09929682680944, b=0.09929682680944 / 1.09929682680944,
                               c=1 / 4.5, d=0.081242858298635)  # ITU-R BT.2020, 12-bit constants
LINEAR_TRC = TransferFunction()


@dataclass(frozen=True)
class ColorSpace:
    """An RGB space: xy primaries, xy white and a transfer function."""

    name: str
    primaries: tuple[tuple[float, float], ...]
    white: tuple[float, float]
    trc: TransferFunction = field(default=LINEAR_TRC)
    description: str = ""

    @property
    def to_xyz(self) -> np.ndarray:
        """Linear RGB → XYZ under the space's own white (Y of white = 1)."""
        return rgb_to_xyz_matrix(self.primaries, self.white)

    def matrix_to(self, other: "ColorSpace") -> np.ndarray:
        """Linear RGB of this space → linear RGB of ``other``, Bradford-adapting the white."""
        cat = chromatic_adaptation_matrix(xy_to_XYZ(self.white), xy_to_XYZ(other.white))
        return np.linalg.inv(other.to_xyz) @ cat @ self.to_xyz

    def linear(self) -> "ColorSpace":
        return ColorSpace(f"linear-{self.name}", self.primaries, self.white, LINEAR_TRC,
                          f"{self.description}, linear")


SRGB = ColorSpace("srgb", ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)), D65_XY, SRGB_TRC, "sRGB IEC61966-2.1")
DISPLAY_P3 = ColorSpace("display-p3", ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060)), D65_XY, SRGB_TRC,
                        "Display P3")
ADOBE_RGB = ColorSpace("adobe-rgb", ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06)), D65_XY, ADOBE_TRC,
                       "Adobe RGB (1998)")
PROPHOTO = ColorSpace("prophoto", ((0.734699, 0.265301), (0.159597, 0.840403), (0.036598, 0.000105)), D50_XY,
                      PROPHOTO_TRC, "ProPhoto RGB (ROMM)")
REC2020 = ColorSpace("rec2020", ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046)), D65_XY, REC2020_TRC,
                     "ITU-R BT.2020")
WORKING = REC2020.linear()

NAMED: dict[str, ColorSpace] = {cs.name: cs for cs in (SRGB, DISPLAY_P3, ADOBE_RGB, PROPHOTO, REC2020)}
NAMED.update({f"linear-{cs.name}": cs.linear() for cs in (SRGB, PROPHOTO, REC2020)})

# Luminance Y of working-space RGB (the middle row of its RGB→XYZ matrix).
LUMA = WORKING.to_xyz[1].copy()
MIDDLE_GREY = 0.18


def get(name: str) -> ColorSpace:
    """A named colour space (``srgb``, ``display-p3``, ``adobe-rgb``, ``prophoto``, ``rec2020``,
    ``linear-srgb``, ``linear-prophoto``, ``linear-rec2020``)."""
    try:
        return NAMED[name.lower()]
    except KeyError:
        raise ValueError(f"unknown colour space {name!r}; known: {', '.join(NAMED)}") from None
