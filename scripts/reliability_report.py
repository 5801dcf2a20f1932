#!/usr/bin/env python
"""Run the fault scenarios against a loopback ``rclone serve s3`` behind a fault proxy; print one table.

Scenarios (each on its own bucket): transient faults (resets, 503, 500, cut
bodies) at a rate on uploads and downloads, a stalled server, a server that is
gone, a multipart upload whose part keeps failing, an uploader killed with
SIGKILL mid-upload, and through a real mount: transient faults, unmounting
while a reader is blocked on a stalled request, and the server down for a
window then restarted on the same data (on a new port, the proxy retargeted).

Columns: operations tried, failures injected by the proxy, wrong bytes (must
be 0), objects lost (must be 0), errors surfaced to the user (expected only
where the server stalls or is down), max latency of one operation, and its
bound from the timeout/retry settings. Everything started is stopped on exit.

Usage: ``.venv/bin/python scripts/reliability_report.py [--quick] [--rate 0.1] [--down 15] [--seed 1]``
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.faultproxy import TRANSIENT, FaultProxy, part_number  # noqa: E402
from tests.mountutil import mount_env, mounted, processes_using  # noqa: E402
from tests.servers import S3Server, free_port, start_rclone  # noqa: E402

import cottoncandy as cc  # noqa: E402
from cottoncandy.errors import CottonCandyError  # noqa: E402

MiB = 1 << 20
API = {"connect_timeout": 1.0, "read_timeout": 2.0, "max_attempts": 6,
       "part_size": 5 * MiB, "multipart_threshold": 5 * MiB, "max_concurrency": 4}
FAIL_FAST = {**API, "max_attempts": 3}
MOUNT_TIMEOUT, MOUNT_RETRIES = 2.0, 5
UPLOADER = """
import sys, numpy as np, cottoncandy as cc
cci = cc.get_interface(sys.argv[1], verbose=False, part_size=5 << 20, multipart_threshold=5 << 20, max_concurrency=2)
cci.upload_raw_array(sys.argv[2], np.ones(int(sys.argv[3]), dtype='<f8'), compression=False)
"""
READER = "import sys\nwith open(sys.argv[1], 'rb') as f:\n    f.read()\n"


def bound(settings: dict, requests: int = 1) -> float:
    """Worst case seconds for ``requests`` failing requests (timeouts plus botocore's backoff)."""
    n = settings["max_attempts"]
    backoff = sum(min(2**i, 20) for i in range(n - 1))
    return requests * (n * max(settings["connect_timeout"], settings["read_timeout"]) + backoff)


@dataclass
class Tally:
    """What one scenario measured."""

    name: str
    ops: int = 0
    faults: int = 0
    wrong: int = 0
    lost: int = 0
    errors: int = 0
    max_latency: float = 0.0
    limit: float = float("inf")
    errors_expected: bool = False
    note: str = ""

    def run(self, op, *args):
        """Run one user operation, timing it; an error it raises is counted, not propagated."""
        self.ops += 1
        started = time.monotonic()
        try:
            return op(*args)
        except (CottonCandyError, OSError) as exc:
            self.errors += 1
            logging.debug("%s: %s", self.name, exc)
            return None
        finally:
            self.max_latency = max(self.max_latency, time.monotonic() - started)

    def check(self, expected, got) -> None:
        """Count wrong bytes when ``got`` (not None) differs from ``expected``."""
        if got is not None and not np.array_equal(np.asarray(expected), np.asarray(got)):
            self.wrong += 1

    @property
    def verdict(self) -> str:
        ok = (not self.wrong and not self.lost and self.max_latency <= self.limit
              and (self.errors_expected or not self.errors))
        return "ok" if ok else "FAIL"


class Lab:
    """An rclone server behind a fault proxy, buckets, interfaces; :meth:`close` stops everything."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root = root
        self.stack = contextlib.ExitStack()
        self.server = self._start(start_rclone(root / "data", root / "rclone-0.log"))
        self.proxy = self.stack.enter_context(FaultProxy(self.server.endpoint_url, seed=seed, stall_bound=60))
        self._baseline = 0

    def _start(self, server: S3Server) -> S3Server:
        self.stack.callback(server.stop)
        return server

    def restart_server(self) -> None:
        """Start a new server on the same data and keys, on a new port; point the proxy at it."""
        self.server = self._start(start_rclone(self.server.data_dir, self.root / f"rclone-{uuid.uuid4().hex[:6]}.log",
                                               credentials=(self.server.access_key, self.server.secret_key)))
        self.proxy.retarget(self.server.endpoint_url)

    def bucket(self) -> str:
        name = f"rel-{uuid.uuid4().hex[:12]}"
        self.server.client().create_bucket(Bucket=name)
        return name

    def direct(self, bucket: str):
        s = self.server
        return cc.get_interface(bucket, ACCESS_KEY=s.access_key, SECRET_KEY=s.secret_key,
                                endpoint_url=s.endpoint_url, verbose=False)

    def proxied(self, bucket: str, settings: dict):
        s = self.server
        return cc.get_interface(bucket, ACCESS_KEY=s.access_key, SECRET_KEY=s.secret_key,
                                endpoint_url=self.proxy.url, verbose=False, **settings)

    def env(self) -> dict[str, str]:
        return mount_env(self.proxy.url, self.server.access_key, self.server.secret_key)

    def _faults_so_far(self) -> int:
        return sum(v for k, v in self.proxy.snapshot().items() if k not in ("requests", "stalled"))

    def begin(self) -> None:
        """Start a scenario: no faults queued, fault count from zero."""
        self.proxy.clear()
        self._baseline = self._faults_so_far()

    def injected(self) -> int:
        """Faults the proxy injected since :meth:`begin` (refused connections of a gone server included)."""
        return self._faults_so_far() - self._baseline

    def lost(self, bucket: str, expected: dict) -> int:
        """Objects whose stored bytes (read without the proxy) are not what was last stored."""
        truth, missing = self.direct(bucket), 0
        for key, arr in expected.items():
            try:
                ok = np.array_equal(truth.download_raw_array(key), arr)
            except (CottonCandyError, OSError):
                ok = False
            missing += not ok
        return missing

    def uploads_left(self, bucket: str) -> int:
        return len(self.server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []))

    def close(self) -> None:
        self.stack.close()


def arrays(count: int, big: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = [10, 1000, 100_000, 400_000]
    out = {f"a{i:03d}": rng.standard_normal(sizes[i % len(sizes)]) for i in range(count)}
    out.update({f"big{i}": rng.standard_normal(12 * MiB // 8) for i in range(big)})
    return out


def api_transient(lab: Lab, args) -> Tally:
    t = Tally(f"api: {args.rate:.0%} transient faults")
    bucket, data = lab.bucket(), arrays(args.arrays, args.big, args.seed)
    cci = lab.proxied(bucket, API)
    lab.proxy.set_rate(args.rate, TRANSIENT)
    for key, arr in data.items():
        t.run(cci.upload_raw_array, key, arr, False if arr.size > 1000 else "gzip")
    for key, arr in data.items():
        t.check(arr, t.run(cci.download_raw_array, key))
    t.faults = lab.injected()
    lab.proxy.clear()
    t.lost = lab.lost(bucket, data) + lab.uploads_left(bucket)
    return t


def api_stalled(lab: Lab, args) -> Tally:
    t = Tally("api: server stalls", errors_expected=True, limit=bound(FAIL_FAST))
    bucket = lab.bucket()
    data = {"s": np.arange(1000.0)}
    lab.direct(bucket).upload_raw_array("s", data["s"], compression=False)
    cci = lab.proxied(bucket, FAIL_FAST)
    lab.proxy.inject("stall", count=None)
    for _ in range(2):
        t.check(data["s"], t.run(cci.download_raw_array, "s"))
    t.faults = lab.injected()
    lab.proxy.clear()
    t.lost = lab.lost(bucket, data)
    return t


def api_down(lab: Lab, args) -> Tally:
    t = Tally("api: server gone", errors_expected=True, limit=bound(FAIL_FAST))
    bucket = lab.bucket()
    data = {"d": np.arange(1000.0)}
    lab.direct(bucket).upload_raw_array("d", data["d"], compression=False)
    cci = lab.proxied(bucket, FAIL_FAST)
    lab.proxy.retarget(f"http://127.0.0.1:{free_port()}")
    try:
        for _ in range(3):
            t.check(data["d"], t.run(cci.download_raw_array, "d"))
        t.run(cci.upload_raw_array, "d", np.zeros(10))
    finally:
        lab.proxy.retarget(lab.server.endpoint_url)
    t.faults = lab.injected()
    t.lost = lab.lost(bucket, data)
    return t


def api_part_fails(lab: Lab, args) -> Tally:
    t = Tally("api: one multipart part keeps failing", errors_expected=True, limit=bound(FAIL_FAST, 2))
    bucket = lab.bucket()
    data = {"m": np.arange(1000.0)}
    lab.direct(bucket).upload_raw_array("m", data["m"], compression=False)
    cci = lab.proxied(bucket, FAIL_FAST)
    lab.proxy.inject("500", count=None, match=lambda r: part_number(r) == 2)
    t.run(cci.upload_raw_array, "m", np.ones(3 * MiB), False)
    t.faults = lab.injected()
    lab.proxy.clear()
    t.lost = lab.lost(bucket, data) + lab.uploads_left(bucket)
    return t


def api_sigkill(lab: Lab, args) -> Tally:
    t = Tally("api: uploader SIGKILLed mid-upload")
    bucket = lab.bucket()
    data = {"k": np.arange(1000.0)}
    lab.direct(bucket).upload_raw_array("k", data["k"], compression=False)
    lab.proxy.inject("stall", count=None, match=lambda r: (part_number(r) or 1) > 1)
    started = time.monotonic()
    with subprocess.Popen([sys.executable, "-c", UPLOADER, bucket, "k", str(4 * MiB)], env=lab.env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as uploader:
        t.ops = 1
        if not lab.proxy.wait_for(lambda p: p.stalled >= 1, timeout=60):
            t.note = "upload never reached the stalled part"
        uploader.send_signal(signal.SIGKILL)
        uploader.wait()
    t.max_latency = time.monotonic() - started
    t.faults = lab.injected()
    keys = [o["Key"] for o in lab.server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]
    t.lost = lab.lost(bucket, data) + (keys != ["k"])
    lab.proxy.clear()
    t.note = t.note or f"{lab.uploads_left(bucket)} orphan multipart upload(s), as expected after SIGKILL"
    return t


def mount_args() -> list[str]:
    return ["--timeout", str(MOUNT_TIMEOUT), "--retries", str(MOUNT_RETRIES), "--block-size", "1MiB", "--ttl", "1"]


def read_npy(path: Path) -> np.ndarray:
    return np.load(path)


def mount_transient(lab: Lab, args, root: Path) -> Tally:
    t = Tally(f"mount: {args.rate:.0%} transient faults")
    bucket = lab.bucket()
    data = arrays(max(4, args.arrays // 2), args.big, args.seed + 1)
    setup = lab.direct(bucket)
    for i, (key, arr) in enumerate(data.items()):
        setup.upload_raw_array(key, arr, compression=[False, "gzip", "Blosc"][i % 3])
    with mounted(bucket, fresh_dir(root, "mnt-transient"), mount_args(), lab.env()) as mount:
        lab.proxy.set_rate(args.rate, TRANSIENT)
        for key, arr in data.items():
            t.check(arr, t.run(read_npy, mount / f"{key}.npy"))
        t.faults = lab.injected()
        lab.proxy.clear()
    t.lost = lab.lost(bucket, data)
    return t


def mount_unmount_stalled(lab: Lab, args, root: Path) -> Tally:
    limit = bound({"connect_timeout": MOUNT_TIMEOUT, "read_timeout": MOUNT_TIMEOUT, "max_attempts": 1}, 2) + 5
    t = Tally("mount: lazy unmount, reader stalled", errors_expected=True, limit=limit)
    bucket = lab.bucket()
    lab.direct(bucket).upload_raw_array("slow", np.arange(MiB, dtype="<f8"), compression=False)
    mountpoint = fresh_dir(root, "mnt-stall")
    args_ = ["--timeout", str(MOUNT_TIMEOUT), "--retries", "0", "--block-size", "1MiB"]
    with mounted(bucket, mountpoint, args_, lab.env()) as mount:
        lab.proxy.inject("stall", count=None)
        started = time.monotonic()
        with subprocess.Popen([sys.executable, "-c", READER, str(mount / "slow.npy")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as reader:
            t.ops = 1
            lab.proxy.wait_for(lambda p: p.stalled >= 1, timeout=30)
            tool = shutil.which("fusermount3") or shutil.which("fusermount")
            if subprocess.run([tool, "-u", str(mountpoint)], capture_output=True, timeout=30).returncode:
                subprocess.run([tool, "-uz", str(mountpoint)], capture_output=True, timeout=30)
            try:
                t.errors += reader.wait(timeout=limit) != 0
            except subprocess.TimeoutExpired:
                reader.kill()
                t.note = "reader still blocked"
        gone = mount.process.wait(timeout=60) is not None and not processes_using(mountpoint)
        t.max_latency = time.monotonic() - started
        t.note = t.note or ("mount process exited, nothing left" if gone else "processes left behind")
        t.faults = lab.injected()
        lab.proxy.clear()
    return t


def mount_down(lab: Lab, args, root: Path) -> Tally:
    per_read = bound({"connect_timeout": MOUNT_TIMEOUT, "read_timeout": MOUNT_TIMEOUT,
                      "max_attempts": MOUNT_RETRIES + 1}, 2)
    t = Tally(f"mount: server down {args.down:g} s, restarted", errors_expected=True, limit=per_read)
    bucket = lab.bucket()
    data = {f"f{i}.npy": np.full(MiB // 8, i, dtype="<f8") for i in range(4)}
    setup = lab.direct(bucket)
    for key, arr in data.items():  # plain .npy bodies: rclone keeps user metadata in memory only
        setup.upload_npy_array(key, arr)
    with mounted(bucket, fresh_dir(root, "mnt-down"), mount_args(), lab.env()) as mount:
        t.check(data["f0.npy"], t.run(read_npy, mount / "f0.npy"))
        lab.server.stop()
        window_end, seen = time.monotonic() + args.down, set()
        while time.monotonic() < window_end:  # every read while the server is down must fail, in bounded time
            t.ops += 1
            started = time.monotonic()
            try:
                t.check(data["f1.npy"], np.load(mount / "f1.npy"))
            except OSError as exc:
                t.errors += 1
                seen.add(errno.errorcode.get(exc.errno, str(exc.errno)))
            t.max_latency = max(t.max_latency, time.monotonic() - started)
        alive = os.path.ismount(mount.path) and mount.process.poll() is None
        lab.restart_server()
        deadline = time.monotonic() + 30
        for key in ("f1.npy", "f2.npy", "f3.npy"):
            while (got := _read_ok(mount / key)) is None and time.monotonic() < deadline:
                time.sleep(0.2)  # polling interval while the mount notices the server is back
            t.ops += 1
            t.check(data[key], got)
            t.errors += got is None
        t.note = f"{'mount stayed up' if alive else 'MOUNT DIED'}; errors while down: {','.join(sorted(seen))}"
        if not alive or seen != {"EIO"}:
            t.lost += 1  # counted as a failure of the scenario
        t.faults = lab.injected()
    truth = lab.direct(bucket)
    t.lost += sum(not np.array_equal(np.load(io.BytesIO(truth.download_object(k))), v) for k, v in data.items())
    return t


def _read_ok(path: Path) -> np.ndarray | None:
    try:
        return np.load(path)
    except OSError as exc:
        if exc.errno != errno.EIO:
            raise
        return None


def fresh_dir(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir()
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few small arrays and a 2 s outage")
    parser.add_argument("--rate", type=float, default=0.10, help="share of requests failing transiently (0.1)")
    parser.add_argument("--down", type=float, default=None, help="seconds the server stays down (15; 2 with --quick)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault RNG and of the data (1)")
    args = parser.parse_args()
    args.arrays, args.big = (8, 1) if args.quick else (40, 4)
    args.down = args.down if args.down is not None else (2.0 if args.quick else 15.0)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("cottoncandy").setLevel(logging.ERROR)  # errors are counted, not printed
    root = Path(tempfile.mkdtemp(prefix="cc-reliability-"))
    lab = Lab(root, args.seed)
    rows: list[Tally] = []
    try:
        for scenario in (api_transient, api_stalled, api_down, api_part_fails, api_sigkill):
            lab.begin()
            rows.append(scenario(lab, args))
        for scenario in (mount_transient, mount_unmount_stalled, mount_down):  # mount_down restarts: last
            lab.begin()
            rows.append(scenario(lab, args, root))
    finally:
        lab.close()
        shutil.rmtree(root, ignore_errors=True)
    header = ("scenario", "ops", "faults injected", "wrong bytes", "objects lost", "errors surfaced",
              "max latency s", "bound s", "verdict", "notes")
    table = [header] + [(r.name, r.ops, r.faults, r.wrong, r.lost, r.errors, f"{r.max_latency:.2f}",
                         "-" if r.limit == float("inf") else f"{r.limit:.1f}", r.verdict, r.note) for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for n, row in enumerate(table):
        print("  ".join(str(v).ljust(w) if i in (0, 9) else str(v).rjust(w) for i, (v, w) in
                        enumerate(zip(row, widths))).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    return 0 if all(r.verdict == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
