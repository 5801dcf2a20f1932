#!/usr/bin/env python
"""Benchmark the Python API against raw boto3 on a loopback S3 server (rclone or SeaweedFS).

Prints one table: raw boto3 parallel ranged GET and parallel multipart PUT (the
baseline, measured in the same run), our ``download_raw_array`` and
``upload_raw_array`` (uncompressed and with the default compression), each as a
ratio to the baseline, the peak RSS growth of a download, and the default
codec's upload speed against 0.4.0's default (gzip level 9).

A second table compares gzip with cottoncandy 0.4.0 itself (run from its own
venv, see ``scripts/cc040.py``): one float32 array of smooth data written by
0.4.0 with its defaults (gzip level 9), read by 0.4.0's ``download_raw_array``
and by ours (also with the standard library decoder forced, for reference),
0.4.0-written dask parts read by both ``download_dask_array``, our
``compression='gzip'`` upload against 0.4.0's default upload (and 0.4.0
reading what we wrote), and the peak memory of our gzip download. 0.4.0 and
our runs alternate, so both see the same machine load.

Usage: ``.venv/bin/python scripts/bench_api.py [--mib 256] [--repeat 3] [--gzip-mib 128] [--cc040-python PATH]
[--server rclone|seaweedfs]``
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchtable import Row, print_table  # noqa: E402
from cc040 import CC040, cc040_python, smooth_array  # noqa: E402
from mountbench.baselines import PART, THREADS, boto3_parallel_get  # noqa: E402
from tests.servers import add_server_option, start_server  # noqa: E402

import cottoncandy as cc  # noqa: E402
from cottoncandy.format.compression import DEFAULT_COMPRESSION  # noqa: E402
from cottoncandy.format.gzipcodec import LIBRARY_ENV, deflate_library, inflate_library  # noqa: E402


RSS_PROBE = r"""
import sys, cottoncandy as cc
def status_kib(field):  # VmHWM, unlike ru_maxrss, starts afresh at exec
    with open('/proc/self/status') as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith(field + ':'))
cci = cc.get_interface(sys.argv[1], ACCESS_KEY=sys.argv[2], SECRET_KEY=sys.argv[3], endpoint_url=sys.argv[4], verbose=False)
cci.backend.head(sys.argv[5])
before = status_kib('VmRSS')
arr = cci.download_raw_array(sys.argv[5])
peak = status_kib('VmHWM')
print((peak - before) * 1024, arr.nbytes)
"""


def best_of(repeat: int, func) -> float:
    """Median seconds of ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def boto3_multipart_put(client, bucket: str, key: str, parts: list[bytes]) -> None:
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

    def put(numbered):
        number, data = numbered
        etag = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data)["ETag"]
        return {"PartNumber": number, "ETag": etag}

    with ThreadPoolExecutor(THREADS) as pool:
        done = list(pool.map(put, enumerate(parts, 1)))
    client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done})


def rss_growth(server, bucket: str, key: str) -> tuple[int, int]:
    """Peak RSS growth of ``download_raw_array(key)`` in a fresh process, and the array's size."""
    probe = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, bucket, server.access_key, server.secret_key, server.endpoint_url, key],
        capture_output=True, text=True, check=True)
    growth, size = map(int, probe.stdout.split())
    return growth, size


def stdlib_gzip(func):
    """Run ``func`` with the standard library's zlib forced (the fallback)."""
    os.environ[LIBRARY_ENV] = "stdlib"
    try:
        return func()
    finally:
        del os.environ[LIBRARY_ENV]


