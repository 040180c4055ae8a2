"""The render kernel in C (``_ckernel.c``): compiled once with the system C compiler, cached,
loaded with ctypes, run on bands of rows in threads. The same library holds the planner's area
downscale (:func:`box_kernel`, used by :mod:`monet_cli._area`).

Why: a ``monet apply`` process spent about 0.4 s importing numba and loading its cached
kernel, a third of its whole time on a 24 MP photo (benchmarks/apply.py). ctypes and a
shared library load in a few milliseconds, and the C kernel is as fast per pixel. The numba
kernel (:mod:`monet_cli._kernel`) stays: it is used where no C compiler is found or the build
fails, and ``MONET_KERNEL=numba`` chooses it (``MONET_KERNEL=c`` makes the C kernel
mandatory: an error if it cannot be built).

The library is built into the user's cache (``$MONET_CACHE_DIR``, else
``$XDG_CACHE_HOME/monet``, else ``~/.cache/monet``) under a name hashed from the source, the
flags, the compiler and the machine, written to a temporary file and renamed into place, so
processes building at once never see a half-written file. ``$CC`` chooses the compiler
(default ``cc``). No ``-march=native``: a cache on a shared home may serve other CPUs. On
x86-64 the kernel carries a baseline and an AVX2 version (the loader picks one per CPU) and is
tuned with ``-mtune=native``, which changes speed only, never results.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from monet_cli import _tables as t

ABI = 1
SOURCE = Path(__file__).with_name("_ckernel.c")
# the table layout is passed from _tables.py, the one place it is defined
FLAGS = ("-O3", "-std=c99", "-fPIC", "-shared", "-fno-math-errno", "-fno-trapping-math",
         f"-DMANT_BITS={t.MANT_BITS}", f"-DLOG_MIN=({t.LOG_MIN})", f"-DHUE_STEPS={t.HUE_STEPS}",
         f"-DCHROMA_FULL={t.CHROMA_FULL!r}")
# x86-64: tuned for this CPU's costs (gathers, on CPUs where they pay; the instructions stay
# those every x86-64 runs, AVX2 only in the clone the loader picks where the CPU has it). If
# the compiler refuses these, the library is built with FLAGS alone.
TUNE = ("-mtune=native",) if platform.machine().lower() in ("x86_64", "amd64") else ()
PLAIN = ("-DMONET_NO_CLONES",)
MIN_ROWS = 16  # rows per thread at least: small images (planner proxies) run in one call


class KernelUnavailable(RuntimeError):
    """The C kernel cannot be built or loaded here (the reason is the message)."""


def cache_dir() -> Path:
    if os.environ.get("MONET_CACHE_DIR"):
        return Path(os.environ["MONET_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "monet"


def _compiler() -> str:
    cc = os.environ.get("CC") or "cc"
    path = shutil.which(cc)
    if path is None:
        raise KernelUnavailable(f"no C compiler ({cc!r} is not on PATH)")
    return path


def library_path(cc: str | None = None) -> Path:
    """Where the library for this source, flags, compiler and machine is cached."""
    cc = cc or _compiler()
    h = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(FLAGS + TUNE).encode(), cc.encode(), platform.machine().encode(),
                 str(ABI).encode()):
        h.update(part)
        h.update(b"\0")
    return cache_dir() / f"render-kernel-{h.hexdigest()[:16]}.so"


def build(force: bool = False) -> Path:
    """Compile the kernel into the cache (unless there already) and return its path."""
    cc = _compiler()
    path = library_path(cc)
    if path.is_file() and not force:
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise KernelUnavailable(f"cannot create the kernel cache {path.parent}: {e.strerror}") from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        r = None
        for flags in ((*FLAGS, *TUNE), (*FLAGS, *PLAIN)) if TUNE else (FLAGS,):
            r = subprocess.run([cc, *flags, "-o", str(tmp), str(SOURCE), "-lm"], capture_output=True, text=True,
                               timeout=120)
            if r.returncode == 0:
                break
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["no message"])[-1]
            raise KernelUnavailable(f"{Path(cc).name} failed to build the render kernel: {last}")
        os.replace(tmp, path)
    except (OSError, subprocess.SubprocessError) as e:
        raise KernelUnavailable(f"cannot build the render kernel: {e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


_P = ctypes.c_void_p
_I = ctypes.c_int64
_ARGTYPES = [_P, _P, _I, _I, _I,  # src, dst, y0, y1, W
             _P, _I, _P, _P,  # decode_lut, n_decode, m_in, luma
             ctypes.c_int, _P, _P, _I,  # tone_on, tone_ratio, tone_pedestal, n_tone_points
             ctypes.c_int, _P, ctypes.c_int, _P, _I,  # color_on, m_col, hsl_on, hsl_lut, n_hsl
             _P, _P, _I, ctypes.c_float]  # m_out, encode_lut, n_encode_points, out_max


@lru_cache(maxsize=1)
def load():
    """The kernel's C function (built first if needed); KernelUnavailable if it cannot be."""
    path = build()
    try:
        lib = ctypes.CDLL(str(path))
        if lib.monet_kernel_abi() != ABI:
            raise KernelUnavailable(f"{path}: a render kernel of another version")
    except OSError as e:  # a damaged cache file: rebuild once
        try:
            path = build(force=True)
            lib = ctypes.CDLL(str(path))
        except OSError:
            raise KernelUnavailable(f"cannot load the render kernel {path}: {e}") from None
    fn = lib.monet_render_rows
    fn.argtypes = _ARGTYPES
    fn.restype = ctypes.c_int
    fn.simd = SIMD.get(lib.monet_kernel_simd(), "unknown")
    box = lib.monet_box_rows
    box.argtypes = [_P, ctypes.c_int, _I, _P, _P, _P, _P, _P, _P, _P, _P, _I, _I, _I, ctypes.c_double, _P]
    box.restype = ctypes.c_int
    fn.box = box
    return fn


