"""Linear probe of a monet-mini model's vision encoder: does it see exposure?

For every photo of a training folder and a held-out folder, seven versions at Exposure
−60 … +60 (saved like 8-bit files) go through the model's image processor and vision encoder;
the visual tokens are pooled (mean and standard deviation per feature) and a ridge regression
fitted on the training photos reads the applied Exposure off them. Printed: the mean absolute
error on training and held-out photos for three ridge strengths, against "always 0" and a
line fitted on the mean 8-bit brightness alone. An encoder whose held-out error is not below
the brightness line has learned the training photos, not exposure.

    python benchmarks/mini_probe.py RUN_OR_MODEL TRAIN_DIR HELDOUT_DIR [--json]

(``benchmarks/mini.py`` leaves ``OUT/init``, ``OUT/run-puzzles``, ``OUT/run-regression`` and
the photos in ``OUT/corpus/train`` and ``OUT/corpus/heldout``.) CPU, about a minute per model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

EXPOSURES = (-60, -40, -20, 0, 20, 40, 60)


def features(loaded, paths: list[Path], min_pixels: int, max_pixels: int):
    """Pooled visual features, applied Exposure and mean 8-bit brightness of each version."""
    import torch

    from monet_cli.degrade import save_like_8bit
    from monet_cli.images import read_image
    from monet_cli.planners.base import make_proxy
    from monet_cli.planners.protocol import proxy_to_pil
    from monet_cli.render import render_linear

    X, y, bright = [], [], []
    visual = loaded.model.model.visual
    for p in paths:
        base = make_proxy(read_image(p), 256)
        for ev in EXPOSURES:
            pil = proxy_to_pil(save_like_8bit(render_linear(base, {"Exposure": ev}) if ev else base))
            enc = loaded.processor.image_processor(images=[pil], return_tensors="pt", min_pixels=min_pixels,
                                                   max_pixels=max_pixels)
            with torch.no_grad():
                out = visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"])
            f = getattr(out, "pooler_output", None)
            f = (f if f is not None else getattr(out, "last_hidden_state", out)).float().numpy()
            X.append(np.concatenate([f.mean(0), f.std(0)]))
            y.append(ev)
            bright.append(float(np.asarray(pil, dtype=np.float64).mean()))
    return np.array(X), np.array(y, dtype=float), np.array(bright)


def photos(folder: Path) -> list[Path]:
    from monet_cli.batch import collect_photos

    found, missing = collect_photos([folder])
    if missing:
        raise SystemExit(f"{missing[0][0]}: {missing[0][1]}")
    return found


def scores(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Mean absolute error, and how often the sign is right where Exposure was changed."""
    moved = truth != 0
    return {"heldout_mae": round(float(np.abs(pred - truth).mean()), 2),
            "heldout_sign_right": round(float(np.mean(np.sign(pred[moved]) == np.sign(truth[moved]))), 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a mini run folder or model folder")
    ap.add_argument("train", type=Path, help="training photos (the probe is fitted on them)")
    ap.add_argument("heldout", type=Path, help="held-out photos (the probe is scored on them)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)

    from monet_cli.models import resolve_model
    from monet_cli.planners.qwen import load_model

    resolved = resolve_model(args.model)
    loaded = load_model(resolved.path, device="cpu")
    px = dict(min_pixels=resolved.min_pixels or 3136, max_pixels=resolved.max_pixels or 50176)
    Xtr, ytr, btr = features(loaded, photos(args.train), **px)
    Xho, yho, bho = features(loaded, photos(args.heldout), **px)
    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-6
    A, B = (Xtr - mu) / sd, (Xho - mu) / sd
    report = {"model": str(args.model), "train_versions": len(ytr), "heldout_versions": len(yho),
              "always_zero_mae": round(float(np.abs(yho).mean()), 2), "ridge": []}
    for lam in (1.0, 10.0, 100.0):
        w = np.linalg.solve(A.T @ A + lam * np.eye(A.shape[1]), A.T @ (ytr - ytr.mean()))
        fit, pred = A @ w + ytr.mean(), B @ w + ytr.mean()
        report["ridge"].append({"lambda": lam, "train_mae": round(float(np.abs(fit - ytr).mean()), 2),
                                **scores(pred, yho)})
    report["brightness_line"] = scores(np.polyval(np.polyfit(btr, ytr, 1), bho), yho)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{args.model}: Exposure read off pooled visual features ({len(ytr)} training, {len(yho)} held-out versions)")
    for r in report["ridge"]:
        print(f"  ridge {r['lambda']:>5g}: train MAE {r['train_mae']:5.1f}   held-out MAE {r['heldout_mae']:5.1f}   "
              f"held-out sign right {r['heldout_sign_right']:.0%}")
    b = report["brightness_line"]
    print(f"  always 0: held-out MAE {report['always_zero_mae']:.1f};  mean brightness alone: held-out MAE "
          f"{b['heldout_mae']:.1f}, sign right {b['heldout_sign_right']:.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
