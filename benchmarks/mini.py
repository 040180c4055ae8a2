"""monet-mini: the paper's method end to end on a CPU, and its puzzle-vs-regression ablation.

One command, seeds fixed, progress shown::

    python benchmarks/mini.py --out runs/mini [--seed 0] [--budget-minutes 30] [--puzzle-minutes 60] [--puzzles 6000] [--perception 60] [--quick]

1. **Corpus** — ``benchmarks/corpus.sh OUT/corpus``: free photos (scikit-image, Debian wallpaper
   packages; licences in ``manifest.json`` / ``LICENSES.txt``), a fixed held-out subset.
2. **Model** — ``monet models init mini OUT/init`` (random weights, seed 0, own BPE tokenizer).
3. **Puzzles** — ``monet puzzles generate OUT/corpus/train --kinds a,b,c --config mini`` (two
   shards with seeds 0 and 1, in parallel) + ``monet reason synthesize`` (template reasoning).
   The ``mini`` sampling config (``models/puzzles/mini.yaml``) uses each photo and 7 seeded
   crops of it as expert images, the short ``mini`` prompts, and favours light and colour
   (Exposure and Temperature three times as often as the other ops of their stage).
4. **Regression data** — the same puzzle-C images and answers, values only: the analysis turn
   answers the fixed sentence "Adjustments follow." (or the no-change sentence) and the values
   turn answers only the JSON block; no puzzles A/B, no reasoning (the paper's "MLLM
   Regression" baseline, kept on the planner's two-turn protocol so both models are planned
   through the same path).
5. **Perception records** — ``monet puzzles perceive OUT/corpus/train --config mini`` (two
   shards, seeds 0 and 1, ``--perception`` records per photo each): every image answered with
   its own measured statistics. Added to *both* models' data: a model from random weights
   needs them to look at the image at all (trained on puzzles or regression records alone, its
   loss was the same with a record's own image as with another's; ``mini_look.py``). They
   stand in for the visual pretraining a real Qwen-VL brings, the same for both sides of the
   ablation.
6. **Training** — both from the *same* initial weights, every weight trained
   (``monet train --config mini``: ``adapter.method: full``), the two runs in parallel, one
   thread each: each model gets one of the machine's two cores. Regression trains for
   ``--budget-minutes`` of wall time (default 30), the puzzle model for ``--puzzle-minutes``
   (default 60). With equal time the puzzle model passes over its data (1.4 times as many
   records, A and B carrying 2 and 4 images, C its reasoning) about once and regression over
   its own about 2.8 times; with 60 min the puzzle model passes over the puzzle-C images about
   twice. ``--puzzle-minutes 30`` is the equal-time comparison (README: five seeds of it).
7. **Scoring** — as soon as a model is trained, on the core it frees:
   ``monet bench restore OUT/corpus/heldout --seeds 1`` with ``--backend rules`` (the analytic planner),
   and ``--backend qwen --model RUN`` for each trained model (the normal planning path), decoded
   three ways: ``--samples 8`` (the mini preset's default: each stage is the mean of 8 plans
   sampled at temperature 1, generated as one batch), ``--samples 8 --consensus medoid`` (the
   sampled plan whose rendered result is nearest to the others') and ``--samples 1`` (one
   greedy plan); identity is the benchmark's ``degraded`` column (the photo left alone).

Prints one table (mean ΔE2000 over the held-out degraded cases, and on the undegraded
originals) and writes ``OUT/mini.json`` and ``OUT/mini.md``. Steps whose outputs exist are
skipped on a rerun (delete a folder to redo it). One run is one draw: seeds move the figures
by more than most settings do, so compare settings over several ``--seed`` runs, one
``--out`` each, with ``benchmarks/mini_seeds.py OUT_0 OUT_1 ...`` (mean ± sd and paired
intervals).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGRESSION_ANALYSIS = "Adjustments follow."
sys.path.insert(0, str(ROOT / "src"))
# Held-out degradations: one per op family and one combination (CPU time for planning with
# a model grows with their number: photos x (1 + kinds) plans per planner).
KINDS = ("under", "over", "warm", "cool", "flat", "oversaturated", "under+cool")
SAMPLES = 8  # the mini preset's consensus: each stage planned from the mean of 8 sampled plans
POLL = 2.0  # seconds between looks at the running trainings and benches


def decodings(samples: int) -> dict[str, tuple[str, list]]:
    """Each model's three decodings (module docstring, step 7): bench-folder suffix → (table
    label, ``monet bench restore`` arguments)."""
    return {"": (f"mean of {samples} samples", ["--samples", samples]),
            "-medoid": (f"medoid of {samples} samples", ["--samples", samples, "--consensus", "medoid"]),
            "-greedy": ("greedy, one plan", ["--samples", 1])}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def env(threads: int | None = None) -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e["HF_HUB_OFFLINE"] = "1"
    if threads:
        e["OMP_NUM_THREADS"] = e["MKL_NUM_THREADS"] = e["NUMBA_NUM_THREADS"] = str(threads)
    return e


def monet(*args, threads=None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "monet_cli", *map(str, args)], env=env(threads), **kw)


def wait_all(procs: list[tuple[str, subprocess.Popen]]) -> None:
    for name, p in procs:
        if p.wait() != 0:
            raise SystemExit(f"step failed: {name} (exit {p.returncode})")


# ----------------------------------------------------------------------------- steps


def make_corpus(out: Path) -> Path:
    corpus = out / "corpus"
    if not (corpus / "manifest.json").is_file():
        log("corpus: gathering photos (benchmarks/corpus.sh)")
        subprocess.run(["bash", str(ROOT / "benchmarks" / "corpus.sh"), str(corpus)], env={**env(), "PYTHON": sys.executable},
                       check=True)
    m = json.loads((corpus / "manifest.json").read_text())
    log(f"corpus: {sum(e['split'] == 'train' for e in m)} train, {sum(e['split'] == 'heldout' for e in m)} held-out photos")
    return corpus


def sharded(out: Path, prefix: str, what: str, steps, seed: int = 0) -> list[Path]:
    """Two shards ``OUT/PREFIX-s{2·seed}`` and ``-s{2·seed + 1}`` (their seeds), made in
    parallel by each of ``steps`` in turn (``step(seed, folder)`` → the ``monet`` arguments); a
    shard is marked done at the end and skipped on a rerun."""
    seeds = (2 * seed, 2 * seed + 1)
    shards = [out / f"{prefix}-s{s}" for s in seeds]
    todo = [(s, d) for s, d in zip(seeds, shards) if not (d / ".mini-done").is_file()]
    if todo:
        log(f"{what} in {len(todo)} shard(s)")
        for step in steps:
            wait_all([(" ".join(map(str, step(s, d)[:2])) + f" {d}",
                       monet(*step(s, d), threads=1)) for s, d in todo])
        for _, d in todo:
            (d / ".mini-done").write_text("")
    return shards


def make_puzzles(out: Path, corpus: Path, count: int, long_side: int, seed: int) -> list[Path]:
    return sharded(out, "puzzles", f"puzzles: generating {count} (A, B, C), long side {long_side},", [
        lambda s, d: ["puzzles", "generate", corpus / "train", "--out", d, "--kinds", "a,b,c", "--count", count // 2,
                      "--seed", s, "--config", "mini", "--long-side", long_side, "--quiet"],
        lambda s, d: ["reason", "synthesize", d]], seed)


def make_perception(out: Path, corpus: Path, per_photo: int, long_side: int, seed: int) -> list[Path]:
    """Perception records of the training photos (``monet puzzles perceive``, module
    docstring step 5)."""
    return sharded(out, "perception", f"perception: {per_photo} records per photo", [
        lambda s, d: ["puzzles", "perceive", corpus / "train", "--out", d, "--per-photo", per_photo, "--seed", s,
                      "--config", "mini", "--long-side", long_side, "--force", "--quiet"]], seed)


def make_regression(out: Path, shards: list[Path]) -> Path:
    """Puzzle-C records of the shards, values only (module docstring, step 4)."""
    from monet_cli.planners.protocol import load_prompts, says_no_change

    reg = out / "regression"
    target = reg / "train.jsonl"
    if target.is_file():
        return reg
    reg.mkdir(parents=True, exist_ok=True)
    prompts = load_prompts("mini")
    lines = []
    for shard in shards:
        for line in (shard / "train.jsonl").read_text().splitlines():
            r = json.loads(line)
            if len(r["images"]) != 1:  # puzzle C shows one photo; A shows two, B four
                continue
            msgs = [dict(m) for m in r["messages"]]
            asst = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
            if len(asst) == 1:  # the stage needs nothing: the answer without its reasons
                assert says_no_change(msgs[asst[0]]["content"], prompts)
                msgs[asst[0]]["content"] = "No further adjustments are needed."
            else:
                msgs[asst[0]]["content"] = REGRESSION_ANALYSIS
                text = msgs[asst[1]]["content"]
                msgs[asst[1]]["content"] = text[text.index("```json"):]
            lines.append(json.dumps({"messages": msgs, "images": [str((shard / p).resolve()) for p in r["images"]]}))
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log(f"regression: {len(lines)} values-only records from the puzzle-C images")
    return reg


def train_and_score(out: Path, init: Path, corpus: Path, runs: dict[str, list[Path]], minutes: dict[str, float],
                    max_steps: int, seed: int, quick: bool, samples: int, jobs: int = 2) -> tuple[dict, dict]:
    """Trains both models by ``monet train --config mini`` (every weight, no adapter) from the
    same initial folder, in parallel, one thread each, each for its own ``minutes[name]``, and
    scores them on the held-out photos (module docstring, step 7), ``jobs`` processes at once
    (the trainings start regardless). A core that a finished training frees scores at once
    (auto first, then that model's decodings), so a longer budget for one model overlaps the
    other's scoring. On an error or Ctrl-C the processes still running are stopped. Returns
    (each run's ``metrics.json``, each bench's ``bench.json``); steps whose outputs exist are
    skipped."""
    kinds = ["under", "warm", "flat"] if quick else list(KINDS)
    train, logs = {}, {}
    for name, data in runs.items():
        run = out / f"run-{name}"
        if (run / "metrics.json").is_file() and (run / "model.safetensors").is_file():
            continue
        logs[name] = out / f"train-{name}.log"
        extra = ["--set", f"train.max_minutes={minutes[name]:g}", "--set", "data.eval_fraction=0",
                 "--set", f"train.seed={seed}"]
        if max_steps:
            extra += ["--set", f"train.max_steps={max_steps}"]
        train[name] = monet("train", *data, "--config", "mini", "--model", init, "--out", run, "--force", *extra,
                            threads=1, stdout=subprocess.DEVNULL, stderr=logs[name].open("w"))
    if train:
        log(f"training {', '.join(f'{n} ({minutes[n]:g} min)' for n in train)} from scratch (monet train "
            f"--config mini), {'in parallel, one thread each' if len(train) > 1 else 'one thread'}")
    # bench name → (the model it needs, planner arguments); "auto" is the analytic planner of the
    # runs in the README's history, which is `--backend rules` since auto v2
    benches = {"auto": (None, ["--backend", "rules"])}
    for name in sorted(runs, key=lambda n: minutes[n]):  # the model that finishes first is scored first
        for suffix, (_, args) in decodings(samples).items():
            benches[f"mini-{name}{suffix}"] = (name, ["--backend", "qwen", "--model", out / f"run-{name}", *args])
    for n, (model, args) in benches.items():
        benches[n] = (model, ["bench", "restore", corpus / "heldout", *args, "--seeds", "1", "--no-lpips", "--kinds",
                              ",".join(kinds), "--out", out / f"bench-{n}", "--force", "--quiet"])
    pending = [n for n in benches if not (out / f"bench-{n}" / "bench.json").is_file()]
    log(f"scoring on the held-out photos as models finish: {', '.join(pending) or 'done before'}")
    scoring: dict[str, subprocess.Popen] = {}
    try:
        _schedule(train, logs, scoring, pending, benches, minutes, jobs)
    finally:
        for p in [*train.values(), *scoring.values()]:
            if p.poll() is None:
                p.terminate()
                p.wait()
    trained = {name: json.loads((out / f"run-{name}" / "metrics.json").read_text()) for name in runs}
    return trained, {n: json.loads((out / f"bench-{n}" / "bench.json").read_text()) for n in benches}


def _schedule(train, logs, scoring, pending, benches, minutes, jobs) -> None:
    """The loop of :func:`train_and_score`: ``train`` and ``scoring`` hold the running
    processes (emptied as they finish), ``pending`` the benches to start (``benches``: name →
    (the model it waits for, its ``monet`` arguments))."""
    last_status = time.monotonic()
    while pending or scoring or train:
        _reap(train, "trained", lambda n, p: f"training {n} failed; see {logs[n]}")
        _reap(scoring, "scored", lambda n, p: f"bench {n} failed (exit {p.returncode})")
        for n in [n for n in pending if benches[n][0] not in train]:
            if len(train) + len(scoring) >= jobs:
                break
            pending.remove(n)
            scoring[n] = monet(*benches[n][1], threads=1, stdout=subprocess.DEVNULL)
        if train and time.monotonic() - last_status >= (30 if max(minutes.values()) > 2 else 5):
            last_status = time.monotonic()
            status = []
            for name in train:
                last = [l.strip() for l in logs[name].read_text(errors="replace").splitlines() if l.startswith("step")]
                status.append(f"{name}: {last[-1] if last else 'starting'}")
            log("  " + " | ".join(status) + (f" | scoring {', '.join(scoring)}" if scoring else ""))
        time.sleep(POLL)


def _reap(procs: dict[str, subprocess.Popen], done: str, failed) -> None:
    """Removes the finished processes from ``procs``, logging ``done NAME``; SystemExit with
    ``failed(name, process)`` for one that failed."""
    for name, p in list(procs.items()):
        if p.poll() is not None:
            if p.returncode != 0:
                raise SystemExit(failed(name, p))
            log(f"  {done} {name}")
            del procs[name]


def table(reports: dict, trained: dict, samples: int) -> tuple[str, dict]:
    def row(rep, method):
        s = rep["summary"]
        return s["all degraded"][method]["delta_e"], s["original"][method]["delta_e"]

    auto = reports["auto"]
    rows = [("identity (left alone)", *row(auto, "degraded"), None, None),
            ("auto (analytic planner)", *row(auto, "restored"), auto["delta_e_changes"], None)]
    for model, what in (("puzzles", "puzzles A+B+C with reasoning"), ("regression", "regression (values only)")):
        for suffix, (how, _) in decodings(samples).items():
            rep = reports[f"mini-{model}{suffix}"]
            failed = sum(len(c["failed_stages"]) for c in rep["cases"])
            rows.append((f"mini, {what} — {how}", *row(rep, "restored"), rep["delta_e_changes"], failed))
    n = auto["summary"]["all degraded"]["degraded"]["n"]
    head = (f"| planner | mean ΔE2000, {n} degraded held-out cases ↓ | ΔE2000 on the {len(auto['photos'])} "
            f"undegraded originals ↓ | better / same / worse than identity | failed stages |")
    lines = [head, "|---|---|---|---|---|"]
    for label, de, orig, ch, failed in rows:
        chs = f"{ch['better']} / {ch['same']} / {ch['worse']}" if ch else "—"
        lines.append(f"| {label} | {de:.2f} | {orig:.2f} | {chs} | {'—' if failed is None else failed} |")
    md = "\n".join(lines) + "\n"
    facts = {"rows": [{"planner": r[0], "delta_e_degraded": r[1], "delta_e_original": r[2], "changes": r[3],
                       "failed_stages": r[4]} for r in rows], "training": trained}
    return md, facts


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/mini"), help="Working folder (default runs/mini).")
    ap.add_argument("--budget-minutes", type=float, default=30.0, help="Training time of the regression model "
                                                                       "(default 30); the two train in parallel, "
                                                                       "one core each.")
    ap.add_argument("--puzzle-minutes", type=float, default=60.0, help="Training time of the puzzle model (default "
                                                                       "60). Its data is larger (puzzles A and B, "
                                                                       "reasoning): 60 gives it about as many passes "
                                                                       "over the puzzle-C images as regression makes "
                                                                       "in 30.")
    ap.add_argument("--puzzles", type=int, default=6000, help="Puzzles to generate (A, B, C; default 6000).")
    ap.add_argument("--long-side", type=int, default=256, help="Long side of puzzle images (the model sees ≤ 224²).")
    ap.add_argument("--perception", type=int, default=60, help="Perception records per training photo in each of "
                                                                "two shards, added to both models' data (default "
                                                                "60; 0: none).")
    ap.add_argument("--seed", type=int, default=0, help="Seed of the initial weights, the data (puzzle and "
                                                        "perception shards 2·SEED and 2·SEED+1) and the training "
                                                        "order (default 0). Use one --out per seed.")
    ap.add_argument("--jobs", type=int, default=2, help="Processes at once, one thread each (default 2: this "
                                                        "machine's cores). The two trainings always run together; "
                                                        "scoring fills what they leave.")
    ap.add_argument("--quick", action="store_true", help="Smoke run: 40 puzzles, 20 steps each, 3 degradations, "
                                                         "means of 2 samples.")
    a = ap.parse_args()
    t0 = time.perf_counter()
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    count, steps = (40, 20) if a.quick else (a.puzzles, 0)
    minutes = {"puzzles": 5.0, "regression": 5.0} if a.quick else {
        "puzzles": a.puzzle_minutes, "regression": a.budget_minutes}
    if min(minutes.values()) <= 0:
        ap.error("training budgets must be > 0 minutes")
    if a.jobs < 1:
        ap.error("--jobs must be ≥ 1")
    corpus = make_corpus(out)
    init = out / "init"
    if not (init / "model.safetensors").is_file():
        subprocess.run([sys.executable, "-m", "monet_cli", "models", "init", "mini", str(init), "--seed", str(a.seed),
                        "--force"], env=env(), check=True)
    shards = make_puzzles(out, corpus, count, a.long_side, a.seed)
    reg = make_regression(out, shards)
    per_photo = min(a.perception, 2) if a.quick else a.perception
    perception = make_perception(out, corpus, per_photo, a.long_side, a.seed) if per_photo > 0 else []
    samples = 2 if a.quick else SAMPLES  # a barely trained model rambles: 8 long samples per turn are slow
    trained, reports = train_and_score(out, init, corpus, {"puzzles": shards + perception,
                                                           "regression": [reg] + perception},
                                       minutes, steps, a.seed, a.quick, samples, a.jobs)
    md, facts = table(reports, trained, samples)
    facts.update(seed=a.seed, budget_minutes=minutes["regression"], puzzle_minutes=minutes["puzzles"], quick=a.quick, puzzles=count, perception_per_photo=per_photo,
                 seconds=round(time.perf_counter() - t0))
    (out / "mini.md").write_text(md, encoding="utf-8")
    (out / "mini.json").write_text(json.dumps(facts, indent=1) + "\n", encoding="utf-8")
    for name, t in trained.items():
        log(f"{name}: {t['steps']} steps, {t['records']} records, {t['seconds'] / 60:.1f} min, "
            f"loss {t['train_loss_first']:.3f} → {t['train_loss_last']:.3f}")
    print(md)
    log(f"done in {(time.perf_counter() - t0) / 60:.1f} min; {out / 'mini.md'}")


if __name__ == "__main__":
    main()
