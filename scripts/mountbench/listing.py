"""Section ``listing`` (issue 10): ``ls -lR`` and ``find`` of a tree of small objects, cold and warm.

Two trees of the same shape (``--quick``: 5 x 20): 2,000 plain 128-byte
objects in 50 directories, and 2,000 raw arrays (16 float64 each, with their
metadata) in 50 directories. For each tree and file system:

* cold ``ls -lR`` on a fresh mount, then the warm one on the same mount,
  against a boto3 LIST plus a HEAD per object on 8 threads;
* cold ``find | wc -l`` on another fresh mount, then the warm one, against a
  bare boto3 paginated ``list_objects_v2``.

Then ``ls -lR`` of the arrays on a second mount of the unchanged bucket: a
first mount lists the tree, is unmounted, and a second mount with the same
state directory (cottoncandy's metadata index in the same
``XDG_CACHE_HOME``, rclone's same ``--cache-dir``; s3fs keeps nothing) lists
it again, against the bare ``list_objects_v2`` of the same keys.
"""

from __future__ import annotations

import sys

from mountbench.baselines import boto3_list, boto3_list_and_head
from mountbench.common import BUCKET, Bench, tree_keys
from mountbench.figures import BASELINE, SECONDS, Figure, Target
from mountbench.fileops import timed_find, timed_ls
from mountbench.mounts import RCLONE, S3FS, FileSystem, LiveMount
from mountbench.runs import interleave, on_fresh_mount

TODAY_WARM_FIND = 0.020  # issue 10's table, before the new data plane


def run(bench: Bench) -> list[Figure]:
    """Upload both trees, measure, return the rows."""
    sizes = bench.sizes
    n = sizes.ls_dirs * sizes.ls_per_dir
    print(f"listing: uploading {n} plain objects and {n} arrays ...", file=sys.stderr)
    bench.put_objects((key, b"x" * 128, None) for key in tree_keys("lsplain", sizes.ls_dirs, sizes.ls_per_dir))
    bench.put_small_arrays(tree_keys("lsarrays", sizes.ls_dirs, sizes.ls_per_dir, "arr"))
    figures = []
    for prefix, kind in (("lsplain", "plain objects"), ("lsarrays", "arrays")):
        figures += tree_figures(bench, prefix, f"{n} {kind} in {sizes.ls_dirs} dirs", n)
    return figures + [second_mount(bench, "lsarrays", n)]


def tree_figures(bench: Bench, prefix: str, what: str, n: int) -> list[Figure]:
    """Cold and warm ``ls -lR`` and ``find`` of one tree."""
    entries = 1 + bench.sizes.ls_dirs + n  # find counts the top directory and every directory and file

    def ls_twice(live: LiveMount) -> dict[str, float]:
        return {"cold": timed_ls(live.path / prefix, n), "warm": timed_ls(live.path / prefix, n)}

    def find_twice(live: LiveMount) -> dict[str, float]:
        return {"cold": timed_find(live.path / prefix, entries), "warm": timed_find(live.path / prefix, entries)}

    print(f"listing: ls -lR of {what} ...", file=sys.stderr)
    ls = interleave(bench, on_fresh_mount(ls_twice),
                    baseline=lambda: {"cold": boto3_list_and_head(bench.client, BUCKET, prefix + "/")})
    print(f"listing: find of {what} ...", file=sys.stderr)
    find = interleave(bench, on_fresh_mount(find_twice),
                      baseline=lambda: {"cold": boto3_list(bench.client, BUCKET, prefix + "/", n)})
    return [
        Figure(f"cold ls -lR, {what}", SECONDS, ls.values("cold"), ls.baseline("cold"), "boto3 LIST+HEADs",
               [Target("<=", 1.0, S3FS)]),
        Figure(f"cold find | wc -l, {what}", SECONDS, find.values("cold"), find.baseline("cold"), "boto3 LIST",
               [Target("<=", 1.0, S3FS)]),
        Figure("  warm ls -lR, same mount", SECONDS, ls.values("warm"), targets=[Target("<=", 1.0, RCLONE)]),
        Figure("  warm find | wc -l, same mount", SECONDS, find.values("warm"),
               targets=[Target("<=", TODAY_WARM_FIND, note="before issue 10")]),
    ]


def second_mount(bench: Bench, prefix: str, n: int) -> Figure:
    """``ls -lR`` on a second mount that reuses the first one's state directory."""
    def ls_on_second_mount(fs: FileSystem) -> dict[str, float]:
        state = fs.fresh_state()
        with fs.mounted(state) as first:
            timed_ls(first.path / prefix, n)
        with fs.mounted(state) as second:
            return {"second": timed_ls(second.path / prefix, n)}

    print("listing: ls -lR on a second mount ...", file=sys.stderr)
    results = interleave(bench, ls_on_second_mount,
                         baseline=lambda: {"second": boto3_list(bench.client, BUCKET, prefix + "/", n)})
    return Figure(f"ls -lR of the {n} arrays, second mount", SECONDS, results.values("second"),
                  results.baseline("second"), "boto3 LIST", [Target("<=", 2.0, BASELINE)])
