#!/usr/bin/env python
"""Benchmark the Python API against raw boto3 on a loopback S3 server (rclone or SeaweedFS).

Prints one table: raw boto3 parallel ranged GET and parallel multipart PUT (the
baseline, measured in the same run), our ``download_raw_array`` and
``upload_raw_array`` (uncompressed and with the default compression), each as a
ratio to the baseline, the peak RSS growth of a download, and the default
codec's upload speed against 0.4.0's default (gzip level 9).

Usage: ``.venv/bin/python scripts/bench_api.py [--mib 256] [--repeat 3] [--server rclone|seaweedfs]``
"""

from __future__ import annotations

import argparse
import gzip
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

from tests.servers import add_server_option, start_server  # noqa: E402

import cottoncandy as cc  # noqa: E402
from cottoncandy.codecs import DEFAULT_COMPRESSION  # noqa: E402

PART = 8 << 20
THREADS = 8

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


def boto3_ranged_get(client, bucket: str, key: str, size: int) -> None:
    def fetch(start: int) -> int:
        end = min(start + PART, size) - 1
        body = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")["Body"]
        return len(body.read())

    with ThreadPoolExecutor(THREADS) as pool:
        assert sum(pool.map(fetch, range(0, size, PART))) == size


def boto3_multipart_put(client, bucket: str, key: str, parts: list[bytes]) -> None:
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

    def put(numbered):
        number, data = numbered
        etag = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data)["ETag"]
        return {"PartNumber": number, "ETag": etag}

    with ThreadPoolExecutor(THREADS) as pool:
        done = list(pool.map(put, enumerate(parts, 1)))
    client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="array size in MiB (default 256)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is shown (default 3)")
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
        raw = arr.tobytes()
        parts = [raw[i:i + PART] for i in range(0, nbytes, PART)]
        client.put_object(Bucket=bucket, Key="baseline", Body=raw)
        boto3_ranged_get(client, bucket, "baseline", nbytes)  # warm-up: rclone computes a checksum on a first GET

        rows = []
        t_get = best_of(args.repeat, lambda: boto3_ranged_get(client, bucket, "baseline", nbytes))
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

        probe = subprocess.run(
            [sys.executable, "-c", RSS_PROBE, bucket, server.access_key, server.secret_key, server.endpoint_url, "raw"],
            capture_output=True, text=True, check=True)
        growth, size = map(int, probe.stdout.split())

    print(f"\ncottoncandy API benchmark: {args.mib} MiB float64 on loopback {args.server}, median of {args.repeat}")
    print(f"{'operation':58} {'MB/s':>8} {'x baseline':>11} {'target':>8}")
    for name, speed, ratio, target in rows:
        print(f"{name:58} {speed:8.0f} {ratio:11.2f} {target:>8}")
    print(f"{DEFAULT_COMPRESSION} upload vs 0.4.0 gzip-9 upload: {t_gzip9 / t_dflt:.1f}x (target >= 5)")
    limit = 1.1 * size + 64 * 2**20
    print(f"peak RSS growth of download_raw_array: {growth / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB array "
          f"({growth / size:.2f}x; limit 1.1x + 64 MiB = {limit / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
