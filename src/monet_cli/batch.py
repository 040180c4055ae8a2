"""Batch runs over files, folders and globs: discovery, per-photo locks, progress, summary.

A batch never stops for one bad file: each item ends ``ok``, ``skipped`` or ``failed`` with a
message. Work is safe to interrupt (outputs are written atomically, a second Ctrl-C is not
needed) and to rerun (finished items are skipped), and two runs on the same folder at once do
not collide (an exclusive lock file per photo; stale locks of dead processes are taken over).
"""

from __future__ import annotations

import glob
import json
import os
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from monet_cli.errors import MonetError, UsageError

PHOTO_SUFFIXES = frozenset({".tif", ".tiff", ".jpg", ".jpeg", ".png"})
LOCK_SUFFIX = ".monet.lock"
# A lock file without a pid is taken over only once it is this old: a new lock is created
# empty and its pid written a moment later, and taking it over in that moment let two
# processes plan the same photo.
EMPTY_LOCK_GRACE_S = 10.0


def _photo_suffixes() -> frozenset:
    from monet_cli.images import RAW_SUFFIXES

    return PHOTO_SUFFIXES | frozenset(RAW_SUFFIXES)


def is_monet_output(path: Path) -> bool:
    """Files monet wrote itself (``x.monet.tif``, sidecars, locks, temp files) are not inputs."""
    return ".monet." in path.name or path.name.endswith((".monet.json", LOCK_SUFFIX)) or path.name.startswith(".")


