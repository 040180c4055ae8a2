"""GPU check of the qwen backend: timings and GPU memory, for the README.

1. The tiny random Qwen2-VL, built in a temporary folder, loaded in 4-bit NF4 on the GPU,
   plans a synthetic 1280-pixel photo: build, load and per-stage seconds, peak GPU memory.
2. When a real model's weights are on disk (``--model``, default the ``monetgpt-7b`` preset):
   it is loaded with ``--quant`` (default 4bit) and plans a 24 MP 16-bit TIFF (``--photo`` or a
   synthetic one): load seconds, read + proxy seconds, per-stage and total plan seconds, peak
   GPU memory, and what each stage answered.

    python benchmarks/gpu_check.py [--model monetgpt-7b] [--quant 4bit] [--photo P] [--json]

Targets (DESIGN.md): a 7B model in 4-bit in <= 8 GB of GPU memory; a three-stage plan in
<= 8 s on one modern GPU. On a machine without CUDA (or without torch) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


class TimedPlanner:
    """Wraps a planner and records each stage's seconds."""

    def __init__(self, inner):
        self.inner = inner
        self.name, self.model, self.adapter = inner.name, inner.model, inner.adapter
        self.seconds: dict[str, float] = {}

    def plan_stage(self, stage, proxy, **kw):
        import torch

        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = self.inner.plan_stage(stage, proxy, **kw)
        torch.cuda.synchronize()
        self.seconds[stage] = round(time.perf_counter() - t0, 3)
        return out


def gib(n: int) -> float:
    return round(n / 2**30, 3)


def synthetic_photo(width: int, height: int) -> np.ndarray:
    """A smooth 16-bit sRGB test image with colour gradients and noise (no external data)."""
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    img = np.stack(np.broadcast_arrays(0.2 + 0.6 * x * (1 - y), 0.15 + 0.5 * y, 0.35 + 0.3 * (1 - x)), -1)
    img += np.random.default_rng(0).normal(0, 0.01, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 65535).astype(np.uint16)


def tiny_check(report: dict) -> None:
    import torch

    from monet_cli.planners.base import make_proxy, plan_proxy
    from monet_cli.planners.qwen import QwenPlanner, clear_cache
    from monet_cli.tiny import build_tiny

    with tempfile.TemporaryDirectory(prefix="monet-gpu-check-") as tmp:
        t0 = time.perf_counter()
        folder = build_tiny(Path(tmp) / "tiny")
        build_s = time.perf_counter() - t0
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        planner = TimedPlanner(QwenPlanner(str(folder), quant="4bit", device="cuda"))
        load_s = time.perf_counter() - t0
        proxy = make_proxy(synthetic_photo(1280, 853))
        plan_proxy(proxy, planner)  # warm-up (CUDA kernels, allocator)
        t0 = time.perf_counter()
        plan = plan_proxy(proxy, planner)
        plan_s = time.perf_counter() - t0
        report["tiny_4bit"] = {
            "build_s": round(build_s, 3), "load_s": round(load_s, 3), "plan_s": round(plan_s, 3),
            "stage_s": planner.seconds, "stages": {s: sp.status for s, sp in plan.stages.items()},
            "peak_gpu_gib": gib(torch.cuda.max_memory_allocated()),
            "linear4bit_layers": sum(type(m).__name__ == "Linear4bit" for m in planner.inner.loaded.model.modules()),
        }
        clear_cache()
        torch.cuda.empty_cache()


def real_check(report: dict, model: str, quant: str, photo: str | None) -> None:
    import torch

    from monet_cli.images import read_image
    from monet_cli.models import ModelNotFoundError, resolve_model
    from monet_cli.planners.base import make_proxy, plan_proxy
    from monet_cli.planners.qwen import QwenPlanner

    try:
        resolve_model(model)
    except ModelNotFoundError as e:
        report["real"] = {"skipped": str(e)}
        return
    with tempfile.TemporaryDirectory(prefix="monet-gpu-check-") as tmp:
        if photo is None:
            import tifffile

            photo = str(Path(tmp) / "24mp.tif")
            tifffile.imwrite(photo, synthetic_photo(6000, 4000), photometric="rgb")
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        planner = TimedPlanner(QwenPlanner(model, quant=quant, device="cuda"))
        load_s = time.perf_counter() - t0
        weights_gib = gib(torch.cuda.memory_allocated())
        t0 = time.perf_counter()
        image = read_image(photo)
        proxy = make_proxy(image)
        read_s = time.perf_counter() - t0
        plan_proxy(proxy, planner)  # warm-up
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        plan = plan_proxy(proxy, planner)
        plan_s = time.perf_counter() - t0
        report["real"] = {
            "model": model, "quant": quant, "photo": os.path.basename(photo),
            "size": f"{image.pixels.shape[1]}x{image.pixels.shape[0]}",
            "load_s": round(load_s, 2), "weights_gpu_gib": weights_gib, "read_and_proxy_s": round(read_s, 3),
            "plan_s": round(plan_s, 2), "stage_s": planner.seconds,
            "peak_gpu_gib": gib(torch.cuda.max_memory_allocated()),
            "stages": {s: {"status": sp.status, "adjustments": sp.adjustments, "error": sp.error}
                       for s, sp in plan.stages.items()},
        }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="monetgpt-7b", help="preset, folder or hub id for the real-model check")
    ap.add_argument("--quant", default="4bit", choices=("4bit", "8bit", "none"))
    ap.add_argument("--photo", default=None, help="photo for the real-model check (default: synthetic 24 MP TIFF)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import torch
    except ImportError:
        print("gpu_check: torch is not installed (pip install 'monet-cli[ml]'); nothing to measure.")
        return 0
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU on this machine; GPU figures cannot be measured here.")
        return 0
    free, total = torch.cuda.mem_get_info()
    report: dict = {"gpu": torch.cuda.get_device_name(0), "gpu_memory_gib": gib(total), "torch": torch.__version__,
                    "cuda": torch.version.cuda}
    try:
        import bitsandbytes

        report["bitsandbytes"] = bitsandbytes.__version__
    except ImportError:
        print("gpu_check: bitsandbytes is not installed; 4-bit cannot be measured.")
        return 1
    tiny_check(report)
    real_check(report, args.model, args.quant, args.photo)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"GPU: {report['gpu']} ({report['gpu_memory_gib']} GiB), torch {report['torch']}, "
              f"CUDA {report['cuda']}, bitsandbytes {report['bitsandbytes']}")
        t = report["tiny_4bit"]
        print(f"tiny 4-bit: build {t['build_s']} s, load {t['load_s']} s, plan {t['plan_s']} s {t['stage_s']}, "
              f"peak {t['peak_gpu_gib']} GiB, {t['linear4bit_layers']} Linear4bit layers, stages {t['stages']}")
        r = report["real"]
        if "skipped" in r:
            print(f"real model: skipped ({r['skipped']})")
        else:
            print(f"{r['model']} {r['quant']} on a {r['size']} photo: load {r['load_s']} s "
                  f"(weights {r['weights_gpu_gib']} GiB), read+proxy {r['read_and_proxy_s']} s, "
                  f"plan {r['plan_s']} s {r['stage_s']}, peak {r['peak_gpu_gib']} GiB")
            for s, d in r["stages"].items():
                print(f"  {s}: {d['status']} {d['adjustments'] or ''} {d['error'] or ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
