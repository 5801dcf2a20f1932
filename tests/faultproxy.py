"""A loopback HTTP/1.1 reverse proxy in front of an S3 server that injects faults.

:class:`FaultProxy` listens on a free ``127.0.0.1`` port and forwards each
request to an upstream S3 server (``rclone serve s3`` from :mod:`tests.servers`),
keeping the ``Host`` header so that SigV4 signatures made for the proxy's URL
verify upstream. A request gets a fault queued with :meth:`FaultProxy.inject`
(the next N matching requests) or drawn at the rate of :meth:`FaultProxy.set_rate`
from a seeded RNG (reproducible for a given order of requests). Kinds:

* ``reset``: TCP RST before the request reaches the server;
* ``503`` / ``500``: S3 ``SlowDown`` / ``InternalError`` XML answer, not forwarded;
* ``403``: S3 ``AccessDenied`` answer, not forwarded: with a ``match`` on the
  requests a bucket policy would refuse (``HeadBucket``, a listing outside a
  prefix: :func:`is_head_bucket`, :func:`list_prefix`), the proxy plays a
  server whose credentials only reach some objects;
* ``stall``: held until :meth:`~FaultProxy.release`, :meth:`~FaultProxy.stop` or
  ``stall_bound`` seconds, then forwarded;
* ``cut``: a GET answer with its full ``Content-Length`` but only part of the body,
  then the connection closes. Only GETs: the lost answer of a non-idempotent request
  (CompleteMultipartUpload) is a different scenario, one no client can retry blindly;
* ``delay``: forwarded after ``delay`` seconds.

An unreachable upstream (server down) resets the client's connection, as a
stopped server would refuse it; :meth:`~FaultProxy.retarget` points the proxy
at a restarted server on a new port.
"""

from __future__ import annotations

import http.client
import logging
import os
import random
import socket
import struct
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger(__name__)

KINDS = ("reset", "503", "500", "403", "stall", "cut", "delay")
#: Faults a client is expected to survive by retrying.
TRANSIENT = ("reset", "503", "500", "cut")
#: Not forwarded end to end (RFC 9110 hop-by-hop); ``Expect`` is answered by the proxy itself.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                        "upgrade", "expect"})
ERRORS = {"503": (503, "SlowDown", "Please reduce your request rate."),
          "500": (500, "InternalError", "We encountered an internal error. Please try again."),
          "403": (403, "AccessDenied", "Access Denied")}
COPY_CHUNK = 64 << 10


@dataclass(frozen=True)
class Request:
    """What a fault rule can look at: ``method``, ``path`` and raw ``query`` of a request."""

    method: str
    path: str
    query: str


Match = Callable[[Request], bool]


def part_number(request: Request) -> int | None:
    """The part number of an UploadPart request (``PUT ...?partNumber=N&uploadId=...``), else None."""
    values = parse_qs(request.query).get("partNumber") if request.method == "PUT" else None
    return int(values[0]) if values else None


def is_head_bucket(request: Request) -> bool:
    """A HeadBucket request (``HEAD /bucket``, path-style addressing)."""
    return request.method == "HEAD" and request.path.strip("/").count("/") == 0 and request.path != "/"


def list_prefix(request: Request) -> str | None:
    """The ``prefix`` of a ListObjects request (``GET /bucket?list-type=2&prefix=...``), else None."""
    if request.method != "GET" or request.path.strip("/").count("/") or request.path == "/":
        return None
    query = parse_qs(request.query, keep_blank_values=True)
    if "uploads" in query or "location" in query or "acl" in query:
        return None
    return query.get("prefix", [""])[0]


