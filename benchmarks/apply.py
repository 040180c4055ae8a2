"""Benchmark `monet apply`: a 33-op plan on a 24 MP 16-bit TIFF.

Prints render (compute) seconds, end-to-end seconds (read + render + write, in process and as
a fresh `monet apply` process), and the peak resident memory of that process. When
`darktable-cli` or `rawtherapee-cli` are on PATH, their time on the same file is measured in
the same run (their default processing, written as 16-bit TIFF).

Then the RAW pair (``--no-raw`` skips it): the same photo as a Bayer DNG (16-bit CFA, written
like the tests' fixtures), ``monet apply`` (LibRaw's AHD demosaic, then the same render) and
``darktable-cli`` alternating, best and median of ``--repeat`` whole processes;
``rawtherapee-cli -c`` once.

Then where a whole `monet apply` process spends its time (``--breakdown``, on by default):
interpreter start (``python -c pass``), the CLI's imports, the apply path's imports (the
slowest modules by ``-X importtime``), which render kernel is used (C or numba) and what
loading it costs in a fresh process, and the
in-process read, render and write (``monet apply --json``); and ``monet --help``. Then batch
throughput (``--batch N``, default 20 copies of the photo in one folder): ``monet apply DIR
--out-dir`` with ``-j 1`` and ``-j 2`` (two photos in flight: one is read or written while the
other renders), and ``darktable-cli DIR`` and ``rawtherapee-cli -c DIR`` on the same folder,
paired in the same run. The single-photo runs of monet and darktable-cli alternate, so that a
busy spell of the machine slows both.

    python benchmarks/apply.py [--width 6000 --height 4000] [--repeat 3] [--batch 20] [--no-raw] [--json]

Targets on a 2-core machine: render <= 1.0 s, end to end <= 1.5 s; a whole `monet apply`
process <= 0.35 x darktable-cli's, peak RSS <= 600 MiB; a batch >= 4 x darktable-cli's photos/s;
`monet --help` <= 0.2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_photo(width: int, height: int) -> np.ndarray:
    """A 16-bit sRGB photo-like image: a real photo (scikit-image) tiled and upscaled, with noise."""
    try:
        from skimage import data

        base = data.astronaut().astype(np.float32) / 255.0
    except ImportError:  # synthetic fallback: smooth colour gradients
        y, x = np.mgrid[0:512, 0:512] / 512.0
        base = np.stack([x, y, 1 - x * y], -1).astype(np.float32)
    ry = -(-height // base.shape[0])
    rx = -(-width // base.shape[1])
    img = np.kron(base, np.ones((ry, rx, 1), np.float32))[:height, :width]
    rng = np.random.default_rng(0)
    img += rng.normal(0, 0.004, img.shape).astype(np.float32)
    return np.ascontiguousarray(np.clip(img * 65535 + 0.5, 0, 65535).astype(np.uint16))


def full_plan() -> dict:
    from monet_cli.catalog import catalog

    rng = np.random.default_rng(1)
    return {name: int(v) for name, v in zip(catalog().ops, rng.integers(8, 40, 33) * rng.choice([-1, 1], 33))}


def time_process(cmd: list[str], env=None) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MiB) of that child alone, return code.

    The disk's write-back of earlier runs' outputs (each a 144 MB TIFF) is flushed first, not
    counted: otherwise a run is throttled by the run before it, whichever tool that was."""
    os.sync()
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        sys.stderr.write(err[-2000:])
    return wall, usage.ru_maxrss / 1024.0, rc


