"""Benchmark the S3 data plane: boto3 against obstore for HEADs, LISTs and ranged GETs.

Usage::

    python scripts/bench_dataplane.py [--server rclone|moto] [--objects 2000] [--mib 256] [--repeat 3]
    CC_ACCESS_KEY=... CC_SECRET_KEY=... python scripts/bench_dataplane.py --endpoint http://127.0.0.1:PORT

Starts a loopback server (``rclone serve s3`` by default), or uses
``--endpoint`` with the keys from ``CC_ACCESS_KEY``/``CC_SECRET_KEY`` (e.g. a
SeaweedFS that answers ranged GETs with 206), writes ``--objects`` small
objects with array metadata in 50 directories and one ``--mib`` MiB object,
and prints one table, medians of ``--repeat`` rounds (the tests of a group take
turns in each round), each figure with its ratio to the boto3 baseline of its
group and the CPU seconds the process used (busy thread included):

* HEAD of every object: boto3 ``head_object`` on 1/16/64 threads; obstore
  ``get_async(head=True)`` with 16/64/256 in flight; ``S3Backend.heads``;
* LIST: every key recursively (boto3 paginator, obstore ``list``), and the 50
  directories one level each (``S3Backend.list_dir`` with boto3 and obstore);
* ranged GETs of the big object in 8 MiB ranges on 8 threads: boto3,
  obstore ``get_range`` (threads), obstore ``get_range_async`` (8 in flight),
  and ``S3Backend.read_into`` (through obstore, and through its boto3 path);
  each also with a busy Python thread competing for the GIL;
* 500 ranged GETs of 64 KiB one after the other (the mount's random reads):
  boto3, obstore, ``S3Backend.read_range``.

Servers that answer ranged GETs with 200 (rclone) show ``n/a`` for obstore's
ranged GETs. ``--only get`` (or ``head``, ``list``) runs one group.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import obstore  # noqa: E402

from cottoncandy.backends.s3 import S3Backend  # noqa: E402
from cottoncandy.backends.s3store import make_store  # noqa: E402
from cottoncandy.config import Credentials, S3Settings  # noqa: E402
from tests.servers import make_client, start_moto, start_rclone  # noqa: E402

PART = 8 << 20
THREADS = 8
META = {"dtype": "<f8", "shape": "10,10", "compression": "False", "order": "C"}


@contextmanager
def busy_python_thread(enabled: bool):
    """A thread running pure Python the whole time (competes for the GIL)."""
    stop = threading.Event()

    def spin() -> None:
        x = 0
        while not stop.is_set():
            for i in range(1000):
                x += i * i

    thread = threading.Thread(target=spin, daemon=True)
    if enabled:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if enabled:
            thread.join()


def timed(fn, busy: bool) -> tuple[float, float]:
    """Wall-clock seconds and CPU seconds of this process (Rust threads included) of one ``fn()``."""
    with busy_python_thread(busy):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        wall, used = time.perf_counter() - start, time.process_time() - cpu
    return wall, used


def boto3_heads(client, bucket, keys, threads):
    def one(key):
        return client.head_object(Bucket=bucket, Key=key)["Metadata"]

    with ThreadPoolExecutor(threads) as pool:
        assert all("dtype" in {k.lower() for k in m} for m in pool.map(one, keys))


def obstore_heads(store, keys, inflight):
    async def run():
        limit = asyncio.Semaphore(inflight)

        async def one(key):
            async with limit:
                return (await obstore.get_async(store, key, options={"head": True})).attributes

        return await asyncio.gather(*(one(k) for k in keys))

    assert all("dtype" in a for a in asyncio.run(run()))


def boto3_list(client, bucket):
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sum(len(p.get("Contents", [])) for p in pages)


def boto3_ranges(client, bucket, key, size):
    def get(start):
        end = min(start + PART, size) - 1
        return len(client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")["Body"].read())

    with ThreadPoolExecutor(THREADS) as pool:
        assert sum(pool.map(get, range(0, size, PART))) == size


def obstore_ranges(store, key, size):
    def get(start):
        return len(obstore.get_range(store, key, start=start, end=min(start + PART, size)))

    with ThreadPoolExecutor(THREADS) as pool:
        assert sum(pool.map(get, range(0, size, PART))) == size


def obstore_ranges_async(store, key, size):
    async def run():
        limit = asyncio.Semaphore(THREADS)

        async def get(start):
            async with limit:
                return len(await obstore.get_range_async(store, key, start=start, end=min(start + PART, size)))

        return sum(await asyncio.gather(*(get(s) for s in range(0, size, PART))))

    assert asyncio.run(run()) == size


def small_ranges(read, size, count=500, length=64 << 10):
    """``count`` ranged reads of ``length`` bytes at spread offsets, one after the other."""
    step = (size - length) // count
    assert sum(len(read(i * step, i * step + length)) for i in range(count)) == count * length


def backend_read_into(backend, key, buffer):
    backend.read_into(key, memoryview(buffer))


def ranged_gets_supported(store, key) -> bool:
    try:
        obstore.get_range(store, key, start=0, end=10)
    except obstore.exceptions.GenericError as exc:
        if "non-partial" in str(exc):
            return False
        raise
    return True


def populate(client, bucket, n_objects, mib):
    keys = [f"d{i % 50:02d}/obj{i:05d}" for i in range(n_objects)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=b"x" * 800, Metadata=META), keys))
    big = "big/array"
    with tempfile.TemporaryFile() as fh:
        fh.write(os.urandom(1 << 20) * mib)
        fh.seek(0)
        client.upload_fileobj(fh, bucket, big)
    return sorted(keys), big, mib << 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("rclone", "moto"), default="rclone")
    parser.add_argument("--endpoint", help="use this server (keys from CC_ACCESS_KEY / CC_SECRET_KEY)")
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("head", "list", "get"), action="append",
                        help="run only these groups (repeatable); all by default")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        server = None
        if args.endpoint:
            endpoint, access, secret = args.endpoint, os.environ["CC_ACCESS_KEY"], os.environ["CC_SECRET_KEY"]
        else:
            log = Path(tmp) / "server.log"
            server = start_rclone(Path(tmp) / "data", log) if args.server == "rclone" else start_moto(log)
            endpoint, access, secret = server.endpoint_url, server.access_key, server.secret_key
        try:
            run(args, endpoint, access, secret)
        finally:
            if server is not None:
                server.stop()


def run(args, endpoint, access, secret) -> None:
    client = make_client(endpoint, access, secret, max_pool_connections=64)
    bucket = f"bench-dataplane-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    keys, big, size = populate(client, bucket, args.objects, args.mib)
    backend = S3Backend(bucket, Credentials(access, secret, endpoint), S3Settings())
    store = make_store(backend.client, bucket, backend.settings)
    ranges = ranged_gets_supported(store, big)
    dirs = sorted({k.split("/")[0] + "/" for k in keys})
    buffer = bytearray(b"\1" * size)  # allocated and touched once, outside the timings

    @contextmanager
    def boto3_only(enabled: bool = True):
        """The backend as if obstore could serve nothing (its boto3 paths)."""
        saved = backend.reader.serves
        if enabled:
            backend.reader.serves = lambda key=None: False
        try:
            yield
        finally:
            backend.reader.serves = saved

    def listing_with(obstore_on: bool):
        with boto3_only(not obstore_on):
            assert sum(len(backend.list_dir(d).objects) for d in dirs) == len(keys)

    def read_into_boto3_only():
        with boto3_only():
            backend_read_into(backend, big, buffer)

    n = len(keys)
    groups = [
        (f"HEAD x{n}", "s", [
            ("boto3 head_object, 1 thread", lambda: boto3_heads(client, bucket, keys, 1)),
            ("boto3 head_object, 16 threads", lambda: boto3_heads(client, bucket, keys, 16)),
            ("boto3 head_object, 64 threads", lambda: boto3_heads(client, bucket, keys, 64)),
            ("obstore get_async(head), 16 in flight", lambda: obstore_heads(store, keys, 16)),
            ("obstore get_async(head), 64 in flight", lambda: obstore_heads(store, keys, 64)),
            ("obstore get_async(head), 256 in flight", lambda: obstore_heads(store, keys, 256)),
            ("S3Backend.heads (max_inflight 64)", lambda: backend.heads(keys)),
        ]),
        (f"LIST {n} keys", "s", [
            ("boto3 list_objects_v2, recursive", lambda: boto3_list(client, bucket)),
            ("obstore list, recursive", lambda: sum(len(c) for c in obstore.list(store, None, chunk_size=1000))),
            (f"S3Backend.list_dir x{len(dirs)} dirs, boto3", lambda: listing_with(False)),
            (f"S3Backend.list_dir x{len(dirs)} dirs, obstore", lambda: listing_with(True)),
        ]),
    ]
    for busy in (False, True):
        label = " + busy Python thread" if busy else ""
        tests = [(f"boto3 get_object Range, {THREADS} threads{label}", busy,
                  lambda: boto3_ranges(client, bucket, big, size))]
        if ranges:
            tests += [(f"obstore get_range, {THREADS} threads{label}", busy, lambda: obstore_ranges(store, big, size)),
                      (f"obstore get_range_async, {THREADS} in flight{label}", busy,
                       lambda: obstore_ranges_async(store, big, size))]
        tests.append((f"S3Backend.read_into{label}", busy, lambda: backend_read_into(backend, big, buffer)))
        if ranges:
            tests.append((f"S3Backend.read_into, boto3 path{label}", busy, read_into_boto3_only))
        groups.append((f"GET {args.mib} MiB in 8 MiB ranges{label}", "MB/s", tests))

    def boto3_range(start, end):
        return client.get_object(Bucket=bucket, Key=big, Range=f"bytes={start}-{end - 1}")["Body"].read()

    tests = [("boto3 get_object Range", lambda: small_ranges(boto3_range, size))]
    if ranges:
        tests.append(("obstore get_range", lambda: small_ranges(
            lambda a, b: obstore.get_range(store, big, start=a, end=b), size)))
    tests.append(("S3Backend.read_range", lambda: small_ranges(lambda a, b: backend.read_range(big, a, b), size)))
    groups.append(("GET 500 x 64 KiB ranges, one after the other", "s", tests))
    groups = [g for g in groups if not args.only or g[0].split()[0].lower() in args.only]
    print(f"server {endpoint}; ranged GETs answered with 206: {ranges}; medians of {args.repeat} rounds, "
          "the tests of a group taking turns in each round")
    print(f"{'ratio: speed relative to the first row of its group (>1 is faster)':58} {'value':>10} {'ratio':>7}"
          f" {'CPU s':>7}")
    for title, unit, tests in groups:
        print(title)
        runs: dict[str, list[tuple[float, float]]] = {entry[0]: [] for entry in tests}
        for entry in tests:
            entry[-1]()  # warm up: connections, rclone's first-GET checksum
        for _ in range(args.repeat):  # interleaved, so that a load change on the machine hits all alike
            for entry in tests:
                runs[entry[0]].append(timed(entry[-1], entry[1] if len(entry) == 3 else False))
        baseline = None
        for name, measured in runs.items():
            seconds = statistics.median(wall for wall, _ in measured)
            cpu = statistics.median(used for _, used in measured)
            value = seconds if unit == "s" else size / seconds / 1e6
            baseline = baseline or value
            ratio = baseline / value if unit == "s" else value / baseline
            print(f"  {name:56} {value:8.3f} {unit:4} {ratio:6.2f}x {cpu:7.2f}")
        if not ranges and unit == "MB/s":
            print("  obstore ranged GETs: n/a (the server answers ranged GETs with 200)")
    backend.close()


if __name__ == "__main__":
    main()
