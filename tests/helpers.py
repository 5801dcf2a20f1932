"""Helpers shared by the test modules: the golden store, digests, a counting backend, polling.

Fixtures live in ``conftest.py``; plain functions and classes live here. Nothing here reads a
file or starts anything at import time: a missing golden store fails the tests that use it,
not the collection of every module that imports this one.
"""

from __future__ import annotations

import collections
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from cottoncandy.backends.local import SIDECAR_SUFFIX

#: The store cottoncandy 0.4.0 wrote (local-backend layout); ``shared/`` sits beside the repository.
GOLDEN_DIR = Path(__file__).resolve().parents[2] / "shared" / "golden" / "cottoncandy-0.4.0"
#: Its index: key -> ``{"kind", "dtype", "shape", "sha256", ...}``.
GOLDEN_INDEX = "MANIFEST.json"
#: Seconds any wait of a test may take before it fails.
DEADLINE = 60.0

T = TypeVar("T")


def require_golden() -> Path:
    """The golden store's directory; fails the calling test (never skips it) when it is missing."""
    if not (GOLDEN_DIR / GOLDEN_INDEX).is_file():
        raise AssertionError(f"golden store missing: {GOLDEN_DIR} (the shared/ directory must sit beside "
                             "the repository)")
    return GOLDEN_DIR


@lru_cache(maxsize=1)
def _golden_index() -> dict[str, dict[str, Any]]:
    return json.loads((require_golden() / GOLDEN_INDEX).read_text())


class _GoldenManifest(Mapping[str, dict[str, Any]]):
    """The golden index, read on first use."""

    def __getitem__(self, key: str) -> dict[str, Any]:
        return _golden_index()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(_golden_index())

    def __len__(self) -> int:
        return len(_golden_index())


#: key -> entry of the golden store's ``MANIFEST.json`` (read when first used).
MANIFEST: Mapping[str, dict[str, Any]] = _GoldenManifest()


def golden_entries(*kinds: str) -> list[tuple[str, dict[str, Any]]]:
    """Sorted ``(key, entry)`` of the golden store, of these kinds only when given.

    For ``pytest.mark.parametrize``: with the store missing, one placeholder entry is returned
    so that the test is collected and fails (calling :func:`require_golden`) instead of vanishing.
    """
    if not (GOLDEN_DIR / GOLDEN_INDEX).is_file():
        return [("<missing golden store>", {})]
    return sorted((k, v) for k, v in MANIFEST.items() if not kinds or v["kind"] in kinds)


def golden_metadata(key: str) -> dict[str, str]:
    """The user metadata 0.4.0 stored for ``key`` (its sidecar)."""
    return json.loads((require_golden() / f"{key}{SIDECAR_SUFFIX}").read_text())


def iter_golden(under: str = "") -> Iterator[tuple[str, Path, dict[str, str] | None]]:
    """``(key, file, metadata)`` of every golden object (below the prefix ``under``, if given)."""
    from .servers import iter_local_layout

    for key, path, metadata in iter_local_layout(require_golden()):
        if not under or key.startswith(under.rstrip("/") + "/"):
            yield key, path, metadata


def put_golden(backend: Any, under: str = "") -> Any:
    """Copy the golden store (below ``under``) into ``backend``: sidecars become user metadata."""
    for key, path, metadata in iter_golden(under):
        backend.write(key, path.read_bytes(), metadata)
    return backend


def sha256(arr: np.ndarray) -> str:
    """Digest of an array's C-order bytes (what the golden index records)."""
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


class CountingBackend:
    """A real backend wrapped to record every body read, and optionally hold reads at a gate.

    Parameters
    ----------
    inner : StorageBackend
    gate : threading.Event, optional
        ``read_range`` waits for it (up to :data:`DEADLINE`) after setting :attr:`entered`.

    Attributes
    ----------
    reads : list of (key, start, nbytes)
        Every body read in order (``nbytes`` -1 for a whole stream); clear it between steps.
    calls : collections.Counter
        ``(method, key, start)`` -> how often.
    bytes_requested : int
        Bytes asked for by ranged reads.
    entered : threading.Event
        Set when a ``read_range`` starts.
    """

    def __init__(self, inner: Any, gate: threading.Event | None = None):
        self.inner = inner
        self.gate = gate
        self.entered = threading.Event()
        self.reads: list[tuple[str, int, int]] = []
        self.calls: collections.Counter = collections.Counter()
        self.bytes_requested = 0
        self._lock = threading.Lock()

    def _record(self, method: str, key: str, start: int, nbytes: int) -> None:
        with self._lock:
            self.reads.append((key, start, nbytes))
            self.calls[(method, key, start)] += 1
            if method == "read_range":
                self.bytes_requested += nbytes

    def read_range(self, key, start, end, etag=None):
        self._record("read_range", key, start, end - start)
        self.entered.set()
        if self.gate is not None and not self.gate.wait(DEADLINE):
            raise TimeoutError("gate never opened")
        return self.inner.read_range(key, start, end, etag=etag)

    def read_into(self, key, buffer, start=0, etag=None, progress=None):
        self._record("read_into", key, start, memoryview(buffer).nbytes)
        return self.inner.read_into(key, buffer, start, etag=etag, progress=progress)

    def open_stream(self, key):
        self._record("open_stream", key, 0, -1)
        return self.inner.open_stream(key)

    def fetches(self, key: str | None = None) -> int:
        """Ranged reads and fills made (of ``key`` only, when given)."""
        with self._lock:
            return sum(n for (method, k, _), n in self.calls.items()
                       if method != "open_stream" and (key is None or k == key))

    def keys_read(self) -> set[str]:
        """Keys whose body was read since :attr:`reads` was last cleared."""
        with self._lock:
            return {key for key, _, _ in self.reads}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def wait_until(predicate: Callable[[], T], timeout: float = DEADLINE, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns a truthy value (returned), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)  # polling interval, bounded by the deadline
    return value