def gzip_rows(args, server, cci, bucket: str, home: Path) -> list[Row]:
    """The gzip figures against cottoncandy 0.4.0 (see the module notes)."""
    old = CC040(cc040_python(args.cc040_python), server, bucket, home)
    arr = smooth_array(args.gzip_mib)
    mb = arr.nbytes / 1e6
    digest = hashlib.sha256(arr.tobytes()).hexdigest()
    print(f"0.4.0 uploads {args.gzip_mib} MiB with its defaults ...", file=sys.stderr)
    written = old.run("upload_raw_array", "gz040", args.gzip_mib)
    if written["sha256"] != digest:
        raise RuntimeError("0.4.0 made different data than this script (numpy versions differ?)")
    ratio = cci.get_size("gz040") / arr.nbytes
    rows = []

    def check(result: np.ndarray) -> None:
        if hashlib.sha256(np.ascontiguousarray(result).tobytes()).hexdigest() != digest:
            raise RuntimeError("a gzip download returned wrong data")

    def timed(func) -> float:
        """Seconds of ``func()``; its result is checked after the clock stops (0.4.0's driver does the same)."""
        start = time.perf_counter()
        result = func()
        seconds = time.perf_counter() - start
        check(result)
        return seconds

    old.run("download_raw_array", "gz040")  # warm-up: rclone checksums an object on its first GET
    t_old, t_ours, t_std = [], [], []
    for _ in range(args.repeat):  # alternate, so both see the same machine load
        result = old.run("download_raw_array", "gz040")
        if result["sha256"] != digest:
            raise RuntimeError("0.4.0 read wrong data")
        t_old.append(result["seconds"])
        t_ours.append(timed(lambda: cci.download_raw_array("gz040")))
        t_std.append(timed(lambda: stdlib_gzip(lambda: cci.download_raw_array("gz040"))))
    base = statistics.median(t_old)
    for label, times, target in ((f"download_raw_array ({inflate_library().name})", t_ours, 2.0),
                                 ("download_raw_array (stdlib zlib forced)", t_std, None)):
        t = statistics.median(times)
        rows.append(Row(label, f"{mb / t:.0f} MB/s", f"{mb / base:.0f} MB/s", f"{base / t:.2f}x",
                        f">= {target}x" if target else "", base / t >= target if target else None))

    print("0.4.0 uploads a dask array ...", file=sys.stderr)
    part = max(8, args.gzip_mib // 4) << 20  # 0.4.0 refuses parts under 5 MiB
    old.run("upload_dask_array", "dask040", args.gzip_mib, part)
    t_dask_old, t_dask = [], []
    has_dask = old.has_dask()
    for _ in range(args.repeat):
        if has_dask:
            result = old.run("download_dask_array", "dask040")
            if result["sha256"] != digest:
                raise RuntimeError("0.4.0 read wrong dask data")
            t_dask_old.append(result["seconds"])
        t_dask.append(timed(lambda: cci.download_dask_array("dask040").compute()))
    t = statistics.median(t_dask)
    t_do = statistics.median(t_dask_old) if t_dask_old else None
    rows.append(Row(f"download_dask_array().compute(), {-(-args.gzip_mib // (part >> 20))} gzip parts",
                    f"{mb / t:.0f} MB/s", f"{mb / t_do:.0f} MB/s" if t_do else "no dask in its venv",
                    f"{t_do / t:.2f}x" if t_do else "-", "", None))

    t_up_old, t_up = [], []
    for _ in range(args.repeat):
        t_up_old.append(old.run("upload_raw_array", "gz040-again", args.gzip_mib)["seconds"])
        start = time.perf_counter()
        cci.upload_raw_array("gz-ours", arr, compression="gzip")
        t_up.append(time.perf_counter() - start)
    t_o, t = statistics.median(t_up_old), statistics.median(t_up)
    ours_ratio = cci.get_size("gz-ours") / arr.nbytes
    rows.append(Row(f"upload_raw_array(compression='gzip') ({deflate_library().name}; size {ours_ratio:.3f} "
                    f"vs {ratio:.3f})", f"{mb / t:.0f} MB/s", f"{mb / t_o:.0f} MB/s", f"{t_o / t:.1f}x",
                    ">= 5x", t_o / t >= 5))
    read_back = old.run("download_raw_array", "gz-ours")
    rows.append(Row("  0.4.0 download_raw_array reads that upload", "", "exact" if read_back["sha256"] == digest
                    else "WRONG DATA", "", "exact", read_back["sha256"] == digest))

    growth, size = rss_growth(server, bucket, "gz040")
    limit = 1.1 * size + (64 << 20)
    rows.append(Row("peak RSS growth of the gzip download_raw_array", f"{growth >> 20} MiB", "", f"{growth / size:.2f}x",
                    f"<= {limit / 2**20:.0f} MiB", growth <= limit))
    return rows


def print_gzip_table(args, rows: list[Row]) -> None:
    """Print the gzip table."""
    print_table(rows, f"gzip against cottoncandy 0.4.0: {args.gzip_mib} MiB float32 (cumulative sum of noise) "
                      f"written by 0.4.0 (gzip level 9), on loopback {args.server}, median of {args.repeat}", "cottoncandy 0.4.0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="array size in MiB (default 256)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is shown (default 3)")
    parser.add_argument("--gzip-mib", type=int, default=128, help="size of the gzip array in MiB (default 128)")
    parser.add_argument("--cc040-python", metavar="PATH",
                        help="interpreter with cottoncandy 0.4.0 (default: .venv-cc040, created if missing)")
    parser.add_argument("--gzip-only", action="store_true", help="only the gzip table")
    add_server_option(parser)
    args = parser.parse_args()

    arr = np.random.default_rng(0).standard_normal(args.mib * (1 << 20) // 8)
    smooth = np.cumsum(arr)  # compressible, like real measurements
    nbytes = arr.nbytes
    mb = nbytes / 1e6
    with tempfile.TemporaryDirectory() as tmp, start_server(args.server, tmp) as server:
        bucket = "bench"
        client = server.client()
        client.create_bucket(Bucket=bucket)
        cci = cc.get_interface(bucket, ACCESS_KEY=server.access_key, SECRET_KEY=server.secret_key,
                               endpoint_url=server.endpoint_url, verbose=False)
        gzip_table = gzip_rows(args, server, cci, bucket, Path(tmp))
        if args.gzip_only:
            print_gzip_table(args, gzip_table)
            return
        raw = arr.tobytes()
        parts = [raw[i:i + PART] for i in range(0, nbytes, PART)]
        client.put_object(Bucket=bucket, Key="baseline", Body=raw)
        boto3_parallel_get(client, bucket, "baseline", nbytes)  # first GET computes rclone's checksum

        rows = []
        t_get = best_of(args.repeat, lambda: boto3_parallel_get(client, bucket, "baseline", nbytes))
        t_put = best_of(args.repeat, lambda: boto3_multipart_put(client, bucket, "baseline-put", parts))
        rows.append(("boto3 parallel ranged GET (baseline)", mb / t_get, 1.0, ""))
        rows.append(("boto3 parallel multipart PUT (baseline)", mb / t_put, 1.0, ""))

        t = best_of(args.repeat, lambda: cci.upload_raw_array("raw", arr, compression=False))
        rows.append(("upload_raw_array, uncompressed", mb / t, t_put / t, ">= 0.8"))
        cci.download_raw_array("raw")
        t = best_of(args.repeat, lambda: cci.download_raw_array("raw"))
        rows.append(("download_raw_array, uncompressed", mb / t, t_get / t, ">= 0.9"))
        for label, data in (("normal", arr), ("cumsum", smooth)):
            t = best_of(args.repeat, lambda: cci.upload_raw_array(f"dflt-{label}", data))
            ratio = nbytes / cci.get_size(f"dflt-{label}")
            rows.append((f"upload_raw_array, {DEFAULT_COMPRESSION} ({label}, ratio {ratio:.2f})", mb / t, t_put / t, ""))
            cci.download_raw_array(f"dflt-{label}")
            t = best_of(args.repeat, lambda: cci.download_raw_array(f"dflt-{label}"))
            rows.append((f"download_raw_array, {DEFAULT_COMPRESSION} ({label})", mb / t, t_get / t, ""))

        # 0.4.0's default write path: gzip level 9 of the whole body, then the PUT.
        def upload_040_style():
            client.put_object(Bucket=bucket, Key="gzip9", Body=gzip.compress(raw, compresslevel=9))

        t_gzip9 = best_of(1, upload_040_style)
        t_dflt = best_of(args.repeat, lambda: cci.upload_raw_array("dflt-normal", arr))
        rows.append(("0.4.0 default upload (gzip level 9)", mb / t_gzip9, t_put / t_gzip9, ""))

        growth, size = rss_growth(server, bucket, "raw")

    print(f"\ncottoncandy API benchmark: {args.mib} MiB float64 on loopback {args.server}, median of {args.repeat}")
    print(f"{'operation':58} {'MB/s':>8} {'x baseline':>11} {'target':>8}")
    for name, speed, ratio, target in rows:
        print(f"{name:58} {speed:8.0f} {ratio:11.2f} {target:>8}")
    print(f"{DEFAULT_COMPRESSION} upload vs 0.4.0 gzip-9 upload: {t_gzip9 / t_dflt:.1f}x (target >= 5)")
    limit = 1.1 * size + 64 * 2**20
    print(f"peak RSS growth of download_raw_array: {growth / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB array "
          f"({growth / size:.2f}x; limit 1.1x + 64 MiB = {limit / 2**20:.0f} MiB)")
    print_gzip_table(args, gzip_table)


if __name__ == "__main__":
    main()
