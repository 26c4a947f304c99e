"""HTTP to Microsoft Graph: one httpx client, throttling, paging and JSON ``$batch``.

Promises:

* 429, 503 and 504 answers (of a request or of one request inside a batch) are retried
  after ``Retry-After`` seconds, or after an exponential back-off (1, 2, 4 ... s) when
  the server sends none, at most ``max_retries`` times; a wait longer than
  ``max_backoff`` is not waited for (the request fails; the next run repeats it).
* A 401 gets one fresh token and one retry (tokens expire during long runs).
* At most ``concurrency`` (<= 4) requests run against one mailbox at any moment: a
  ``$batch`` of n requests to one mailbox is sent as ``min(n, slots)`` ``dependsOn``
  chains and holds that many slots, because Graph runs a batch's independent requests
  in parallel and counts each against the mailbox.
* Transport problems become :class:`ConnectionFailed`; no header (Authorization) and no
  body is ever logged.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from syncd.connectors.graph.auth import TokenSource
from syncd.connectors.graph.config import GraphConnection
from syncd.errors import ConnectionFailed, TargetError

log = logging.getLogger(__name__)

RETRIED = frozenset({429, 503, 504})
BATCH_LIMIT = 20
MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""Graph refuses a request body above 4 MB (a ``$batch`` is one request)."""
_BATCH_MARGIN = 64 * 1024  # envelope, ids, headers


@dataclass
class SubRequest:
    """One request inside a ``$batch``: ``url`` relative to the Graph root."""

    method: str
    url: str
    body: Any = None
    """JSON value, or ``bytes`` (sent base64 with ``content_type``)."""
    content_type: str = "application/json"

    def encoded(self, rid: str) -> dict[str, Any]:
        out: dict[str, Any] = {"id": rid, "method": self.method, "url": self.url}
        if self.body is not None:
            if isinstance(self.body, bytes):
                out["body"] = base64.b64encode(self.body).decode("ascii")
            else:
                out["body"] = self.body
            out["headers"] = {"Content-Type": self.content_type}
        return out

    def size(self) -> int:
        """About how many bytes this request adds to a batch body."""
        if self.body is None:
            return len(self.url) + 100
        if isinstance(self.body, bytes):
            return len(self.url) + 200 + (len(self.body) + 2) // 3 * 4
        return len(self.url) + 200 + len(json.dumps(self.body, ensure_ascii=False).encode())


@dataclass
class SubResponse:
    status: int
    body: Any = None
    headers: dict[str, str] | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error(self) -> str:
        """``status code: message`` of a Graph error answer (one line)."""
        err = self.body.get("error") if isinstance(self.body, dict) else None
        if isinstance(err, dict):
            msg = str(err.get("message") or "").splitlines()
            return f"{self.status} {err.get('code', '')}: {msg[0][:200] if msg else ''}".strip()
        return f"HTTP {self.status}"


class _Slots:
    """A counting semaphore that hands out n slots at once (no partial holds)."""

    def __init__(self, size: int):
        self.size = size
        self.free = size
        self.cond = threading.Condition()

    def acquire(self, n: int) -> int:
        n = max(1, min(n, self.size))
        with self.cond:
            while self.free < n:
                self.cond.wait()
            self.free -= n
        return n

    def release(self, n: int) -> None:
        with self.cond:
            self.free += n
            self.cond.notify_all()


