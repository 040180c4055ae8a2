"""The model card of a training run: ``RUN_DIR/README.md``.

Hugging Face's card layout (YAML front matter: ``base_model``, ``library_name: peft`` — or
``transformers`` for a full run, whose folder is the model —, tags), then what a reader needs
to trust and reuse the adapter or model: the base model, the data with its hashes, the
settings, the metrics, and the commands that use it. Pure text; no torch.
"""

from __future__ import annotations

from pathlib import Path

from monet_cli.train.config import TrainConfig


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) >= 1e-3 else f"{v:.2e}"
    return str(v)


def card_text(cfg: TrainConfig, resolved: dict, metrics: dict, run_dir: Path) -> str:
    """The card as markdown."""
    m, a, d, o, t = cfg.model, cfg.adapter, cfg.data, cfg.optim, cfg.train
    model = resolved.get("model", {})
    base = model.get("hub_id") or model.get("spec") or m.name
    where = ["language model"] if a.language_model else []
    where += ["vision encoder"] if a.vision else []
    full = a.method == "full"
    method = {"dora": "DoRA", "lora": "LoRA", "full": "Full training (every weight)"}[a.method] + \
        (" on a 4-bit NF4 base (QLoRA)" if m.quant == "4bit" else "")
    rec, steps = resolved.get("records", {}), resolved.get("steps", {})
    arch = model.get("architecture", "?")
    if full:
        intro = (f"**{base}** ({arch}) with every weight trained by `monet train` (no adapter) to plan "
                 "procedural photo edits (MonetGPT's puzzles and staged plans). This folder is the model.")
        use = [f"monet plan photo.jpg --backend qwen --model {run_dir}",
               f"vllm serve {run_dir} --served-model-name monet     # a plain transformers checkpoint"]
    else:
        intro = (f"A {method} adapter for **{base}** ({arch}), trained by `monet train` to "
                 "plan procedural photo edits (MonetGPT's puzzles and staged plans).")
        use = [f"monet plan photo.jpg --backend qwen --model {model.get('spec', m.name)} --adapter {run_dir}",
               f"monet train merge {run_dir} --out {run_dir}-merged     # full weights, e.g. for vLLM"]
    lines = [
        "---",
        f"base_model: {base}",
        f"library_name: {'transformers' if full else 'peft'}",
        "tags: [monet, monetgpt, photo-retouching, qwen-vl, " + a.method + "]",
        "---",
        "",
        f"# monet planner {'model' if full else 'adapter'}: {run_dir.name}",
        "",
        intro,
        "",
        "## Use",
        "",
        "```sh",
        *use,
        "```",
        "",
        "## Data",
        "",
        "| dataset | records | images | sha256 |",
        "|---|---:|---:|---|",
    ]
    for ds in resolved.get("datasets", []):
        lines.append(f"| `{ds['path']}` | {ds['records']} | {ds['images']} | `{ds['sha256']}` |")
    lines += [
        "",
        f"Training records {rec.get('train', '?')}, held out for eval {rec.get('eval', '?')}, dropped as longer "
        f"than {d.max_length} tokens {rec.get('dropped_too_long', 0)}. Images within "
        f"{resolved.get('pixels', {}).get('min', '?')}–{resolved.get('pixels', {}).get('max', '?')} pixels.",
        "",
        "## Settings",
        "",
        "| setting | value |",
        "|---|---|",
        f"| method | {method} |",
        *([] if full else [
            f"| rank / alpha / dropout | {a.rank} / {a.alpha:g} / {a.dropout:g} |",
            f"| adapted | every Linear of the {' and '.join(where) or '–'} |",
            f"| fully trained | {', '.join(a.modules_to_save) or '–'} |"]),
        (f"| learning rate | {o.lr:g}, {o.scheduler} over the {'time budget' if t.max_minutes else 'steps'}, "
         f"warm-up {f'{o.warmup_steps} steps' if o.warmup_steps else f'{o.warmup_ratio:g} of the steps'} |"),
        (f"| optimizer | AdamW, betas {o.betas}, weight decay {o.weight_decay:g}"
         f"{' (≥ 2-D non-embedding weights)' if full else ''}, clip {o.max_grad_norm:g} |"),
        f"| batch | {t.batch_size} × {t.grad_accum} accumulation × {resolved.get('world_size', 1)} process(es) |",
        (f"| steps | {metrics.get('steps')} ({steps.get('per_epoch', '?')} per epoch, {t.epochs} epoch(s)"
         f"{f', time budget {t.max_minutes:g} min' if t.max_minutes else ''}) |"),
        f"| precision | {resolved.get('dtype', m.dtype)} on {resolved.get('device', m.device)} |",
        f"| seed | {t.seed} |",
        "",
        "The complete configuration is `config.yaml` beside this card; the loss curve is `metrics.jsonl`.",
        "",
        "## Metrics",
        "",
        "| metric | value |",
        "|---|---|",
        f"| train loss, first → last step | {_fmt(metrics.get('train_loss_first'))} → "
        f"{_fmt(metrics.get('train_loss_last'))} |",
        f"| eval loss, before → after | {_fmt(metrics.get('eval_loss_before'))} → "
        f"{_fmt(metrics.get('eval_loss_after'))} |",
        f"| records / tokens trained on | {metrics.get('records')} / {metrics.get('tokens')} |",
        f"| time | {metrics.get('seconds', 0):.1f} s ({metrics.get('tokens_per_s', 0):.0f} tokens/s) |",
        f"| trainable parameters | {metrics.get('trainable_parameters')} |",
    ]
    if metrics.get("peak_gpu_memory_gib") is not None:
        lines.append(f"| peak GPU memory | {metrics['peak_gpu_memory_gib']} GiB on {metrics.get('gpu', '?')} |")
    versions = ", ".join(f"{k} {v}" for k, v in (metrics.get("versions") or {}).items())
    lines += ["", f"Software: {versions}." if versions else "", ""]
    return "\n".join(lines)


def write_card(run_dir, cfg: TrainConfig, resolved: dict, metrics: dict) -> Path:
    run_dir = Path(run_dir)
    path = run_dir / "README.md"
    path.write_text(card_text(cfg, resolved, metrics, run_dir), encoding="utf-8")
    return path