SIMD = {2: "avx2", 1: "baseline x86-64", 0: "single build"}


def simd() -> str:
    """Which build of the kernel this CPU runs: ``avx2``, ``baseline x86-64`` (a CPU without
    AVX2) or ``single build`` (no CPU dispatch: not x86-64 glibc, or a compiler without it)."""
    return load().simd


def threads() -> int:
    """Threads per render: ``$MONET_THREADS``, else ``$NUMBA_NUM_THREADS``, else the CPUs this
    process may run on."""
    for var in ("MONET_THREADS", "NUMBA_NUM_THREADS"):
        v = os.environ.get(var, "").strip()
        if v.isdigit() and int(v) > 0:
            return int(v)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def _check(name: str, a: np.ndarray, dtype, ndim: int | None = None) -> None:
    if a.dtype != dtype or not a.flags.c_contiguous or (ndim is not None and a.ndim != ndim):
        raise ValueError(f"{name}: expected a C-contiguous {np.dtype(dtype).name} array")


def render_kernel(src, dst, decode_lut, m_in, luma, tone_on, tone_ratio, tone_pedestal,
                  color_on, m_col, hsl_on, hsl_lut, m_out, encode_lut, out_max) -> None:
    """Same arguments and result as :func:`monet_cli._kernel.render_kernel` (see there)."""
    fn = load()
    H, W = src.shape[0], src.shape[1]
    use_decode = decode_lut.shape[0] > 0
    use_encode = encode_lut.shape[0] > 0
    _check("src", src, np.uint16 if use_decode else np.float32, 3)
    _check("dst", dst, np.uint16 if use_encode else np.float32, 3)
    if src.shape != dst.shape or src.shape[2] != 3:
        raise ValueError(f"src {src.shape} and dst {dst.shape} must both be (H, W, 3)")
    f32 = [np.ascontiguousarray(a, dtype=np.float32) for a in
           (decode_lut, m_in, luma, tone_ratio, tone_pedestal, m_col, hsl_lut, m_out, encode_lut)]
    dec, mi, lu, tr, tp, mc, hl, mo, enc = f32
    if use_decode and dec.shape[0] < 65536 and int(src.max(initial=0)) >= dec.shape[0]:
        raise ValueError("src holds codes beyond its decode table")
    if tone_on and (tr.shape[0] < 2 or tp.shape != tr.shape):
        raise ValueError("tone tables must have at least two points and the same length")
    if hsl_on and (hl.ndim != 2 or hl.shape[1] != 4 or hl.shape[0] < 2):
        raise ValueError("hsl_lut must be (n, 4)")
    if use_encode and enc.shape[0] < 2:
        raise ValueError("encode_lut must have at least two points")
    fixed = (_ptr(dec), dec.shape[0], _ptr(mi), _ptr(lu), int(bool(tone_on)), _ptr(tr), _ptr(tp), tr.shape[0],
             int(bool(color_on)), _ptr(mc), int(bool(hsl_on)), _ptr(hl), hl.shape[0], _ptr(mo), _ptr(enc),
             enc.shape[0] if use_encode else 0, float(out_max))

    def rows(y0: int, y1: int) -> None:
        fn(_ptr(src), _ptr(dst), y0, y1, W, *fixed)

    in_bands(H, rows)


