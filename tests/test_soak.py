"""Load soak: 8 concurrent readers on a real mount of a loopback rclone server.

Readers mix whole-file sequential reads and random ranged reads over arrays
stored uncompressed, gzip and with the default codec, through a mount with a
small block cache, for ``CC_SOAK_SECONDS`` (default 60) seconds after a short
warm-up. Every byte
read is compared with the expected ``.npy`` bytes. A monitor samples the mount
process: its RSS must stay within its idle RSS + the cache size + a fixed
margin, and its threads and file descriptors must not grow between the first
and the last quarter of the run.

Metadata is refreshed every ``TTL`` seconds during the run. Readers drop the pages of a file from the kernel page cache before each pass
(``POSIX_FADV_DONTNEED``); otherwise warm reads would never reach the mount.
"""

from __future__ import annotations

import io
import os
import random
import statistics
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import psutil
import pytest

from cottoncandy.interface import Interface
from tests.conftest import make_s3_backend
from tests.mountutil import mount_env, mounted

SOAK_SECONDS = float(os.environ.get("CC_SOAK_SECONDS", "60"))
READERS = 8
CACHE = 64 << 20
BLOCK = 2 << 20
#: RSS the mount may use beyond its idle size and the cache: blocks in flight
#: (readers x read-ahead), codec output buffers, allocator slack.
RSS_MARGIN = 96 << 20
THREAD_SLACK = 4
FD_SLACK = 8
SAMPLE_EVERY = 0.25
CHUNK = 1 << 20
RANDOM_READS_PER_PASS = 24
TTL = 2
#: Seconds of load before sampling starts: the thread and connection pools, which grow
#: lazily up to fixed bounds, reach their working size (growth after that is a leak).
WARMUP = max(5.0, 0.15 * SOAK_SECONDS)


def _arrays() -> dict[str, tuple[np.ndarray, str | None]]:
    """Name -> (array, compression): ~40 MiB of data, compressible but not trivially."""
    rng = np.random.default_rng(20240601)
    smooth = np.cumsum(rng.standard_normal(1 << 20)).astype("<f8")  # 8 MiB
    counts = rng.poisson(3.0, size=(1024, 2048)).astype("<i4")  # 8 MiB
    small = rng.integers(0, 200, size=(3_000_001,), dtype="u1")  # odd size: partial last block
    return {
        "raw/smooth": (smooth, None),
        "raw/counts": (counts, None),
        "gzip/smooth": (smooth[: 600_000].copy(), "gzip"),
        "gzip/counts": (counts[:512], "gzip"),
        "gzip/small": (small, "gzip"),
        "default/smooth": (smooth, True),
        "default/counts": (counts.T.copy(), True),
        "default/small": (small, True),
    }


def _npy_bytes(arr: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(arr))
    return buffer.getvalue()


