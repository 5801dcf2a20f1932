"""Section ``reads``: sequential and random reads of one big uncompressed array.

The array (``--mib``, float64) is uploaded once with ``upload_raw_array``: its
body is the array's bytes, so the peers read the same object as a plain file
of the same bytes while cottoncandy shows it as ``bench/raw.npy`` (a ``.npy``
header, then those bytes); throughput is bytes read per second on each.

* cold ``open().read()`` of the whole file on a fresh mount, then the warm
  re-read on the same mount, against 8 parallel 8 MiB boto3 ranged GETs;
* cold and warm ``np.load`` of our ``.npy`` (peers have no ``.npy``);
* 64 KiB ``os.pread`` at random offsets on a fresh mount, against single boto3
  64 KiB ranged GETs, and the bytes the server sent per byte read.

Targets: issue 10 (cold read >= 1.1x the best peer; warm re-read and random
reads no worse than before it: 1310 MB/s, median 0.16 ms) and the boto3
ratios this script held the mount to before the peers came.
"""

from __future__ import annotations

import statistics
import sys

import numpy as np

from mountbench.baselines import SMALL_READ, boto3_parallel_get, boto3_small_gets
from mountbench.common import BUCKET, Bench
from mountbench.figures import BASELINE, BEST_PEER, FACTOR, MB_PER_S, MS, Figure, Target
from mountbench.fileops import timed_np_load, timed_preads, timed_read
from mountbench.mounts import LiveMount
from mountbench.runs import interleave, on_fresh_mount

KEY = "bench/raw"
TODAY_WARM_MB_S = 1310.0  # issue 10's table, before the new data plane
TODAY_RANDOM_MS = 0.16


def run(bench: Bench) -> list[Figure]:
    """Upload the array, measure, return the rows."""
    arr = np.random.default_rng(0).standard_normal(bench.sizes.nbytes // 8)
    print(f"reads: uploading a {arr.nbytes >> 20} MiB array ...", file=sys.stderr)
    bench.upload_array(KEY, arr)
    mb = arr.nbytes / 1e6
    label = f"{arr.nbytes >> 20} MiB"

    def boto3_throughput() -> dict[str, float]:
        rate = mb / boto3_parallel_get(bench.client, BUCKET, KEY, arr.nbytes)
        return {"cold": rate, "warm": rate}

    def read_twice(live: LiveMount) -> dict[str, float]:
        path = live.array_path(KEY)
        (cold, nbytes), (warm, _) = timed_read(path), timed_read(path)
        return {"cold": nbytes / 1e6 / cold, "warm": nbytes / 1e6 / warm}

    print("reads: cold and warm open().read() ...", file=sys.stderr)
    reads = interleave(bench, on_fresh_mount(read_twice), baseline=boto3_throughput)
    figures = [
        Figure(f"cold open().read() of {label}", MB_PER_S, reads.values("cold"), reads.baseline("cold"),
               targets=[Target(">=", 1.1, BEST_PEER)]),
        Figure("warm re-read, same mount", MB_PER_S, reads.values("warm"), reads.baseline("warm"),
               targets=[Target(">=", TODAY_WARM_MB_S, note="before issue 10")]),
    ]

    def load_twice(live: LiveMount) -> dict[str, float]:
        path = live.array_path(KEY)
        return {"cold": mb / timed_np_load(path, arr), "warm": mb / timed_np_load(path, arr)}

    print("reads: np.load ...", file=sys.stderr)
    loads = interleave(bench, on_fresh_mount(load_twice), filesystems=[bench.ours], baseline=boto3_throughput)
    figures += [
        Figure(f"cold np.load of the {label} .npy", MB_PER_S, loads.values("cold"), loads.baseline("cold"),
               targets=[Target(">=", 0.8, BASELINE)]),
        Figure("warm np.load, same mount", MB_PER_S, loads.values("warm"), loads.baseline("warm"),
               targets=[Target(">=", 1.5, BASELINE)]),
    ]
    return figures + random_reads(bench, arr.nbytes)


def random_reads(bench: Bench, nbytes: int) -> list[Figure]:
    """64 KiB preads at random offsets of the array's bytes, each file system on a fresh mount."""
    offsets = np.random.default_rng(1).integers(0, nbytes - SMALL_READ, bench.sizes.random_reads)
    fetched = len(offsets) * SMALL_READ

    def preads(live: LiveMount) -> dict[str, float]:
        path = live.array_path(KEY)
        header = path.stat().st_size - nbytes  # cottoncandy's .npy header; 0 for the peers' plain file
        before = bench.server_bytes()
        latencies = timed_preads(path, offsets + header)
        return {"median": statistics.median(latencies) * 1e3, "bytes": (bench.server_bytes() - before) / fetched}

    def boto3_gets() -> dict[str, float]:
        before = bench.server_bytes()
        latencies = boto3_small_gets(bench.client, BUCKET, KEY, offsets)
        return {"median": statistics.median(latencies) * 1e3, "bytes": (bench.server_bytes() - before) / fetched}

    print(f"reads: {len(offsets)} random 64 KiB preads ...", file=sys.stderr)
    results = interleave(bench, on_fresh_mount(preads), baseline=boto3_gets)
    return [
        Figure(f"{len(offsets)} random 64 KiB preads, cold mount: median", MS, results.values("median"),
               results.baseline("median"),
               targets=[Target("<=", 1.6, BASELINE), Target("<=", TODAY_RANDOM_MS, note="before issue 10")]),
        Figure("  same reads: server bytes sent / bytes read", FACTOR, results.values("bytes"),
               results.baseline("bytes"), targets=[Target("<=", 16.0)]),
    ]
