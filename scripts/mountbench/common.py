"""What every section of the mount benchmark shares: the sizes, the live server and bucket, bulk uploads.

A section gets one :class:`Bench` and uploads the objects it needs under its
own prefix, so that ``--only`` can run any section alone. Bulk uploads of
small objects go through obstore (``put_async``, 64 in flight): measured here
(3,000 128-byte objects with array metadata, load average 6-8) it put 1,700
a second into rclone and 760 into SeaweedFS, where boto3 on 16 threads put
370 and 310 (its PUTs hold the GIL): 100,000 arrays take one to two minutes.
``rclone serve s3`` keeps user metadata in memory, so writing files into its
directory (faster still) would not give arrays.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import obstore
import psutil

from mountbench.baselines import boto3_parallel_get
from mountbench.figures import Target
from mountbench.mounts import FileSystem

from cottoncandy.fuse.options import parse_size
from cottoncandy.format.metadata import ArrayMeta

BUCKET = "benchmount"
RSS_ALLOWANCE = 150 << 20  # target: cache size + this
UPLOAD_INFLIGHT = 64


@dataclass(frozen=True)
class Sizes:
    """How much work each figure does (a full run or ``--quick``)."""

    nbytes: int  # the big uncompressed array
    gzip_mib: int  # the gzip array written by 0.4.0
    random_reads: int  # 64 KiB preads per random-read figure
    ls_dirs: int  # the listing trees: ls_dirs directories of ls_per_dir objects
    ls_per_dir: int
    flat_entries: int  # arrays in one directory
    many_dirs: int  # the large listing: many_dirs directories of many_per_dir arrays
    many_per_dir: int
    readers: int  # concurrent streams of the RSS figure, each of stream_nbytes
    stream_nbytes: int

    @classmethod
    def full(cls, mib: int, gzip_mib: int) -> Sizes:
        return cls(mib << 20, gzip_mib, 1000, 50, 40, 10_000, 100, 1000, 8, mib << 20)

    @classmethod
    def quick(cls, mib: int, gzip_mib: int) -> Sizes:
        return cls(min(mib, 16) << 20, min(gzip_mib, 16), 100, 5, 20, 500, 10, 200, 4, min(mib, 16) << 20)


class ServerBytes:
    """Bytes the server process has sent so far: its ``/proc/PID/io`` ``wchar``.

    The mounts expose no counters outside their processes, so the server's own
    count (bodies plus HTTP headers) is used; Go, the language of both servers,
    sends on sockets with ``write(2)``. SeaweedFS runs its volume server and S3
    gateway in one process, so there the count also holds the bytes passed
    between them (a whole stored chunk for a small ranged GET): compare a
    figure with the baseline's, not with 1.
    """

    def __init__(self, pid: int):
        self._process = psutil.Process(pid)

    def __call__(self) -> int:
        return self._process.io_counters().write_chars


@dataclass
class Bench:
    """The run: options, sizes, the server and its clients, the file systems under test."""

    args: object  # the parsed command line
    sizes: Sizes
    tmp: Path
    server: object  # tests.servers.S3Server
    client: object  # its boto3 client
    store: object  # an obstore S3Store on the bucket
    cci: object  # a cottoncandy Interface on the bucket
    filesystems: list[FileSystem]
    server_bytes: ServerBytes
    notes: list[str] = field(default_factory=list)

    @property
    def ours(self) -> FileSystem:
        return self.filesystems[0]

    @property
    def columns(self) -> list[str]:
        return [fs.name for fs in self.filesystems]

    def rss_target(self) -> Target:
        """The mount's memory target, in MiB: ``--cache-size`` + 150 MiB."""
        return Target("<=", (parse_size(self.args.cache_size) + RSS_ALLOWANCE) / 2**20, note="cache + 150 MiB")

    def note(self, text: str) -> None:
        """Keep a line for the notes under the tables (and show it now)."""
        print(f"note: {text}", file=sys.stderr)
        self.notes.append(text)

    def put_objects(self, items: Iterable[tuple[str, bytes, dict[str, str] | None]]) -> int:
        """Upload ``(key, body, user metadata or None)`` items, many in flight; return how many."""
        async def put_all() -> int:
            slots = asyncio.Semaphore(UPLOAD_INFLIGHT)

            async def put(key: str, body: bytes, metadata: dict[str, str] | None) -> None:
                async with slots:
                    await obstore.put_async(self.store, key, body, attributes=metadata)

            jobs = [put(*item) for item in items]
            await asyncio.gather(*jobs)
            return len(jobs)

        return asyncio.run(put_all())

    def put_small_arrays(self, keys: Iterable[str]) -> int:
        """Upload a 16-element float64 raw array (with its metadata) at each key."""
        small = np.arange(16, dtype=np.float64)
        metadata = ArrayMeta(small.dtype, small.shape, None).to_metadata()
        body = small.tobytes()
        return self.put_objects((key, body, metadata) for key in keys)

    def upload_array(self, key: str, arr: np.ndarray) -> None:
        """Upload an uncompressed raw array with the API, then read it once (rclone checksums it on its first GET)."""
        self.cci.upload_raw_array(key, arr, compression=False)
        boto3_parallel_get(self.client, BUCKET, key, self.client.head_object(Bucket=BUCKET, Key=key)["ContentLength"])


def tree_keys(prefix: str, dirs: int, per_dir: int, name: str = "obj") -> list[str]:
    """``prefix/dNN/nameNNNN`` for ``dirs`` directories of ``per_dir`` objects."""
    return [f"{prefix}/d{d:03d}/{name}{i:04d}" for d in range(dirs) for i in range(per_dir)]
