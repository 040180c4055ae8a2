"""The C render kernel (_ckernel): built and cached, equal to numba's kernel, chosen by MONET_KERNEL."""

from __future__ import annotations

import numpy as np
import pytest

from monet_cli import _ckernel, _kernel, render
from monet_cli import colorspaces as cs
from monet_cli.catalog import catalog
from monet_cli.errors import InputError

try:
    _ckernel.load()
except _ckernel.KernelUnavailable as e:  # no C compiler here: the numba kernel is used
    pytest.skip(f"C kernel unavailable: {e}", allow_module_level=True)


def _run(monkeypatch, name, prog, src, out):
    monkeypatch.setenv("MONET_KERNEL", name)
    render.kernel.cache_clear()
    try:
        assert render.kernel()[0] == name
        return render.run_program(prog, src, cs.SRGB, cs.SRGB, out).astype(np.float64)
    finally:
        render.kernel.cache_clear()


@pytest.mark.parametrize("seed", range(6))
def test_c_kernel_equals_numba_kernel(monkeypatch, seed):
    rng = np.random.default_rng(seed)
    ops = list(catalog().ops)
    adj = {o: float(rng.integers(-100, 101)) for o in rng.choice(ops, size=int(rng.integers(1, 34)), replace=False)}
    prog = render.compile_program(render.validate_values(adj))
    for dt in (np.uint8, np.uint16, np.float32):
        src = (rng.random((67, 45, 3), dtype=np.float32) * 1.2 if dt == np.float32
               else rng.integers(0, np.iinfo(dt).max + 1, (67, 45, 3)).astype(dt))
        for out in (np.uint8, np.uint16, np.float32):
            c = _run(monkeypatch, "c", prog, src, out)
            n = _run(monkeypatch, "numba", prog, src, out)
            tol = 1e-4 if out == np.float32 else 1.0  # float rounding: at most one code apart
            assert np.abs(c - n).max() <= tol, (adj, dt, out)
            if out != np.float32:
                assert np.mean(c != n) < 0.01


def test_threads_split_rows_exactly(monkeypatch):
    rng = np.random.default_rng(1)
    prog = render.compile_program(render.validate_values({"Exposure": 20, "Contrast": 30, "HueAdjustmentRed": 40}))
    src = rng.integers(0, 65536, (301, 17, 3)).astype(np.uint16)
    monkeypatch.setenv("MONET_THREADS", "1")
    one = _run(monkeypatch, "c", prog, src, np.uint16)
    monkeypatch.setenv("MONET_THREADS", "4")
    four = _run(monkeypatch, "c", prog, src, np.uint16)
    assert np.array_equal(one, four)


def test_library_is_cached_under_a_hashed_name(tmp_path, monkeypatch):
    monkeypatch.setenv("MONET_CACHE_DIR", str(tmp_path))
    path = _ckernel.build()
    assert path.parent == tmp_path and path.name.startswith("render-kernel-") and path.is_file()
    mtime = path.stat().st_mtime_ns
    assert _ckernel.build() == path and path.stat().st_mtime_ns == mtime  # not rebuilt
    assert not list(tmp_path.glob(".*.tmp"))


