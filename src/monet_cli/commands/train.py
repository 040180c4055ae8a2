"""`monet train DATASET… --model … --out RUN_DIR` and `monet train merge RUN_DIR --out DIR`:
fine-tuning a Qwen-VL planner and merging its adapter. Parse, call
:mod:`monet_cli.train`, print. Importing this module imports neither torch nor transformers.

`train` is a command group whose default command is `run`: `monet train DATASET…` is
`monet train run DATASET…` (a dataset folder literally named `run` or `merge` is written
`./run`)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperGroup

from monet_cli.cli import sub_app
from monet_cli.console import console, escape, print_json


class _RunByDefault(TyperGroup):
    """A group whose first argument, when it is not one of its commands, goes to `run`."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["run", *args]
        return super().parse_args(ctx, args)


train_app = sub_app(
    "train",
    "Fine-tune a Qwen-VL planner on puzzle datasets (peft DoRA / LoRA / QLoRA, or every weight) and merge the "
    "result. "
    "`monet train DATASET… --out RUN_DIR` is short for `monet train run DATASET… --out RUN_DIR`.",
    cls=_RunByDefault,
)


@train_app.command("run")
def train_run_cmd(
    datasets: Optional[List[Path]] = typer.Argument(None, help="Datasets: JSONL files (ShareGPT style, as `monet "
                                                               "puzzles generate` writes) or folders of them."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Base model: a preset (`monet models list`), "
                                                                    "a local folder or a downloaded hub id. "
                                                                    "Default: the config's model.name."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The run folder: adapter/ (a full run: the model "
                                                                 "itself), config.yaml, README.md (model card), "
                                                                 "metrics, checkpoints/."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="A preset (dora-paper (default), lora, qlora, "
                                                                      "tiny-cpu, mini; models/train/) or a YAML "
                                                                      "file."),
    set_: List[str] = typer.Option([], "--set", help="Override one setting, repeatable: section.key=value "
                                                      "(e.g. optim.lr=2e-4, train.max_steps=100)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the data and print the complete resolved config "
                                                          "(YAML; --json: JSON); train nothing."),
    resume: bool = typer.Option(False, "--resume", help="Continue RUN_DIR exactly from its newest checkpoint, "
                                                        "with its saved config."),
    force: bool = typer.Option(False, "--force", "-f", help="Start over in an existing run folder (its run files "
                                                            "are replaced)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result (or with --dry-run the config) as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar; errors and the result only."),
):
    """Train a peft adapter (DoRA by default: the MonetGPT paper's settings), or every weight, on puzzle datasets; loss only on the assistant turns.

    The run folder gets the adapter (`RUN_DIR/adapter`), the complete resolved config with the dataset hashes (`config.yaml`), a model card (`README.md`), the loss log (`metrics.jsonl`) and checkpoints. bf16 on a CUDA GPU, fp32 on the CPU; QLoRA (`--config qlora`) loads the base in 4-bit. `adapter.method: full` (`--config mini`: the mini preset from scratch on a CPU) trains every weight and makes RUN_DIR itself a model folder for `--model RUN_DIR`; `train.max_minutes` sets a time budget. Ctrl-C saves a checkpoint and exits 130; `--resume` continues exactly. Several GPUs: launch with torchrun or accelerate (see the README). Exit 0 when done (or paused by train.stop_after), 1 on bad data or model, 2 for usage errors, 130 when interrupted.

    [b]Examples[/b]

      monet train puzzles/ --model qwen2-vl-2b --out runs/dora --dry-run
      monet train puzzles/ --out runs/dora                       # dora-paper on Qwen2-VL-7B-Instruct
      monet train a.jsonl b.jsonl --config qlora --out runs/q --set train.max_steps=500
      monet train --resume --out runs/dora
      monet plan photo.jpg --backend qwen --adapter runs/dora
      monet models init mini && monet train puzzles/ --config mini --out runs/mini   # 25 min, CPU
      monet plan photo.jpg --backend qwen --model runs/mini
    """
    from monet_cli.errors import UsageError
    from monet_cli.train.config import build_config, config_path, to_yaml

    if resume:
        if out is None:
            raise UsageError("--resume needs --out RUN_DIR (the run to continue)")
        if config is not None:
            raise UsageError("--resume uses the run's saved config; leave out --config")
        from monet_cli.train.recipe import resume_config

        cfg, resolved = resume_config(out, datasets=datasets, model=model, sets=set_)
        source = resolved.get("config_source")
    else:
        cfg = build_config(config, datasets=datasets, model=model, out=out, sets=set_)
        source = " ".join([str(config_path(config))] + [f"--set {s}" for s in set_])
    from monet_cli.train.recipe import prepare, train

    if dry_run:
        prep = prepare(cfg, source=source)
        for w in prep.warnings:
            console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(w)}")
        if as_json:
            print_json({**cfg.to_dict(), "resolved": prep.resolved})
        else:
            typer.echo(to_yaml(cfg, prep.resolved), nl=False)
        return
    if out is None and not cfg.out:
        raise UsageError("give --out RUN_DIR (where the adapter, config and checkpoints go)")
    result = train(cfg, resume=resume, force=force, console=console(stderr=True), quiet=quiet or as_json,
                   source=source)
    if not result.primary:  # torchrun / accelerate: process 0 reports
        return
    if as_json:
        print_json({"run_dir": str(result.run_dir), "status": result.status, "step": result.step,
                    "total_steps": result.total_steps, "adapter": str(result.adapter) if result.adapter else None,
                    "model_dir": str(result.model_dir) if result.model_dir else None, "metrics": result.metrics})
    elif result.status == "complete" and not quiet:
        m = result.metrics
        before, after = m.get("eval_loss_before"), m.get("eval_loss_after")
        evals = f", eval loss {before:.4f} → {after:.4f}" if before is not None and after is not None else ""
        use = "--model" if result.model_dir else "--adapter"
        console().print(f"train loss {m['train_loss_first']:.4f} → {m['train_loss_last']:.4f}{evals}; "
                        f"plan with: monet plan PHOTO --backend qwen {use} {escape(str(result.run_dir))}")


@train_app.command("merge")
def train_merge_cmd(
    run_dir: Path = typer.Argument(..., help="A finished run folder (or any peft adapter folder)."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the merged checkpoint."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Base model (default: the run's)."),
    dtype: str = typer.Option("bfloat16", "--dtype", help="Weights of the merged model: bfloat16, float16, float32."),
    device: str = typer.Option("cpu", "--device", help="Where to merge: cpu (needs RAM for the full model) or cuda."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace OUT if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON line."),
):
    """Merge a run's adapter into its base model: one full checkpoint for vLLM, transformers or `monet plan --model DIR`.

    QLoRA adapters are merged into the base in full precision. A full run (adapter.method: full) has nothing to merge: its folder already is the model (exit 2 says so).

    [b]Examples[/b]

      monet train merge runs/dora --out models/monet-dora
      vllm serve models/monet-dora --served-model-name monet
      monet plan photo.jpg --backend openai --endpoint http://localhost:8000/v1 --model monet
    """
    from monet_cli.train.merge import merge

    r = merge(run_dir, out, model=model, dtype=dtype, device=device, force=force)
    if as_json:
        print_json(r.to_dict())
    else:
        console().print(f"[green]✓[/green] merged {escape(r.base)} + {escape(str(r.adapter))} → "
                        f"[bold]{escape(str(r.out))}[/bold] ({r.dtype}, {r.bytes / 2**30:.2f} GiB, {r.seconds:.1f} s)")
