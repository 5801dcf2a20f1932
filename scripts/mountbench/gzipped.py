"""Section ``gzip`` (issue 11): an array written by cottoncandy 0.4.0 with its defaults (gzip level 9).

0.4.0 runs from its own venv (``scripts/cc040.py``) and uploads ``--gzip-mib``
of float32 smooth data. Cold ``np.load`` of it on a fresh cottoncandy mount
is compared with 0.4.0's own ``download_raw_array`` of the same object (runs
alternate, so both see the same machine load; our ``download_raw_array`` is
shown too). Then 64 KiB random preads on the last mount after that full pass
(its page cache dropped, so they reach the mount's block cache), and on a mount
whose block cache is too small for the array (a pass, then reads decoded
from the gzip checkpoints), each shown against single boto3 64 KiB GETs.
The peers have no figure here: they would read the gzip body, not the array.
"""

from __future__ import annotations

import hashlib
import statistics
import sys
import time

import numpy as np

from cc040 import CC040, cc040_python, smooth_array
from mountbench.baselines import SMALL_READ, boto3_small_gets
from mountbench.common import BUCKET, Bench
from mountbench.figures import BASELINE, MB_PER_S, MS, Figure, Target
from mountbench.fileops import drop_page_cache, stream_file, timed_np_load, timed_preads
from mountbench.mounts import OURS

KEY = "bench/gzip040"


def run(bench: Bench) -> list[Figure]:
    """Upload with 0.4.0, measure, return the rows."""
    args, mib = bench.args, bench.sizes.gzip_mib
    old = CC040(cc040_python(args.cc040_python), bench.server, BUCKET, bench.tmp)
    expected = smooth_array(mib)
    mb = expected.nbytes / 1e6
    print(f"gzip: 0.4.0 uploads {mib} MiB with its defaults ...", file=sys.stderr)
    if old.run("upload_raw_array", KEY, mib)["sha256"] != hashlib.sha256(expected.tobytes()).hexdigest():
        raise RuntimeError("0.4.0 made different data than this script (numpy versions differ?)")
    old.run("download_raw_array", KEY)  # warm-up: rclone checksums an object on its first GET
    offsets = np.random.default_rng(2).integers(0, expected.nbytes - SMALL_READ, bench.sizes.random_reads)
    stored = bench.client.head_object(Bucket=BUCKET, Key=KEY)["ContentLength"]
    boto3_64k = statistics.median(boto3_small_gets(bench.client, BUCKET, KEY, offsets % (stored - SMALL_READ))) * 1e3

    print("gzip: 0.4.0 download_raw_array, ours, cold np.load ...", file=sys.stderr)
    t_old, t_ours, t_cold = [], [], []
    for n in range(args.repeat):
        t_old.append(old.run("download_raw_array", KEY)["seconds"])
        start = time.perf_counter()
        bench.cci.download_raw_array(KEY)
        t_ours.append(time.perf_counter() - start)
        with bench.ours.mounted() as live:
            path = live.array_path(KEY)
            t_cold.append(timed_np_load(path, expected))
            if n == args.repeat - 1:  # the last mount: random reads after this full pass
                header = path.stat().st_size - expected.nbytes
                drop_page_cache(path)
                after_pass = timed_preads(path, offsets + header)
    old_rate = mb / statistics.median(t_old)

    def rate(label: str, times: list[float], targets=()) -> Figure:
        return Figure(label, MB_PER_S, {OURS: mb / statistics.median(times)}, old_rate, "0.4.0", targets)

    figures = [
        rate(f"our download_raw_array, {mib} MiB float32 gzip-9 by 0.4.0", t_ours),
        rate("cold np.load of it on the mount", t_cold, [Target(">=", 1.5, BASELINE)]),
    ]

    small_cache = f"{max(16, (mib << 20) // 8 >> 20)}MiB"  # a block cache smaller than the array
    print(f"gzip: random reads with a {small_cache} cache ...", file=sys.stderr)
    with bench.ours.mounted(cache_size=small_cache) as live:
        path = live.array_path(KEY)
        stream_file(path)
        drop_page_cache(path)
        small = timed_preads(path, offsets + header)
    for label, latencies, limit in ((f"{len(offsets)} random 64 KiB preads in it after a pass: median", after_pass, 5.0),
                                    (f"  same, {small_cache} cache (from checkpoints)", small, 10.0)):
        figures.append(Figure(label, MS, {OURS: statistics.median(latencies) * 1e3}, boto3_64k,
                              targets=[Target("<=", limit)]))
    return figures