def test_no_compiler_falls_back_to_numba_or_fails_when_c_is_required(monkeypatch, tmp_path):
    monkeypatch.setenv("MONET_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "no-such-compiler-here")
    _ckernel.load.cache_clear()
    try:
        with pytest.raises(_ckernel.KernelUnavailable, match="no C compiler"):
            _ckernel.build()
        monkeypatch.setenv("MONET_KERNEL", "auto")
        render.kernel.cache_clear()
        assert render.kernel()[0] == "numba"
        monkeypatch.setenv("MONET_KERNEL", "c")
        render.kernel.cache_clear()
        with pytest.raises(InputError, match="MONET_KERNEL=c: no C compiler"):
            render.kernel()
        monkeypatch.setenv("MONET_KERNEL", "fast")
        render.kernel.cache_clear()
        with pytest.raises(InputError, match="expected one of auto, c, numba"):
            render.kernel()
    finally:
        _ckernel.load.cache_clear()
        render.kernel.cache_clear()


@pytest.mark.skipif(not _ckernel.TUNE, reason="no tuned x86-64 build on this machine")
def test_a_compiler_refusing_the_tuned_flags_gets_the_plain_build_with_equal_results(monkeypatch, tmp_path):
    import shutil
    import stat

    real = shutil.which("cc")
    if real is None:
        pytest.skip("no cc on PATH")
    log = tmp_path / "calls"
    fussy = tmp_path / "fussy-cc"  # an old compiler: neither -mtune=native nor target_clones
    fussy.write_text(f'#!/bin/sh\necho "$*" >> {log}\n'
                     'case " $* " in *" -mtune=native "*) echo "unknown option -mtune=native" >&2; exit 1;; esac\n'
                     f'exec {real} "$@"\n')
    fussy.chmod(fussy.stat().st_mode | stat.S_IEXEC)
    rng = np.random.default_rng(7)
    prog = render.compile_program(render.validate_values({"Exposure": 12, "Contrast": -30, "Blacks": 20,
                                                          "Temperature": 25, "HueAdjustmentOrange": 40,
                                                          "SaturationAdjustmentBlue": -50}))
    src = rng.integers(0, 65536, (93, 301, 3)).astype(np.uint16)  # rows longer than a block
    tuned = _run(monkeypatch, "c", prog, src, np.uint16)
    monkeypatch.setenv("MONET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(fussy))
    _ckernel.load.cache_clear()
    try:
        plain = _run(monkeypatch, "c", prog, src, np.uint16)
        assert _ckernel.simd() == "single build"
    finally:
        _ckernel.load.cache_clear()
    calls = log.read_text().splitlines()
    assert len(calls) == 2 and "-mtune=native" in calls[0] and "-DMONET_NO_CLONES" in calls[1]
    assert len(list((tmp_path / "cache").glob("render-kernel-*.so"))) == 1
    assert np.array_equal(tuned, plain)  # the clones and the plain build compute the same codes


def test_bad_arrays_are_refused_before_the_c_call():
    src = np.zeros((4, 4, 3), np.uint16)
    eye = np.eye(3, dtype=np.float32)
    luma = cs.LUMA.astype(np.float32)
    empty = np.zeros(0, np.float32)
    dec = np.zeros(256, np.float32)
    src[0, 0, 0] = 300  # beyond a 256-entry decode table
    with pytest.raises(ValueError, match="beyond its decode table"):
        _ckernel.render_kernel(src, np.zeros((4, 4, 3), np.float32), dec, eye, luma, False, empty, empty,
                               False, eye, False, np.zeros((1, 4), np.float32), eye, empty, 1.0)
    with pytest.raises(ValueError, match="must both be"):
        _ckernel.render_kernel(np.zeros((4, 4, 3), np.float32), np.zeros((4, 5, 3), np.float32), empty, eye, luma,
                               False, empty, empty, False, eye, False, np.zeros((1, 4), np.float32), eye, empty, 1.0)
    assert _kernel.render_kernel is not _ckernel.render_kernel


def test_doctor_says_which_kernel_and_why_not_c(monkeypatch, tmp_path):
    from monet_cli.doctor import render_kernel_info

    monkeypatch.setenv("MONET_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("MONET_KERNEL", "auto")
    _ckernel.load.cache_clear()
    render.kernel.cache_clear()
    try:
        info = render_kernel_info()
        assert info["kernel"] == "c" and info["fallback_reason"] is None
        assert info["library"].startswith(str(tmp_path)) and info["threads"] >= 1
        import platform

        expect = {"avx2", "baseline x86-64"} if _ckernel.TUNE and platform.system() == "Linux" else {"single build"}
        assert info["simd"] in expect
        monkeypatch.setenv("CC", "no-such-compiler-here")
        _ckernel.load.cache_clear()
        render.kernel.cache_clear()
        info = render_kernel_info()
        assert info["kernel"] == "numba" and "no C compiler" in info["fallback_reason"]
    finally:
        _ckernel.load.cache_clear()
        render.kernel.cache_clear()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_c_area_downscale_is_numbas_to_the_bit(dtype, monkeypatch):
    from monet_cli import _area
    from monet_cli import measure as ms

    rng = np.random.default_rng(3)
    src = (rng.random((301, 457, 3)) * 1.3).astype(dtype) if np.dtype(dtype).kind == "f" else \
        rng.integers(0, np.iinfo(dtype).max + 1, (301, 457, 3)).astype(dtype)
    luts = [None] + ([render.decode_table(cs.SRGB.trc, 8 * np.dtype(dtype).itemsize)] if dtype in (np.uint8, np.uint16)
                     else [])
    for lut in luts:
        for h, w in ((97, 131), (301, 1), (1, 457), (150, 228)):
            got = {}
            for name in ("c", "numba"):
                monkeypatch.setenv("MONET_KERNEL", name)
                render.kernel.cache_clear()
                try:
                    got[name] = _area.box_downscale(src, h, w, lut)
                finally:
                    render.kernel.cache_clear()
            assert got["c"].dtype == np.float64 and got["c"].shape == (h, w, 3)
            assert np.array_equal(got["c"], got["numba"]), (dtype, lut is not None, h, w)
            lin = (lut[src] if lut is not None else src).astype(np.float64)
            ref = ms.area_integrate(ms.area_integrate(lin, np.arange(h + 1) * (301 / h), 0),
                                    np.arange(w + 1) * (457 / w), 1)
            np.testing.assert_allclose(got["c"], ref, rtol=1e-12, atol=1e-9)
    with pytest.raises(ValueError, match="beyond its decode table"):
        _ckernel.box_kernel(np.full((4, 4, 3), 300, np.uint16), np.zeros(256, np.float32),
                            *_area._axis_weights(4, 2), *_area._axis_weights(4, 2), 2, 2, 0.25)
