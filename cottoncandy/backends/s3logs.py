"""Keep credentials out of botocore's and urllib3's debug logs.

At DEBUG level botocore logs every request it sends, headers included, and
the ``Authorization`` header names the access key (``Credential=AKIA.../``);
error bodies it logs may echo the key too. ``cottoncandy-mount --debug`` (or
any application that turns on debug logging) would write them to its log.

:func:`protect` installs one :class:`RedactingFilter` on the loggers of those
libraries. A filter on the logger that creates a record runs before any
handler sees it, whoever configured the handlers, so records are cleaned at
the source. It masks the values it was given (the keys in use) and, for keys
boto3 found on its own (profiles, ``AWS_*``), anything that looks like an
``Authorization``, ``Credential=`` or session-token value. It only costs time
for records that are actually emitted (the filter runs after the level check).
"""

from __future__ import annotations

import logging
import re
import threading

from typing_extensions import override

MASK = "***"

#: Loggers that may print request headers, signing material or raw responses.
LOGGER_NAMES = (
    "botocore",
    "botocore.endpoint",
    "botocore.auth",
    "botocore.parsers",
    "botocore.hooks",
    "botocore.httpsession",
    "botocore.retryhandler",
    "botocore.retries.standard",
    "botocore.credentials",
    "botocore.utils",
    "boto3",
    "s3transfer",
    "urllib3",
    "urllib3.connectionpool",
)

_PATTERNS = (
    # SigV4 credential scope in headers and presigned query strings
    (re.compile(r"(Credential=|X-Amz-Credential=)[^/&,\s'\"]+", re.IGNORECASE), r"\1" + MASK),
    # whole header values of Authorization and session tokens (str or bytes reprs)
    (re.compile(r"((?:'|\")(?:Authorization|X-Amz-Security-Token)(?:'|\"):\s*b?)(?:'[^']*'|\"[^\"]*\")",
                re.IGNORECASE), r"\1'" + MASK + "'"),
    # access key ids echoed in S3 error bodies
    (re.compile(r"(<AWSAccessKeyId>)[^<]*(</AWSAccessKeyId>)"), r"\1" + MASK + r"\2"),
)


class RedactingFilter(logging.Filter):
    """Rewrite log records so that no known secret or credential header value remains."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()

    def add(self, *values: str | None) -> None:
        """Also mask these exact strings (empty and very short values are ignored)."""
        with self._lock:
            known = set(self._secrets)
            known.update(v for v in values if v and len(v) >= 4)
            # longest first, so that a secret containing another is masked whole
            self._secrets = tuple(sorted(known, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        """``text`` with secrets and credential values masked."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: logging reports it itself
            return True
        cleaned = self.scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # tracebacks are formatted by the handler: format (and clean) them here instead
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
        return True


_FILTER = RedactingFilter()
_PREFIXES = tuple(sorted({name.split(".")[0] for name in LOGGER_NAMES}))
_install_lock = threading.Lock()


def protect(*secrets: str | None) -> RedactingFilter:
    """Mask ``secrets`` (and credential headers) in the logs of botocore, boto3, s3transfer and urllib3.

    Installs the filter on the loggers of :data:`LOGGER_NAMES` and on every
    other existing logger of those libraries (each module has its own). Safe
    to call many times: call it whenever a client is made.
    """
    _FILTER.add(*secrets)
    with _install_lock:
        existing = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in _PREFIXES]
        for name in {*LOGGER_NAMES, *existing}:
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)
    return _FILTER
