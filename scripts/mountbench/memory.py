"""Section ``memory``: the mount's peak RSS while several readers stream different arrays at once.

``readers`` uncompressed arrays of ``--mib`` each (``--quick``: 4 of 16 MiB)
are read start to end in 1 MiB reads by as many threads at once, on a fresh
mount of each file system; the RSS of the mount process and its children is
sampled every 20 ms. Target: ``--cache-size`` + 150 MiB (the block cache may
fill up; 150 MiB is for everything else).
"""

from __future__ import annotations

import sys

import numpy as np

from mountbench.common import Bench
from mountbench.figures import MIB, Figure
from mountbench.fileops import peak_rss_while, stream_file
from mountbench.mounts import LiveMount
from mountbench.runs import interleave, on_fresh_mount


def run(bench: Bench) -> list[Figure]:
    """Upload the arrays, measure, return the rows."""
    sizes = bench.sizes
    stream = np.random.default_rng(3).standard_normal(sizes.stream_nbytes // 8)
    keys = [f"stream/a{i}" for i in range(sizes.readers)]
    print(f"memory: uploading {len(keys)} arrays of {stream.nbytes >> 20} MiB ...", file=sys.stderr)
    for key in keys:
        bench.upload_array(key, stream)

    def peak_while_streaming(live: LiveMount) -> dict[str, float]:
        idle = live.rss()
        peak = peak_rss_while(live, [lambda p=live.array_path(key): stream_file(p) for key in keys])
        return {"peak": peak / 2**20, "idle": idle / 2**20}

    print(f"memory: RSS with {len(keys)} readers ...", file=sys.stderr)
    results = interleave(bench, on_fresh_mount(peak_while_streaming), repeat=1)
    return [
        Figure(f"mount's peak RSS, {len(keys)} readers x {stream.nbytes >> 20} MiB", MIB, results.values("peak"),
               targets=[bench.rss_target()]),
        Figure("  idle, before the readers", MIB, results.values("idle")),
    ]