def _wall(cmd: list[str], repeat: int = 3) -> float:
    """Best wall seconds of ``repeat`` runs of ``cmd``."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        best = min(best, time.perf_counter() - t)
    return best


def _slowest_imports(cmd: list[str], n: int = 8) -> list[tuple[str, float]]:
    """The top-level modules with the most cumulative import time in ``python -X importtime``."""
    p = subprocess.run([sys.executable, "-X", "importtime", *cmd], capture_output=True, text=True, check=False)
    top: dict[str, float] = {}
    for line in p.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        try:
            cum = int(parts[1])
        except ValueError:
            continue
        name = parts[2]
        if not name.startswith(" ") or name[1] != " ":  # a module imported at the top level
            top[name.strip()] = top.get(name.strip(), 0) + cum / 1e6
    return sorted(top.items(), key=lambda kv: -kv[1])[:n]


def make_dng(path: Path, width: int, height: int) -> None:
    """The same photo as a Bayer DNG (16-bit CFA, the writer of tests/fixtures.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from fixtures import make_dng as write_dng

    lin = (make_photo(width - width % 2, height - height % 2).astype(np.float32) / 65535.0) ** 2.2
    write_dng(path, lin)


def paired(cmds: dict[str, list[str] | None], outputs: dict[str, Path], repeat: int) -> dict:
    """Whole-process runs of each command, alternating, ``repeat`` times (after one warm-up run
    each): ``{name: {"seconds": best, "median_s", "runs_s", "peak_rss_mib", "rc"}}``."""
    cmds = {k: v for k, v in cmds.items() if v}
    for name, cmd in cmds.items():
        outputs[name].unlink(missing_ok=True)
        time_process(cmd)  # caches, config, kernel: not counted
    runs: dict[str, list] = {k: [] for k in cmds}
    for _ in range(repeat):
        for name, cmd in cmds.items():
            outputs[name].unlink(missing_ok=True)  # darktable-cli renames instead of overwriting
            runs[name].append(time_process(cmd))
    return {k: {"seconds": round(min(r)[0], 3), "median_s": round(float(np.median([x[0] for x in r])), 3),
                "runs_s": [round(x[0], 3) for x in r], "peak_rss_mib": round(max(x[1] for x in r)),
                "rc": max(x[2] for x in r)} for k, r in runs.items()}


def breakdown(src: Path, plan_path: Path, work: Path, monet: str) -> dict:
    """Where one whole ``monet apply`` process spends its time (module docstring)."""
    py = sys.executable
    out = {"python_start_s": _wall([py, "-c", "pass"]),
           "cli_imports_s": _wall([py, "-c", "import monet_cli.cli"]) - _wall([py, "-c", "pass"]),
           "help_s": _wall([monet, "--help"])}
    # which kernel `monet apply` picks here (MONET_KERNEL), and what choosing and loading it costs:
    # for the C kernel a ctypes load of the cached library, for numba's its import and cache load
    kernel = ("import time, numpy as np\n"
              "from monet_cli import colorspaces as cs\n"
              "from monet_cli.render import kernel, render_pixels\n"
              "t = time.perf_counter(); name = kernel()[0]; t1 = time.perf_counter()\n"
              "px = np.zeros((4, 4, 3), np.uint16)\n"
              "render_pixels(px, {'Exposure': 10}, cs.SRGB); t2 = time.perf_counter()\n"
              "print(name, t1 - t, t2 - t1)")
    p = subprocess.run([py, "-c", kernel], capture_output=True, text=True, check=True)
    name, load, first = p.stdout.split()
    out["kernel"], out["kernel_load_s"], out["first_render_s"] = name, float(load), float(first)
    cmd = [monet, "apply", str(src), str(plan_path), "-o", str(work / "bd.tif"), "--force", "--json"]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out["process_s"] = time.perf_counter() - t
    out["in_process"] = json.loads(p.stdout.strip().splitlines()[-1])["seconds"]
    out["slowest_imports"] = _slowest_imports(["-m", "monet_cli", *cmd[1:]])
    return out


def batch(src: Path, plan_path: Path, work: Path, monet: str, n: int) -> dict:
    """Photos per second over ``n`` copies of ``src`` in one folder: monet (-j 1, -j 2) and
    darktable-cli and rawtherapee-cli on the same folder, in this run."""
    folder = work / "batch"
    folder.mkdir()
    for i in range(n):
        shutil.copyfile(src, folder / f"p{i:02d}.tif")
    res = {"photos": n}
    for jobs in (1, 2):
        out = work / f"batch-out-j{jobs}"
        wall, rss, rc = time_process([monet, "apply", str(folder), str(plan_path), "--out-dir", str(out),
                                      "-j", str(jobs), "--quiet", "--force"])
        res[f"monet_j{jobs}"] = {"seconds": round(wall, 2), "photos_per_s": round(n / wall, 3),
                                 "peak_rss_mib": round(rss), "rc": rc}
        shutil.rmtree(out, ignore_errors=True)
    peers = {"darktable-cli": lambda out: ["darktable-cli", str(folder), str(out), "--out-ext", "tif", "--core",
                                           "--configdir", str(work / "dt-conf-batch"),
                                           "--conf", "plugins/imageio/format/tiff/bpp=16"],
             "rawtherapee-cli": lambda out: ["rawtherapee-cli", "-o", str(out), "-t", "-b16", "-d", "-Y", "-c",
                                             str(folder)]}
    for name, cmd in peers.items():
        if not shutil.which(name):
            continue
        out = work / f"batch-out-{name}"
        out.mkdir()
        wall, rss, rc = time_process(cmd(out))
        made = len(list(out.glob("*.tif")))
        res[name] = {"seconds": round(wall, 2), "photos_per_s": round(made / wall, 3) if made else 0.0,
                     "written": made, "peak_rss_mib": round(rss), "rc": rc}
    shutil.rmtree(folder, ignore_errors=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=6000)
    ap.add_argument("--height", type=int, default=4000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--batch", type=int, default=20, help="photos in the batch-throughput run (0: skip it)")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the whole-process breakdown")
    ap.add_argument("--no-raw", action="store_true", help="skip the RAW (DNG) pair")
    ap.add_argument("--make", help=argparse.SUPPRESS)
    ap.add_argument("--make-dng", help=argparse.SUPPRESS)
    args = ap.parse_args()

    from monet_cli import colorspaces as cs
    from monet_cli._ckernel import threads
    from monet_cli.apply import apply_plan
    from monet_cli.images import Image, read_image, write_image
    from monet_cli.plan import Plan
    from monet_cli.render import render_pixels

    if args.make_dng:
        make_dng(Path(args.make_dng), args.width, args.height)
        return 0
    if args.make:
        write_image(Path(args.make), Image(pixels=make_photo(args.width, args.height), colorspace=cs.SRGB,
                                           format="tiff"), overwrite=True)
        return 0
    work = Path(tempfile.mkdtemp(prefix="monet-bench-"))
    src = work / "photo.tif"
    # The photo is made in a child process and the `monet apply` process runs before this one
    # allocates anything large: a child's peak RSS counts the parent's pages at fork time.
    subprocess.run([sys.executable, __file__, "--make", str(src), "--width", str(args.width), "--height",
                    str(args.height)], check=True)
    plan = full_plan()
    plan_path = work / "plan.json"
    plan_path.write_text(json.dumps(plan))
    mp = args.width * args.height / 1e6

    monet = shutil.which("monet") or str(Path(sys.executable).parent / "monet")
    cli_cmd = [monet, "apply", str(src), str(plan_path), "-o", str(work / "cli.tif"), "--force", "--quiet"]
    if not Path(monet).exists():
        cli_cmd = [sys.executable, "-m", "monet_cli"] + cli_cmd[1:]
    dt_cmd = None
    if shutil.which("darktable-cli"):
        dt_cmd = ["darktable-cli", str(src), str(work / "dt.tif"), "--core", "--configdir", str(work / "dt-conf"),
                  "--conf", "plugins/imageio/format/tiff/bpp=16"]
    # monet and darktable-cli alternate, so that a busy spell of the machine hits both; best of --repeat
    pair = paired({"monet": cli_cmd, "darktable-cli": dt_cmd},
                  {"monet": work / "cli.tif", "darktable-cli": work / "dt.tif"}, args.repeat)
    mine = pair.pop("monet")

    image = read_image(src)
    render_pixels(image.pixels, plan, image.colorspace)  # compile / load the cached kernel
    render_s = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        render_pixels(image.pixels, plan, image.colorspace)
        render_s.append(time.perf_counter() - t)
    del image

    e2e = []
    for i in range(args.repeat):
        r = apply_plan(src, Plan.from_adjustments(plan), work / f"out{i}.tif", overwrite=True)
        e2e.append(r.seconds)


    peers = pair
    if shutil.which("rawtherapee-cli"):
        peers.update(paired({"rawtherapee-cli": ["rawtherapee-cli", "-o", str(work / "rt.tif"), "-t", "-b16", "-d",
                                                 "-Y", "-c", str(src)]}, {"rawtherapee-cli": work / "rt.tif"}, 1))

    extra = {}
    if not args.no_raw:
        dng = work / "photo.dng"
        subprocess.run([sys.executable, __file__, "--make-dng", str(dng), "--width", str(args.width), "--height",
                        str(args.height)], check=True)
        outs = {"monet": work / "raw.tif", "darktable-cli": work / "dt-raw.tif", "rawtherapee-cli": work / "rt-raw.tif"}
        raw_cmds = {
            "monet": cli_cmd[:cli_cmd.index("apply") + 1] + [str(dng), str(plan_path), "-o", str(outs["monet"]),
                                                            "--force", "--quiet"],
            "darktable-cli": dt_cmd and ["darktable-cli", str(dng), str(outs["darktable-cli"]), *dt_cmd[3:]],
        }
        extra["raw"] = paired(raw_cmds, outs, args.repeat)
        if shutil.which("rawtherapee-cli"):
            extra["raw"].update(paired({"rawtherapee-cli": ["rawtherapee-cli", "-o", str(outs["rawtherapee-cli"]), "-t",
                                                            "-b16", "-d", "-Y", "-c", str(dng)]}, outs, 1))
    if not args.no_breakdown:
        extra["breakdown"] = breakdown(src, plan_path, work, monet)
    if args.batch:
        extra["batch"] = batch(src, plan_path, work, monet, args.batch)

    best = min(e2e, key=lambda s: s["total"])
    result = {
        "megapixels": round(mp, 1),
        "threads": threads(),
        "render_s": round(min(render_s), 3),
        "end_to_end_in_process_s": round(best["total"], 3),
        "read_s": round(best["read"], 3),
        "write_s": round(best["write"], 3),
        "cli_wall_s": mine["seconds"],
        "cli_peak_rss_mib": mine["peak_rss_mib"],
        "cli_rc": mine["rc"],
        "cli_runs_s": mine["runs_s"],
        "peers": peers,
        **extra,
    }
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"monet apply, {result['megapixels']} MP 16-bit TIFF, 33 ops, {result['threads']} threads")
    print(f"  render (compute)          {result['render_s']:.3f} s   (target <= 1.0)")
    print(f"  read + render + write     {result['end_to_end_in_process_s']:.3f} s   (target <= 1.5; read "
          f"{result['read_s']:.3f}, write {result['write_s']:.3f})")
    print(f"  `monet apply` process     {result['cli_wall_s']:.3f} s wall (best of {args.repeat}: "
          f"{', '.join(f'{x:.2f}' for x in result['cli_runs_s'])}) incl. Python start, "
          f"peak RSS {result['cli_peak_rss_mib']} MiB (target <= 600)")
    for name, p in peers.items():
        print(f"  {name:<25} {p['seconds']:.3f} s wall (best of {len(p['runs_s'])}: "
              f"{', '.join(f'{x:.2f}' for x in p['runs_s'])}), peak RSS {p['peak_rss_mib']} MiB (rc {p['rc']})")
    if not peers:
        print("  (darktable-cli / rawtherapee-cli not installed: apt-get install darktable rawtherapee)")
    for name, p in peers.items():
        print(f"  monet / {name:<17} {result['cli_wall_s'] / p['seconds']:.2f} of its time (whole processes, best "
              f"runs; medians {mine['median_s'] / p['median_s']:.2f}; target <= 0.35)")
    raw = result.get("raw")
    if raw:
        print(f"RAW: the same photo as a {result['megapixels']} MP Bayer DNG (LibRaw's AHD demosaic in monet), "
              "whole processes, alternating:")
        for name, p in raw.items():
            print(f"  {name:<25} {p['seconds']:.3f} s best, {p['median_s']:.3f} s median (of {len(p['runs_s'])}: "
                  f"{', '.join(f'{x:.2f}' for x in p['runs_s'])}), peak RSS {p['peak_rss_mib']} MiB (rc {p['rc']})")
        for name in ("darktable-cli", "rawtherapee-cli"):
            if name in raw:
                print(f"  monet / {name:<17} {raw['monet']['seconds'] / raw[name]['seconds']:.2f} of its time (best runs; "
                      f"medians {raw['monet']['median_s'] / raw[name]['median_s']:.2f})")
    b = result.get("breakdown")
    if b:
        ip = b["in_process"]
        rest = b["process_s"] - ip["total"]
        print("where one `monet apply` process spends its time (whole process "
              f"{b['process_s']:.2f} s):")
        print(f"  interpreter start         {b['python_start_s']:.3f} s")
        print(f"  imports, start-up, exit   {rest - b['python_start_s']:.3f} s (CLI alone {b['cli_imports_s']:.3f} s)")
        print(f"  read (decode)             {ip['read']:.3f} s")
        print(f"  render                    {ip['render']:.3f} s ({b['kernel']} kernel; choosing and loading it "
              f"~{b['kernel_load_s']:.3f} s in a fresh process)")
        print(f"  write (encode + metadata) {ip['write']:.3f} s")
        print(f"  `monet --help`            {b['help_s']:.3f} s (target <= 0.2)")
        print("  slowest top-level imports: " + ", ".join(f"{m} {t:.3f} s" for m, t in b["slowest_imports"]))
    bt = result.get("batch")
    if bt:
        print(f"batch of {bt['photos']} photos in one folder (photos/s):")
        for k in ("monet_j1", "monet_j2", "darktable-cli", "rawtherapee-cli"):
            if k in bt:
                v = bt[k]
                print(f"  {k:<25} {v['photos_per_s']:.3f}/s ({v['seconds']:.1f} s, peak RSS {v['peak_rss_mib']} MiB, "
                      f"rc {v['rc']})")
        best_m = max(bt["monet_j1"]["photos_per_s"], bt["monet_j2"]["photos_per_s"])
        for name, target in (("darktable-cli", " (target >= 4)"), ("rawtherapee-cli", "")):
            if name in bt and bt[name]["photos_per_s"]:
                print(f"  monet / {name:<17} {best_m / bt[name]['photos_per_s']:.1f}× its throughput{target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