class FaultProxy:
    """A fault-injecting reverse proxy for one upstream S3 server.

    Parameters
    ----------
    upstream : str
        ``http://127.0.0.1:PORT`` of the S3 server (loopback only).
    seed : int
        Seed of the RNG that draws rate-based faults.
    stall_bound : float
        Seconds a stalled request is held at most before it is forwarded.
    delay : float
        Seconds a ``delay`` fault waits.
    cut_fraction : float
        Share of the body sent before a ``cut`` closes the connection.

    Attributes
    ----------
    url : str
        Where clients connect (set once started).
    requests : int
        Requests received.
    methods : collections.Counter
        Requests received, by HTTP method (``HEAD``, ``GET``...).
    seen : list of Request
        Every request received, in order.
    faults : collections.Counter
        Faults injected, by kind (``upstream_down`` counts requests the upstream refused).
    """

    def __init__(self, upstream: str, *, seed: int = 0, stall_bound: float = 30.0, delay: float = 0.5,
                 cut_fraction: float = 0.5) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._released = threading.Event()
        self._changed = threading.Condition(self._lock)  # notified whenever a counter moves
        self._rng = random.Random(seed)
        self._queued: list[list] = []  # [kind, remaining, match]
        self._rate, self._rate_kinds, self._rate_match = 0.0, TRANSIENT, None
        self._connections: set[socket.socket] = set()
        self.stall_bound, self.delay, self.cut_fraction = stall_bound, delay, cut_fraction
        self.requests = 0
        self.methods: Counter = Counter()
        self.seen: list[Request] = []
        self.stalled = 0  # requests held right now
        self.faults: Counter = Counter()
        self.retarget(upstream)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------
    def start(self) -> "FaultProxy":
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="faultproxy",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release stalled requests and close every client connection."""
        self._stop.set()
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # wake handler threads blocked on idle keep-alive connections
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its handler
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def retarget(self, upstream: str) -> None:
        """Forward from now on to ``upstream`` (``http://127.0.0.1:PORT``)."""
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"upstream must be a plain-http loopback URL, not {upstream!r}")
        with self._lock:
            self.upstream = (parts.hostname, parts.port or 80)

    def inject(self, kind: str, count: int | None = 1, match: Match | None = None) -> None:
        """Give fault ``kind`` to the next ``count`` matching requests (``None``: until :meth:`clear`)."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}; use one of {KINDS}")
        with self._lock:
            self._queued.append([kind, count, match])

    def set_rate(self, rate: float, kinds: Iterable[str] = TRANSIENT, match: Match | None = None) -> None:
        """Give each matching request a fault with probability ``rate``, kind drawn from ``kinds``."""
        kinds = tuple(kinds)
        if not 0.0 <= rate <= 1.0 or not kinds or set(kinds) - set(KINDS):
            raise ValueError(f"bad rate {rate!r} or kinds {kinds!r}")
        with self._lock:
            self._rate, self._rate_kinds, self._rate_match = rate, kinds, match

    def clear(self) -> None:
        """Drop queued faults and the fault rate, and release stalled requests."""
        with self._lock:
            self._queued.clear()
            self._rate = 0.0
        self.release()

    def release(self) -> None:
        """Let requests stalled so far proceed; later ``stall`` faults hold again."""
        old, self._released = self._released, threading.Event()
        old.set()

    def wait_for(self, predicate: Callable[["FaultProxy"], bool], timeout: float) -> bool:
        """Wait until ``predicate(self)`` holds (checked whenever a counter changes); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    def snapshot(self) -> dict:
        """Counters now: ``requests``, ``stalled`` and each fault kind."""
        with self._lock:
            return {"requests": self.requests, "stalled": self.stalled, **self.faults}

    # -- used by the handler ---------------------------------------------------
    def _choose(self, request: Request) -> str | None:
        with self._changed:
            self.requests += 1
            self.methods[request.method] += 1
            self.seen.append(request)
            self._changed.notify_all()
            for rule in self._queued:
                kind, remaining, match = rule
                if match is None or match(request):
                    if remaining is not None:
                        rule[1] -= 1
                        if rule[1] <= 0:
                            self._queued.remove(rule)
                    return kind
            if self._rate and (self._rate_match is None or self._rate_match(request)):
                # draw both numbers every time so the sequence does not depend on the outcome
                hit, kind = self._rng.random(), self._rng.choice(self._rate_kinds)
                if hit < self._rate:
                    return kind
        return None

    def _count(self, kind: str | None, stalled: int = 0) -> None:
        """Count one fault of ``kind`` (if given) and move the stalled gauge by ``stalled``."""
        with self._changed:
            if kind is not None:
                self.faults[kind] += 1
            self.stalled += stalled
            self._changed.notify_all()


