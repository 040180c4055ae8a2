#!/usr/bin/env python3
"""Slider-to-new-proxy latency of `monet review`: the time from a slider's request to the new
1280 px proxy JPEG, as the page asks for it (``/api/photos/0/image.jpg?adjustments=…``), on a
24 MP photo (the proxy is decoded once, then every request renders and encodes it).

    python benchmarks/review.py [--requests 30] [--width 6000 --height 4000]

Target: <= 300 ms per request on this machine. Figures are a benchmark's, not a test's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--width", type=int, default=6000)
    ap.add_argument("--height", type=int, default=4000)
    a = ap.parse_args()
    from apply import full_plan, make_photo

    from monet_cli import colorspaces as cs
    from monet_cli.images import Image, write_image
    from monet_cli.plan import Plan, save_plan, sidecar_path
    from monet_cli.review import make_server

    work = Path(tempfile.mkdtemp(prefix="monet-review-"))
    photo = work / "photo.tif"
    write_image(photo, Image(pixels=make_photo(a.width, a.height), colorspace=cs.SRGB, format="tiff"))
    plan = full_plan()
    save_plan(Plan.from_adjustments(plan), sidecar_path(photo))
    srv = make_server([photo], port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}/api/photos/0/image.jpg"
    t = time.perf_counter()
    urllib.request.urlopen(base + "?view=before").read()
    first = time.perf_counter() - t
    times = []
    for i in range(a.requests):
        adj = dict(plan, Exposure=(i % 41) - 20)  # the user drags Exposure; the other 32 ops stay
        url = base + "?adjustments=" + urllib.parse.quote(json.dumps(adj))
        t = time.perf_counter()
        data = urllib.request.urlopen(url).read()
        times.append(time.perf_counter() - t)
    srv.shutdown()
    print(f"`monet review` slider → new 1280 px proxy ({a.width * a.height / 1e6:.0f} MP photo, all 33 ops, "
          f"{len(data) // 1024} KiB JPEG)")
    print(f"  first view (decode + proxy, once per photo)   {first:.3f} s")
    print(f"  per slider request: median {statistics.median(times) * 1000:.0f} ms, "
          f"90th percentile {sorted(times)[int(0.9 * len(times)) - 1] * 1000:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms (target <= 300 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
