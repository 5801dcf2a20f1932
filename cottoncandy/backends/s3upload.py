"""Writing one object with boto3: one PUT when small, else a parallel multipart upload.

Parts are uploaded from memory slices (or read from a stream) with at most
``max_concurrency`` in flight, which bounds the memory held. Any failure or
interrupt aborts the upload, so that no partial object ever appears and the
previous version stays intact.
"""

from __future__ import annotations

import logging
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Mapping, cast

from botocore.exceptions import BotoCoreError, ClientError

from ..config.settings import S3Settings
from ..errors import StorageError
from ..usermeta import normalize_metadata
from .base import Body, ProgressCallback, Readable
from .s3errors import Errors
from .s3parts import Chunks, TransferState, iter_parts, raise_first, read_full, wait_all

logger = logging.getLogger(__name__)

MAX_PARTS = 10_000


class Upload:
    """Uploads to one bucket.

    Parameters
    ----------
    client : botocore client
    bucket : str
    settings : S3Settings
        Part size, multipart threshold, concurrency.
    errors : callable
        ``errors(operation, key)``: a context manager translating botocore
        errors (the backend's).
    """

    def __init__(self, client, bucket: str, settings: S3Settings,
                 errors: Errors) -> None:
        self.client = client
        self.bucket = bucket
        self.settings = settings
        self._errors = errors

    def write(self, key: str, body: Body, metadata: Mapping[str, str] | None = None,
              progress: ProgressCallback | None = None) -> None:
        """Store ``body`` under ``key`` (see :meth:`StorageBackend.write`)."""
        meta = normalize_metadata(metadata)
        threshold = max(self.settings.multipart_threshold, 1)
        if hasattr(body, "read"):
            stream = cast(Readable, body)  # hasattr() does not narrow the union
            head = read_full(stream, threshold)
            if len(head) < threshold:
                self._put(key, head, meta, progress)
            else:
                self._multipart(key, meta, progress, head=head, stream=stream)
            return
        try:
            single = memoryview(body)  # type: ignore[arg-type]  # any buffer (bytes, numpy...); else TypeError
        except TypeError:
            chunks = Chunks(body)  # a sequence of buffers
        else:
            chunks = Chunks([single])
        if chunks.size < threshold:
            self._put(key, bytes(chunks.slice(0, chunks.size)), meta, progress)
        else:
            self._multipart(key, meta, progress, chunks=chunks)

    def _put(self, key: str, data: bytes, meta: dict, progress) -> None:
        with self._errors("PUT", key):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=bytes(data), Metadata=meta)
        if progress is not None and data:
            progress(len(data))

    def _part_size(self, total: int | None) -> int:
        part = self.settings.part_size
        if total is not None and total > part * MAX_PARTS:
            part = -(-total // MAX_PARTS)
            part = -(-part // (1 << 20)) << 20
        return part

    def _multipart(self, key, meta, progress, chunks: Chunks | None = None, head=b"", stream=None) -> None:
        part = self._part_size(chunks.size if chunks is not None else None)
        with self._errors("multipart upload start", key):
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, Metadata=meta)["UploadId"]
        state = TransferState()
        etags: dict[int, str] = {}
        pool = ThreadPoolExecutor(self.settings.max_concurrency, "cc-s3-put")

        def upload(number: int, data) -> None:
            if state.cancelled:
                return
            with self._errors(f"upload part {number} of", key):
                resp = self.client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=bytes(data)
                )
            etags[number] = resp["ETag"]
            if progress is not None:
                progress(len(data))

        try:
            futures: list[Future] = []
            for number, data in enumerate(iter_parts(chunks, head, stream, part), start=1):
                if number > MAX_PARTS:
                    raise StorageError(f"{key}: body needs more than {MAX_PARTS} parts of {part} bytes", key)
                while True:  # at most max_concurrency parts in flight: bounds the memory held
                    raise_first(futures)
                    futures = [f for f in futures if not f.done()]
                    if len(futures) < self.settings.max_concurrency:
                        break
                    wait(futures, return_when=FIRST_COMPLETED)
                futures.append(pool.submit(upload, number, data))
            wait_all(futures, state)
            parts = [{"ETag": etags[n], "PartNumber": n} for n in sorted(etags)]
            with self._errors("multipart upload complete", key):
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
        except BaseException:
            state.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            self._abort(key, upload_id)
            raise
        finally:
            pool.shutdown(wait=True)

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (ClientError, BotoCoreError) as exc:
            logger.warning("could not abort multipart upload of s3://%s/%s: %s", self.bucket, key, type(exc).__name__)
