"""GPU check of `monet train`: step time and GPU memory, for the README.

In a temporary folder: the tiny random Qwen2-VL and a small puzzle-like dataset (two images and
two turns per record). Then, on the CUDA GPU:

1. ``qlora`` — LoRA on the 4-bit NF4 base, bf16 compute: a few steps; median step seconds
   (after the first), peak GPU memory, loss first → last, the number of Linear4bit layers;
2. ``dora`` — DoRA on the bf16 base, like the paper's preset at toy size: the same figures;
3. ``resume`` — the 4-bit run again, stopped after half the steps and resumed: the largest
   difference from the uninterrupted adapter (0 on the CPU; CUDA kernels may differ in the
   last bits).

    python benchmarks/train_gpu.py [--steps 8] [--json]

On a machine without CUDA (or without torch) it says so and exits 0. ``--cpu`` runs the same
checks on the CPU (to test this script without a GPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def write_dataset(folder: Path, n: int = 16) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    with open(folder / "data.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            names = [f"images/{i}_{k}.png" for k in range(2)]
            for name in names:
                Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(folder / name)
            msgs = [{"role": "system", "content": "You are an image-editing assistant working like Lightroom."},
                    {"role": "user", "content": "<image><image>Which operation turns the first into the second?"},
                    {"role": "assistant", "content": f"Exposure, about +{5 * i}."},
                    {"role": "user", "content": "Give the value as JSON."},
                    {"role": "assistant", "content": '```json\n{"Exposure": ' + str(5 * i) + "}\n```"}]
            f.write(json.dumps({"messages": msgs, "images": names}) + "\n")
    return folder


def gib(n: int) -> float:
    return round(n / 2**30, 4)


def one_run(tiny: Path, data: Path, out: Path, device: str, steps: int, *sets: str) -> dict:
    import torch

    from monet_cli.train.config import build_config
    from monet_cli.train.recipe import train

    cfg = build_config("tiny-cpu", datasets=[data], model=str(tiny), out=out,
                       sets=[f"model.device={device}", "model.dtype=auto" if device != "cpu" else "model.dtype=float32",
                             f"train.max_steps={steps}", "train.save_every=0", *sets])
    cuda = device.startswith("cuda")
    times: list[float] = []
    clock = [0.0]

    def tick(_state):
        if cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        if clock[0]:
            times.append(now - clock[0])
        clock[0] = now

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    clock[0] = 0.0
    r = train(cfg, quiet=True, on_step=tick)
    m = r.metrics
    out_d = {"steps": r.step, "median_step_s": round(statistics.median(times), 4) if times else None,
             "loss_first": round(m["train_loss_first"], 4), "loss_last": round(m["train_loss_last"], 4),
             "tokens_per_s": m["tokens_per_s"], "dtype": m["dtype"],
             "linear4bit_layers": sum(type(x).__name__ == "Linear4bit" for x in r.model.modules())}
    if cuda:
        out_d["peak_gpu_gib"] = gib(torch.cuda.max_memory_allocated())
    return out_d


def resume_check(tiny: Path, data: Path, tmp: Path, device: str, steps: int) -> dict:
    from safetensors.torch import load_file

    from monet_cli.train.config import build_config
    from monet_cli.train.recipe import resume_config, train

    sets = [f"model.device={device}", "model.quant=4bit", "adapter.method=lora", "adapter.modules_to_save=[]",
            f"train.max_steps={steps}", "train.save_every=0", "adapter.dropout=0.1"]
    a = train(build_config("tiny-cpu", datasets=[data], model=str(tiny), out=tmp / "straight", sets=sets), quiet=True)
    train(build_config("tiny-cpu", datasets=[data], model=str(tiny), out=tmp / "cut",
                       sets=sets + [f"train.stop_after={steps // 2}"]), quiet=True)
    b = train(resume_config(tmp / "cut")[0], resume=True, quiet=True)
    ta = load_file(str(a.adapter / "adapter_model.safetensors"))
    tb = load_file(str(b.adapter / "adapter_model.safetensors"))
    diff = max(float((ta[k].float() - tb[k].float()).abs().max()) for k in ta)
    return {"max_abs_diff": diff, "loss_straight": a.metrics["train_loss_last"],
            "loss_resumed": b.metrics["train_loss_last"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--cpu", action="store_true", help="run on the CPU (to test the script)")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("train_gpu: torch is not installed; nothing to measure")
        return 0
    if not args.cpu and not torch.cuda.is_available():
        print("train_gpu: no CUDA GPU here; run this on a machine with one (or pass --cpu to test the script)")
        return 0
    device = "cpu" if args.cpu else "cuda"
    from monet_cli.tiny import build_tiny

    report: dict = {"device": "cpu" if args.cpu else torch.cuda.get_device_name(0), "torch": torch.__version__}
    with tempfile.TemporaryDirectory(prefix="monet-train-gpu-") as tmp:
        tmp = Path(tmp)
        tiny = build_tiny(tmp / "tiny")
        data = write_dataset(tmp / "data")
        report["qlora"] = one_run(tiny, data, tmp / "qlora", device, args.steps, "model.quant=4bit",
                                  "adapter.method=lora", "adapter.modules_to_save=[]")
        report["dora"] = one_run(tiny, data, tmp / "dora", device, args.steps)
        report["resume"] = resume_check(tiny, data, tmp, device, args.steps)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"device: {report['device']} (torch {report['torch']})")
        for k in ("qlora", "dora"):
            r = report[k]
            mem = f", peak {r['peak_gpu_gib']} GiB" if "peak_gpu_gib" in r else ""
            print(f"{k:6s} {r['steps']} steps, {r['median_step_s']} s/step (median){mem}, loss {r['loss_first']} → "
                  f"{r['loss_last']}, {r['dtype']}, Linear4bit layers {r['linear4bit_layers']}")
        print(f"resume: max |Δ| adapter weights vs uninterrupted {report['resume']['max_abs_diff']:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
