"""Progress reporting for long transfers: a tqdm bar when asked for, else nothing."""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator

ProgressArg = bool | Callable[[int], None] | None


@contextlib.contextmanager
def progress_callback(progress: ProgressArg, total: int, description: str) -> Iterator[Callable[[int], None] | None]:
    """Yield a thread-safe ``callback(nbytes)`` for a transfer of ``total`` bytes.

    Parameters
    ----------
    progress : bool, callable or None
        ``True`` shows a tqdm bar (if tqdm is installed), a callable is used as
        is, ``False``/``None`` reports nothing (the callback is ``None``).
    total : int
        Expected byte count.
    description : str
        Label of the bar.
    """
    if callable(progress):
        yield progress
        return
    if not progress:
        yield None
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        yield None
        return
    lock = threading.Lock()
    with tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024, leave=False) as bar:

        def update(nbytes: int) -> None:
            with lock:
                bar.update(nbytes)

        yield update