class GraphClient:
    """Requests to one Graph root with one token source (thread-safe)."""

    def __init__(self, conn: GraphConnection, *, sleep: Callable[[float], None] | None = None):
        self.conn = conn
        self.root = conn.graph_url
        self.tokens = TokenSource(conn)
        self.sleep = sleep or time.sleep
        self.http = httpx.Client(
            verify=ssl.create_default_context(cafile=str(conn.ca_file) if conn.ca_file else None),
            timeout=conn.timeout,
            limits=httpx.Limits(max_connections=max(8, conn.workers * conn.concurrency)),
        )
        self._token: str | None = None
        self._lock = threading.Lock()
        self._slots: dict[str, _Slots] = {}
        self.requests = 0
        """HTTP requests sent to Graph (not counting sign-in)."""

    # ---------------------------------------------------------------- plumbing
    def token(self, *, refresh: bool = False) -> str:
        tok = self.tokens.token(refresh=refresh)
        self._token = tok
        return tok

    def slots(self, mailbox: str) -> _Slots:
        with self._lock:
            if mailbox.lower() not in self._slots:
                self._slots[mailbox.lower()] = _Slots(self.conn.concurrency)
            return self._slots[mailbox.lower()]

    def url(self, path: str) -> str:
        return path if path.startswith("https://") else f"{self.root}/{path.lstrip('/')}"

    def _wait(self, what: str, attempt: int, retry_after: str | None) -> bool:
        """Sleep before retry ``attempt``; False when the wait is not acceptable."""
        if attempt > self.conn.max_retries:
            return False
        wait: float
        try:
            wait = float(retry_after) if retry_after else 0.0
        except ValueError:
            wait = 0.0
        if wait <= 0:
            wait = min(2.0 ** (attempt - 1), self.conn.max_backoff)
        if wait > self.conn.max_backoff:
            return False
        log.warning("Graph throttled %s: waiting %.1fs (retry %d)", what, wait, attempt)
        self.sleep(wait)
        return True

    def send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        mailbox: str | None = None,
        slots: int = 1,
    ) -> httpx.Response:
        """One HTTP request with retries (see module doc); returns the final answer,
        whatever its status. Raises ConnectionFailed when Graph cannot be reached or
        refuses the token twice."""
        url = self.url(path)
        what = f"{method} {urlsplit(url).path}"
        held = self.slots(mailbox).acquire(slots) if mailbox else 0
        try:
            attempt = 0
            refreshed = False
            while True:
                tok = self._token or self.token()
                hdrs = {"Authorization": f"Bearer {tok}", **(headers or {})}
                try:
                    self.requests += 1
                    resp = self.http.request(method, url, json=json_body, headers=hdrs)
                except httpx.TransportError as err:
                    raise ConnectionFailed(f"Graph {urlsplit(url).netloc}: {_why(err)}") from None
                if resp.status_code == 401 and not refreshed:
                    refreshed = True
                    self.token(refresh=True)
                    continue
                if resp.status_code == 401:
                    raise ConnectionFailed(f"Graph refused the app's token: {_error(resp)}")
                if resp.status_code in RETRIED:
                    attempt += 1
                    if self._wait(what, attempt, resp.headers.get("retry-after")):
                        continue
                return resp
        finally:
            if held:
                self.slots(mailbox).release(held)  # type: ignore[arg-type]

    def get_json(self, path: str, *, mailbox: str | None = None, **kw: Any) -> dict[str, Any]:
        """GET a JSON object; raises TargetError on an error answer."""
        resp = self.send("GET", path, mailbox=mailbox, **kw)
        if resp.status_code >= 400:
            raise TargetError(f"Graph GET {_short(path)}: {_error(resp)}")
        return resp.json()

    def pages(
        self, path: str, *, mailbox: str | None = None, headers: dict[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every page of a collection, following ``@odata.nextLink``. Raises
        TargetError on an error answer (``.status`` is set on it)."""
        url: str | None = path
        while url:
            resp = self.send("GET", url, mailbox=mailbox, headers=headers)
            if resp.status_code >= 400:
                err = TargetError(f"Graph GET {_short(url)}: {_error(resp)}")
                err.status = resp.status_code  # type: ignore[attr-defined]
                raise err
            page = resp.json()
            yield page
            url = page.get("@odata.nextLink")

    # ------------------------------------------------------------------- batch
    def batch(self, requests: list[SubRequest], *, mailbox: str) -> list[SubResponse]:
        """Send these requests (all to ``mailbox``) in ``$batch`` calls of at most 20
        and 4 MB each; one answer per request, in order. Throttled sub-requests (and
        the ones that failed only because a request they depended on was throttled)
        are sent again after the back-off. Raises ConnectionFailed/TargetError when a
        whole batch call fails."""
        answers: list[SubResponse | None] = [None] * len(requests)
        for part in split(list(range(len(requests))), requests, BATCH_LIMIT):
            if len(part) == 1 and requests[part[0]].size() + _BATCH_MARGIN > MAX_REQUEST_BYTES:
                # Graph would refuse the whole call: fail this request alone.
                answers[part[0]] = SubResponse(
                    413, {"error": {"code": "RequestTooLarge", "message": "over 4 MB"}}
                )
                continue
            self._batch_part(requests, part, answers, mailbox)
        return [a if a is not None else SubResponse(0) for a in answers]

    def _batch_part(
        self,
        requests: list[SubRequest],
        part: list[int],
        answers: list[SubResponse | None],
        mailbox: str,
    ) -> None:
        pending = part
        attempt = 0
        while pending:
            chains = min(self.conn.concurrency, len(pending))
            body = []
            for n, i in enumerate(pending):
                enc = requests[i].encoded(str(i))
                if n >= chains:  # chain k: requests k, k+chains, k+2*chains ...
                    enc["dependsOn"] = [str(pending[n - chains])]
                body.append(enc)
            resp = self.send(
                "POST", "$batch", json_body={"requests": body}, mailbox=mailbox, slots=chains
            )
            if resp.status_code >= 400:
                raise TargetError(f"Graph $batch: {_error(resp)}")
            got = {str(r.get("id")): r for r in resp.json().get("responses", [])}
            again: list[int] = []
            asked: list[float] = []  # Retry-After seconds of the throttled ones
            throttled = False
            for i in pending:
                r = got.get(str(i))
                if r is None:
                    answers[i] = SubResponse(0, {"error": {"code": "missing", "message": ""}})
                    continue
                status = int(r.get("status", 0))
                hdrs = {str(k).lower(): str(v) for k, v in (r.get("headers") or {}).items()}
                if status in RETRIED or status == 424:
                    again.append(i)
                    if status != 424:
                        throttled = True
                        try:
                            asked.append(float(hdrs.get("retry-after", "")))
                        except ValueError:
                            pass
                answers[i] = SubResponse(status, r.get("body"), hdrs)
            if not again:
                return
            if throttled:
                attempt += 1
                wait = str(max(asked)) if asked else None
                if not self._wait(f"$batch x{len(again)} ({mailbox})", attempt, wait):
                    return  # those keep their 429/503 answer: failed now, retried next run
            # else: only requests that followed a failed one in their chain (424): they
            # were never tried, so they go again at once.
            pending = again

    def close(self) -> None:
        self.http.close()
        self.tokens.close()


def split(indexes: list[int], requests: list[SubRequest], count: int) -> list[list[int]]:
    """Consecutive parts of at most ``count`` requests and 4 MB (a single bigger
    request still goes alone: Graph then refuses it, for that request only)."""
    parts: list[list[int]] = []
    cur: list[int] = []
    total = _BATCH_MARGIN
    limit = MAX_REQUEST_BYTES
    for i in indexes:
        n = requests[i].size()
        if cur and (len(cur) >= count or total + n > limit):
            parts.append(cur)
            cur, total = [], _BATCH_MARGIN
        cur.append(i)
        total += n
    if cur:
        parts.append(cur)
    return parts


def _error(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        body = None
    return SubResponse(resp.status_code, body).error()


def _short(path: str) -> str:
    return urlsplit(path).path[-120:]


def _why(err: Exception) -> str:
    text = str(err)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return "TLS certificate not trusted (set ca_file)"
    if isinstance(err, httpx.ConnectError):
        return "cannot connect"
    if isinstance(err, httpx.TimeoutException):
        return "timed out"
    return type(err).__name__
