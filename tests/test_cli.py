"""The `monet` command through its installed entry point: apply, plan, edit-stage, show,
batches, bad input, interrupt and rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

import fixtures as fx
from monet_cli.images import read_image

EXAMPLE_PLAN = {"Exposure": 18, "Contrast": 12, "Shadows": 20, "Temperature": 10, "Saturation": 8,
                "SaturationAdjustmentOrange": 10}


def monet_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "monet"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "monet_cli"]


def run(*args, cwd=None, check=None) -> subprocess.CompletedProcess:
    p = subprocess.run(monet_cmd() + [str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                       env={**os.environ, "COLUMNS": "200"}, timeout=300)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


def leftovers(folder: Path) -> list[str]:
    return sorted(f.name for f in folder.rglob("*") if f.name.endswith((".monet-tmp", ".monet.lock")))


@pytest.fixture
def plan_json(tmp_path):
    p = tmp_path / "plan.json"
    p.write_text(json.dumps(EXAMPLE_PLAN))
    return p


# ---------------------------------------------------------------------------- basics


def test_help_and_version():
    assert "apply" in run("--help", check=0).stdout
    for cmd in ("apply", "plan", "edit-stage", "show", "ops"):
        assert "Examples" in run(cmd, "--help", check=0).stdout
    assert run("--version", check=0).stdout.startswith("monet ")


def test_ops_json_lists_the_33_operations():
    ops = json.loads(run("ops", "--json", check=0).stdout)
    assert len(ops) == 33 and {o["stage"] for o in ops} == {"lighting", "color", "hsl"}
    assert all(o["min"] == -100 and o["max"] == 100 for o in ops)


def test_apply_writes_16bit_tiff_and_keeps_the_input(tmp_path, plan_json, photo8):
    src = fx.make_tiff(tmp_path / "a.tif", photo8)
    before = src.read_bytes()
    p = run("apply", src, plan_json, "--json", check=0)
    out = json.loads(p.stdout)
    assert out["output"].endswith("a.monet.tif") and out["bit_depth"] == 16
    img = read_image(tmp_path / "a.monet.tif")
    assert img.pixels.dtype == np.uint16 and img.pixels.shape == photo8.shape
    assert img.pixels.mean() / 257 > photo8.mean()  # brighter
    assert src.read_bytes() == before


def test_all_zero_plan_is_bit_for_bit(tmp_path, photo16):
    src = fx.make_tiff(tmp_path / "p.tif", photo16)
    plan = tmp_path / "zero.json"
    plan.write_text(json.dumps({"Exposure": 0, "HueAdjustmentRed": 0}))
    run("apply", src, plan, check=0)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "p.monet.tif"), photo16)


def test_apply_refuses_to_overwrite(tmp_path, plan_json, photo8):
    src = fx.make_tiff(tmp_path / "a.tif", photo8)
    out = tmp_path / "out.jpg"
    run("apply", src, plan_json, "-o", out, check=0)
    first = out.read_bytes()
    p = run("apply", src, plan_json, "-o", out, check=1)
    assert "--force" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert out.read_bytes() == first
    run("apply", src, plan_json, "-o", out, "--force", check=0)
    before = src.read_bytes()
    p = run("apply", src, plan_json, "-o", src, "--force", check=1)
    assert "input" in p.stderr and src.read_bytes() == before


def test_apply_raw_gives_prophoto_16bit_tiff(tmp_path, plan_json, dng_path):
    p = run("apply", dng_path, plan_json, "--json", check=0)
    out = json.loads(p.stdout)
    assert out["colorspace"] == "prophoto" and out["bit_depth"] == 16
    assert read_image(out["output"]).colorspace.name == "prophoto"


# ---------------------------------------------------------------------------- bad input


def _bad_inputs(tmp_path, photo8):
    d = tmp_path / "bad"
    d.mkdir()
    good_tif = fx.make_tiff(d / "g.tif", photo8)
    good_jpg = fx.make_jpeg(d / "g.jpg", photo8)
    dng = fx.make_dng(d / "g.dng", np.full((48, 64, 3), 0.2))
    nan = fx.make_tiff(d / "nan.tif", np.where(photo8 > 200, np.nan, photo8 / 255.0).astype(np.float32))
    empty = d / "empty.tif"
    empty.write_bytes(b"")
    return {
        "missing": d / "nope.tif",
        "directory": d,
        "zero-byte": empty,
        "truncated tiff": fx.truncate(good_tif, 600),
        "truncated jpeg": fx.truncate(good_jpg, 300),
        "truncated raw": fx.truncate(dng, 2000),
        "bomb": fx.bomb_tiff(d / "bomb.tif"),
        "nan": nan,
        "garbage": fx.garbage(d / "garbage.tif"),
    }


def test_bad_inputs_fail_with_one_line_and_write_nothing(tmp_path, plan_json, photo8):
    cases = _bad_inputs(tmp_path, photo8)
    for name, path in cases.items():
        if name == "directory":
            continue
        before = set(path.parent.iterdir())
        out = tmp_path / f"out-{name.replace(' ', '-')}.tif"
        p = run("apply", path, plan_json, "-o", out)
        assert p.returncode == 1, (name, p.stdout, p.stderr)
        lines = [ln for ln in p.stderr.splitlines() if ln.strip() and "Unexpected end of file" not in ln]
        assert len(lines) == 1 and lines[0].startswith("monet: error:"), (name, p.stderr)
        assert "Traceback" not in p.stderr
        assert not out.exists() and set(path.parent.iterdir()) == before, name
    p = run("apply", cases["directory"] / "g.tif", "--plan", cases["directory"], "-o", tmp_path / "x.tif")
    assert p.returncode == 1 and "is a directory" in p.stderr
    p = run("apply", cases["directory"] / "g.tif", plan_json, "-o", cases["directory"])
    assert p.returncode == 1 and "directory" in p.stderr


@pytest.mark.parametrize("plan_text,msg", [
    ('{"Exposure": 10, "Sharpness": 5}', "unknown operation 'Sharpness'"),
    ('{"Exposure": "bright"}', "expected a number"),
    ('{"Exposure": NaN}', "not valid JSON"),
    ('{"Contrast": 150}', "outside [-100, 100]"),
    ("Exposure: 10", "not valid JSON"),
])
def test_bad_plans_fail_cleanly(tmp_path, photo8, plan_text, msg):
    src = fx.make_tiff(tmp_path / "a.tif", photo8)
    plan = tmp_path / "plan.json"
    plan.write_text(plan_text)
    p = run("apply", src, plan, check=1)
    assert msg in p.stderr and "plan.json" in p.stderr
    assert not (tmp_path / "a.monet.tif").exists()


# ---------------------------------------------------------------------------- plan / show / edit-stage


def test_plan_show_apply_round_trip(tmp_path):
    src = fx.make_jpeg(tmp_path / "dark.jpg", (fx.coffee() * 0.35).astype(np.uint8))
    p = run("plan", src, "--json", check=0)
    rec = json.loads(p.stdout)
    assert rec["status"] == "ok" and rec["sidecar"].endswith("dark.jpg.monet.json")
    plan = rec["plan"]
    assert plan["stages"]["lighting"]["adjustments"].get("Exposure", 0) > 0
    assert plan["source"]["name"] == "dark.jpg"
    shown = json.loads(run("show", src, "--json", check=0).stdout)
    assert shown["stages"] == plan["stages"]
    assert "Lighting" in run("show", src, check=0).stdout
    run("apply", src, check=0)
    assert (tmp_path / "dark.monet.jpg").exists()
    # a second plan keeps the sidecar; --force replans it and keeps history
    assert json.loads(run("plan", src, "--json", check=0).stdout)["status"] == "skipped"
    again = json.loads(run("plan", src, "--json", "--force", check=0).stdout)
    assert len(again["plan"]["history"]) == 1


def test_stale_sidecar_is_reported(tmp_path, photo8):
    src = fx.make_jpeg(tmp_path / "a.jpg", photo8)
    run("plan", src, check=0)
    fx.make_jpeg(src, 255 - photo8)  # the photo changed after planning
    p = run("apply", src, check=1)
    assert "different version" in p.stderr
    assert "different version" in run("show", src, check=0).stderr


def test_edit_stage_locks_and_replans_only_later_stages(tmp_path):
    src = fx.make_jpeg(tmp_path / "a.jpg", fx.coffee())
    run("plan", src, check=0)
    sidecar = tmp_path / "a.jpg.monet.json"
    before = json.loads(sidecar.read_text())
    p = run("edit-stage", src, "color", "--set", "Temperature=40", "--set", "Tint=-10", "--json", check=0)
    after = json.loads(p.stdout)
    assert after["stages"]["color"]["adjustments"] == {"Temperature": 40, "Tint": -10}
    assert after["stages"]["color"]["locked"] is True
    assert after["stages"]["lighting"] == before["stages"]["lighting"]
    assert len(after["history"]) == 1 and after["history"][0]["stages"] == before["stages"]
    assert json.loads(sidecar.read_text())["stages"] == after["stages"]
    # a replan with --force keeps the locked stage
    again = json.loads(run("plan", src, "--force", "--json", check=0).stdout)["plan"]
    assert again["stages"]["color"]["adjustments"] == {"Temperature": 40, "Tint": -10}
    # unset, wrong stage, bad value
    run("edit-stage", src, "color", "--unset", "Tint", "--no-replan", check=0)
    assert json.loads(sidecar.read_text())["stages"]["color"]["adjustments"] == {"Temperature": 40}
    assert "belongs to stage" in run("edit-stage", src, "color", "--set", "Exposure=10", check=2).stderr
    assert "outside" in run("edit-stage", src, "lighting", "--set", "Exposure=500").stderr


def test_sidecar_dir_for_read_only_media(tmp_path, photo8):
    media = tmp_path / "card"
    media.mkdir()
    src = fx.make_jpeg(media / "a.jpg", photo8)
    side = tmp_path / "side"
    os.chmod(media, 0o555)
    try:
        run("plan", src, "--sidecar-dir", side, check=0)
        assert (side / "a.jpg.monet.json").exists()
        run("apply", src, "--sidecar-dir", side, "--out-dir", tmp_path / "out", check=0)
        assert (tmp_path / "out" / "a.monet.jpg").exists()
    finally:
        os.chmod(media, 0o755)


# ---------------------------------------------------------------------------- batches


def _folder(tmp_path, n=3, corrupt=True) -> Path:
    d = tmp_path / "shoot"
    (d / "sub").mkdir(parents=True)
    for i in range(n):
        fx.make_jpeg(d / f"p{i}.jpg", np.roll(fx.coffee(), 7 * i, axis=1))
    fx.make_tiff(d / "sub" / "deep.tif", fx.astronaut())
    if corrupt:
        fx.garbage(d / "broken.jpg")
    return d


def test_batch_exit_codes_and_json_lines(tmp_path):
    d = _folder(tmp_path)
    p = run("plan", d, "--json", check=1)
    recs = [json.loads(line) for line in p.stdout.splitlines()]
    status = {Path(r["path"]).name: r["status"] for r in recs}
    assert status == {"p0.jpg": "ok", "p1.jpg": "ok", "p2.jpg": "ok", "broken.jpg": "failed"}
    assert [r for r in recs if r["status"] == "failed"][0]["error"]
    # recursive takes the sub-folder; done work is skipped
    p = run("plan", d, "--recursive", "--json", check=1)
    status = {Path(r["path"]).name: r["status"] for r in map(json.loads, p.stdout.splitlines())}
    assert status["deep.tif"] == "ok" and status["p0.jpg"] == "skipped"
    p = run("apply", d, "--recursive", "--jobs", "2", "--out-dir", tmp_path / "out", check=1)
    assert "4 done" in p.stderr and "1 failed" in p.stderr
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == ["deep.monet.tif", "p0.monet.jpg",
                                                                    "p1.monet.jpg", "p2.monet.jpg"]
    (d / "broken.jpg").unlink()
    run("apply", d, "--recursive", "--out-dir", tmp_path / "out", check=0)  # all skipped now
    run("plan", str(d / "*.jpg"), check=0)  # a glob
    assert run("plan", tmp_path / "nothing-here", check=1).returncode == 1
    assert leftovers(tmp_path) == []


def test_a_plan_file_for_a_whole_folder(tmp_path, plan_json):
    d = _folder(tmp_path, corrupt=False)
    p = run("apply", d, plan_json, "--format", "png", "--json", check=0)
    outs = [json.loads(line)["output"] for line in p.stdout.splitlines()]
    assert len(outs) == 3 and all(o.endswith(".monet.png") for o in outs)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupt_mid_batch_then_rerun_completes(tmp_path, sig):
    d = tmp_path / "many"
    d.mkdir()
    big = np.kron(fx.coffee(step=2), np.ones((4, 4, 1), np.uint8))  # ~1000 px wide
    for i in range(8):
        fx.make_tiff(d / f"p{i}.tif", np.roll(big, 13 * i, axis=0))
    cmd = monet_cmd() + ["apply", str(d), "--plan", str(_write_plan(tmp_path)), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(d.glob("*.monet.tif"))) < 2:
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert proc.returncode == 130
    done = sorted(d.glob("*.monet.tif"))
    assert 2 <= len(done) < 8
    for f in done:  # every finished output is complete
        assert tifffile.imread(f).shape == big.shape
    p = run("apply", d, "--plan", _write_plan(tmp_path), "--json", check=0)
    status = [json.loads(line)["status"] for line in p.stdout.splitlines()]
    assert status.count("ok") == 8 - len(done) and status.count("skipped") == len(done)
    assert len(list(d.glob("*.monet.tif"))) == 8
    assert leftovers(d) == []


def _write_plan(tmp_path) -> Path:
    p = tmp_path / "batch-plan.json"
    p.write_text(json.dumps(EXAMPLE_PLAN))
    return p


def test_two_runs_at_once_do_not_collide(tmp_path, plan_json):
    d = _folder(tmp_path, n=4, corrupt=False)
    cmd = monet_cmd() + ["plan", str(d), "--json"]
    a = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = [a.communicate(timeout=120)[0], b.communicate(timeout=120)[0]]
    assert a.returncode == 0 and b.returncode == 0
    recs = [json.loads(line) for out in outs for line in out.splitlines()]
    ok = [Path(r["path"]).name for r in recs if r["status"] == "ok"]
    assert sorted(ok) == ["p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg"]  # each planned exactly once
    assert leftovers(d) == []


def test_apply_json_reports_timings_per_step(tmp_path, plan_json, photo8):
    src = fx.make_tiff(tmp_path / "a.tif", photo8)
    rec = json.loads(run("apply", src, plan_json, "--json", check=0).stdout)
    assert set(rec["seconds"]) == {"read", "render", "write", "total"} and rec["elapsed"] >= rec["seconds"]["total"]


def test_a_lock_without_a_pid_is_taken_over_only_once_old(tmp_path):
    """A new lock file is empty for a moment before its owner writes its pid; another process
    must not take it over as stale in that moment (two runs then planned the same photo)."""
    import os
    import time

    from monet_cli.batch import EMPTY_LOCK_GRACE_S, LOCK_SUFFIX, PhotoLock

    photo = tmp_path / "p.jpg"
    lock_file = tmp_path / ("p.jpg" + LOCK_SUFFIX)
    lock_file.write_text("")  # just created by another process, pid not yet written
    assert not PhotoLock(photo).acquire() and lock_file.read_text() == ""
    old = time.time() - EMPTY_LOCK_GRACE_S - 1  # left empty by a process that died
    os.utime(lock_file, (old, old))
    lock = PhotoLock(photo)
    assert lock.acquire() and lock_file.read_text() == str(os.getpid())
    lock.release()
    assert not lock_file.exists()
    lock_file.write_text("999999999")  # a dead owner's pid: stale at once
    assert PhotoLock(photo).acquire()


def test_a_lock_is_born_with_its_pid(tmp_path, monkeypatch):
    """The lock file appears with the owner's pid in it (temp file + hard link), so a kill
    between creating and filling it cannot leave an empty lock that a rerun must honour."""
    import os

    from monet_cli.batch import LOCK_SUFFIX, PhotoLock

    photo = tmp_path / "p.jpg"
    lock_file = tmp_path / ("p.jpg" + LOCK_SUFFIX)
    real_link, seen = os.link, []

    def link(src, dst):
        seen.append(Path(src).read_text())  # what the lock will hold the moment it exists
        return real_link(src, dst)

    monkeypatch.setattr(os, "link", link)
    lock = PhotoLock(photo)
    assert lock.acquire() and seen == [str(os.getpid())] and lock_file.read_text() == str(os.getpid())
    assert not PhotoLock(photo).acquire()  # held by this live process
    assert sorted(p.name for p in tmp_path.iterdir()) == [lock_file.name]  # no temp file left
    lock.release()

    def no_links(src, dst):
        raise OSError(1, "hard links not supported")

    monkeypatch.setattr(os, "link", no_links)  # such file systems: created, then filled
    lock = PhotoLock(photo)
    assert lock.acquire() and lock_file.read_text() == str(os.getpid())
    assert sorted(p.name for p in tmp_path.iterdir()) == [lock_file.name]
    lock.release()
    assert list(tmp_path.iterdir()) == []


def test_an_apply_process_ends_fast_with_everything_flushed_and_the_right_code(tmp_path, plan_json):
    """`monet apply` leaves with os._exit after its work (cli.main): the JSON lines are all
    there, the output is complete, locks and temporary files are gone, and exit codes hold."""
    for i in range(3):
        fx.make_jpeg(tmp_path / f"p{i}.jpg", fx.coffee(8))
    out = tmp_path / "out"
    p = run("apply", tmp_path, plan_json, "--out-dir", out, "--json", check=0)
    lines = [json.loads(x) for x in p.stdout.strip().splitlines()]
    assert sorted(Path(d["output"]).name for d in lines if d.get("status") == "ok") == [
        "p0.monet.jpg", "p1.monet.jpg", "p2.monet.jpg"]
    from PIL import Image

    for d in lines:
        if d.get("status") == "ok":
            with Image.open(d["output"]) as im:
                im.load()  # complete, decodable
                assert im.size == (d["width"], d["height"])
    assert leftovers(tmp_path) == []
    again = run("apply", tmp_path / "p0.jpg", plan_json, "-o", out / "p0.monet.jpg")
    assert again.returncode == 1 and "output exists" in again.stderr


def _in_flight(monkeypatch, module, name: str) -> dict:
    """Wrap ``module.name`` (a per-photo job) to count the photos in it at once; when
    ``state["jobs"]`` is 2 the first two photos wait for each other (a barrier, not a timer)."""
    import threading

    real = getattr(module, name)
    lock = threading.Lock()
    state = {"now": 0, "most": 0, "jobs": 1}
    meet = threading.Barrier(2, timeout=20)

    def counting(photo, *a, **kw):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
            first_two = photo.name in ("p0.jpg", "p1.jpg")
        try:
            if first_two and state["jobs"] == 2:
                meet.wait()
            return real(photo, *a, **kw)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(module, name, counting)
    return state


@pytest.mark.parametrize("command", ["apply", "plan"])
def test_batches_have_two_photos_in_flight_by_default_where_there_are_two_cpus(tmp_path, plan_json, monkeypatch,
                                                                                command):
    import monet_cli.apply as apply_mod
    import monet_cli.sidecars as sidecars_mod
    from monet_cli.batch import default_jobs
    from monet_cli.cli import main

    d = _folder(tmp_path, n=4, corrupt=False)
    if command == "apply":
        state = _in_flight(monkeypatch, apply_mod, "apply_photo")
    else:
        state = _in_flight(monkeypatch, sidecars_mod, "plan_to_sidecar")
    for threads, args, jobs in (("2", [], 2), ("1", [], 1), ("2", ["-j", "1"], 1)):
        monkeypatch.setenv("MONET_THREADS", threads)
        assert default_jobs(5) == int(threads) and default_jobs(1) == 1
        state.update(now=0, most=0, jobs=jobs)
        out = tmp_path / f"out-{threads}-{len(args)}"
        argv = (["apply", str(d), str(plan_json), "--out-dir", str(out)] if command == "apply"
                else ["plan", str(d), "--backend", "auto", "--sidecar-dir", str(out)])
        with pytest.raises(SystemExit) as e:
            main([*argv, "--quiet", *args])
        assert e.value.code == 0
        assert state["most"] == jobs, (threads, args)
        names = sorted(f.name for f in out.iterdir() if not f.name.startswith("."))
        assert names == ([f"p{i}.monet.jpg" for i in range(4)] if command == "apply"
                         else [f"p{i}.jpg.monet.json" for i in range(4)])


def test_two_photos_in_flight_with_numbas_workqueue_layer_take_turns(tmp_path, plan_json):
    """numba's workqueue layer (a Mac without libomp) aborts when two threads run its parallel
    code at once: `-j 2` with the numba kernel must still finish every photo."""
    d = tmp_path / "big"
    d.mkdir()
    for i in range(4):  # larger than the planner's 1280 px proxy: planning runs the numba area downscale
        fx.make_tiff(d / f"p{i}.tif", np.kron(np.roll(fx.coffee(), 7 * i, axis=1), np.ones((3, 3, 1), np.uint8)))
    env = {**os.environ, "MONET_KERNEL": "numba", "NUMBA_THREADING_LAYER": "workqueue", "MONET_THREADS": "2"}
    for args in (["plan", d, "-j", "2"], ["apply", d, plan_json, "--out-dir", tmp_path / "out", "-j", "2"]):
        p = subprocess.run(monet_cmd() + [str(a) for a in args] + ["--json"], capture_output=True, text=True,
                           env=env, timeout=300)
        assert p.returncode == 0, (args[0], p.stderr[-2000:])
        assert [json.loads(x)["status"] for x in p.stdout.splitlines()] == ["ok"] * 4, args[0]
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == [f"p{i}.monet.tif" for i in range(4)]
