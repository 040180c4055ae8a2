"""Perception records: photos paired with their own measured statistics, as chat records.

A Qwen2-VL fine-tuned by the paper's method already reads images: its pretraining taught it.
A model built from random weights (the ``mini`` preset, :mod:`monet_cli.mini`) has seen
nothing, and a few thousand puzzles are not enough to teach it to look: trained on puzzles
alone, monet-mini's loss was the same whether a record showed its own image or another
record's (run 6 of ``benchmarks/mini.py``). Its training data therefore also hold records of
a task whose answer is fully in the pixels: "Measure the photo." answered with the
statistics :func:`monet_cli.puzzles.image_stats` measures (median, 5th and 95th percentile
L*, clipped shares, mean chroma, the neutrals' CCT and Duv) — the figures the puzzles'
reasoning quotes (``c.measured_first``). They stand in for the visual pretraining of the
real model; ``benchmarks/mini.py`` adds the same records to the puzzle and the regression
model's data, so the ablation stays fair. (Training on them first and on the puzzles after
did worse than mixing them: README, "the method at small scale".)

Each record shows a training photo or a seeded crop of it (``images.variants`` /
``images.crop`` of the sampling config), with zero to two global edits of the lighting and
colour stages at random strengths (±10 … ±90) so that the statistics span dark, bright,
flat, warm, cool, dull and garish photos, saved as an 8-bit PNG like a puzzle image.
Everything is seeded by ``(seed, photo, index)``: the same command makes the same dataset.

Layout (what ``monet train`` and LLaMA-Factory read): ``train.jsonl``, ``images/``,
``dataset_info.json`` and ``perception.json`` (settings and counts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from monet_cli.errors import InputError, OutputError

INFO = "perception.json"
SCHEMA = "monet-perception/1"
PROMPT = "Measure the photo."
# global ops of the lighting and colour stages: what changes the measured statistics
EDIT_OPS = ("Exposure", "Contrast", "Highlights", "Shadows", "Whites", "Blacks", "Temperature", "Tint", "Saturation")
EDIT_RANGE = (10, 90)  # |value| of each random edit, uniform
EDITS_MAX = 2  # 0, 1 or 2 edits per record, uniform
ORIGINAL_EVERY = 4  # every 4th record of a photo shows the whole photo, the rest crops of it


def describe(facts: dict) -> str:
    """The answer of a perception record: the measured statistics as one short paragraph."""
    return (f"Median L* {facts['median_l']:.0f}, p5 {facts['p5_l']:.0f}, p95 {facts['p95_l']:.0f}; "
            f"{facts['clip_white']:.0f}% clipped white, {facts['clip_black']:.0f}% crushed black. "
            f"Mean chroma {facts['chroma']:.0f}. Neutrals near {int(round(facts['cct'], -2))} K, "
            f"Duv {facts['duv']:+.3f}.")


def random_edit(rng: np.random.Generator) -> dict[str, int]:
    """Zero to :data:`EDITS_MAX` global edits at random strengths."""
    k = int(rng.integers(0, EDITS_MAX + 1))
    ops = rng.choice(len(EDIT_OPS), size=k, replace=False)
    return {EDIT_OPS[int(i)]: int(rng.choice([-1, 1]) * rng.integers(EDIT_RANGE[0], EDIT_RANGE[1] + 1)) for i in ops}


@dataclass
class Summary:
    dataset: str
    photos: int
    records: int
    seconds: float
    failed_photos: list = field(default_factory=list)
    interrupted: bool = False

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "photos": self.photos, "records": self.records,
                "seconds": round(self.seconds, 2), "failed_photos": self.failed_photos,
                "interrupted": self.interrupted}


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError("exists and is not a folder", path=out)
    if out.is_dir() and any(out.iterdir()):
        if not (out / INFO).is_file():
            raise OutputError("is not empty and is not a perception dataset; give a new or empty folder", path=out)
        if not force:
            raise OutputError("already holds a perception dataset; use another --out, or --force to make it again",
                              path=out)
        from monet_cli import puzzles as pz

        pz.remove_files(out, (INFO, pz.TRAIN_FILE, pz.LLAMAFACTORY_FILE, pz.IMAGES_DIR))


def generate(photo_dir, out, *, per_photo: int = 60, seed: int = 0, config=None, recursive: bool = False,
             force: bool = False, progress=None) -> Summary:
    """Write a perception dataset for the photos in ``photo_dir`` into ``out`` (module
    docstring): ``per_photo`` records per photo. ``config`` is a puzzle sampling config (name,
    file or dict; its ``images`` section sets the long side, crops and PNG compression).
    Ctrl-C stops after the current photo; the records made so far are written."""
    import time

    from monet_cli import puzzles as pz
    from monet_cli.batch import collect_photos

    if per_photo < 1:
        raise InputError(f"--per-photo must be at least 1 (got {per_photo})")
    t0 = time.perf_counter()
    cfg = config if isinstance(config, dict) else pz.load_config(config)
    photo_dir, out = Path(photo_dir), Path(out)
    if not photo_dir.is_dir():
        raise InputError("not a folder of photos", path=photo_dir)
    photos, _ = collect_photos([photo_dir], recursive=recursive)
    if not photos:
        raise InputError("holds no photos", path=photo_dir)
    _check_out(out, force)
    out.mkdir(parents=True, exist_ok=True)
    im = cfg["images"]
    system = pz._planner_prompts(cfg).system
    rows, failed, interrupted = [], [], False
    if progress:
        progress(0, len(photos) * per_photo)
    try:
        for n, path in enumerate(photos):
            key = path.relative_to(photo_dir).as_posix()
            try:
                photo = pz.prepare_photo(path, key, cfg)
            except (InputError, OSError, ValueError) as e:
                failed.append({"photo": str(path), "error": str(e)})
                continue
            (out / pz.IMAGES_DIR / photo.slug).mkdir(parents=True, exist_ok=True)
            for i in range(per_photo):
                rng = pz.sample_rng(seed, key, i, 7)
                base = photo.linear if i % ORIGINAL_EVERY == 0 else pz.variant_pixels(photo.linear, key, i, seed, cfg)
                edit = random_edit(rng)
                u8 = pz._srgb8(pz._render(base, edit) if edit else base)
                name = f"{pz.IMAGES_DIR}/{photo.slug}/p{i:05d}.png"
                pz._write_png(out / name, u8, int(im["png_compress_level"]))
                rows.append({"messages": [{"role": "system", "content": system},
                                          {"role": "user", "content": "<image>" + PROMPT},
                                          {"role": "assistant", "content": describe(pz._facts_of(u8, cfg))}],
                             "images": [name]})
            if progress:
                progress((n + 1) * per_photo, len(photos) * per_photo)
    except KeyboardInterrupt:
        interrupted = True
    pz.write_jsonl_atomic(out / pz.TRAIN_FILE, rows)
    pz.write_json_atomic(out / pz.LLAMAFACTORY_FILE, pz.llamafactory_info(name="monet_perception"))
    pz.write_json_atomic(out / INFO, {"schema": SCHEMA, "photo_dir": str(photo_dir), "photos": len(photos),
                                      "per_photo": per_photo, "seed": seed, "records": len(rows),
                                      "config": pz.config_digest(cfg), "long_side": im["long_side"],
                                      "interrupted": interrupted})
    return Summary(dataset=str(out), photos=len(photos), records=len(rows), seconds=time.perf_counter() - t0,
                   failed_photos=failed, interrupted=interrupted)

