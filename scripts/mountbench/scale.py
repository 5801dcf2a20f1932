"""Section ``scale`` (issue 10): 10,000 arrays in one directory, and 100,000 arrays listed by one mount.

* cold ``ls -l`` of one directory of 10,000 raw arrays (``--quick``: 500),
  each file system on a fresh mount, against a bare boto3 ``list_objects_v2``;
* cold ``ls -lR`` of 100,000 raw arrays in 100 directories (``--quick``:
  2,000 in 10), once per file system (it is long on the peers): its time, the
  mount's peak RSS while it runs (sampled every 20 ms, against
  ``--cache-size`` + 150 MiB) and that peak above the idle mount's RSS per
  10,000 entries.
"""

from __future__ import annotations

import sys

from mountbench.baselines import boto3_list
from mountbench.common import BUCKET, Bench, tree_keys
from mountbench.figures import MIB, SECONDS, Figure, Target
from mountbench.fileops import peak_rss_while, timed_ls
from mountbench.mounts import S3FS, LiveMount
from mountbench.runs import interleave, on_fresh_mount


def run(bench: Bench) -> list[Figure]:
    """Upload both sets of arrays, measure, return the rows."""
    return [flat_directory(bench), *many_entries(bench)]


def flat_directory(bench: Bench) -> Figure:
    """Cold ``ls -l`` of one directory of ``sizes.flat_entries`` arrays."""
    n = bench.sizes.flat_entries
    print(f"scale: uploading {n} arrays into one directory ...", file=sys.stderr)
    bench.put_small_arrays(f"flat/arr{i:05d}" for i in range(n))
    print(f"scale: ls -l of {n} arrays in one directory ...", file=sys.stderr)
    results = interleave(bench, on_fresh_mount(lambda live: {"cold": timed_ls(live.path / "flat", n, recursive=False)}),
                         baseline=lambda: {"cold": boto3_list(bench.client, BUCKET, "flat/", n)})
    return Figure(f"cold ls -l, {n} arrays in one directory", SECONDS, results.values("cold"),
                  results.baseline("cold"), "boto3 LIST", [Target("<=", 1.0, S3FS)])


def many_entries(bench: Bench) -> list[Figure]:
    """Time and memory of one cold ``ls -lR`` of ``many_dirs x many_per_dir`` arrays."""
    sizes = bench.sizes
    n = sizes.many_dirs * sizes.many_per_dir
    print(f"scale: uploading {n} arrays in {sizes.many_dirs} directories ...", file=sys.stderr)
    bench.put_small_arrays(tree_keys("many", sizes.many_dirs, sizes.many_per_dir, "arr"))

    def listed(live: LiveMount) -> dict[str, float]:
        idle = live.rss()
        seconds: list[float] = []
        peak = peak_rss_while(live, [lambda: seconds.append(timed_ls(live.path / "many", n))])
        return {"seconds": seconds[0], "peak": peak / 2**20, "per10k": (peak - idle) / 2**20 / (n / 10_000)}

    print(f"scale: ls -lR of {n} arrays, RSS ...", file=sys.stderr)
    results = interleave(bench, on_fresh_mount(listed), repeat=1,
                         baseline=lambda: {"seconds": boto3_list(bench.client, BUCKET, "many/", n)})
    what = f"{n} arrays in {sizes.many_dirs} dirs"
    return [
        Figure(f"cold ls -lR, {what} (one run)", SECONDS, results.values("seconds"), results.baseline("seconds"),
               "boto3 LIST"),
        Figure("  mount's peak RSS during it", MIB, results.values("peak"),
               targets=[bench.rss_target()]),
        Figure("  that peak above the idle mount, per 10,000 entries", MIB, results.values("per10k")),
    ]
