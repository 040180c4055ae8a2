"""`monet plan`, `monet edit-stage`, `monet show`: planning photos into sidecars."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from monet_cli.cli import app
from monet_cli.console import console, escape, print_json

BACKEND_HELP = ("Planner: auto (embedded, learned from puzzles, numpy, CPU), rules (the analytic "
                "planner auto was before v2), qwen (local Qwen-VL; GPU memory, "
                "estimated: monetgpt-7b / qwen2.5-vl-7b about 7 GiB in 4-bit, 10.5 in 8-bit, 17.5 unquantised; "
                "qwen2.5-vl-3b about 3.5 / 5 / 8.5; qwen2-vl-2b about 2.5 / 3.5 / 5), openai (an "
                "OpenAI-compatible endpoint). Default: qwen when a CUDA card and the monetgpt-7b weights "
                "are present, else auto.")


def print_plan(plan, con, *, title: str | None = None) -> None:
    """A rich summary: per stage its status, ops with values and intensity words, and reasoning."""
    from rich.table import Table

    from monet_cli.catalog import STAGES, catalog
    from monet_cli.reasoning import intensity_word

    p = plan.planner
    bits = [f"backend [bold]{p.backend}[/bold]"]
    if p.model:
        bits.append(f"model {escape(p.model)}")
    if p.adapter:
        bits.append(f"adapter {escape(p.adapter)}")
    bits.append(f"style {p.style}")
    if p.instructions:
        bits.append(f"instructions “{escape(p.instructions)}”")
    if p.value_map:
        bits.append(f"values through the value map {escape(p.value_map)}")
    if title:
        con.print(f"[bold]{escape(title)}[/bold]")
    con.print("  " + ", ".join(bits) + (f"; {len(plan.history)} earlier version(s)" if plan.history else ""))
    cat = catalog()
    for s in STAGES:
        sp = plan.stages[s]
        lock = " 🔒 locked" if sp.locked else ""
        status = {"ok": "[green]ok[/green]", "no_change": "[dim]no change needed[/dim]",
                  "failed": "[red]failed[/red]"}[sp.status]
        con.print(f"  [bold]{cat.stages[s].title}[/bold] — {status}{lock}")
        if sp.status == "failed" and sp.error:
            con.print(f"    [red]{escape(sp.error)}[/red]")
        model = sp.model_adjustments or {}
        if sp.adjustments or model:
            t = Table(show_header=False, box=None, padding=(0, 1), pad_edge=False)
            t.add_column(justify="left", style="cyan")
            t.add_column(justify="right")
            t.add_column(style="dim")
            for name, v in sp.adjustments.items():
                said = model.get(name)
                note = f"  (model {said:+g})" if said is not None and said != v else ""
                if model and said is None:
                    note = "  (added by the value map)"
                t.add_row(f"    {name}", f"{v:+g}", intensity_word(v) + note)
            for name, said in model.items():
                if name not in sp.adjustments:
                    t.add_row(f"    {name}", "0", f"(model {said:+g}; the value map renders no change)")
            con.print(t)
        for r in sp.reasoning:
            what = "no change" if r.adjustment.strip().lower() in ("", "none") else r.adjustment
            con.print(f"    [dim]•[/dim] [italic]{escape(what)}[/italic]: {escape(r.issue)} "
                      f"[dim]→[/dim] {escape(r.solution)}")


@app.command("plan")
def plan_cmd(
    paths: List[str] = typer.Argument(..., help="Photos, folders or glob patterns."),
    backend: Optional[str] = typer.Option(None, "--backend", "-b", help=BACKEND_HELP),
    style: str = typer.Option("balanced", "--style", "-s", help="balanced, vibrant (more saturation and "
                                                                "contrast) or retro (muted, warm, lifted blacks)."),
    instructions: Optional[str] = typer.Option(None, "--instructions", "-i",
                                               help='Free text, recorded in the plan, e.g. "warmer, brighter".'),
    caution: Optional[str] = typer.Option(None, "--caution", help="auto: how sure it must be before it "
                                          "changes a photo: medium (default), high (holds back unless a gain is "
                                          "likely: nearly never worse, rarely better) or low (corrects more photos "
                                          "and makes more of them worse; see the README's cross-validated table)."),
    model: Optional[str] = typer.Option(None, "--model", help="qwen/openai: a preset (`monet models list`), "
                                                              "a local folder or a downloaded hub id."),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="qwen: a peft LoRA/DoRA adapter folder."),
    quant: Optional[str] = typer.Option(None, "--quant", help="qwen: 4bit (default on CUDA), 8bit or none."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="openai: base URL, e.g. http://gpu:8000/v1"),
    samples: Optional[int] = typer.Option(None, "--samples", help="qwen: plan each stage from N sampled plans, "
                                                                  "generated as one batch (default: the model "
                                                                  "preset's; mini: 8)."),
    consensus: Optional[str] = typer.Option(None, "--consensus", help="qwen, with --samples > 1: 'mean' (each "
                                            "value's mean) or 'medoid' (the sampled plan whose result is nearest "
                                            "to the others'); default: the preset's."),
    sample_temperature: Optional[float] = typer.Option(None, "--sample-temperature", help="qwen, with --samples "
                                                       "> 1: temperature the plans are sampled at, above 0 and at "
                                                       "most 2 (default: the preset's; 1: the model's own "
                                                       "distribution; lower: samples that agree more)."),
    value_map: Optional[str] = typer.Option(None, "--value-map", help="qwen/openai: how the model's values become "
                                            "monet's: its preset's fitted map (default), another preset's (for a "
                                            "folder holding known weights, e.g. monetgpt-7b) or 'none' (rendered "
                                            "as said). Both are kept in the plan."),
    seed: int = typer.Option(0, "--seed", help="Seed recorded in the plan (model sampling)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replan photos that already have a sidecar."),
    sidecar_dir: Optional[Path] = typer.Option(None, "--sidecar-dir",
                                               help="Write sidecars here instead of beside the photos "
                                                    "(read-only media)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Photos planned at once. Default: 2 with the "
                                       "embedded planners (auto, rules) where there are 2 or more CPUs, so that "
                                       "one photo is decoded while another is planned; 1 with a model."),
    as_json: bool = typer.Option(False, "--json", help="One JSON line per photo (with the plan) on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and the final summary."),
):
    """Plan photos: write PHOTO.monet.json sidecars with three staged adjustments and the reasoning behind them.

    Existing sidecars are kept unless --force (locked stages survive a replan; the old version goes into the plan's history). One bad file never stops a batch. Exit 0 when all are done, 1 when some photos or stages failed (a failed stage is recorded in the sidecar with the model's raw answer), 2 for usage errors, 130 when interrupted (rerun to finish).

    [b]Examples[/b]

      monet plan photo.tif
      monet plan shoot/ --recursive --jobs 2 --style vibrant
      monet plan 'shoot/*.CR2' --instructions "warmer, brighter" --json > plans.jsonl
      monet plan badly-exposed/ --caution low
      monet plan photo.jpg --backend qwen --model monetgpt-7b --quant 4bit
      monet plan photo.jpg --backend qwen --model ~/weights/monetGPT --value-map monetgpt-7b
      monet plan photo.jpg --backend qwen --model runs/mini/run-puzzles --samples 16 --consensus medoid
    """
    from monet_cli.batch import print_summary, resolve_inputs, run_batch
    from monet_cli.planners.base import get_planner
    from monet_cli.sidecars import plan_to_sidecar

    photos, missing, single = resolve_inputs(paths, recursive=recursive)
    if backend is None:
        from monet_cli.models import default_backend

        backend, why = default_backend()
        if not quiet and not as_json and model is None:
            console(stderr=True).print(f"[dim]{escape(why)}[/dim]")
    options = {"model": model, "adapter": str(adapter) if adapter else None, "quant": quant, "endpoint": endpoint,
               "samples": samples, "consensus": consensus, "sample_temperature": sample_temperature,
               "value_map": value_map, "caution": caution}
    if backend.strip().lower() not in ("auto", "rules"):
        options["seed"] = seed  # model sampling follows --seed
    planner = get_planner(backend, **options)
    for warning in getattr(planner, "warnings", None) or []:
        console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(warning)}")
    con = console()

    def job(photo: Path):
        out = plan_to_sidecar(photo, planner, style=style, instructions=instructions, seed=seed,
                              sidecar_dir=sidecar_dir, force=force)
        if single and not quiet and not as_json:
            print_plan(out.plan, con, title=f"{photo} → {out.sidecar}")
        d = {"sidecar": str(out.sidecar), "replaced": out.replaced,
             "failed_stages": [s for s, sp in out.plan.stages.items() if sp.status == "failed"]}
        if as_json:
            d["plan"] = out.plan.to_dict()
        return d

    if jobs is None and backend.strip().lower() not in ("auto", "rules"):
        jobs = 1  # a model: one photo at a time unless asked (the embedded planners: run_batch's default)
    summary = run_batch(photos, job, jobs=jobs, lock_dir=sidecar_dir, verb="planning", quiet=quiet,
                        as_json=as_json, console=con, missing=missing, silent=single and not as_json)
    if single and not as_json:
        r = summary.results[0]
        if r.error is not None:
            raise r.error
        if r.status != "ok" and not quiet:
            con.print(f"{escape(str(r.path))}: {escape(r.message)}")
    elif not as_json:
        print_summary(summary, console(stderr=True), verb="plan")
    partial = [r for r in summary.results if r.data.get("failed_stages")]
    if partial and not as_json and not quiet:
        console(stderr=True).print(f"[yellow]warning:[/yellow] {len(partial)} plan(s) have failed stages "
                                   "(recorded in the sidecar with the model's raw text; `monet show` them)")
    # a sidecar with a failed stage is written, but the job is not fully done
    raise typer.Exit(summary.exit_code or (1 if partial else 0))


@app.command("edit-stage")
def edit_stage_cmd(
    photo: Path = typer.Argument(..., help="The photo (its sidecar PHOTO.monet.json is edited)."),
    stage: str = typer.Argument(..., help="lighting, color or hsl."),
    set_: List[str] = typer.Option([], "--set", help="Op=VALUE, repeatable (VALUE in -100..100; 0 removes)."),
    unset: List[str] = typer.Option([], "--unset", help="Remove an op from the stage, repeatable."),
    no_replan: bool = typer.Option(False, "--no-replan", help="Keep the later stages as they are."),
    sidecar_dir: Optional[Path] = typer.Option(None, "--sidecar-dir", help="Where the sidecar lives."),
    as_json: bool = typer.Option(False, "--json", help="Print the new plan as JSON."),
):
    """Override one stage by hand: set or remove ops, lock the stage, and re-plan only the later unlocked stages on the new render.

    The earlier version of the plan is kept in its history; `monet plan --force` keeps locked stages.

    [b]Examples[/b]

      monet edit-stage photo.tif lighting --set Exposure=25 --set Contrast=-10
      monet edit-stage photo.tif color --unset Tint --no-replan
      monet edit-stage photo.tif hsl --set SaturationAdjustmentBlue=-30 --json
    """
    from monet_cli.errors import UsageError
    from monet_cli.sidecars import edit_stage, parse_assignments

    if not set_ and not unset:
        raise UsageError("nothing to change: give --set Op=VALUE or --unset Op")
    values = parse_assignments(set_, stage) if set_ else {}
    out = edit_stage(photo, stage, set_values=values, unset=unset, replan=not no_replan, sidecar_dir=sidecar_dir)
    if as_json:
        print_json(out.plan.to_dict())
    else:
        print_plan(out.plan, console(), title=f"{photo} → {out.sidecar}")


@app.command("show")
def show_cmd(
    photo: Path = typer.Argument(..., help="A photo (its sidecar is shown) or a plan JSON file."),
    sidecar_dir: Optional[Path] = typer.Option(None, "--sidecar-dir", help="Where the sidecar lives."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
):
    """Show a photo's plan: stages, ops, values with their intensity, and the reasoning.

    [b]Examples[/b]

      monet show photo.tif
      monet show photo.tif.monet.json --json
    """
    from monet_cli.plan import load_plan
    from monet_cli.sidecars import StaleSidecarError, read_sidecar

    stale = None
    if photo.name.endswith(".json"):
        plan, path = load_plan(photo), photo
    else:
        try:
            plan, path = read_sidecar(photo, sidecar_dir)
        except StaleSidecarError as e:
            stale = str(e)
            plan, path = read_sidecar(photo, sidecar_dir, check_source=False)
    if as_json:
        d = plan.to_dict()
        if stale:
            d["stale"] = True
        print_json(d)
        return
    con = console()
    print_plan(plan, con, title=str(path))
    if stale:
        console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(stale)}")
