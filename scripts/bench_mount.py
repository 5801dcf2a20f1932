#!/usr/bin/env python
"""Benchmark ``cottoncandy-mount`` against s3fs-fuse, rclone mount and raw boto3 on one loopback S3 server.

Starts the server (``--server``: ``rclone serve s3`` or SeaweedFS) on loopback
and, in the same run, on the same bucket and the same objects, mounts it with
``cottoncandy-mount``, with s3fs-fuse and with ``rclone mount --vfs-cache-mode
full`` (``--no-peers``: cottoncandy alone; see ``mountbench/mounts.py`` for
how each is run). It prints one table per section, each figure on every file
system with its ratio to the best peer of the run, the baseline measured in
the same run (raw boto3, or cottoncandy 0.4.0 for gzip) and its ratio, the
target and pass/FAIL; then notes on whatever failed. The sections (``--only``
runs some of them; each uploads its own objects):

* ``reads``: cold and warm ``open().read()`` and ``np.load`` of a big
  uncompressed array, and random 64 KiB preads (``mountbench/reads.py``);
* ``gzip``: an array written by 0.4.0 with gzip-9, against 0.4.0's
  ``download_raw_array`` (``mountbench/gzipped.py``);
* ``listing``: cold and warm ``ls -lR`` and ``find`` of 2,000 plain objects
  and of 2,000 arrays, and ``ls -lR`` on a second mount (``mountbench/listing.py``);
* ``scale``: ``ls -l`` of 10,000 arrays in one directory, and the mount's
  memory while it lists 100,000 arrays (``mountbench/scale.py``);
* ``memory``: the mount's RSS while 8 readers stream 8 arrays (``mountbench/memory.py``).

How "cold" is achieved: every cold figure runs on a fresh mount (unmount,
mount again), with a fresh, empty state directory: cottoncandy's
``XDG_CACHE_HOME`` (so its persistent metadata index starts empty) and
rclone's ``--cache-dir``. The mount process and its caches are new, and the
kernel forgets a FUSE file system's inodes and page cache at unmount. The
server side stays warm (its files in the host page cache, rclone's checksums
computed), as it is for the boto3 baseline. Where a figure needs the page
cache of one file dropped on a live mount, ``posix_fadvise(DONTNEED)`` is used.
Runs of cottoncandy, the peers and the baseline alternate, so all see the same
load of a shared machine; each figure is the median of ``--repeat`` runs.

Bytes fetched from the server are read from the server's own ``/proc/PID/io``
(see ``mountbench/common.py``), for the mounts and the baseline alike.

The run ends with everything unmounted and stopped, also on an error or
Ctrl-C. Exit status 0 when the run completed (even if targets are missed),
1 if it failed, 130 if interrupted.

Usage: ``.venv/bin/python scripts/bench_mount.py [--mib 256] [--repeat 3] [--cache-size 1GiB] [--gzip-mib 128]
[--cc040-python PATH] [--quick] [--server rclone|seaweedfs] [--only SECTION[,SECTION]] [--no-peers]``
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mountbench import gzipped, listing, memory, reads, scale  # noqa: E402
from mountbench.common import BUCKET, Bench, ServerBytes, Sizes  # noqa: E402
from mountbench.figures import render  # noqa: E402
from mountbench.mounts import file_systems  # noqa: E402
from tests.servers import add_server_option, start_server  # noqa: E402

import cottoncandy as cc  # noqa: E402
from cottoncandy.backends.s3store import make_store  # noqa: E402
from cottoncandy.config import S3Settings  # noqa: E402
from cottoncandy.fuse.options import parse_size  # noqa: E402

#: The sections, in the order they run.
SECTIONS = {"reads": reads.run, "gzip": gzipped.run, "listing": listing.run, "scale": scale.run,
            "memory": memory.run}


def sections(text: str) -> list[str]:
    """``--only``'s value: section names separated by commas."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown section {', '.join(unknown) or text!r}; "
                                         f"choose from {', '.join(SECTIONS)}")
    return names


def run(args: argparse.Namespace, sizes: Sizes, tmp: Path, notes: list[str]) -> None:
    """Start the server, run the sections, print their tables as they finish; ``notes`` gets what failed."""
    with start_server(args.server, tmp) as server:
        client = server.client()
        client.create_bucket(Bucket=BUCKET)
        cci = cc.get_interface(BUCKET, ACCESS_KEY=server.access_key, SECRET_KEY=server.secret_key,
                               endpoint_url=server.endpoint_url, verbose=False)
        filesystems = file_systems(server, BUCKET, tmp, args.cache_size, args.peers)
        bench = Bench(args, sizes, tmp, server, client, make_store(client, BUCKET, S3Settings()), cci,
                      filesystems, ServerBytes(server.process.pid), notes)
        for fs in filesystems:
            if fs.unavailable:
                bench.note(f"{fs.name}: {fs.unavailable}")
        print(f"cottoncandy-mount benchmark on loopback {args.server}: --cache-size {args.cache_size}, "
              f"median of {args.repeat}{' (--quick sizes)' if args.quick else ''}")
        print("  " + "; ".join(fs.version() for fs in filesystems))
        print("  cold = a fresh mount with an empty state dir (metadata index, VFS cache); "
              "ratios = cottoncandy / reference in the figure's unit")
        for name in args.only:
            figures = SECTIONS[name](bench)
            print(f"\n[{name}]")
            print(render(figures, bench.columns), flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C, so every mount and the server are stopped


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the tables, return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="size of the big arrays in MiB (default 256)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is shown (default 3)")
    parser.add_argument("--cache-size", default="1GiB", help="cottoncandy-mount's --cache-size (default 1GiB)")
    parser.add_argument("--gzip-mib", type=int, default=128,
                        help="size of the gzip array, written by cottoncandy 0.4.0, in MiB (default 128)")
    parser.add_argument("--cc040-python", metavar="PATH",
                        help="interpreter with cottoncandy 0.4.0 (default: .venv-cc040, created if missing)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, one run each, peers included: a smoke run of a few minutes")
    parser.add_argument("--only", type=sections, default=list(SECTIONS), metavar="SECTION[,SECTION]",
                        help=f"run only these sections, in the usual order ({', '.join(SECTIONS)})")
    parser.add_argument("--peers", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure s3fs-fuse and rclone mount (default: yes)")
    add_server_option(parser)
    args = parser.parse_args(argv)
    parse_size(args.cache_size)  # refuse a bad size before starting anything
    args.only = [name for name in SECTIONS if name in args.only]
    if args.quick:
        args.repeat = 1
        sizes = Sizes.quick(args.mib, args.gzip_mib)
    else:
        sizes = Sizes.full(args.mib, args.gzip_mib)
    signal.signal(signal.SIGTERM, _interrupt)
    notes: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench_mount-") as tmp:
            run(args, sizes, Path(tmp), notes)
        status = 0
    except KeyboardInterrupt:
        print("interrupted; everything was unmounted and stopped", file=sys.stderr)
        status = 130
    except Exception as exc:  # a failed run, not a missed target
        print(f"bench_mount: the run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        status = 1
    if notes:
        print("\nnotes:")
        for text in notes:
            print(f"  - {text}")
    return status


if __name__ == "__main__":
    sys.exit(main())
