"""Reading bodies of one bucket by range: through obstore where it can, else boto3, resumed where a body breaks off.

Big reads are parallel ranged GETs straight into the caller's buffer. The
first answer fixes the ETag every other part must match, so a body replaced
during the read raises ``ObjectNotFoundError`` instead of mixing versions
(:class:`~.s3parts.TransferState`). botocore retries requests, not bodies: a
body that breaks off after its headers arrived (:class:`~.s3errors.BodyBrokeOff`)
is fetched again from its first missing byte, pinned to the same ETag, up to
``max_attempts`` times.
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..config import S3Settings
from ..errors import ArrayFormatError, ObjectNotFoundError, StorageError
from .base import ProgressCallback
from .s3errors import BodyBrokeOff, Errors, RangeNotSatisfiable
from .s3parts import TransferState, etag_changed, wait_all
from .s3reader import ObstoreReader, Unservable

logger = logging.getLogger(__name__)

#: Bytes copied per ``readinto`` call while streaming a response body.
STREAM_CHUNK = 1 << 20



class Download:
    """Ranged reads of one bucket.

    Parameters
    ----------
    client : botocore client
    bucket : str
    settings : S3Settings
        Part size, concurrency, attempts.
    reader : ObstoreReader
        Serves what obstore can serve exactly.
    errors : callable
        The backend's error translation (see :data:`~.s3errors.Errors`).
    """

    def __init__(self, client: Any, bucket: str, settings: S3Settings, reader: ObstoreReader,
                 errors: Errors) -> None:
        self.client = client
        self.bucket = bucket
        self.settings = settings
        self.reader = reader
        self._errors = errors

    def _get(self, key: str, start: int, end: int, etag: str | None) -> dict:
        kwargs = {"Bucket": self.bucket, "Key": key, "Range": f"bytes={start}-{end - 1}"}
        if etag is not None:
            kwargs["IfMatch"] = etag
        with self._errors("GET", key):
            resp = self.client.get_object(**kwargs)
        self.reader.note_ranged_answer(resp.get("ResponseMetadata", {}).get("HTTPStatusCode"))
        if etag_changed(etag, resp.get("ETag")):  # some servers (rclone) ignore If-Match
            raise ObjectNotFoundError(f"GET s3://{self.bucket}/{key}: the object changed while being read", key)
        return resp

    def _give_up(self, exc: BodyBrokeOff, failures: int, key: str, where: str) -> bool:
        """Whether a body that broke off for the ``failures``-th time is not to be fetched again."""
        if failures >= self.settings.max_attempts:
            return True
        logger.info("GET s3://%s/%s broke off %s (%s)", self.bucket, key, where,
                    type(exc.__cause__).__name__)
        return False

    def read_range(self, key: str, start: int, end: int, etag: str | None = None) -> bytes:
        """Body bytes ``[start, end)`` (``0 <= start < end``), short only at the end of the body.

        A body that breaks off is fetched again whole (ranges here are blocks of
        a few MiB), up to ``max_attempts`` times.
        """
        if self.reader.serves(key):
            try:
                return self.reader.read_range(key, start, end, etag)
            except Unservable:
                pass
            except RangeNotSatisfiable:
                return b""  # start at or past the end of the body
        failures = 0
        while True:
            try:
                resp = self._get(key, start, end, etag)
            except RangeNotSatisfiable:
                return b""
            try:
                with self._errors("GET", key, body=True):
                    # One read of the whole body: a fraction of the CPU of chunked readinto,
                    # no second copy, and botocore checks it against Content-Length.
                    return resp["Body"].read()
            except BodyBrokeOff as exc:
                failures += 1
                if self._give_up(exc, failures, key, f"in [{start}, {end}); fetching it again"):
                    raise

    def read_into(self, key: str, view: memoryview, start: int, etag: str | None,
                  progress: ProgressCallback | None) -> None:
        """Fill the writable byte view ``view`` with the body from ``start`` using parallel ranged GETs.

        Raises ``ArrayFormatError`` if the body is too short.
        """
        size = view.nbytes
        part = self.settings.part_size
        offsets = list(range(0, size, part))
        state = TransferState(etag)

        def fetch(offset: int) -> None:
            length = min(part, size - offset)
            if offset:
                state.etag(wait=True)
                if state.cancelled:
                    return
            try:
                got = self._read_span(key, view[offset:offset + length], start + offset, state, progress)
            except StorageError as exc:
                if not offset:  # no ETag will come: the other parts stop waiting for it
                    state.cancel()
                if isinstance(exc, RangeNotSatisfiable):
                    raise ArrayFormatError(
                        f"{key}: body ends before byte {start + offset + 1} (expected {start + size} bytes)", key
                    ) from exc
                raise
            if got < length and not state.cancelled:
                raise ArrayFormatError(
                    f"{key}: body ends at byte {start + offset + got}, expected at least {start + size} bytes", key
                )

        if len(offsets) == 1:
            fetch(0)
            return
        with ThreadPoolExecutor(min(self.settings.max_concurrency, len(offsets)), "cc-s3-get") as pool:
            futures = [pool.submit(fetch, offset) for offset in offsets]
            wait_all(futures, state)

    def _read_span(self, key: str, target: memoryview, position: int, state: TransferState,
                   progress: ProgressCallback | None) -> int:
        """Stream body bytes ``[position, position + len(target))`` into ``target``.

        The first answer fixes the transfer's ETag when it is not known yet.
        Returns the bytes read: fewer than asked only when the body ends first
        (or the transfer was cancelled).
        """
        if self.reader.serves(key):
            with contextlib.suppress(Unservable):
                got, etag = self.reader.read_span(key, target, position, state.etag())
                state.fix_etag(etag)
                if progress is not None and got:
                    progress(got)
                return got
        done, total, failures = 0, target.nbytes, 0
        while done < total:
            if state.cancelled:
                return done
            resp = self._get(key, position + done, position + total, state.etag())
            state.fix_etag(resp.get("ETag"))
            body = resp["Body"]
            try:
                with self._errors("GET", key, body=True):
                    while done < total:
                        if state.cancelled:
                            return done
                        n = body.readinto(target[done:done + STREAM_CHUNK])
                        if not n:  # the body ended, as long as its Content-Length said
                            return done
                        done += n
                        if progress is not None:
                            progress(n)
            except BodyBrokeOff as exc:
                failures += 1
                if self._give_up(exc, failures, key, f"at byte {position + done}; resuming"):
                    raise
            finally:
                body.close()
        return done
