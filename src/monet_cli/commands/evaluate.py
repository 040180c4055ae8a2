"""`monet eval`, `monet preview`, `monet bench restore`, `monet bench photos`: evaluation and
review. Parse, call the library (:mod:`monet_cli.evaluate`, :mod:`monet_cli.preview`,
:mod:`monet_cli.bench`), print."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from monet_cli.cli import app, sub_app
from monet_cli.console import console, escape, print_json, progress

bench_app = sub_app("bench", "Benchmarks: `monet bench restore` scores a planner on degraded copies of good photos.")


def _fmt(metric: str, v: float | None) -> str:
    if v is None:
        return "—"
    if metric in ("ssim", "l1", "lpips"):
        return f"{v:.4f}"
    return f"{v:.2f}"


def _print_list(con, title: str, items, limit: int = 10) -> None:
    if not items:
        return
    con.print(f"[yellow]{escape(title)} ({len(items)}):[/yellow]")
    for p, why in items[:limit]:
        con.print(f"  {escape(str(p))}: {escape(why)}")
    if len(items) > limit:
        con.print(f"  … and {len(items) - limit} more (see --json or eval.json)")


# ---------------------------------------------------------------------------- eval


@app.command("eval")
def eval_cmd(
    pred_dir: Path = typer.Argument(..., help="Folder of predictions (e.g. `monet apply --out-dir` renders)."),
    target: List[Path] = typer.Option(..., "--target", "-t", help="Folder of references, repeatable (e.g. the "
                                                                  "five experts of MIT-Adobe FiveK)."),
    size: int = typer.Option(512, "--size", help="Common size: long side in pixels both images are reduced to "
                                                 "(never enlarged) before scoring."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write eval.csv (per image), eval.json, "
                                                                "metrics.png and plan_values.png here."),
    plans: List[Path] = typer.Option([], "--plans", help="Plan JSON files or folders of *.monet.json for "
                                                         "plan_values.png (default: sidecars in PRED_DIR)."),
    no_lpips: bool = typer.Option(False, "--no-lpips", help="Skip LPIPS even when its weights are on disk."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing files in --out."),
    as_json: bool = typer.Option(False, "--json", help="Print the full report as one JSON document."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the summary table."),
):
    """Score predictions against one or more reference folders, pairing files by name.

    Names pair without their suffix and a trailing .monet (a.monet.jpg ↔ a.tif), case-insensitively. Both images are reduced to a common size in linear light and compared as 8-bit sRGB: PSNR, SSIM, ΔE2000, L1, histogram intersection (luminance, contrast, saturation) and LPIPS when its weights are already on disk (never downloaded). With several targets, best-over-targets (the paper's rule) and mean-over-targets are both reported. Exit 0 when every prediction was scored against every target, 1 when some were missing or unreadable.

    [b]Examples[/b]

      monet eval renders/ --target experts/
      monet eval renders/ -t fivek/a -t fivek/b -t fivek/c -t fivek/d -t fivek/e --out report/
      monet eval renders/ -t experts/ --size 1024 --json | jq .summary.best.delta_e
    """
    from monet_cli.errors import MonetError
    from monet_cli.evaluate import METRICS, RULES, evaluate, load_plan_values, pair_by_name, write_outputs

    total = len(pair_by_name(pred_dir, target).pairs)
    with progress("scoring", enabled=not quiet and not as_json, total=total, transient=True) as bar:
        report = evaluate(pred_dir, target, size=size, lpips=not no_lpips, on_pair=bar.advance)
    plan_values = load_plan_values(plans or [pred_dir]) if out is not None else []
    written = write_outputs(report, out, plans=plan_values, force=force) if out is not None else []
    if as_json:
        d = report.to_dict()
        d["written"] = [str(p) for p in written]
        print_json(d)
        raise typer.Exit(report.exit_code)
    con, err = console(), console(stderr=True)
    if not report.scored:
        _print_list(err, "not scored", report.missing + [(r.prediction, "; ".join(r.errors)) for r in report.failed])
        raise MonetError("no prediction could be scored against a target")
    from rich.table import Table

    summary = report.summary()
    multi = len(report.labels) > 1
    t = Table(title=f"{len(report.scored)} predictions in {escape(report.pred_dir)} vs "
                    f"{escape(', '.join(report.labels))} (long side ≤ {report.size}, 8-bit sRGB)",
              caption="best: per image the best target (the paper's rule); avg: per image the mean over targets; "
                      "then mean / median over images" if multi else None)
    t.add_column("metric")
    t.add_column("", justify="center")
    if multi:
        for rule in ("best", "avg"):
            t.add_column(f"{rule} · mean", justify="right")
            t.add_column(f"{rule} · median", justify="right")
    else:
        for c in ("mean", "median", "std"):
            t.add_column(c, justify="right")
    for m in report.metric_names:
        label, sign = METRICS[m]
        if m.startswith("hist_"):
            label = "  └ " + m[len("hist_"):]
        row = [label, "↑" if sign > 0 else "↓"]
        if multi:
            for rule in RULES:
                s = summary[rule].get(m, {})
                row += [_fmt(m, s.get("mean")), _fmt(m, s.get("median"))]
        else:
            s = summary["best"].get(m, {})
            row += [_fmt(m, s.get("mean")), _fmt(m, s.get("median")), _fmt(m, s.get("std"))]
        t.add_row(*row)
    con.print(t)
    if not quiet:
        con.print(f"[dim]{escape(report.lpips)}[/dim]")
        unmatched = {d: n for d, n in report.unmatched_targets.items() if n}
        for d, n in unmatched.items():
            con.print(f"[dim]{n} file(s) in {escape(d)} have no prediction of the same name[/dim]")
        for p in written:
            con.print(f"[green]✓[/green] wrote {escape(str(p))}")
    _print_list(err, "missing", report.missing)
    _print_list(err, "scored against fewer targets", report.gaps)
    _print_list(err, "failed", [(r.prediction, "; ".join(r.errors)) for r in report.failed])
    raise typer.Exit(report.exit_code)


# ---------------------------------------------------------------------------- preview


@app.command("preview")
def preview_cmd(
    paths: List[str] = typer.Argument(..., help="Photos, folders or glob patterns."),
    stages: bool = typer.Option(False, "--stages", help="One panel per stage (original, lighting, colour, HSL) "
                                                        "instead of before/after."),
    plan_file: Optional[Path] = typer.Option(None, "--plan", "-p", help="A plan JSON for every photo "
                                                                      "(default: each photo's sidecar)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output file (one photo; .jpg or .png). "
                                                                      "Default: <stem>.monet.preview.jpg."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Write previews into this folder."),
    sheet: Optional[Path] = typer.Option(None, "--sheet", help="Write one contact sheet of all photos here "
                                                               "(.jpg or .png) instead of one preview each."),
    size: Optional[int] = typer.Option(None, "--size", help="Long side of each panel in pixels (default 768; "
                                                            "280 on a contact sheet)."),
    columns: Optional[int] = typer.Option(None, "--columns", help="Contact sheet columns (default: about 4:3)."),
    sidecar_dir: Optional[Path] = typer.Option(None, "--sidecar-dir", help="Where the sidecars live."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing previews; use stale sidecars."),
    as_json: bool = typer.Option(False, "--json", help="One JSON line per photo on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and the final summary."),
):
    """Quick-look images of plans: before/after (or one panel per stage) of each photo, or a contact sheet of a batch.

    Panels are rendered on a reduced proxy with the same renderer as `monet apply`, captioned with the adjustments. Photos without a plan fail with a hint; one bad file never stops a batch. Existing previews are kept unless --force.

    [b]Examples[/b]

      monet preview photo.tif                      # → photo.monet.preview.jpg
      monet preview photo.tif --stages -o review.png
      monet preview shoot/ --out-dir previews/
      monet preview shoot/ --sheet shoot-sheet.jpg --columns 4
    """
    from monet_cli.batch import Skip, collect_photos, print_summary, run_batch, single_photo
    from monet_cli.errors import OutputError, UsageError
    from monet_cli.images import output_format_for
    from monet_cli.plan import load_plan
    from monet_cli.preview import (
        PREVIEW_SIDE,
        THUMB_SIDE,
        contact_sheet,
        default_preview_path,
        preview_photo,
        sheet_cell,
        write_preview,
    )
    from monet_cli.sidecars import read_sidecar

    plan = load_plan(plan_file) if plan_file is not None else None
    one = single_photo(paths)
    photos, missing = ([one], []) if one is not None else collect_photos(paths, recursive=recursive)
    if not photos and not missing:
        raise UsageError("no photos given")
    single = one is not None and sheet is None
    if output is not None and not single:
        raise UsageError("-o names one preview; for several photos use --out-dir or --sheet")
    for p in (output, sheet):
        if p is not None and output_format_for(p) == "tiff":
            raise UsageError(f"{p}: previews are .jpg or .png")
    if sheet is not None and sheet.exists() and not force:
        raise OutputError("already exists; use --force to overwrite it", path=sheet)
    cells: dict[Path, tuple] = {}
    write_each = sheet is None or out_dir is not None

    def job(photo: Path):
        the_plan = plan if plan is not None else read_sidecar(photo, sidecar_dir, check_source=not force)[0]
        d = {}
        if write_each:
            target = output if output is not None else default_preview_path(photo, out_dir)
            if target.exists() and not force and not single:
                raise Skip(f"{target.name} exists (use --force to render again)")
            img = preview_photo(photo, the_plan, stages=stages, size=size or PREVIEW_SIDE)
            write_preview(target, img, overwrite=force)
            d.update(output=str(target), width=int(img.shape[1]), height=int(img.shape[0]))
        if sheet is not None:
            cells[photo] = sheet_cell(photo, the_plan, stages=stages, thumb=size or THUMB_SIDE)
        d["panels"] = 4 if stages else 2
        return d

    con = console()
    summary = run_batch(photos, job, verb="previewing", quiet=quiet, as_json=as_json, console=con,
                        missing=missing, output_dirs=[out_dir] if out_dir else [], silent=single and not as_json)
    if single and not as_json:
        r = summary.results[0]
        if r.error is not None:
            raise r.error
        if not quiet:
            d = r.data
            con.print(f"[green]✓[/green] {escape(str(r.path))} → [bold]{escape(d['output'])}[/bold]  "
                      f"{d['width']}×{d['height']}, {d['panels']} panels")
        raise typer.Exit(summary.exit_code)
    if sheet is not None:
        done = [cells[p] for p in photos if p in cells]
        if done:
            kind = "original | lighting | colour | HSL" if stages else "before | after"
            img = contact_sheet(done, columns=columns, title=f"{len(done)} photos: {kind}")
            write_preview(sheet, img, overwrite=force)
            if as_json:
                print_json({"sheet": str(sheet), "photos": len(done), "width": int(img.shape[1]),
                            "height": int(img.shape[0])})
            elif not quiet:
                console(stderr=True).print(f"[green]✓[/green] contact sheet of {len(done)} photos → "
                                           f"[bold]{escape(str(sheet))}[/bold] ({img.shape[1]}×{img.shape[0]})")
    if not as_json:
        print_summary(summary, console(stderr=True), verb="preview")
    raise typer.Exit(summary.exit_code)


# ---------------------------------------------------------------------------- bench


@bench_app.command("restore")
def bench_restore_cmd(
    photo_dir: Optional[Path] = typer.Argument(None, help="Folder of good photos to use as references. Default: "
                                                          "the photos bundled with scikit-image."),
    backend: str = typer.Option("auto", "--backend", "-b", help="Planner to score: auto, rules, qwen or openai."),
    model: Optional[str] = typer.Option(None, "--model", help="qwen/openai: a preset, local folder or hub id."),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="qwen: a peft adapter folder."),
    quant: Optional[str] = typer.Option(None, "--quant", help="qwen: 4bit, 8bit or none."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="openai: base URL."),
    samples: Optional[int] = typer.Option(None, "--samples", help="qwen: plan each stage from N sampled plans, "
                                                                  "generated as one batch (default: the model "
                                                                  "preset's; mini: 8)."),
    consensus: Optional[str] = typer.Option(None, "--consensus", help="qwen, with --samples > 1: 'mean' or "
                                                                      "'medoid' (default: the preset's)."),
    sample_temperature: Optional[float] = typer.Option(None, "--sample-temperature", help="qwen, with --samples "
                                                       "> 1: temperature the plans are sampled at (0 < T <= 2; "
                                                       "default: the preset's, 1)."),
    caution: Optional[str] = typer.Option(None, "--caution", help="auto: how sure it must be before it "
                                          "changes a photo: medium (default), high (holds back unless a gain is "
                                          "likely: nearly never worse, rarely better) or low (corrects more photos "
                                          "and makes more of them worse; see the README's cross-validated table)."),
    style: str = typer.Option("balanced", "--style", "-s", help="Style the backend plans with."),
    kinds: Optional[str] = typer.Option(None, "--kinds", help="Comma-separated degradations (default: all 8, "
                                                              "3 combinations and the 6 independent x- kinds): "
                                                              "under, over, warm, cool, flat, harsh, washed, "
                                                              "oversaturated, under+cool, …, x-exposure, x-cast, "
                                                              "x-contrast, x-saturation, x-gamma, x-mix"),
    seeds: int = typer.Option(2, "--seeds", help="Seeds per degradation."),
    size: int = typer.Option(512, "--size", help="Long side the references are reduced to."),
    photos: Optional[str] = typer.Option(None, "--photos", help="Comma-separated scikit-image photos (without "
                                                                "PHOTO_DIR): astronaut, coffee, chelsea, rocket, "
                                                                "motorcycle."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write bench.csv, bench.json, bench.md and "
                                                                "PNG plots here."),
    markdown: bool = typer.Option(False, "--markdown", help="Print the summary as a Markdown table."),
    no_lpips: bool = typer.Option(False, "--no-lpips", help="Skip LPIPS even when its weights are on disk."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing files in --out."),
    as_json: bool = typer.Option(False, "--json", help="Print the full report (every case) as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Score a planner end to end: degrade good photos in seeded, documented ways, plan and render them, and compare with the originals.

    Each photo (reduced to --size) is the reference. It is degraded (exposure, white balance, contrast, saturation; values from `monet_cli.degrade` and the seed), saved like an 8-bit file, then planned with the backend and rendered. Degraded, restored and two one-click baselines (autocontrast, grey-world) are scored with the metrics of `monet eval`. The "original" row plans the undegraded photo: the harm done to a photo that needs nothing. Without PHOTO_DIR the scikit-image photos are used (`monet bench photos DIR` writes them out).

    [b]Examples[/b]

      monet bench restore
      monet bench restore --seeds 1 --kinds under,warm,flat --photos astronaut,coffee
      monet bench restore ~/best-shots/ --backend qwen --model monetgpt-7b --out bench/
      monet bench restore --markdown > restore-table.md
      monet bench restore --caution high
    """
    from monet_cli.bench import DEFAULT_KINDS, load_references, run_restore, write_outputs
    from monet_cli.errors import UsageError
    from monet_cli.planners.base import get_planner

    if photos is not None and photo_dir is not None:
        raise UsageError("--photos picks scikit-image photos; it cannot be combined with PHOTO_DIR")
    if size < 16:
        raise UsageError(f"--size must be at least 16 pixels, got {size}")
    kind_list = [k.strip() for k in kinds.split(",") if k.strip()] if kinds else list(DEFAULT_KINDS)
    names = [n.strip() for n in photos.split(",") if n.strip()] if photos else None
    planner = get_planner(backend, model=model, adapter=str(adapter) if adapter else None, quant=quant,
                          endpoint=endpoint, samples=samples, consensus=consensus,
                          sample_temperature=sample_temperature, caution=caution)
    for warning in getattr(planner, "warnings", None) or []:
        console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(warning)}")
    refs, failed = load_references(photo_dir, size=size, names=names)
    total = len(refs) * (1 + len(kind_list) * max(seeds, 1))
    with progress("benchmarking", enabled=not quiet and not as_json, total=total, transient=True) as bar:
        report = run_restore(refs, planner, kinds=kind_list, seeds=seeds, style=style, lpips=not no_lpips,
                             size=size, failed_photos=failed, on_case=bar.advance)
    written = write_outputs(report, out, force=force) if out is not None else []
    if as_json:
        d = report.to_dict()
        d["written"] = [str(p) for p in written]
        print_json(d)
        raise typer.Exit(1 if failed else 0)
    if markdown:
        typer.echo(report.markdown(), nl=False)
        raise typer.Exit(1 if failed else 0)
    _print_bench(report, console())
    con = console()
    if not quiet:
        for p in written:
            con.print(f"[green]✓[/green] wrote {escape(str(p))}")
    _print_list(console(stderr=True), "photos that could not be read", failed)
    raise typer.Exit(1 if failed else 0)