def collect_photos(paths: Iterable, *, recursive: bool = False) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files, folders and glob patterns into photos, in a stable order.

    Returns ``(photos, missing)``: ``missing`` lists arguments that matched nothing, with why.
    Folders contribute files with a photo suffix (RAW included), not monet's own outputs.
    """
    suffixes = _photo_suffixes()
    photos: list[Path] = []
    missing: list[tuple[Path, str]] = []
    seen: set = set()

    def add(p: Path):
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            photos.append(p)

    for arg in paths:
        p = Path(arg)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            found = sorted(f for f in it if f.is_file() and f.suffix.lower() in suffixes and not is_monet_output(f))
            if not found:
                missing.append((p, "no photos in this folder" + ("" if recursive else " (use --recursive?)")))
            for f in found:
                add(f)
        elif p.exists():
            add(p)
        elif glob.has_magic(str(arg)):
            found = sorted(Path(m) for m in glob.glob(str(arg), recursive=recursive)
                           if Path(m).is_file() and not is_monet_output(Path(m)))
            if not found:
                missing.append((p, "pattern matched no files"))
            for f in found:
                add(f)
        else:
            missing.append((p, "no such file or folder"))
    return photos, missing


def single_photo(paths: list) -> Path | None:
    """The one photo when the arguments name exactly one file (existing or not) rather than a
    folder or pattern: such a run reports its error like a plain command, not as a batch."""
    if len(paths) == 1:
        p = Path(paths[0])
        if not p.is_dir() and (p.exists() or not glob.has_magic(str(paths[0]))):
            return p
    return None


def resolve_inputs(paths: list, *, recursive: bool = False) -> tuple[list[Path], list, bool]:
    """``(photos, missing, single)`` for a command's path arguments: one named file is a
    single-photo run (its errors are reported as a plain command's); anything else a batch.
    No photos at all is a :class:`UsageError`."""
    one = single_photo(paths)
    photos, missing = ([one], []) if one is not None else collect_photos(paths, recursive=recursive)
    if not photos and not missing:
        raise UsageError("no photos given")
    return photos, missing, one is not None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_temp_files(folders) -> int:
    """Remove temporary files (``.NAME.PID-XXXX.monet-tmp``) left in ``folders`` by processes
    that no longer run (killed mid-write). Returns how many were removed."""
    removed = 0
    for folder in {Path(f) for f in folders}:
        try:
            candidates = list(folder.glob(".*.monet-tmp"))
        except OSError:
            continue
        for tmp in candidates:
            try:
                pid = int(tmp.name.rsplit(".", 2)[-2].split("-")[0])
            except (ValueError, IndexError):
                continue
            if pid != os.getpid() and not _pid_alive(pid):
                try:
                    tmp.unlink()
                    removed += 1
                except OSError:
                    pass
    return removed


class PhotoLock:
    """An exclusive lock file ``<lock_dir>/<name>.monet.lock`` holding the owner's pid.

    ``acquire`` returns False when another live process holds it; a lock left by a dead
    process (killed mid-batch) is removed and taken.
    """

    def __init__(self, photo: Path, lock_dir: Path | None = None):
        folder = lock_dir if lock_dir is not None else photo.parent
        self.path = Path(folder) / (photo.name + LOCK_SUFFIX)
        self.held = False

    def acquire(self) -> bool:
        for _ in range(2):
            try:
                self._create()
            except FileExistsError:
                if not self._remove_stale():
                    return False
                continue
            except OSError:
                # read-only media: nothing can be written beside the photo, so there is
                # nothing to protect there; go on without a lock
                return True
            self.held = True
            return True
        return False

    def _create(self) -> None:
        """Create the lock file with this process's pid already in it: the pid goes into a
        temporary file that is then hard-linked to the lock's name (atomic, and refused when
        the lock exists). A lock created empty and filled a moment later could be left empty
        by a kill in between, and an empty lock is honoured for EMPTY_LOCK_GRACE_S, so a rerun
        straight after ``kill -9`` skipped that photo. Where hard links are not supported, the
        lock is created empty and filled."""
        pid = str(os.getpid())
        tmp = self.path.with_name(f".{self.path.name}.{pid}-{threading.get_ident()}.monet-tmp")
        tmp.write_text(pid)
        try:
            os.link(tmp, self.path)
            return
        except FileExistsError:
            raise
        except OSError:  # no hard links here (some network or FUSE file systems)
            pass
        finally:
            try:
                tmp.unlink()
            except OSError:
                pass
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(pid)

    def _remove_stale(self) -> bool:
        """Remove the existing lock if its owner is gone; False when it is held."""
        try:
            pid = int(self.path.read_text().strip() or "0")
        except (OSError, ValueError):
            pid = 0
        if pid and (pid == os.getpid() or _pid_alive(pid)):
            return False  # a live process, or another thread of this one
        if not pid:  # no pid yet: its owner may be between creating the file and writing to it
            try:
                if time.time() - self.path.stat().st_mtime < EMPTY_LOCK_GRACE_S:
                    return False
            except FileNotFoundError:
                return True
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        return True

    def release(self) -> None:
        if self.held:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            self.held = False


@dataclass
class ItemResult:
    path: Path
    status: str  # ok | skipped | failed
    message: str = ""
    data: dict = field(default_factory=dict)
    seconds: float = 0.0
    error: BaseException | None = field(default=None, repr=False)  # the MonetError of a failed item

    def to_dict(self) -> dict:
        d = {"path": str(self.path), "status": self.status}
        if self.message:
            d["message" if self.status != "failed" else "error"] = self.message
        d.update(self.data)
        d["elapsed"] = round(self.seconds, 3)
        return d


class Skip(Exception):
    """Raised by a batch job to mark an item as skipped (already done, locked)."""


@dataclass
class BatchSummary:
    results: list[ItemResult]
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.count("failed") else 0


def default_jobs(n_photos: int) -> int:
    """Photos in flight when ``-j`` is not given (``monet apply``; ``monet plan`` with the
    embedded planners): 2 where a render may use 2 or more threads (``$MONET_THREADS``, else
    the CPUs), so that one photo is read or written while another is worked on; else 1. Here,
    a 24 MP batch of 20 renders at 1.35 photos/s with 1, 2.50 with 2 (benchmarks/apply.py), at
    616 MiB instead of 340; 10 such photos are planned in 4.4 s with 1, 2.9 s with 2."""
    from monet_cli._ckernel import threads

    return 2 if n_photos > 1 and threads() >= 2 else 1


def run_batch(photos: list[Path], job: Callable[[Path], ItemResult | dict], *, jobs: int | None = 1,
              lock_dir: Path | None = None, verb: str = "processing", quiet: bool = False,
              as_json: bool = False, console=None, missing: list | None = None,
              output_dirs: Iterable = (), silent: bool = False) -> BatchSummary:
    """Run ``job`` on each photo (``jobs`` at a time; None: :func:`default_jobs`), each under its
    :class:`PhotoLock`.

    ``job`` returns a dict of facts (status ok) or raises :class:`Skip` / :class:`MonetError`.
    Output: a rich progress bar on a terminal; otherwise one plain line per item; with
    ``as_json`` one JSON line per item on stdout; nothing with ``silent`` (the caller reports). Ctrl-C stops taking new items, lets the
    running ones finish their atomic write, and returns with ``interrupted``.
    """
    if jobs is None:
        jobs = default_jobs(len(photos))
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    for d in (lock_dir, *output_dirs):
        if d is not None:
            try:
                Path(d).mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UsageError(f"cannot create folder {d}: {e.strerror or e}") from None
    sweep_temp_files([p.parent for p in photos] + [d for d in (lock_dir, *output_dirs) if d is not None])
    results: list[ItemResult] = []
    for path, why in missing or []:
        results.append(ItemResult(path, "failed", why))
    stop = threading.Event()
    lock = threading.Lock()
    use_bar = not quiet and not as_json and console is not None and console.is_terminal and len(photos) > 1

    def one(photo: Path) -> ItemResult:
        t0 = time.perf_counter()
        plock = PhotoLock(photo, lock_dir)
        if not plock.acquire():
            return ItemResult(photo, "skipped", "locked by another running monet", seconds=0.0)
        try:
            out = job(photo)
            if isinstance(out, ItemResult):
                out.seconds = time.perf_counter() - t0
                return out
            return ItemResult(photo, "ok", data=out or {}, seconds=time.perf_counter() - t0)
        except Skip as e:
            return ItemResult(photo, "skipped", str(e), seconds=time.perf_counter() - t0)
        except MonetError as e:
            return ItemResult(photo, "failed", str(e).replace(f"{photo}: ", "", 1), seconds=time.perf_counter() - t0,
                              error=e)
        except MemoryError:
            return ItemResult(photo, "failed", "out of memory", seconds=time.perf_counter() - t0)
        except OSError as e:
            return ItemResult(photo, "failed", f"{e.strerror or e}", seconds=time.perf_counter() - t0)
        finally:
            plock.release()

    def report(r: ItemResult, done: int, progress=None, task=None):
        with lock:
            results.append(r)
            if silent:
                pass
            elif as_json:
                sys.stdout.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
                sys.stdout.flush()
            elif progress is not None:
                progress.update(task, advance=1)
                if r.status == "failed":
                    progress.console.print(f"[red]✗[/red] {r.path}: {_esc(r.message)}")
            elif not quiet or r.status == "failed":
                line = _plain_line(r, done, len(photos))
                (sys.stderr if r.status == "failed" else sys.stdout).write(line + "\n")

    progress = task = None
    if use_bar:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        progress = Progress(TextColumn(f"{verb}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TimeRemainingColumn(), console=console, transient=False)
        task = progress.add_task(verb, total=len(photos))
        progress.start()
    interrupted = False
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            pending = set()
            queue = list(photos)
            done = 0
            try:
                while queue or pending:
                    while queue and len(pending) < jobs and not stop.is_set():
                        pending.add(pool.submit(one, queue.pop(0)))
                    if not pending:
                        break
                    finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                    for f in finished:
                        done += 1
                        report(f.result(), done, progress, task)
            except KeyboardInterrupt:
                interrupted = True
                stop.set()
                queue.clear()
                sys.stderr.write("monet: interrupted; finishing the photos in progress...\n")
                for f in pending:
                    done += 1
                    report(f.result(), done, progress, task)
    finally:
        if progress is not None:
            progress.stop()
    return BatchSummary(results, interrupted)


def _esc(s: str) -> str:
    from rich.markup import escape

    return escape(s)


def _plain_line(r: ItemResult, done: int, total: int) -> str:
    extra = f" → {r.data['output']}" if r.data.get("output") else ""
    msg = f": {r.message}" if r.message else ""
    return f"[{done}/{total}] {r.status} {r.path}{extra}{msg}"


def print_summary(summary: BatchSummary, console, *, verb: str) -> None:
    ok, skipped, failed = summary.count("ok"), summary.count("skipped"), summary.count("failed")
    parts = [f"[green]{ok} done[/green]", f"{skipped} skipped", f"[red]{failed} failed[/red]" if failed else "0 failed"]
    tail = " (interrupted)" if summary.interrupted else ""
    console.print(f"{verb}: " + ", ".join(parts) + tail)