def in_bands(H: int, rows) -> None:
    """Call ``rows(y0, y1)`` over bands covering ``[0, H)``, in :func:`threads` threads (the
    calling one among them); the first error is raised here once all have stopped."""
    n = max(1, min(threads(), H // MIN_ROWS))
    if n == 1:
        rows(0, H)
        return
    # bands of rows, more than threads so that an uneven band does not hold up the rest
    bounds = np.linspace(0, H, 4 * n + 1).astype(int)
    todo = list(zip(bounds[:-1], bounds[1:]))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        while True:
            with lock:
                if not todo or errors:
                    return
                y0, y1 = todo.pop()
            try:
                rows(int(y0), int(y1))
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller
                with lock:
                    errors.append(e)
                return

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(n - 1)]
    for t in pool:
        t.start()
    worker()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]


_BOX_KINDS = {np.dtype(np.uint8): 0, np.dtype(np.uint16): 1, np.dtype(np.float32): 2, np.dtype(np.float64): 3}


def box_kernel(src, lut, ry0, rw0, rw1, cx0, cw0, cw1, h: int, w: int, scale: float) -> np.ndarray:
    """The area downscale of :func:`monet_cli._area.box_downscale` in C: same arguments
    (``lut`` None or float32 for integer ``src``), same float64 result, output rows split
    between threads."""
    box = load().box
    if src.dtype not in _BOX_KINDS or src.ndim != 3 or src.shape[2] != 3 or not src.flags.c_contiguous:
        raise ValueError("src: expected a C-contiguous (H, W, 3) uint8, uint16, float32 or float64 array")
    H, W = src.shape[0], src.shape[1]
    if lut is not None:
        lut = np.ascontiguousarray(lut, dtype=np.float32)
        if src.dtype.kind != "u" or (lut.shape[0] < 2 ** (8 * src.dtype.itemsize) and
                                     int(src.max(initial=0)) >= lut.shape[0]):
            raise ValueError("src holds codes beyond its decode table")
    i64 = [np.ascontiguousarray(a, dtype=np.int64) for a in (ry0, cx0)]
    f64 = [np.ascontiguousarray(a, dtype=np.float64) for a in (rw0, rw1, cw0, cw1)]
    (ry, cx), (r0, r1, c0, c1) = i64, f64
    if any(a.shape != (H,) for a in (ry, r0, r1)) or any(a.shape != (W,) for a in (cx, c0, c1)):
        raise ValueError("axis weights must match the image's height and width")
    if H and (ry.min() < 0 or ry.max() >= h) or W and (cx.min() < 0 or cx.max() >= w):
        raise ValueError("axis weights point outside the output")
    starts = np.zeros(h + 1, np.int64)
    np.cumsum(np.bincount(ry, minlength=h)[:h], out=starts[1:])
    out = np.zeros((h, w, 3), np.float64)
    kind = _BOX_KINDS[src.dtype]
    lut_p = _ptr(lut) if lut is not None else None

    def rows(j0: int, j1: int) -> None:
        box(_ptr(src), kind, W, lut_p, _ptr(ry), _ptr(r0), _ptr(r1), _ptr(cx), _ptr(c0), _ptr(c1), _ptr(starts),
            j0, j1, w, float(scale), _ptr(out))

    in_bands(h, rows)
    return out
