"""An asyncio event loop in its own daemon thread, for the S3 reader's many HEADs in flight.

obstore's ``*_async`` calls keep hundreds of requests in flight from one
Python thread; they need a running event loop, which the backend's callers
(plain threads, FUSE threads) do not have.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")


class LoopThread:
    """An asyncio event loop running in its own daemon thread (obstore's async calls need one)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="cc-s3-heads", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        """Cancel what runs, stop the loop and join its thread."""
        if self.loop.is_closed():
            return
        if threading.current_thread() is self.thread:  # collected on the loop itself: just stop
            self.loop.call_soon(self.loop.stop)
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(timeout=30)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
        if not self.thread.is_alive():
            self.loop.close()
