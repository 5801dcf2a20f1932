"""User metadata as S3 carries it: string keys and values, keys compared lower-cased.

Servers return metadata keys in their own case (rclone capitalises them:
``Dtype``, ``Shape``), so every reader lower-cases them first; writers send
strings. Both the backends and the storage format rely on this, so it lives
below both.
"""

from __future__ import annotations

from typing import Any, Mapping


def normalize_metadata(metadata: Mapping[Any, Any] | None) -> dict[str, str]:
    """Return user metadata with lower-cased ``str`` keys and ``str`` values (``{}`` for ``None``)."""
    if not metadata:
        return {}
    return {str(k).lower(): str(v) for k, v in metadata.items()}


def string_metadata(metadata: Mapping[Any, Any]) -> dict[str, str]:
    """User metadata to store: ``str`` keys (case kept) and ``str`` values."""
    return {str(k): str(v) for k, v in metadata.items()}
