"""`monet puzzles generate|stats` and `monet reason synthesize`: training data for the model
planner (the paper's puzzles A, B, C and their grounded reasoning). Parse, call, print."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from monet_cli.cli import sub_app
from monet_cli.console import console, escape, print_json, progress

puzzles_app = sub_app("puzzles", "Training puzzles (A, B, C) from expert photos, as chat records for fine-tuning.")
reason_app = sub_app("reason", "Grounded reasoning for puzzle datasets.")


# ---------------------------------------------------------------------------- generate


@puzzles_app.command("generate")
def generate_cmd(
    expert_dir: Path = typer.Argument(..., help="Folder of expert-edited photos (RAW, TIFF, JPEG, PNG), "
                                                "e.g. Lightroom exports."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset folder. Created if new; a dataset made with the same "
                                                      "settings is resumed (done puzzles are kept, never repeated)."),
    kinds: str = typer.Option("a,b,c", "--kinds", "-k", help="Puzzle kinds, comma-separated: a (name the op and its "
                                                             "value), b (rank strengths of one op), c (restore a "
                                                             "degraded stage: the planner's format)."),
    count: int = typer.Option(100, "--count", "-n", help="Puzzles in the dataset, spread evenly over the photos; a "
                                                         "larger count extends an existing dataset."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed, photos and config give the same dataset."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="Sampling config: a YAML file merged "
                                                                      "over models/puzzles/default.yaml."),
    long_side: Optional[int] = typer.Option(None, "--long-side", help="Long side of the puzzle images in pixels "
                                                                      "(default 512; the config's images.long_side)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also take photos from sub-folders."),
    force: bool = typer.Option(False, "--force", "-f", help="A dataset made with other settings in --out is deleted "
                                                            "and made again (without it: refused)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar; only errors and the summary line."),
):
    """Make training puzzles from expert photos: images plus chat records (train.jsonl) that LLaMA-Factory and the trainer read.

    Each photo is decoded once, shrunk to a proxy, and edited with monet's renderer, so every answer is known exactly. Puzzle C asks exactly what the planner asks (stage by stage, analysis then values). Invisible edits are drawn again; HSL bands are drawn from colours present. Reasoning is written by the offline template (`monet reason synthesize` can rewrite it with a model). Ctrl-C stops cleanly; run the same command again to resume. Exit 0 when done, 1 when some photos could not be read, 130 when interrupted.

    [b]Examples[/b]

      monet puzzles generate exports/ --out puzzles/ --count 5000 --seed 1
      monet puzzles generate exports/ -o puzzles-c/ --kinds c --count 2000 --long-side 448
      monet puzzles generate exports/ -o puzzles/ --config my-sampling.yaml --json
    """
    from monet_cli import puzzles as pz
    from monet_cli import synth

    kind_list = [k.strip().lower() for k in kinds.split(",") if k.strip()]
    cfg = pz.load_config(config, **{"images.long_side": long_side})
    with progress("puzzles", enabled=not quiet and not as_json) as bar:
        summary = pz.generate(expert_dir, out, kinds=kind_list, count=count, seed=seed, config=cfg,
                              recursive=recursive, force=force, progress=bar.update)
    info = pz.read_info(out)
    train_backend = (info.get("reasoning") or {}).get("backend", "template")
    train = None
    if train_backend == "template":
        train = synth.synthesize(out, "template")
    d = summary.to_dict()
    d["train"] = {"file": str(Path(out) / pz.TRAIN_FILE), "records": train.written if train else None,
                  "backend": train_backend}
    if as_json:
        print_json(d)
    else:
        _print_generate(d, train_backend, quiet)
    if summary.interrupted:
        raise typer.Exit(130)
    raise typer.Exit(1 if summary.failed_photos else 0)


def _print_generate(d: dict, train_backend: str, quiet: bool) -> None:
    con, err = console(), console(stderr=True)
    for f in d["failed_photos"]:
        err.print(f"[red]✗[/red] {escape(f['photo'])}: {escape(f['error'])}")
    made = ", ".join(f"{n} {k.upper()}" for k, n in d["made"].items() if n) or "nothing new"
    rate = f", {d['puzzles_per_second']:.2f} puzzles/s" if d["made_total"] and d["puzzles_per_second"] else ""
    tail = " [yellow](interrupted: run the same command again to resume)[/yellow]" if d["interrupted"] else ""
    con.print(f"[green]✓[/green] {escape(d['dataset'])}: made {made} in {d['seconds']:.1f} s{rate}; "
              f"{d['existing']} already there, {d['skipped']} skipped{tail}")
    if quiet:
        return
    if d["rejections"]:
        con.print("  draws rejected: " + ", ".join(f"{k.replace('_', ' ')} {n}" for k, n in d["rejections"].items()))
    if d["train"]["records"] is not None:
        con.print(f"  training file: {escape(d['train']['file'])} ({d['train']['records']} records, "
                  "template reasoning)")
    else:
        con.print(f"  [yellow]train.jsonl was written by the {train_backend} backend; run `monet reason synthesize "
                  f"{escape(d['dataset'])} --backend {train_backend}` to cover the new puzzles[/yellow]")


# ---------------------------------------------------------------------------- perceive


@puzzles_app.command("perceive")
def perceive_cmd(
    photo_dir: Path = typer.Argument(..., help="Folder of photos (RAW, TIFF, JPEG, PNG)."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset folder (new or empty; --force remakes one made "
                                                      "before)."),
    per_photo: int = typer.Option(60, "--per-photo", "-n", help="Records per photo: the photo and seeded crops of "
                                                                 "it, each with 0-2 random global edits."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed, photos and config give the same dataset."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="Puzzle sampling config whose images section "
                                                                      "(long side, crops) is used, e.g. mini."),
    long_side: Optional[int] = typer.Option(None, "--long-side", help="Long side of the images in pixels (default: "
                                                                      "the config's images.long_side)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also take photos from sub-folders."),
    force: bool = typer.Option(False, "--force", "-f", help="Remake a perception dataset already in --out."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar; only errors and the summary line."),
):
    """Make perception records: each image answered with its own measured statistics (L* percentiles, clipping, chroma, CCT). Mixed into the training data, they teach a model trained from scratch to look at the image.

    A pretrained Qwen-VL does not need this; monet-mini does (benchmarks/mini.py mixes these records into its training data). Exit 0 when done, 1 when some photos could not be read, 130 when interrupted (the records made so far are written).

    [b]Examples[/b]

      monet puzzles perceive corpus/train --out perception/ --config mini
      monet puzzles perceive photos/ -o perception/ --per-photo 120 --seed 1 --json
    """
    from monet_cli import perceive
    from monet_cli import puzzles as pz

    cfg = pz.load_config(config, **{"images.long_side": long_side})
    with progress("perception records", enabled=not quiet and not as_json) as bar:
        summary = perceive.generate(photo_dir, out, per_photo=per_photo, seed=seed, config=cfg, recursive=recursive,
                                    force=force, progress=bar.update)
    d = summary.to_dict()
    if as_json:
        print_json(d)
    else:
        err = console(stderr=True)
        for f in d["failed_photos"]:
            err.print(f"[red]✗[/red] {escape(f['photo'])}: {escape(f['error'])}")
        tail = " [yellow](interrupted)[/yellow]" if d["interrupted"] else ""
        console().print(f"[green]✓[/green] {escape(d['dataset'])}: {d['records']} perception records from "
                        f"{d['photos'] - len(d['failed_photos'])} photos in {d['seconds']:.1f} s{tail}")
    if summary.interrupted:
        raise typer.Exit(130)
    raise typer.Exit(1 if summary.failed_photos else 0)


# ---------------------------------------------------------------------------- stats


@puzzles_app.command("stats")
def stats_cmd(
    dataset: Path = typer.Argument(..., help="A puzzle dataset folder."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Where to draw the value histograms (PNG); "
                                                             "default DATASET/stats.png."),
    no_plot: bool = typer.Option(False, "--no-plot", help="Do not draw the PNG."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as one JSON object."),
):
    """Count a dataset's puzzles per kind, stage and op, their value ranges, rejected draws and skipped puzzles, and plot the answer values per op.

    Value ranges use the intensity legend (+slight = +13..+24 …). For puzzle C, the restoration error (mean ΔE2000 of the solved answer, and of the plain negated perturbation) is shown.

    [b]Examples[/b]

      monet puzzles stats puzzles/
      monet puzzles stats puzzles/ --plot values.png
      monet puzzles stats puzzles/ --json --no-plot | jq .kinds
    """
    from monet_cli import puzzles as pz

    s = pz.dataset_stats(dataset)
    if not no_plot:
        s["plot"] = str(pz.plot_values(dataset, plot or Path(dataset) / "stats.png"))
    if as_json:
        print_json(s)
        return
    _print_stats(s)


def _print_stats(s: dict) -> None:
    from rich.table import Table

    from monet_cli.catalog import STAGES, catalog

    con = console()
    con.print(f"[bold]{escape(s['dataset'])}[/bold]: {s['records']} puzzles (seed {s['seed']}), "
              f"{s['skipped']} skipped, {s['no_change']} C puzzles with no change needed")
    t = Table(title="puzzles per stage and kind")
    t.add_column("stage")
    for k in ("a", "b", "c"):
        t.add_column(k.upper(), justify="right")
    t.add_column("all", justify="right")
    for st in STAGES:
        row = s["stages"][st]
        t.add_row(catalog().stages[st].title, *(str(row[k]) for k in ("a", "b", "c")), str(sum(row.values())))
    t.add_row("[bold]all[/bold]", *(str(s["kinds"][k]) for k in ("a", "b", "c")), str(s["records"]))
    con.print(t)
    if s["ops"]:
        t = Table(title="answer values per op")
        for c in ("op", "stage", "A", "B", "C", "min", "max", "mean |v|", "− / +"):
            t.add_column(c, justify="left" if c in ("op", "stage") else "right")
        for op, o in s["ops"].items():
            t.add_row(op, o["stage"], *(str(o["count"][k]) for k in ("a", "b", "c")), f"{o['min']:+g}",
                      f"{o['max']:+g}", f"{o['mean_abs']:.1f}", f"{o['down']} / {o['up']}")
        con.print(t)
    from monet_cli.reasoning import INTENSITY_LEGEND

    words = [w for _, w in INTENSITY_LEGEND]
    buckets = [f"-{w}" for w in reversed(words)] + [f"+{w}" for w in words]
    t = Table(title="value ranges (intensity legend)")
    t.add_column("range")
    for k in ("a", "b", "c"):
        t.add_column(k.upper(), justify="right")
    for b in buckets:
        if any(s["ranges"][k].get(b) for k in ("a", "b", "c")):
            t.add_row(b, *(str(s["ranges"][k].get(b, 0)) for k in ("a", "b", "c")))
    con.print(t)
    if s["rejections"]:
        con.print("draws rejected: " + ", ".join(f"{k.replace('_', ' ')} {n}" for k, n in s["rejections"].items()))
    if s["restore_delta_e"]:
        r, n = s["restore_delta_e"], s["negated_delta_e"]
        con.print(f"restoring (mean ΔE2000 back to the expert image): solved answers {r['mean']:.2f} "
                  f"(worst {r['max']:.2f}); the plain negated perturbation would give {n['mean']:.2f} "
                  f"(worst {n['max']:.2f})")
    for name, r in s["reasoning"].items():
        con.print(f"reasoning by {escape(name)}: {r['done']} done, {r['ok']} grounded, {r['rejected']} rejected, "
                  f"{r['regenerations']} regenerations")
    if s.get("train"):
        con.print(f"train.jsonl written by: {escape(s['train'].get('backend', '?'))}")
    if s.get("plot"):
        con.print(f"plot: {escape(s['plot'])}")


# ---------------------------------------------------------------------------- reason


@reason_app.command("synthesize")
def synthesize_cmd(
    dataset: Path = typer.Argument(..., help="A puzzle dataset folder (from `monet puzzles generate`)."),
    backend: str = typer.Option("template", "--backend", "-b", help="template (offline, deterministic; the "
                                                                    "default), qwen (a local Qwen-VL) or openai "
                                                                    "(an OpenAI-compatible endpoint)."),
    model: Optional[str] = typer.Option(None, "--model", help="qwen/openai: a preset, a local folder or a model name."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="openai: the server's base URL."),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="qwen: a peft adapter folder."),
    quant: Optional[str] = typer.Option(None, "--quant", help="qwen: 4bit, 8bit or none."),
    max_tries: int = typer.Option(3, "--max-tries", help="Attempts per puzzle before its text is rejected."),
    on_reject: str = typer.Option("template", "--on-reject", help="A rejected puzzle keeps the template's text "
                                                                  "(template) or is left out (drop)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Training file to write "
                                                                 "(default DATASET/train.jsonl)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Write the reasoning of every puzzle (<Adjustment, Issue, Solution> triplets, comparisons, rankings), grounded in its known adjustments and measured image statistics, into the training file.

    A model backend rewrites the template's draft; every op its text names is checked against the ground truth (direction and intensity word), and a failing text is regenerated up to --max-tries times, then rejected (both counted). Results are cached in DATASET/meta/reasoning/BACKEND.jsonl: Ctrl-C stops cleanly and a rerun resumes. Exit 130 when interrupted.

    [b]Examples[/b]

      monet reason synthesize puzzles/
      monet reason synthesize puzzles/ --backend openai --endpoint http://localhost:8000/v1 --model qwen2.5-vl
      monet reason synthesize puzzles/ --backend qwen --model qwen2.5-vl-7b --max-tries 4 --json
    """
    from monet_cli import synth

    options = {"model": model, "endpoint": endpoint, "adapter": str(adapter) if adapter else None, "quant": quant}
    if backend.strip().lower() == "template" and any(v is not None for v in options.values()):
        from monet_cli.errors import UsageError

        raise UsageError("--model, --endpoint, --adapter and --quant are for --backend qwen or openai")
    with progress("reasoning", enabled=not quiet and not as_json and backend != "template") as bar:
        s = synth.synthesize(dataset, backend, max_tries=max_tries, on_reject=on_reject, out=out,
                             backend_options={k: v for k, v in options.items() if v is not None}, progress=bar.update)
    d = s.to_dict()
    if as_json:
        print_json(d)
    else:
        con = console()
        if s.interrupted or s.unanswered:
            why = "interrupted" if s.interrupted else f"{s.unanswered} puzzles got no answer from the backend"
            con.print(f"[yellow]{why}[/yellow] ({s.processed} puzzles done and cached); run the same command "
                      "again to resume. The training file was not changed.")
        else:
            con.print(f"[green]✓[/green] {escape(d['out'])}: {s.written} records, reasoning by {s.backend}")
        if s.backend != "template":
            con.print(f"  {s.ok} grounded, {s.rejected} rejected ({s.fallback} kept with the template's text, "
                      f"{s.dropped} dropped), {s.regenerations} regenerations, {s.errors} backend errors, "
                      f"{s.cached} from an earlier run")
            if s.problems:
                con.print("  problems found: " + ", ".join(f"{k.replace('_', ' ')} {n}" for k, n in s.problems.items()))
    if s.interrupted:
        raise typer.Exit(130)
    if s.unanswered:
        raise typer.Exit(1)
