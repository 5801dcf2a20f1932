#!/usr/bin/env python
"""Benchmark the real ``cottoncandy-mount`` against raw boto3 on a loopback S3 server.

Starts the server (``--server``: ``rclone serve s3`` or SeaweedFS) on loopback,
uploads the data with the Python API (the 2,000 small arrays of the listing
test with boto3 in parallel, with the same metadata), mounts the bucket with
the ``cottoncandy-mount`` command in its default background mode and prints
one table naming the server: each figure, the raw boto3
baseline measured in the same run (interleaved with the mount runs, the
machine being shared), their ratio, the target and pass/FAIL.

The gzip figures use an array written by cottoncandy 0.4.0 itself with its
defaults (gzip level 9), from its own venv (``scripts/cc040.py``), and compare
with 0.4.0's ``download_raw_array`` of the same object, alternating runs.

How "cold" is achieved: every cold figure runs on a fresh mount (unmount,
mount again). The mount process, its block cache and gzip checkpoints are
new, and the kernel forgets a FUSE file system's inodes and page cache at
unmount. The server side stays warm (its files in the host page cache, its
checksums computed), as it is for the boto3 baseline. Where a figure needs
the page cache of one file dropped on a live mount, ``posix_fadvise(DONTNEED)``
is used (it invalidates the clean pages of that inode, FUSE included).

Bytes fetched from the server: the mount exposes no counters outside its
process, so the script reads the server's own ``/proc/PID/io`` ``wchar`` (bytes
it wrote with ``write(2)``, which is how Go, the language of both servers,
sends on sockets). It counts response bodies plus HTTP headers; the same
counter over the boto3 baseline's GETs is shown as the baseline, so the header
overhead is visible. SeaweedFS runs
its volume server and S3 gateway in one process, so its counter also holds the
bytes passed between them (a whole stored chunk for a small ranged GET): there,
compare the mount's figure with the baseline's, not with 1.

The run ends with everything unmounted and stopped, also on an error or
Ctrl-C. Exit status 0 when the run completed (even if targets are missed),
1 if it failed, 130 if interrupted.

Usage: ``.venv/bin/python scripts/bench_mount.py [--mib 256] [--repeat 3] [--cache-size 1GiB] [--gzip-mib 128]
[--cc040-python PATH] [--quick] [--server rclone|seaweedfs]``
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cc040 import CC040, cc040_python, smooth_array  # noqa: E402
from tests.mountutil import mount_env, processes_using, reap, unmount  # noqa: E402
from tests.servers import add_server_option, find_executable, start_server  # noqa: E402

import cottoncandy as cc  # noqa: E402
from cottoncandy.format.metadata import ArrayMeta  # noqa: E402
from cottoncandy.fuse.cli import parse_size  # noqa: E402

BUCKET = "benchmount"
PART = 8 << 20  # boto3 baseline: 8 parallel 8 MiB ranged GETs
THREADS = 8
SMALL_READ = 64 << 10
READERS = 8  # concurrent streams of the RSS figure
RSS_ALLOWANCE = 150 << 20  # target: cache size + this
MOUNT_TIMEOUT = 120.0


@dataclass
class Row:
    """One line of the table; ``passed`` is None when there is no target."""

    figure: str
    value: str
    baseline: str
    ratio: str
    target: str
    passed: bool | None


@dataclass
class Sizes:
    """How much work each figure does (full run or ``--quick``)."""

    nbytes: int
    random_reads: int
    ls_dirs: int
    ls_per_dir: int
    stream_nbytes: int


# -- baselines -----------------------------------------------------------------


def boto3_parallel_get(client, key: str, size: int) -> float:
    """Seconds to read ``key`` with 8 parallel 8 MiB ranged GETs."""
    def fetch(start: int) -> int:
        end = min(start + PART, size) - 1
        return len(client.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={start}-{end}")["Body"].read())

    start = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        if sum(pool.map(fetch, range(0, size, PART))) != size:
            raise RuntimeError(f"boto3 read of {key} came back short")
    return time.perf_counter() - start


def boto3_small_gets(client, key: str, offsets: np.ndarray) -> list[float]:
    """Seconds of each single 64 KiB ranged GET at ``offsets`` (one after the other)."""
    latencies = []
    for offset in offsets:
        start = time.perf_counter()
        client.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={offset}-{offset + SMALL_READ - 1}")["Body"].read()
        latencies.append(time.perf_counter() - start)
    return latencies


def boto3_list_and_head(client, prefix: str) -> float:
    """Seconds to list ``prefix`` recursively and HEAD every object (8 threads): what ``ls -lR`` needs."""
    start = time.perf_counter()
    keys = [obj["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
            for obj in page.get("Contents", [])]
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda key: client.head_object(Bucket=BUCKET, Key=key), keys))
    return time.perf_counter() - start


# -- the mount -----------------------------------------------------------------


class Mount:
    """A live background ``cottoncandy-mount`` (see :func:`mounted`)."""

    def __init__(self, path: Path):
        self.path = path
        found = [p for p in processes_using(path) if "cottoncandy.fuse.cli" in " ".join(p.cmdline())]
        if len(found) != 1:
            raise RuntimeError(f"expected one mount process for {path}, found {found}")
        self.process = found[0]

    def rss(self) -> int:
        """Resident bytes of the mount process and its children (the fusermount3 helper)."""
        total = 0
        for proc in [self.process, *self.process.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total


@contextlib.contextmanager
def mounted(server, mountpoint: Path, log_path: Path, cache_size: str) -> Iterator[Mount]:
    """Mount the bucket with ``cottoncandy-mount`` (background mode); always unmount and reap."""
    command = [find_executable("cottoncandy-mount"), BUCKET, str(mountpoint), "--cache-size", cache_size,
               "--log-file", str(log_path)]
    env = mount_env(server.endpoint_url, server.access_key, server.secret_key)
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=MOUNT_TIMEOUT, check=False)
        if result.returncode != 0 or not os.path.ismount(mountpoint):
            raise RuntimeError(f"cottoncandy-mount failed ({result.returncode}): {result.stderr.strip()}")
        yield Mount(mountpoint)
    finally:
        unmount(mountpoint)
        killed = reap(mountpoint, None)
        if killed:
            print(f"warning: had to kill {killed}", file=sys.stderr)


def drop_page_cache(path: Path) -> None:
    """Drop the kernel page cache of one file (clean pages of its inode)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed_np_load(path: Path, expected: np.ndarray) -> float:
    """Seconds of ``np.load(path)`` (open included); the result is checked against ``expected``."""
    start = time.perf_counter()
    loaded = np.load(path)
    elapsed = time.perf_counter() - start
    if loaded.shape != expected.shape or not np.array_equal(loaded[:: max(1, loaded.size // 4096)],
                                                            expected[:: max(1, expected.size // 4096)]):
        raise RuntimeError(f"{path} loaded wrong data")
    return elapsed


def timed_preads(path: Path, offsets: np.ndarray) -> list[float]:
    """Seconds of each 64 KiB ``os.pread`` at ``offsets`` of an open file."""
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


def peak_rss_while(mount: Mount, work: list[Callable[[], None]]) -> int:
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
        threads[0].join(0.02)  # sampling interval
    if errors:
        raise errors[0]
    return peak


class ServerBytes:
    """Bytes the server sent, from its ``wchar`` (see the module notes)."""

    def __init__(self, pid: int):
        self._process = psutil.Process(pid)

    def __call__(self) -> int:
        return self._process.io_counters().write_chars


# -- the run -------------------------------------------------------------------


def upload(cci, client, arr: np.ndarray, sizes: Sizes) -> None:
    """Upload every object the figures need."""
    cci.upload_raw_array("bench/raw", arr, compression=False)
    stream = arr[: sizes.stream_nbytes // arr.itemsize]
    for i in range(READERS):
        cci.upload_raw_array(f"stream/a{i}", stream, compression=False)
    small = np.arange(16, dtype=np.float64)
    metadata = ArrayMeta(small.dtype, small.shape, None).to_metadata()
    body = small.tobytes()
    keys = [f"lstree/d{d:02d}/arr{i:03d}" for d in range(sizes.ls_dirs) for i in range(sizes.ls_per_dir)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata=metadata), keys))
    for key in ("bench/raw", *(f"stream/a{i}" for i in range(READERS))):
        size = client.head_object(Bucket=BUCKET, Key=key)["ContentLength"]
        boto3_parallel_get(client, key, size)  # warm-up: rclone checksums an object on its first GET


def run(args: argparse.Namespace, sizes: Sizes, tmp: Path) -> list[Row]:
    """Measure every figure; return the table rows."""
    arr = np.random.default_rng(0).standard_normal(sizes.nbytes // 8)
    mb = arr.nbytes / 1e6
    mnt = tmp / "mnt"
    mnt.mkdir()
    log_path = tmp / "mount.log"
    rng = np.random.default_rng(1)
    offsets = rng.integers(0, arr.nbytes - SMALL_READ, sizes.random_reads)
    rows: list[Row] = []
    with start_server(args.server, tmp) as server:
        client = server.client()
        client.create_bucket(Bucket=BUCKET)
        cci = cc.get_interface(BUCKET, ACCESS_KEY=server.access_key, SECRET_KEY=server.secret_key,
                               endpoint_url=server.endpoint_url, verbose=False)
        server_bytes = ServerBytes(server.process.pid)
        print(f"uploading ({arr.nbytes >> 20} MiB array, {READERS} stream arrays, "
              f"{sizes.ls_dirs * sizes.ls_per_dir} small arrays) ...", file=sys.stderr)
        upload(cci, client, arr, sizes)
        raw_path = mnt / "bench/raw.npy"

        def mount(cache_size: str = args.cache_size):
            return mounted(server, mnt, log_path, cache_size)

        # cold and warm np.load of the uncompressed array, each cold run on a fresh mount
        print("uncompressed np.load ...", file=sys.stderr)
        base, cold, warm = [], [], []
        for _ in range(args.repeat):
            base.append(boto3_parallel_get(client, "bench/raw", arr.nbytes))
            with mount():
                cold.append(timed_np_load(raw_path, arr))
                warm.append(timed_np_load(raw_path, arr))
        t_base = statistics.median(base)
        rows.append(throughput_row("cold np.load, uncompressed", mb, statistics.median(cold), t_base, 0.8))
        rows.append(throughput_row("warm np.load re-read, uncompressed", mb, statistics.median(warm), t_base, 1.5))

        # random 64 KiB preads, cold
        print("random 64 KiB reads ...", file=sys.stderr)
        before = server_bytes()
        base_lat = boto3_small_gets(client, "bench/raw", offsets)
        base_amp = (server_bytes() - before) / (len(offsets) * SMALL_READ)
        with mount():
            header = raw_path.stat().st_size - arr.nbytes
            before = server_bytes()
            lat = timed_preads(raw_path, offsets + header)
            amp = (server_bytes() - before) / (len(offsets) * SMALL_READ)
        med, base_med = statistics.median(lat), statistics.median(base_lat)
        rows.append(Row(f"{len(offsets)} random 64 KiB preads, cold: median latency", f"{med * 1e3:.2f} ms",
                        f"{base_med * 1e3:.2f} ms", f"{med / base_med:.2f}x", "<= 1.6x", med / base_med <= 1.6))
        rows.append(Row("  same reads: server bytes / bytes read", f"{amp:.1f}", f"{base_amp:.2f}",
                        f"{amp / base_amp:.1f}x", "<= 16", amp <= 16))

        rows.extend(gzip_rows(args, sizes, server, cci, mount, tmp, base_med))

        # ls -lR over the small arrays, cold (fresh mount) and warm
        print("ls -lR ...", file=sys.stderr)
        base, cold, warm = [], [], []
        ls = ["ls", "-lR", str(mnt / "lstree")]
        for _ in range(args.repeat):
            base.append(boto3_list_and_head(client, "lstree/"))
            with mount():
                for times in (cold, warm):
                    start = time.perf_counter()
                    listing = subprocess.run(ls, check=True, capture_output=True, text=True).stdout
                    times.append(time.perf_counter() - start)
                if listing.count(".npy") != sizes.ls_dirs * sizes.ls_per_dir:
                    raise RuntimeError(f"ls -lR listed {listing.count('.npy')} arrays")
        t_ls_base = statistics.median(base)
        n_arrays = sizes.ls_dirs * sizes.ls_per_dir
        for label, times, limit, baseline in (("cold (fresh mount)", cold, 0.4, t_ls_base), ("warm", warm, 0.05, None)):
            t = statistics.median(times)
            rows.append(Row(f"ls -lR, {n_arrays} arrays in {sizes.ls_dirs} dirs, {label}", f"{t:.3f} s",
                            f"{baseline:.3f} s" if baseline else "-", f"{t / baseline:.2f}x" if baseline else "-",
                            f"<= {limit} s", t <= limit))

        # RSS of the mount while 8 readers stream 8 different arrays
        print("RSS with 8 readers ...", file=sys.stderr)
        with mount() as live:
            paths = [mnt / f"stream/a{i}.npy" for i in range(READERS)]
            idle = live.rss()
            peak = peak_rss_while(live, [lambda p=p: stream_file(p) for p in paths])
        limit = parse_size(args.cache_size) + RSS_ALLOWANCE
        rows.append(Row(f"mount RSS, {READERS} readers x {sizes.stream_nbytes >> 20} MiB (idle {idle >> 20} MiB)",
                        f"{peak >> 20} MiB", "-", "-", f"<= {limit >> 20} MiB", peak <= limit))
        rows.insert(0, Row("boto3 8 parallel 8 MiB ranged GETs (baseline)", f"{mb / t_base:.0f} MB/s", "", "", "", None))
        rows.insert(1, Row("boto3 single 64 KiB ranged GET (baseline)", f"{base_med * 1e3:.2f} ms", "", "", "", None))
    return rows


def gzip_rows(args: argparse.Namespace, sizes: Sizes, server, cci, mount, tmp: Path, boto3_64k: float) -> list[Row]:
    """gzip against cottoncandy 0.4.0: one array written by 0.4.0 (gzip level 9, its default).

    Cold ``np.load`` on a fresh mount against 0.4.0's ``download_raw_array``
    (alternating, so both see the same machine load; ours shown too), then
    random 64 KiB reads after one pass, and with a block cache too small for
    the array (reads decode from gzip checkpoints).
    """
    old = CC040(cc040_python(args.cc040_python), server, BUCKET, tmp)
    mib = args.gzip_mib
    expected = smooth_array(mib)
    mb = expected.nbytes / 1e6
    print(f"gzip: 0.4.0 uploads {mib} MiB with its defaults ...", file=sys.stderr)
    if old.run("upload_raw_array", "bench/gzip040", mib)["sha256"] != hashlib.sha256(expected.tobytes()).hexdigest():
        raise RuntimeError("0.4.0 made different data than this script (numpy versions differ?)")
    old.run("download_raw_array", "bench/gzip040")  # warm-up: rclone checksums an object on its first GET
    path = tmp / "mnt" / "bench/gzip040.npy"
    rng = np.random.default_rng(2)
    offsets = rng.integers(0, expected.nbytes - SMALL_READ, sizes.random_reads)
    t_old, t_ours, t_cold = [], [], []
    for n in range(args.repeat):
        t_old.append(old.run("download_raw_array", "bench/gzip040")["seconds"])
        start = time.perf_counter()
        cci.download_raw_array("bench/gzip040")
        t_ours.append(time.perf_counter() - start)
        with mount():
            t_cold.append(timed_np_load(path, expected))
            if n == args.repeat - 1:  # the last mount: random reads after this full pass
                header = path.stat().st_size - expected.nbytes
                drop_page_cache(path)
                after_pass = timed_preads(path, offsets + header)
    base = statistics.median(t_old)
    rows = [Row(f"0.4.0 download_raw_array, {mib} MiB float32 written by 0.4.0 (gzip-9)", f"{mb / base:.0f} MB/s",
                "", "", "", None)]
    for figure, times, target in (("our download_raw_array, same object", t_ours, None),
                                  ("cold np.load on the mount, same object", t_cold, 1.5)):
        t = statistics.median(times)
        rows.append(Row(figure, f"{mb / t:.0f} MB/s", f"0.4.0 {mb / base:.0f} MB/s", f"{base / t:.2f}x",
                        f">= {target}x" if target else "", base / t >= target if target else None))
    rows.append(latency_row(f"{len(offsets)} random 64 KiB preads in it, after a pass", after_pass, boto3_64k))
    # a block cache smaller than the array: reads decode from gzip checkpoints
    small_cache = f"{max(16, (mib << 20) // 8 >> 20)}MiB"
    with mount(small_cache):
        stream_file(path)
        drop_page_cache(path)
        small = timed_preads(path, offsets + header)
    rows.append(latency_row(f"  same, {small_cache} cache (from checkpoints)", small, boto3_64k, limit_ms=10.0))
    return rows


def throughput_row(figure: str, mb: float, seconds: float, base_seconds: float, target: float) -> Row:
    """A throughput figure against the boto3 parallel ranged GET."""
    ratio = base_seconds / seconds
    return Row(figure, f"{mb / seconds:.0f} MB/s", f"{mb / base_seconds:.0f} MB/s", f"{ratio:.2f}x",
               f">= {target}x", ratio >= target)


def latency_row(figure: str, latencies: list[float], base_median: float, limit_ms: float = 5.0) -> Row:
    """A gzip random-read latency with an absolute target, shown against a boto3 64 KiB GET."""
    med = statistics.median(latencies)
    return Row(figure, f"{med * 1e3:.2f} ms", f"{base_median * 1e3:.2f} ms", f"{med / base_median:.2f}x",
               f"<= {limit_ms:g} ms", med * 1e3 <= limit_ms)


def print_table(rows: list[Row], title: str, baseline: str = "boto3 baseline") -> None:
    """Print the table (the only output on stdout); ``baseline`` heads the third column."""
    headers = ("figure", "value", baseline, "ratio", "target", "pass")
    cells = [headers] + [(r.figure, r.value, r.baseline, r.ratio, r.target,
                          "" if r.passed is None else ("pass" if r.passed else "FAIL")) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C, so every mount and the server are stopped


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="size of the big array in MiB (default 256)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is shown (default 3)")
    parser.add_argument("--cache-size", default="1GiB", help="the mount's --cache-size (default 1GiB)")
    parser.add_argument("--gzip-mib", type=int, default=128,
                        help="size of the gzip array, written by cottoncandy 0.4.0, in MiB (default 128)")
    parser.add_argument("--cc040-python", metavar="PATH",
                        help="interpreter with cottoncandy 0.4.0 (default: .venv-cc040, created if missing)")
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each: a smoke run")
    add_server_option(parser)
    args = parser.parse_args(argv)
    parse_size(args.cache_size)  # refuse a bad size before starting anything
    if args.quick:
        args.mib, args.gzip_mib, args.repeat = min(args.mib, 16), min(args.gzip_mib, 16), 1
        sizes = Sizes(args.mib << 20, 100, 5, 20, args.mib << 20)
    else:
        sizes = Sizes(args.mib << 20, 1000, 50, 40, args.mib << 20)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with tempfile.TemporaryDirectory(prefix="bench_mount-") as tmp:
            rows = run(args, sizes, Path(tmp))
    except KeyboardInterrupt:
        print("interrupted; everything was unmounted and stopped", file=sys.stderr)
        return 130
    except Exception as exc:  # a failed run, not a missed target
        print(f"bench_mount: the run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print_table(rows, f"cottoncandy-mount benchmark: {args.mib} MiB float64 on loopback {args.server}, "
                      f"--cache-size {args.cache_size}, median of {args.repeat}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
