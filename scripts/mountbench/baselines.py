"""Raw boto3 baselines, measured in the same run as what they are compared with (all the bench scripts).

* :func:`boto3_parallel_get`: 8 parallel 8 MiB ranged GETs of one object, the
  throughput a tuned client gets (one boto3 client reads about 1.1 GB/s from
  rclone here).
* :func:`boto3_small_gets`: single 64 KiB ranged GETs, one after the other.
* :func:`boto3_list_and_head`: a paginated LIST and a HEAD per object on 8
  threads, what ``ls -lR`` of arrays needs (their dtype and shape are in the
  objects' metadata, which LIST does not return).
* :func:`boto3_list`: the bare paginated ``list_objects_v2``, what a mount that
  remembers the metadata needs.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

PART = 8 << 20
THREADS = 8
SMALL_READ = 64 << 10


def boto3_parallel_get(client, bucket: str, key: str, size: int) -> float:
    """Seconds to read ``key`` (``size`` bytes) with 8 parallel 8 MiB ranged GETs."""
    def fetch(start: int) -> int:
        end = min(start + PART, size) - 1
        return len(client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")["Body"].read())

    start = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        if sum(pool.map(fetch, range(0, size, PART))) != size:
            raise RuntimeError(f"boto3 read of {key} came back short")
    return time.perf_counter() - start


def boto3_small_gets(client, bucket: str, key: str, offsets: np.ndarray) -> list[float]:
    """Seconds of each single 64 KiB ranged GET at ``offsets``, one after the other."""
    latencies = []
    for offset in offsets:
        start = time.perf_counter()
        client.get_object(Bucket=bucket, Key=key, Range=f"bytes={offset}-{offset + SMALL_READ - 1}")["Body"].read()
        latencies.append(time.perf_counter() - start)
    return latencies


def list_keys(client, bucket: str, prefix: str) -> list[str]:
    """Every key under ``prefix``, by paginated ``list_objects_v2``."""
    return [obj["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])]


def boto3_list(client, bucket: str, prefix: str, expected: int) -> float:
    """Seconds of a paginated ``list_objects_v2`` of ``prefix`` (checked to find ``expected`` keys)."""
    start = time.perf_counter()
    found = len(list_keys(client, bucket, prefix))
    elapsed = time.perf_counter() - start
    if found != expected:
        raise RuntimeError(f"list_objects_v2 of {prefix} found {found} keys, not {expected}")
    return elapsed


def boto3_list_and_head(client, bucket: str, prefix: str) -> float:
    """Seconds to list ``prefix`` and HEAD every object on 8 threads."""
    start = time.perf_counter()
    keys = list_keys(client, bucket, prefix)
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda key: client.head_object(Bucket=bucket, Key=key), keys))
    return time.perf_counter() - start