def _error_body(code: str, message: str, resource: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<Resource>{resource}</Resource><RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
            ).encode()


def _make_handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with proxy._lock:
                proxy._connections.add(self.connection)

        def finish(self) -> None:
            with proxy._lock:
                proxy._connections.discard(self.connection)
            try:
                super().finish()
            except (OSError, ValueError):
                pass  # the connection was reset on purpose or by the client

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - BaseHTTPRequestHandler API
            logger.debug("proxy: " + format, *args)

        def _proxy(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                self.send_error(501, "chunked request bodies are not supported by the fault proxy")
                return
            body = self.rfile.read(length) if length else b""
            path, _, query = self.path.partition("?")
            kind = proxy._choose(Request(self.command, path, query))
            if kind == "reset":
                proxy._count(kind)
                return self._reset()
            if kind in ERRORS:
                proxy._count(kind)
                return self._send_error_xml(*ERRORS[kind], resource=path)
            if kind == "stall":
                proxy._count(kind, stalled=1)
                proxy._released.wait(proxy.stall_bound)
                proxy._count(None, stalled=-1)
            elif kind == "delay":
                proxy._count(kind)
                proxy._stop.wait(proxy.delay)
            if proxy._stop.is_set():
                return self._reset()
            self._forward(body, cut=kind == "cut")

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _proxy

        def _forward(self, body: bytes, cut: bool) -> None:
            host, port = proxy.upstream
            upstream = http.client.HTTPConnection(host, port, timeout=max(proxy.stall_bound, 60.0))
            try:
                upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():  # Host kept: it is part of the signature
                    if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                        upstream.putheader(name, value)
                upstream.putheader("Content-Length", str(len(body)))
                upstream.putheader("Connection", "close")
                upstream.endheaders(body)
                response = upstream.getresponse()
            except OSError as exc:  # connection refused or dropped: the server is down
                logger.debug("proxy: upstream %s:%s unreachable: %s", host, port, exc)
                proxy._count("upstream_down")
                upstream.close()
                return self._reset()
            try:
                self._relay(response, cut)
            finally:
                upstream.close()

        def _relay(self, response: http.client.HTTPResponse, cut: bool) -> None:
            headers = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
            declared = response.getheader("Content-Length")
            if declared is None and self.command != "HEAD":  # chunked upstream: buffer it
                data = response.read()
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
                headers.append(("Content-Length", str(len(data))))
                declared, chunks = str(len(data)), iter([data])
            else:
                chunks = iter(lambda: response.read(COPY_CHUNK), b"")
            size = int(declared or 0) if self.command != "HEAD" else 0
            limit = int(size * proxy.cut_fraction) if cut and size else None
            if cut and (limit is None or self.command != "GET"):
                cut = False  # nothing (safe) to cut: forward as is
            elif cut:
                proxy._count("cut")
            self.send_response_only(response.status, response.reason)
            for name, value in headers:
                self.send_header(name, value)
            if cut:
                self.close_connection = True
            self.end_headers()
            sent = 0
            for chunk in chunks:
                if limit is not None:
                    chunk = chunk[: limit - sent]
                self.wfile.write(chunk)
                sent += len(chunk)
                if limit is not None and sent >= limit:
                    break

        def _send_error_xml(self, status: int, code: str, message: str, resource: str) -> None:
            payload = _error_body(code, message, resource) if self.command != "HEAD" else b""
            self.send_response_only(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            if status == 503:
                self.send_header("Retry-After", "1")
            self.end_headers()
            self.wfile.write(payload)

        def _reset(self) -> None:
            """Abort the connection with a TCP RST (SO_LINGER 0), as a crashed peer would."""
            self.close_connection = True
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                os.close(self.connection.detach())  # close now, whatever file objects still refer to it
            except OSError:
                pass  # the client already went away

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            except (ConnectionError, TimeoutError) as exc:  # the client hung up mid-request: expected here
                logger.debug("proxy: client connection lost: %s", exc)
                self.close_connection = True

    return Handler
