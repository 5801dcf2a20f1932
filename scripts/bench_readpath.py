"""Benchmark the mount's read path against raw boto3 ranged GETs on a loopback rclone server.

Usage::

    python scripts/bench_readpath.py [--mib 256] [--read-kib 128]

Prints one table: throughput of each access pattern and its ratio to the
raw boto3 throughput (8 parallel 8 MiB ranged GETs) measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cottoncandy.backends.s3 import S3Backend  # noqa: E402
from cottoncandy.config import Credentials, S3Settings  # noqa: E402
from cottoncandy.format.codecs import get_codec  # noqa: E402
from cottoncandy.format.metadata import ArrayMeta  # noqa: E402
from cottoncandy.fuse.reader import ReadPath  # noqa: E402
from cottoncandy.fuse.sources import RawArrayFile  # noqa: E402
from mountbench.baselines import boto3_parallel_get  # noqa: E402
from tests.servers import start_rclone  # noqa: E402


def _sequential(rp: ReadPath, source, read_size: int) -> float:
    f = rp.open(source)
    t0 = time.perf_counter()
    off = 0
    while off < f.size:
        off += len(f.read(off, read_size))
    return f.size / (time.perf_counter() - t0)


def _random(rp: ReadPath, source, read_size: int, count: int = 200) -> float:
    f = rp.open(source)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    total = 0
    for off in rng.integers(0, f.size - read_size, count):
        total += len(f.read(int(off), read_size))
    return total / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="array size in MiB")
    parser.add_argument("--read-kib", type=int, default=128, help="size of each read (FUSE sends 128 KiB)")
    args = parser.parse_args(argv)
    nbytes = args.mib << 20
    read_size = args.read_kib << 10
    with tempfile.TemporaryDirectory() as tmp:
        server = start_rclone(Path(tmp) / "data", log_path=Path(tmp) / "rclone.log")
        try:
            client = server.client()
            client.create_bucket(Bucket="bench")
            backend = S3Backend("bench", Credentials(server.access_key, server.secret_key, server.endpoint_url),
                                S3Settings())
            rng = np.random.default_rng(1)
            arr = np.repeat(rng.integers(0, 40, nbytes // 4, dtype=np.uint8), 4)
            sources = {}
            for comp in (None, "gzip", "Blosc"):
                key = f"bench/{comp or 'raw'}"
                body = arr.data if comp is None else get_codec(comp).encode(memoryview(arr), 1)
                meta = ArrayMeta(arr.dtype, arr.shape, comp)
                backend.write(key, body, meta.to_metadata())
                info = backend.head(key)
                sources[comp or "raw"] = RawArrayFile(key, info.etag, info.size, meta)
                boto3_parallel_get(client, "bench", key, info.size)  # rclone checksums on first GET
            base = nbytes / boto3_parallel_get(client, "bench", "bench/raw", nbytes)
            rows = [("boto3 8x8MiB ranged GETs", base)]
            for name, source in sources.items():
                for pattern, fn in (("sequential", _sequential), ("random", _random)):
                    with ReadPath(backend) as rp:
                        rows.append((f"{name} {pattern} {args.read_kib} KiB reads", fn(rp, source, read_size)))
            print(f"{'pattern':<36} {'MB/s':>8} {'ratio':>6}")
            for name, rate in rows:
                print(f"{name:<36} {rate / 1e6:8.1f} {rate / base:6.2f}")
            backend.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
