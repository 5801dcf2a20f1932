"""What the benchmark does on a mounted file system, timed, each result checked.

Every operation is what a user runs: ``ls -lR`` and ``find | wc -l`` as
subprocesses (their start-up, about 1 ms, is in every file system's figure
alike), Python's ``open().read()``, ``np.load`` and ``os.pread``.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mountbench.baselines import SMALL_READ
from mountbench.mounts import LiveMount

#: How often the RSS of a mount is sampled while work runs.
RSS_SAMPLE_SECONDS = 0.02


def drop_page_cache(path: Path) -> None:
    """Drop the kernel page cache of one file (the clean pages of its inode, FUSE included)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed_read(path: Path) -> tuple[float, int]:
    """Seconds of one ``open(path, 'rb').read()`` of the whole file, and the bytes read (checked against its size)."""
    size = path.stat().st_size
    start = time.perf_counter()
    with open(path, "rb") as fh:
        nbytes = len(fh.read())
    elapsed = time.perf_counter() - start
    if nbytes != size:
        raise RuntimeError(f"read {nbytes} bytes of {path}, its size is {size}")
    return elapsed, nbytes


def timed_np_load(path: Path, expected: np.ndarray) -> float:
    """Seconds of ``np.load(path)`` (open included); the result is checked against ``expected``."""
    start = time.perf_counter()
    loaded = np.load(path)
    elapsed = time.perf_counter() - start
    step = max(1, expected.size // 4096)
    if loaded.shape != expected.shape or not np.array_equal(loaded[::step], expected[::step]):
        raise RuntimeError(f"{path} loaded wrong data")
    return elapsed


def timed_preads(path: Path, offsets: np.ndarray) -> list[float]:
    """Seconds of each 64 KiB ``os.pread`` at ``offsets`` of one open file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        latencies = []
        for offset in offsets:
            start = time.perf_counter()
            data = os.pread(fd, SMALL_READ, int(offset))
            latencies.append(time.perf_counter() - start)
            if len(data) != SMALL_READ:
                raise RuntimeError(f"short read of {path} at {offset}")
        return latencies
    finally:
        os.close(fd)


def stream_file(path: Path) -> None:
    """Read a file start to end in 1 MiB reads."""
    with open(path, "rb", buffering=0) as fh:
        while fh.read(1 << 20):
            pass


def _timed_output(argv: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    output = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - start, output


def timed_ls(directory: Path, files: int, recursive: bool = True) -> float:
    """Seconds of ``ls -lR directory`` (``ls -l`` without ``recursive``); it must list ``files`` regular files."""
    elapsed, output = _timed_output(["ls", "-lR" if recursive else "-l", str(directory)])
    listed = sum(line.startswith("-") for line in output.splitlines())
    if listed != files:
        raise RuntimeError(f"ls of {directory} listed {listed} files, not {files}")
    return elapsed


def timed_find(directory: Path, entries: int) -> float:
    """Seconds of ``find directory | wc -l``; it must count ``entries`` (the directory itself included)."""
    elapsed, output = _timed_output(["sh", "-c", 'find "$1" | wc -l', "sh", str(directory)])
    if int(output) != entries:
        raise RuntimeError(f"find {directory} counted {int(output)} entries, not {entries}")
    return elapsed


def peak_rss_while(mount: LiveMount, work: list[Callable[[], None]]) -> int:
    """Run ``work`` in threads and return the mount's peak RSS, sampled every 20 ms."""
    errors: list[BaseException] = []

    def run(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,), daemon=True) for job in work]
    for thread in threads:
        thread.start()
    peak = mount.rss()
    while any(thread.is_alive() for thread in threads):
        peak = max(peak, mount.rss())
        threads[0].join(RSS_SAMPLE_SECONDS)
    if errors:
        raise errors[0]
    return max(peak, mount.rss())