@dataclass
class Samples:
    """What the monitor saw of the mount process, in time order (from ``since`` on)."""

    since: float = 0.0
    rss: list[int] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)

    @staticmethod
    def series(values: list[int], points: int = 40) -> list[int]:
        """A short picture of a series for failure messages."""
        step = max(1, len(values) // points)
        return values[::step]

    def quarters(self, values: list[int]) -> tuple[list[int], list[int]]:
        q = max(1, len(values) // 4)
        return values[:q], values[-q:]


def _monitor(pid: int, samples: Samples, stop: threading.Event, errors: list[str]) -> None:
    proc = psutil.Process(pid)
    while not stop.wait(SAMPLE_EVERY):  # a sampling period, not a synchronisation
        if time.monotonic() < samples.since:
            continue
        try:
            samples.rss.append(proc.memory_info().rss)
            samples.threads.append(proc.num_threads())
            samples.fds.append(proc.num_fds())
        except psutil.Error as exc:
            errors.append(f"monitor: mount process gone: {exc!r}")
            return


def _first_difference(got: bytes, want: bytes) -> int:
    n = min(len(got), len(want))
    a, b = np.frombuffer(got[:n], np.uint8), np.frombuffer(want[:n], np.uint8)
    diff = np.flatnonzero(a != b)
    return int(diff[0]) if diff.size else n


def _drop_pages(fd: int) -> None:
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _sequential_pass(path: str, want: bytes, name: str, errors: list[str]) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        _drop_pages(fd)
        offset = 0
        while True:
            data = os.read(fd, CHUNK)
            if not data:
                break
            if data != want[offset:offset + len(data)]:
                errors.append(f"{name}: sequential bytes differ at {offset + _first_difference(data, want[offset:])}")
                return offset
            offset += len(data)
        if offset != len(want):
            errors.append(f"{name}: sequential read ended at {offset}, file has {len(want)} bytes")
        return offset
    finally:
        os.close(fd)


def _random_pass(path: str, want: bytes, name: str, rng: random.Random, errors: list[str]) -> int:
    fd = os.open(path, os.O_RDONLY)
    total = 0
    try:
        _drop_pages(fd)
        for _ in range(RANDOM_READS_PER_PASS):
            length = rng.choice((1, 100, 4096, 65536, 300_000, 1 << 20))
            offset = rng.randrange(0, len(want))
            data = os.pread(fd, length, offset)
            expected = want[offset:offset + length]
            if data != expected:
                errors.append(f"{name}: pread({length}, {offset}) differs at "
                              f"{offset + _first_difference(data, expected)} (got {len(data)} bytes)")
                return total
            total += len(data)
        return total
    finally:
        os.close(fd)


def _reader(seed: int, files: dict[str, tuple[str, bytes]], deadline: float, errors: list[str],
            done: list[int]) -> None:
    rng = random.Random(seed)
    names = sorted(files)
    nbytes = 0
    try:
        while time.monotonic() < deadline and not errors:
            name = rng.choice(names)
            path, want = files[name]
            if rng.random() < 0.4:
                nbytes += _sequential_pass(path, want, name, errors)
            else:
                nbytes += _random_pass(path, want, name, rng, errors)
    except OSError as exc:
        errors.append(f"reader {seed}: {exc!r}")
    done.append(nbytes)


@pytest.mark.slow
def test_soak_concurrent_readers(rclone_server, tmp_path, buckets):
    bucket = buckets(rclone_server, "cc-soak")
    arrays = _arrays()
    cci = Interface(make_s3_backend(rclone_server, bucket))
    try:
        for key, (arr, compression) in arrays.items():
            cci.upload_raw_array(key, arr, compression=compression)
    finally:
        cci.backend.close()
    total_mib = sum(a.nbytes for a, _ in arrays.values()) / 2**20
    assert 30 < total_mib < 80, total_mib

    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    env = mount_env(rclone_server.endpoint_url, rclone_server.access_key, rclone_server.secret_key)
    # A short TTL refreshes listings and HEADs all through the run: the pools that serve the
    # refreshes reach their working size early, and anything leaked per refresh adds up.
    args = ["--cache-size", f"{CACHE >> 20}MiB", "--block-size", f"{BLOCK >> 20}MiB", "--ttl", str(TTL)]
    with mounted(bucket, mountpoint, args, env) as mount:
        files = {key: (str(mount.path / f"{key}.npy"), _npy_bytes(arr)) for key, (arr, _) in arrays.items()}
        for key, (path, want) in files.items():  # every file listed, sized right, before the load starts
            assert os.path.getsize(path) == len(want), key
        proc = psutil.Process(mount.process.pid)
        idle_rss = proc.memory_info().rss

        errors: list[str] = []
        done: list[int] = []
        start = time.monotonic()
        samples = Samples(since=start + WARMUP)
        stop = threading.Event()
        monitor = threading.Thread(target=_monitor, args=(proc.pid, samples, stop, errors), daemon=True)
        monitor.start()
        deadline = start + WARMUP + SOAK_SECONDS
        readers = [threading.Thread(target=_reader, args=(i, files, deadline, errors, done), daemon=True)
                   for i in range(READERS)]
        for thread in readers:
            thread.start()
        for thread in readers:
            thread.join(timeout=WARMUP + SOAK_SECONDS + 300)
        stop.set()
        monitor.join(timeout=30)

        assert not any(t.is_alive() for t in readers), "a reader hung"
        assert not errors, errors[:10]
        assert len(done) == READERS and all(n > 0 for n in done), done
        assert mount.process.poll() is None, mount.log()[-2000:]
        assert len(samples.rss) >= 8, "too few samples of the mount process"

        peak = max(samples.rss)
        assert peak <= idle_rss + CACHE + RSS_MARGIN, (
            f"mount RSS peaked at {peak / 2**20:.0f} MiB; idle {idle_rss / 2**20:.0f} MiB + cache "
            f"{CACHE >> 20} MiB + margin {RSS_MARGIN >> 20} MiB")
        print(f"soak: threads {samples.series(samples.threads)}, fds {samples.series(samples.fds)}")
        first, last = samples.quarters(samples.threads)
        assert max(last) <= max(first) + THREAD_SLACK, ("threads", samples.series(samples.threads))
        first, last = samples.quarters(samples.fds)
        assert max(last) <= max(first) + FD_SLACK, ("fds", samples.series(samples.fds))
        # RSS must level off, not climb: the last quarter's median within the margin of the first's
        first, last = samples.quarters(samples.rss)
        assert statistics.median(last) <= statistics.median(first) + RSS_MARGIN // 2, (
            statistics.median(first) / 2**20, statistics.median(last) / 2**20)
        print(f"soak: {SOAK_SECONDS:.0f} s, {sum(done) / 2**20:.0f} MiB verified, idle RSS "
              f"{idle_rss / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB, threads {min(samples.threads)}-"
              f"{max(samples.threads)}, fds {min(samples.fds)}-{max(samples.fds)}")
