"""Does a trained monet-mini model look at the image? Two measurements.

1. **Own image vs another record's image.** For puzzle-C records (one image, a planner stage
   with values) of a puzzle or regression dataset, the cross-entropy of the assistant's
   tokens is computed twice: with the record's own image, and with the image of another
   record of the dataset. A model that reads the image does worse with the wrong one; a model
   that answers from the prompt alone scores the same. Printed per token over all answer
   tokens and over digit tokens (the values).
2. **Perception on held-out photos** (``--perception DIR``, a dataset made by ``monet
   puzzles perceive`` from photos the model never saw): the model answers "Measure the
   photo." greedily and the median, p5 and p95 L* and mean chroma it writes are compared with
   the measured ones, against always answering the dataset's mean.

    python benchmarks/mini_look.py RUN DATASET [--records 80] [--perception DIR] [--json]

(``benchmarks/mini.py`` leaves ``OUT/run-puzzles``, ``OUT/run-regression``, the datasets
``OUT/puzzles-s1`` and ``OUT/regression``; ``monet puzzles perceive OUT/corpus/heldout --out
DIR --per-photo 8 --config mini --long-side 256`` makes the held-out perception set.) CPU, a
minute or two.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

FIGURES = {"median L*": r"Median L\* (\d+)", "p5 L*": r"p5 (\d+)", "p95 L*": r"p95 (\d+)",
           "mean chroma": r"chroma (\d+)"}


def _batch(enc, record):
    from monet_cli.train.data import collate

    b = collate([enc.encode(record)], enc.pad_id)
    return {k: b[k] for k in ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values",
                              "image_grid_thw") if k in b}, b["labels"][0, 1:]


def own_vs_other(loaded, dataset: Path, n: int, seed: int = 0) -> dict:
    """Mean answer-token loss with each record's own image and with another record's."""
    import torch
    import torch.nn.functional as F

    from monet_cli.train.data import IGNORE, Encoder, read_dataset

    enc = Encoder(loaded.processor, min_pixels=3136, max_pixels=50176)
    records, _ = read_dataset(dataset)
    pool = [r for r in records if len(r.images) == 1 and len(r.messages) >= 5]  # C with a values turn
    if len(pool) < 2:
        raise SystemExit(f"{dataset}: fewer than 2 puzzle-C records with values")
    random.Random(seed).shuffle(pool)
    pool = pool[:n]
    tok = loaded.tokenizer
    digit = {}
    sums = {w: [0.0, 0, 0.0, 0] for w in ("own", "other")}
    for i, rec in enumerate(pool):
        other = pool[(i + 1 + len(pool) // 2) % len(pool)]
        for which, r in (("own", rec), ("other", replace(rec, images=other.images))):
            inputs, labels = _batch(enc, r)
            with torch.no_grad():
                logits = loaded.model(**inputs).logits[0, :-1].float()
            keep = labels != IGNORE
            ce = F.cross_entropy(logits[keep], labels[keep], reduction="none").tolist()
            ids = labels[keep].tolist()
            s = sums[which]
            for c, t in zip(ce, ids):
                if t not in digit:
                    digit[t] = bool(re.search(r"[0-9]", tok.decode([t])))
                s[0] += c
                s[1] += 1
                if digit[t]:
                    s[2] += c
                    s[3] += 1
    return {w: {"answer_tokens": s[0] / max(1, s[1]), "digit_tokens": s[2] / max(1, s[3]), "records": len(pool)}
            for w, s in sums.items()}


def perception(loaded, dataset: Path) -> dict:
    """Greedy "Measure the photo." on a perception dataset: mean absolute errors."""
    from PIL import Image

    from monet_cli.planners.qwen import generate

    rows = [json.loads(line) for line in (dataset / "train.jsonl").read_text().splitlines() if line.strip()]
    truth, said = [], []
    for r in rows:
        messages = [{"role": m["role"], "content": m["content"].replace("<image>", "")} for m in r["messages"][:2]]
        with Image.open(dataset / r["images"][0]) as im:
            answer = generate(loaded, messages, im.convert("RGB"), max_new_tokens=60, temperature=0,
                              min_pixels=3136, max_pixels=50176)
        want = r["messages"][2]["content"]
        truth.append([float(re.search(p, want).group(1)) for p in FIGURES.values()])
        said.append([float(m.group(1)) if (m := re.search(p, answer)) else np.nan for p in FIGURES.values()])
    T, S = np.array(truth), np.array(said)
    res = {}
    for i, name in enumerate(FIGURES):
        ok = ~np.isnan(S[:, i])
        res[name] = {"model": float(np.abs(S[ok, i] - T[ok, i]).mean()) if ok.any() else None,
                     "always_mean": float(np.abs(T[:, i] - T[:, i].mean()).mean()), "answered": int(ok.sum()),
                     "records": len(T)}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="A trained mini run folder (or any Qwen-VL model folder).")
    ap.add_argument("dataset", type=Path, help="A puzzle or regression dataset (train.jsonl) it was trained on.")
    ap.add_argument("--records", type=int, default=80, help="Puzzle-C records to score (default 80).")
    ap.add_argument("--perception", type=Path, help="A perception dataset of held-out photos.")
    ap.add_argument("--json", action="store_true", help="Print one JSON object.")
    a = ap.parse_args()

    import torch

    from monet_cli.planners.qwen import load_model

    torch.set_num_threads(1)
    loaded = load_model(a.run)
    res = {"run": str(a.run), "own_vs_other": own_vs_other(loaded, a.dataset, a.records)}
    if a.perception:
        res["perception"] = perception(loaded, a.perception)
    if a.json:
        print(json.dumps(res, indent=1))
        return
    o = res["own_vs_other"]
    print(f"{a.run}: {o['own']['records']} puzzle-C records of {a.dataset}")
    for which in ("own", "other"):
        print(f"  {which:5s} image: loss per answer token {o[which]['answer_tokens']:.4f}, "
              f"per digit token {o[which]['digit_tokens']:.4f}")
    for name, r in res.get("perception", {}).items():
        model = "—" if r["model"] is None else f"{r['model']:.1f}"
        print(f"  perception {name:11s}: mean error {model} (answered {r['answered']}/{r['records']}), "
              f"always the mean {r['always_mean']:.1f}")


if __name__ == "__main__":
    main()
