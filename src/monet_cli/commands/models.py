"""`monet models list`, `monet models tiny DIR`, `monet doctor`: model presets, the tiny test
model and what this machine can run. Parse, call the library, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from monet_cli.cli import app, sub_app
from monet_cli.console import console, escape, print_json

models_app = sub_app("models", "Model presets for --backend qwen/openai, and the tiny random model for smoke tests.")


@models_app.command("list")
def models_list_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print the presets as JSON."),
):
    """List the model presets: hub id, architecture, quantisation, GPU memory, weights on disk.

    Without weights, `--json` lists exactly which files are missing.

    GPU memory figures are estimates (weights plus one 1280-pixel proxy), not measurements. A "fitted" value map means the model's values are translated to monet's scale before rendering (README, "How MonetGPT's values are rendered").

    [b]Examples[/b]

      monet models list
      monet models list --json | jq '.[] | select(.present) | .name'
    """
    from monet_cli.models import preset_status

    rows = preset_status()
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table(title="monet model presets", show_lines=False)
    for col in ("preset", "weights from", "arch", "quant", "GPU GiB 4bit/8bit/none", "value map", "on disk"):
        table.add_column(col, overflow="fold")
    for r in rows:
        m = r["gpu_memory_gb"]
        mem = " / ".join(f"{m[q]:g}" if q in m else "?" for q in ("4bit", "8bit", "none"))
        where = r["hub_id"] or f"built locally ({r.get('build') or 'monet models tiny'})"
        disk = "[green]yes[/green]" if r["present"] else "[dim]no[/dim]"
        vmap = "fitted" if r["value_map"] else "[dim]—[/dim]"
        table.add_row(r["name"], where, r["architecture"], r["quant"], mem, vmap, disk)
    con = console()
    con.print(table)
    missing = [r for r in rows if not r["present"] and r["hub_id"]]
    if missing:
        con.print("[dim]Get weights with `huggingface-cli download HUB_ID` (or `hf download HUB_ID`); "
                  "monet never downloads by itself.[/dim]")


@models_app.command("tiny")
def models_tiny_cmd(
    folder: Optional[Path] = typer.Argument(None, help="Where to write it (default: the `tiny` preset's folder, "
                                                       "$MONET_HOME/models/tiny-qwen2-vl)."),
    arch: str = typer.Option("qwen2-vl", "--arch", help="qwen2-vl or qwen2.5-vl."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random weights."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace a model already in FOLDER."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON line."),
):
    """Build a tiny random Qwen2-VL (or Qwen2.5-VL) offline in seconds, to smoke-test an install.

    Its answers are noise, so its plans end in failed stages: it tests loading, 4-bit,
    adapters and the planning protocol, not retouching. Needs the model extra (torch, transformers).

    [b]Examples[/b]

      monet models tiny                          # then: --backend qwen --model tiny
      monet models tiny /tmp/tiny --arch qwen2.5-vl
      monet plan photo.jpg --backend qwen --model /tmp/tiny
    """
    import time

    from monet_cli.models import get_preset, monet_home, require_ml

    require_ml("monet models tiny")
    from monet_cli.tiny import build_tiny

    target = folder if folder is not None else monet_home() / "models" / get_preset("tiny").local_dir
    t0 = time.perf_counter()
    path = build_tiny(target, architecture=arch, seed=seed, overwrite=force)
    seconds = time.perf_counter() - t0
    if as_json:
        print_json({"path": str(path), "architecture": arch, "seed": seed, "seconds": round(seconds, 2)})
        return
    model = "tiny" if folder is None else str(path)
    console().print(f"[green]✓[/green] tiny random {arch} in [bold]{escape(str(path))}[/bold] ({seconds:.1f} s); "
                    f"try: monet plan PHOTO --backend qwen --model {escape(model)}")


@models_app.command("init")
def models_init_cmd(
    preset: str = typer.Argument(..., help="The preset to build: mini (a Qwen2-VL trained from scratch; "
                                           "models/mini.yaml)."),
    folder: Optional[Path] = typer.Argument(None, help="Where to write it (default: the preset's folder under "
                                                       "$MONET_HOME/models)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial random weights."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace a model already in FOLDER."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON line."),
):
    """Build a model that monet trains from scratch, offline: its config, random weights and its own tokenizer.

    `mini` is a ~5 M-parameter Qwen2-VL with a BPE tokenizer trained on monet's prompts; train it
    on puzzles with `monet train PUZZLES --config mini --out RUN` (every weight, on the CPU). Needs
    the model extra (torch, transformers, tokenizers).

    [b]Examples[/b]

      monet models init mini runs/mini-init
      monet plan photo.jpg --backend qwen --model runs/mini-init     # untrained: noise
      monet models init mini && monet train puzzles/ --config mini --out runs/mini
    """
    import time

    from monet_cli.errors import UsageError
    from monet_cli.models import get_preset, monet_home, require_ml

    if preset != "mini":
        raise UsageError(f"monet models init builds only the mini preset, not {preset!r}")
    require_ml("monet models init")
    from monet_cli.mini import build_mini

    target = folder if folder is not None else monet_home() / "models" / get_preset(preset).local_dir
    t0 = time.perf_counter()
    path = build_mini(target, seed=seed, overwrite=force)
    seconds = time.perf_counter() - t0
    params = json.loads((path / "monet.json").read_text(encoding="utf-8")).get("parameters")
    if as_json:
        print_json({"path": str(path), "preset": preset, "seed": seed, "parameters": params,
                    "seconds": round(seconds, 2)})
        return
    console().print(f"[green]✓[/green] {preset} ({params:,} parameters, untrained) in [bold]{escape(str(path))}"
                    f"[/bold] ({seconds:.1f} s)")


@app.command("doctor")
def doctor_cmd(
    smoke: bool = typer.Option(True, "--smoke/--no-smoke", help="Run a smoke plan with the tiny model."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
):
    """Check what this machine can run: packages, CUDA, GPU memory, weights, a smoke plan.

    Reports Python, torch, CUDA and GPU memory, bitsandbytes (4-bit), which presets have their
    weights here, which render kernel `monet apply` uses (C or numba, and why), and runs a smoke
    plan with the tiny random model.

    Exit code 1 when the smoke plan fails.

    [b]Examples[/b]

      monet doctor
      monet doctor --no-smoke --json
    """
    from monet_cli.doctor import diagnose

    report = diagnose(smoke=smoke)
    failed = smoke and not report.get("smoke", {}).get("ok", False)
    if as_json:
        print_json(report)
    else:
        _print_report(report)
    if failed:
        raise typer.Exit(1)


def _print_report(r: dict) -> None:
    con = console()

    def line(label: str, value: str, ok: bool | None = None):
        mark = {True: "[green]✓[/green]", False: "[red]✗[/red]", None: "[dim]·[/dim]"}[ok]
        con.print(f"{mark} [bold]{label}[/bold]: {value}")

    line("monet", f"{r['monet']} on Python {r['python']}, {escape(r['platform'])}")
    for pkg, v in r["packages"].items():
        line(pkg, v or "not installed (pip install 'monet-cli[ml]')", bool(v) if pkg == "torch" else None)
    g = r["gpu"]
    if g["available"]:
        for i, d in enumerate(g["devices"]):
            line(f"GPU {i}", f"{escape(d['name'])}, {d['memory_gb']:g} GiB ({d['free_gb']:g} free), CUDA {g['cuda']}",
                 True)
    else:
        line("GPU", "no CUDA GPU" + (f" ({escape(g['error'])})" if g.get("error") else "")
             + ": --backend qwen runs on the CPU (slow); --backend auto or openai need none", None)
    b = r["bitsandbytes_4bit"]
    line("4-bit (bitsandbytes)", "works" if b is True else ("not installed" if b is None else escape(str(b))),
         True if b is True else (None if b is None else False))
    line("Hugging Face cache", f"{escape(r['hf_cache'])} (HF_HUB_OFFLINE={r['hf_hub_offline'] or 'unset'}; "
                               f"monet never downloads)")
    k = r.get("render_kernel")
    if k:
        if k.get("error"):
            line("render kernel", escape(k["error"]), False)
        elif k["kernel"] == "c":
            ms = 1000 * k["load_s"]
            line("render kernel", f"C ({escape(k.get('simd') or '?')}), {k['threads']} threads, "
                                  f"{escape(k['library'])} (loaded in {ms:.0f} ms)", True)
        else:
            why = f" ({escape(k['fallback_reason'])})" if k.get("fallback_reason") else " (MONET_KERNEL=numba)"
            line("render kernel", f"numba, {k['threads']} threads{why}; `monet apply` starts ~0.4 s slower", None)
    for p in r["presets"]:
        if p["present"]:
            line(f"preset {p['name']}", f"weights in {escape(p['path'])}", True)
        else:
            src = p["hub_id"] and f"huggingface-cli download {p['hub_id']}" or p.get("build") or "monet models tiny"
            line(f"preset {p['name']}", f"not here (missing {escape(', '.join(p['missing'][:3]))}); get it: {src}",
                 None)
    s = r.get("smoke")
    if s is not None:
        if s.get("ok"):
            stages = ", ".join(f"{k} {v}" for k, v in s["stages"].items())
            line("smoke plan (tiny model)", f"{s['device']}, quant {s['quant']}: build {s['build_s']} s, load "
                                            f"{s['load_s']} s, plan {s['plan_s']} s ({stages}; a random model's "
                                            f"stages fail by design)", True)
        else:
            line("smoke plan (tiny model)", escape(s.get("error", "failed")), False)
