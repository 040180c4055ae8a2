"""Perception records (monet_cli.perceive, `monet puzzles perceive`): every answer is the
image's own measured statistics, the dataset is seeded, a folder is never overwritten by
surprise, and the records train through `monet train`'s reader."""

from __future__ import annotations

import json
import re
from pathlib import Path

import fixtures as fx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from monet_cli import perceive
from monet_cli import puzzles as pz
from monet_cli.cli import app
from monet_cli.errors import InputError, OutputError

SMALL = {"images.long_side": 96, "images.facts_long_side": 96}


def photos(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in ("astronaut", "coffee"):
        Image.fromarray(fx.photo(n, step=4)).save(folder / f"{n}.png")
    return folder


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / pz.TRAIN_FILE).read_text().splitlines()]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    src = photos(tmp_path_factory.mktemp("photos"))
    out = tmp_path_factory.mktemp("perc") / "p"
    perceive.generate(src, out, per_photo=6, seed=3, config=pz.load_config(None, **SMALL))
    return out


def test_each_answer_is_the_statistics_measured_on_its_own_image(dataset):
    recs = records(dataset)
    assert len(recs) == 12
    cfg = pz.load_config(None, **SMALL)
    answers = set()
    for r in recs:
        assert [m["role"] for m in r["messages"]] == ["system", "user", "assistant"]
        assert r["messages"][1]["content"] == "<image>" + perceive.PROMPT
        u8 = np.asarray(Image.open(dataset / r["images"][0]).convert("RGB"))
        assert max(u8.shape[:2]) <= 96
        answer = r["messages"][2]["content"]
        assert answer == perceive.describe(pz._facts_of(u8, cfg))
        answers.add(answer)
    assert len(answers) == len(recs)  # crops and edits: no two records alike
    info = json.loads((dataset / perceive.INFO).read_text())
    assert info["records"] == 12 and info["per_photo"] == 6 and info["seed"] == 3


def test_edits_spread_the_statistics_darker_and_brighter_than_the_photo(tmp_path):
    src = photos(tmp_path / "src")
    out = tmp_path / "p"
    perceive.generate(src, out, per_photo=24, seed=0, config=pz.load_config(None, **SMALL))
    medians = [int(re.search(r"Median L\* (\d+)", r["messages"][2]["content"]).group(1)) for r in records(out)]
    assert max(medians) - min(medians) >= 25


def test_random_edits_are_global_light_and_colour_ops():
    rng = np.random.default_rng(0)
    edits = [perceive.random_edit(rng) for _ in range(200)]
    assert {len(e) for e in edits} == {0, 1, 2}
    for e in edits:
        for op, v in e.items():
            assert op in perceive.EDIT_OPS and 10 <= abs(v) <= 90


def test_same_seed_same_dataset_other_seed_other(tmp_path):
    src = photos(tmp_path / "src")
    cfg = pz.load_config(None, **SMALL)
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        perceive.generate(src, tmp_path / name, per_photo=3, seed=seed, config=cfg)
    assert (tmp_path / "a" / pz.TRAIN_FILE).read_text() == (tmp_path / "b" / pz.TRAIN_FILE).read_text()
    assert (tmp_path / "a" / pz.TRAIN_FILE).read_text() != (tmp_path / "c" / pz.TRAIN_FILE).read_text()


def test_refuses_to_overwrite_and_bad_input(tmp_path):
    src = photos(tmp_path / "src")
    cfg = pz.load_config(None, **SMALL)
    out = tmp_path / "p"
    perceive.generate(src, out, per_photo=2, config=cfg)
    with pytest.raises(OutputError, match="already holds"):
        perceive.generate(src, out, per_photo=2, config=cfg)
    perceive.generate(src, out, per_photo=1, config=cfg, force=True)
    assert len(records(out)) == 2
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a perception dataset"):
        perceive.generate(src, other, per_photo=1, config=cfg, force=True)
    assert (other / "notes.txt").read_text() == "mine"
    with pytest.raises(InputError):
        perceive.generate(tmp_path / "missing", tmp_path / "q", config=cfg)
    with pytest.raises(InputError):
        perceive.generate(src, tmp_path / "q", per_photo=0, config=cfg)


def test_cli_json_and_exit_codes(tmp_path):
    src = photos(tmp_path / "src")
    out = tmp_path / "p"
    args = ["puzzles", "perceive", str(src), "--out", str(out), "--per-photo", "2", "--long-side", "64", "--json"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["records"] == 4 and d["photos"] == 2 and not d["failed_photos"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code != 0 and "already holds" in str(r.exception)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    r = CliRunner().invoke(app, [*args, "--force"])
    assert r.exit_code == 1, r.output
    d = json.loads(r.output)
    assert d["records"] == 4 and [Path(f["photo"]).name for f in d["failed_photos"]] == ["broken.png"]


def test_records_read_as_a_training_dataset(dataset):
    from monet_cli.train.data import read_dataset

    recs, _ = read_dataset(dataset)
    assert len(recs) == 12 and all(len(r.images) == 1 and Path(r.images[0]).is_file() for r in recs)