def _print_bench(report, con) -> None:
    from rich import box
    from rich.table import Table

    from monet_cli.bench import ALL, KIND_LABELS, METHODS, ORIGINAL
    from monet_cli.evaluate import METRICS

    s = report.summary()
    name = {"restored": report.backend, "grey_world": "grey world"}
    n_deg = len([c for c in report.cases if c.kind != ORIGINAL])
    n_ph = len(report.photos)
    t = Table(title=f"restore benchmark: {n_ph} photo{'s' * (n_ph != 1)}, {n_deg} degraded cases, backend "
                    f"{escape(report.backend)}", caption="mean ΔE2000 / PSNR dB against the original; lower ΔE, "
                                                          "higher PSNR is better", box=box.SIMPLE_HEAD,
              padding=(0, 1), pad_edge=False, show_edge=False)
    t.add_column("degradation", no_wrap=True)
    for m in METHODS:
        t.add_column(name.get(m, m), justify="right", no_wrap=True)
    for row in report.rows:
        best = min(s[row][m]["delta_e"] for m in METHODS if m != "degraded")
        cells = []
        for m in METHODS:
            v = s[row][m]
            txt = f"{v['delta_e']:.2f} / {v['psnr']:.2f}"
            bold = m != "degraded" and row != ORIGINAL and v["delta_e"] == best and best < s[row]["degraded"]["delta_e"]
            cells.append(f"[bold green]{txt}[/bold green]" if bold else txt)
        label = KIND_LABELS.get(row, row)
        i = report.rows.index(row)
        t.add_row(f"[bold]{label}[/bold]" if row == ALL else label, *cells,
                  end_section=i + 1 < len(report.rows) and report.rows[i + 1] in (ALL, ORIGINAL))
    con.print(t)
    metrics = report.metric_names
    if ALL in s:
        t2 = Table(title=f"all {n_deg} degraded cases: mean of every metric", box=box.SIMPLE_HEAD,
                   padding=(0, 1), pad_edge=False, show_edge=False)
        t2.add_column("metric", no_wrap=True)
        t2.add_column("")
        for m in METHODS:
            t2.add_column(name.get(m, m), justify="right", no_wrap=True)
        for k in metrics:
            label, sign = METRICS[k]
            if k.startswith("hist_"):
                label = "  └ " + k[len("hist_"):]
            t2.add_row(label, "↑" if sign > 0 else "↓", *(_fmt(k, s[ALL][m].get(k)) for m in METHODS))
        con.print(t2)
    ch, ps = report.changes(), report.plan_seconds()
    con.print(f"{escape(report.backend)} lowered ΔE by more than 0.1 in {ch['better']} of {n_deg} cases, raised it "
              f"in {ch['worse']}, left it within 0.1 in {ch['same']}. Planning: mean {1000 * ps['mean']:.0f} ms, "
              f"max {1000 * ps['max']:.0f} ms per photo of long side ≤ {report.size}.")
    failed = [c for c in report.cases if c.failed_stages]
    if failed:
        con.print(f"[yellow]{len(failed)} plans had failed stages[/yellow] (see --json)")
    con.print(f"[dim]{escape(report.lpips)}[/dim]")


@bench_app.command("photos")
def bench_photos_cmd(
    folder: Path = typer.Argument(..., help="Folder to write the photos into (created)."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing files."),
):
    """Write the colour photos bundled with scikit-image (astronaut, coffee, chelsea, rocket, motorcycle) as PNG: the default references of `monet bench restore`.

    [b]Examples[/b]

      monet bench photos refs/ && monet bench restore refs/
    """
    from monet_cli.bench import export_skimage_photos

    for p in export_skimage_photos(folder, force=force):
        console().print(f"[green]✓[/green] {escape(str(p))}")
