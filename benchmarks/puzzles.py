"""Benchmark `monet puzzles generate`: puzzles per second from a folder of 24 MP photos.

Writes ``--photos`` 16-bit sRGB TIFFs of ``--width`` × ``--height`` (default 6000 × 4000,
24 MP; a real photo from scikit-image, each a different crop, upscaled, with noise) into a
temporary folder, then generates ``--count`` puzzles (kinds ``--kinds``) from them with the
default sampling config (512 px proxies) and reports:

* puzzles per second, end to end (decode of the 24 MP files included, one decode per photo);
* the same without decoding (the puzzle work on proxies alone), and decode seconds per photo;
* per kind: puzzles made, rejected draws;
* ``reason synthesize`` (template) records per second.

The first generation in a process compiles the renderer (numba, cached on disk); a warm-up
run on one small photo is done first and not counted.

    python benchmarks/puzzles.py [--photos 4] [--count 40] [--kinds a,b,c] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def make_photo(width: int, height: int, seed: int) -> np.ndarray:
    """A 16-bit photo-like image: a crop of a real photo, upscaled to ``width`` × ``height``, with noise."""
    rng = np.random.default_rng(seed)
    try:
        from skimage import data

        base = [data.astronaut, data.coffee, data.chelsea, data.rocket][seed % 4]().astype(np.float32) / 255.0
    except ImportError:
        y, x = np.mgrid[0:400, 0:600] / 600.0
        base = np.stack([x, y, 1 - x * y], -1).astype(np.float32)
    h, w = base.shape[:2]
    ch, cw = int(h * 0.8), int(w * 0.8)
    y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    crop = base[y0:y0 + ch, x0:x0 + cw]
    ys = (np.arange(height) * ch / height).astype(np.intp)
    xs = (np.arange(width) * cw / width).astype(np.intp)
    img = crop[ys][:, xs]
    img = img + rng.normal(0, 0.004, img.shape).astype(np.float32)
    return np.ascontiguousarray(np.clip(img * 65535 + 0.5, 0, 65535).astype(np.uint16))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=4)
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--kinds", default="a,b,c")
    ap.add_argument("--width", type=int, default=6000)
    ap.add_argument("--height", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import tifffile

    from monet_cli import puzzles as pz
    from monet_cli import synth

    tmp = Path(tempfile.mkdtemp(prefix="monet-bench-puzzles-"))
    try:
        experts = tmp / "experts"
        experts.mkdir()
        t = time.perf_counter()
        for i in range(args.photos):
            tifffile.imwrite(experts / f"photo{i:02d}.tif", make_photo(args.width, args.height, i), photometric="rgb")
        t_make = time.perf_counter() - t

        # warm-up (compiles the renderer's kernels): one small photo, not counted
        warm = tmp / "warm"
        warm.mkdir()
        tifffile.imwrite(warm / "w.tif", make_photo(600, 400, 1), photometric="rgb")
        pz.generate(warm, tmp / "warm-ds", count=6, seed=99)

        decode = {"seconds": 0.0, "photos": 0}
        real_prepare = pz.prepare_photo

        def timed_prepare(*a, **k):
            t0 = time.perf_counter()
            try:
                return real_prepare(*a, **k)
            finally:
                decode["seconds"] += time.perf_counter() - t0
                decode["photos"] += 1

        pz.prepare_photo = timed_prepare
        kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
        s = pz.generate(experts, tmp / "ds", kinds=kinds, count=args.count, seed=args.seed)
        pz.prepare_photo = real_prepare
        t = time.perf_counter()
        syn = synth.synthesize(tmp / "ds")
        t_syn = time.perf_counter() - t
        made = s.total_made
        work = s.seconds - decode["seconds"]
        result = {
            "photos": args.photos, "megapixels": round(args.width * args.height / 1e6, 1), "kinds": kinds,
            "count": args.count, "made": s.made, "skipped": s.skipped, "rejections": s.rejections,
            "seconds": round(s.seconds, 2), "puzzles_per_second": round(made / s.seconds, 2),
            "decode_seconds_per_photo": round(decode["seconds"] / max(decode["photos"], 1), 2),
            "puzzles_per_second_without_decode": round(made / work, 2) if work > 0 else None,
            "synthesize_records_per_second": round(syn.written / t_syn, 1) if t_syn > 0 else None,
            "make_photos_seconds": round(t_make, 1),
            "dataset_megabytes": round(sum(f.stat().st_size for f in (tmp / "ds").rglob("*") if f.is_file()) / 1e6, 1),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{made} puzzles ({', '.join(f'{n} {k.upper()}' for k, n in result['made'].items() if n)}) from "
              f"{args.photos} × {result['megapixels']} MP 16-bit TIFFs in {result['seconds']} s: "
              f"{result['puzzles_per_second']} puzzles/s end to end")
        print(f"  decode + proxy: {result['decode_seconds_per_photo']} s per photo; puzzles on proxies alone: "
              f"{result['puzzles_per_second_without_decode']} puzzles/s")
        print(f"  rejected draws: {result['rejections']}; skipped: {result['skipped']}")
        print(f"  template reasoning: {result['synthesize_records_per_second']} records/s; "
              f"dataset {result['dataset_megabytes']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
