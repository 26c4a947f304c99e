"""A small WebDAV/CardDAV client on httpx + lxml: exactly what the target needs.

Discovery (RFC 6764 ``/.well-known/carddav``, ``current-user-principal``,
``addressbook-home-set``), extended MKCOL (RFC 5689), the listing of an address book by
``sync-collection`` (RFC 6578, PROPFIND fallback), ``addressbook-multiget`` (RFC 6352)
and conditional PUT/GET/DELETE.

Errors: a server that cannot be reached, refuses TLS or the credentials raises
:class:`syncd.errors.ConnectionFailed`; a server that answers but cannot be used (no
address book, no rights) raises :class:`syncd.errors.TargetError`. Both are one line and
never contain the password. Single requests return their ``httpx.Response`` for the
caller to judge.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import re
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit
from xml.sax.saxutils import escape as xml_escape

import httpx
from lxml import etree

from syncd.connectors.carddav.config import CardDavConnection, is_loopback
from syncd.errors import ConnectionFailed, TargetError

log = logging.getLogger(__name__)

DAV = "DAV:"
CARD = "urn:ietf:params:xml:ns:carddav"
_NSDECL = f'xmlns:d="{DAV}" xmlns:c="{CARD}"'
_XML_HEAD = '<?xml version="1.0" encoding="utf-8"?>\n'
# No entities, no network, no huge trees: answers are data from a server we do not trust.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
USER_AGENT = "syncd-carddav/0.1"


def _tag(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


@dataclass
class DavResponse:
    """One ``<response>`` of a multistatus: its href (path, as sent), status, and the
    properties that came with a 200 propstat (Clark notation tag -> element)."""

    href: str
    status: int | None = None
    props: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return unquote(urlsplit(self.href).path)

    def text(self, ns: str, name: str) -> str | None:
        el = self.props.get(_tag(ns, name))
        return None if el is None else (el.text or "")

    def href_of(self, ns: str, name: str) -> str | None:
        el = self.props.get(_tag(ns, name))
        if el is None:
            return None
        inner = el.find(_tag(DAV, "href"))
        return inner.text.strip() if inner is not None and inner.text else None

    def is_addressbook(self) -> bool:
        rt = self.props.get(_tag(DAV, "resourcetype"))
        return rt is not None and rt.find(_tag(CARD, "addressbook")) is not None

    def is_collection(self) -> bool:
        rt = self.props.get(_tag(DAV, "resourcetype"))
        return rt is not None and rt.find(_tag(DAV, "collection")) is not None


def strong_etag(tag: str | None) -> str | None:
    """The ETag if it can be used in If-Match; None for a missing or weak one (``W/``:
    If-Match compares strongly, so a weak ETag would never match)."""
    if not tag:
        return None
    tag = tag.strip()
    return None if tag.startswith("W/") else tag


def _status_code(text: str | None) -> int | None:
    # "HTTP/1.1 404 Not Found"
    if not text:
        return None
    parts = text.split()
    try:
        return int(parts[1])
    except (IndexError, ValueError):
        return None


def parse_multistatus(content: bytes) -> tuple[list[DavResponse], str | None]:
    """The responses and the sync-token (if any) of a 207 body. Raises ValueError."""
    try:
        root = etree.fromstring(content, parser=_PARSER)
    except etree.XMLSyntaxError as err:
        raise ValueError(f"the server sent XML that does not parse: {err}") from None
    if root is None or root.tag != _tag(DAV, "multistatus"):
        raise ValueError("the server's answer is not a DAV multistatus")
    out = []
    for resp in root.iterfind(_tag(DAV, "response")):
        href = (resp.findtext(_tag(DAV, "href")) or "").strip()
        item = DavResponse(href=href, status=_status_code(resp.findtext(_tag(DAV, "status"))))
        for ps in resp.iterfind(_tag(DAV, "propstat")):
            if _status_code(ps.findtext(_tag(DAV, "status"))) != 200:
                continue
            prop = ps.find(_tag(DAV, "prop"))
            if prop is not None:
                for p in prop:
                    item.props[p.tag] = p
        out.append(item)
    token = root.findtext(_tag(DAV, "sync-token"))
    return out, token.strip() if token else None


def _norm(path: str) -> str:
    """A path with runs of '/' collapsed (servers normalise '//' away in their hrefs)."""
    return re.sub(r"/{2,}", "/", path)


def _propfind_body(props: list[str]) -> str:
    return f"{_XML_HEAD}<d:propfind {_NSDECL}><d:prop>{''.join(props)}</d:prop></d:propfind>"


_DISCOVERY_PROPS = _propfind_body(
    [
        "<d:resourcetype/>",
        "<d:displayname/>",
        "<d:current-user-principal/>",
        "<c:addressbook-home-set/>",
    ]
)
_LIST_PROPS = _propfind_body(["<d:resourcetype/>", "<d:displayname/>"])
_ETAG_PROPS = _propfind_body(["<d:getetag/>", "<d:resourcetype/>"])
_SYNC_BODY = (
    f"{_XML_HEAD}<d:sync-collection {_NSDECL}><d:sync-token/><d:sync-level>1</d:sync-level>"
    "<d:prop><d:getetag/></d:prop></d:sync-collection>"
)


def _short(resp: httpx.Response) -> str:
    """One line describing a failed answer, with a little of the server's text."""
    text = ""
    ctype = resp.headers.get("content-type", "")
    if ctype.startswith("text/plain") or ctype.startswith("text/html") or "xml" in ctype:
        try:
            text = " ".join(resp.text.split())[:160]
        except Exception:
            text = ""
    reason = resp.reason_phrase or ""
    return f"HTTP {resp.status_code} {reason}".strip() + (f": {text}" if text else "")


def _transport_problem(err: httpx.TransportError) -> str:
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate not accepted: {cause.verify_message or cause.reason}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake failed: {cause.reason or cause}"
        cause = cause.__cause__ or cause.__context__
    text = str(err)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "TLS certificate not accepted: " + text.split("CERTIFICATE_VERIFY_FAILED")[-1]
    if isinstance(err, httpx.TimeoutException):
        return "timed out"
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused (nothing listens on that port?)"
    if "name or service not known" in lowered or "nodename nor servname" in lowered:
        return "unknown host name"
    return text or type(err).__name__


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def same_site(host: str, configured: str) -> bool:
    """True when a request to ``host`` may carry the credentials of ``configured``: the
    same host, or a sibling in the configured host's parent domain (iCloud answers
    contacts.icloud.com with an address book home on pNN-contacts.icloud.com). IP
    addresses must match exactly; a two-label name admits only its own subdomains."""
    host, configured = host.lower().rstrip("."), configured.lower().rstrip(".")
    if host == configured:
        return True
    if _is_ip(host) or _is_ip(configured):
        return False
    labels = configured.split(".")
    parent = labels[1:] if len(labels) >= 3 else labels
    if len(parent) == 2 and len(parent[1]) == 2 and len(parent[0]) <= 3:
        # Looks like a public suffix (co.uk, com.au, ac.jp): its "siblings" are
        # strangers. Only the configured host itself, then.
        return False
    return host.endswith("." + ".".join(parent))


_BUSY_RETRIES = 4
_MAX_BUSY_WAIT = 60.0
_LOCKED_WAIT = 0.5
"""First pause after a 423 Locked; doubled on each retry (0.5, 1, 2, 4 s)."""


def _retry_after(value: str | None, *, default: float) -> float:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date)."""
    if not value:
        return default
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        return default
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class DavClient:
    """An authenticated HTTP client for one CardDAV account. Thread-safe.

    ``stats`` counts requests by method (every hop of a redirect counts).
    """

    def __init__(
        self,
        conn: CardDavConnection,
        *,
        max_connections: int = 8,
        event_hooks: dict[str, list[Any]] | None = None,
    ):
        self.conn = conn
        self.base = conn.url if conn.url.endswith("/") else conn.url + "/"
        # As httpx spells it (IDNA, lower case), so it compares with request URLs.
        self._host = httpx.URL(self.base).host
        auth: httpx.Auth | None = None
        if conn.username:
            password = conn.password.reveal() if conn.password else ""
            if conn.auth == "digest":
                auth = httpx.DigestAuth(conn.username, password)
            else:
                auth = httpx.BasicAuth(conn.username, password)
        hooks: dict[str, list[Any]] = {"request": [self._guard], "response": []}
        for name, fns in (event_hooks or {}).items():
            hooks.setdefault(name, []).extend(fns)
        self.stats: Counter[str] = Counter()
        self.sleep: Any = time.sleep  # tests record waits instead
        self._lock = threading.Lock()
        self.http = httpx.Client(
            auth=auth,
            verify=self._ssl_context(),
            timeout=conn.timeout,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=8),
            event_hooks=hooks,
        )

    def _ssl_context(self) -> ssl.SSLContext:
        try:
            ctx = ssl.create_default_context(
                cafile=str(self.conn.ca_file) if self.conn.ca_file else None
            )
        except (OSError, ssl.SSLError) as err:  # missing, unreadable or not PEM
            reason = getattr(err, "strerror", None) or getattr(err, "reason", None) or err
            raise ConnectionFailed(
                f"CardDAV ca_file {self.conn.ca_file}: cannot load CA certificates ({reason})"
            ) from None
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if not self.conn.verify:
            log.warning(
                "TLS certificate verification is OFF for %s: anyone on the path can read "
                "the password and the contacts",
                self.conn.url,
            )
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _guard(self, request: httpx.Request) -> None:
        # Every request, redirects included: never send credentials or contacts over
        # plaintext to a host that is not loopback unless the config allows it, nor to
        # a host outside the configured server's domain (a redirect or an absolute
        # href in a server's answer must not carry the password elsewhere).
        with self._lock:
            self.stats[request.method] += 1
        url = request.url
        if url.scheme == "http" and not is_loopback(url.host) and not self.conn.allow_plaintext:
            raise ConnectionFailed(
                f"refusing plain http:// to {url.host} (redirected there?); use https:// or "
                "set allow_plaintext: true"
            )
        if not same_site(url.host, self._host):
            raise ConnectionFailed(
                f"the CardDAV server {self._host} sent syncd to another host, {url.host}; "
                "refusing to send the credentials there (set url to that server if it is "
                "the right one)"
            )

    def close(self) -> None:
        self.http.close()

    @property
    def requests(self) -> int:
        return sum(self.stats.values())

    # ------------------------------------------------------------------ requests

    def request(
        self,
        method: str,
        url: str,
        *,
        body: str | bytes | None = None,
        headers: dict[str, str] | None = None,
        follow: bool = False,
    ) -> httpx.Response:
        """Send one request. Raises ConnectionFailed when the server cannot be reached,
        the TLS handshake fails, or it answers 401. Any other status is returned."""
        hdrs = dict(headers or {})
        if isinstance(body, str):
            body = body.encode("utf-8")
            hdrs.setdefault("Content-Type", "application/xml; charset=utf-8")
        for attempt in range(1, _BUSY_RETRIES + 2):
            try:
                resp = self.http.request(
                    method, url, content=body, headers=hdrs, follow_redirects=follow
                )
            except httpx.TransportError as err:
                raise ConnectionFailed(
                    f"CardDAV server {self._where(url)}: {_transport_problem(err)}"
                ) from None
            except httpx.TooManyRedirects:
                raise ConnectionFailed(
                    f"CardDAV server {self._where(url)}: too many redirects"
                ) from None
            if resp.status_code not in (423, 429, 503) or attempt > _BUSY_RETRIES:
                break
            if resp.status_code == 503 and "retry-after" not in resp.headers:
                break  # a backend that is down, not a rate limit: fail fast
            # Rate limited (iCloud, Fastmail, a proxy): wait what the server asks (or a
            # growing pause), a bounded number of times, instead of failing the card.
            # 423 Locked: the collection is locked by a concurrent write (Xandikos
            # answers so to parallel PUTs into one address book); it clears quickly.
            default = (
                _LOCKED_WAIT * 2.0 ** (attempt - 1) if resp.status_code == 423 else 2.0**attempt
            )
            wait = _retry_after(resp.headers.get("retry-after"), default=default)
            if wait > _MAX_BUSY_WAIT:
                break
            log.warning(
                "CardDAV server %s answered HTTP %s to %s: waiting %.1fs (retry %d/%d)",
                self._where(url),
                resp.status_code,
                method,
                wait,
                attempt,
                _BUSY_RETRIES,
            )
            self.sleep(wait)
        if resp.status_code == 401:
            who = self.conn.username or "anonymous"
            raise ConnectionFailed(
                f"CardDAV server {self._where(url)} refused the credentials of {who} (HTTP 401)"
            )
        return resp

    def _where(self, url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"

    def propfind(self, url: str, body: str, depth: int) -> list[DavResponse] | None:
        """PROPFIND; None when the resource does not exist (404). Raises TargetError for
        other failures."""
        resp = self.request("PROPFIND", url, body=body, headers={"Depth": str(depth)})
        if resp.status_code == 404:
            return None
        if resp.status_code != 207:
            raise TargetError(f"PROPFIND {unquote(urlsplit(url).path)}: {_short(resp)}")
        try:
            return parse_multistatus(resp.content)[0]
        except ValueError as err:
            raise TargetError(f"PROPFIND {unquote(urlsplit(url).path)}: {err}") from None

    def _one(self, url: str, body: str) -> DavResponse | None:
        found = self.propfind(url, body, 0)
        if not found:
            return None
        want = unquote(urlsplit(url).path).rstrip("/")
        for item in found:
            if item.path.rstrip("/") == want:
                return item
        return found[0]

    # ------------------------------------------------------------------ discovery

    def discover(
        self, addressbook: str | None, *, create: bool, display_name: str | None = None
    ) -> str | None:
        """The absolute URL (ending in /) of the address book, created with extended
        MKCOL when missing and ``create`` is true (else None when missing).

        ``addressbook`` is a name (last path segment or display name) under the home set,
        or a path; None means the connection URL must be the address book itself.
        """
        start, info = self.base, None
        if urlsplit(start).path in ("", "/"):
            start, info = self._well_known(start)
        if info is None:
            info = self._one(start, _DISCOVERY_PROPS)
        if info is None:
            raise TargetError(f"{unquote(urlsplit(start).path)}: not found on the server (404)")
        if info.is_addressbook():
            if addressbook is not None and not self._matches(start, info, addressbook):
                raise TargetError(
                    f"the connection URL is the address book {info.path!r}, but the job asks "
                    f"for {addressbook!r}; point the URL at the server or drop 'addressbook'"
                )
            return start
        home = self._home(start, info)
        if addressbook is None:
            raise TargetError(
                f"{info.path} is not an address book; set the job's target.addressbook "
                "(a name or path under your address book home)"
            )
        if addressbook.startswith("/") or "/" in addressbook.strip("/"):
            # absolute ("/dav/x/") from the server root, relative ("a/b") from the home
            url = urljoin(home, quote(addressbook.rstrip("/") + "/", safe="/"))
            found = self._one(url, _LIST_PROPS)
            if found is not None:
                if not found.is_addressbook():
                    raise TargetError(f"{found.path} exists but is not an address book")
                return url
            return self._create(url, display_name or addressbook.strip("/").split("/")[-1], create)
        children = self.propfind(home, _LIST_PROPS, 1) or []
        books = [c for c in children if c.is_addressbook()]
        by_segment = [c for c in books if c.path.rstrip("/").split("/")[-1] == addressbook]
        by_name = [c for c in books if (c.text(DAV, "displayname") or "") == addressbook]
        chosen = by_segment or by_name
        if len(chosen) > 1:
            paths = ", ".join(c.path for c in chosen)
            raise TargetError(f"address book name {addressbook!r} is ambiguous: {paths}")
        if chosen:
            return urljoin(home, quote(chosen[0].path, safe="/"))
        url = urljoin(home, quote(addressbook, safe="") + "/")
        return self._create(url, display_name or addressbook, create)

    def _well_known(self, root: str) -> tuple[str, DavResponse | None]:
        """Follow /.well-known/carddav (RFC 6764): where it leads and that resource's
        discovery properties; the root itself (and None) if it leads nowhere."""
        wk = urljoin(root, "/.well-known/carddav")
        resp = self.request(
            "PROPFIND", wk, body=_DISCOVERY_PROPS, headers={"Depth": "0"}, follow=True
        )
        if resp.status_code == 207:
            final = str(resp.url)
            try:
                items, _ = parse_multistatus(resp.content)
            except ValueError:
                return final, None
            want = unquote(urlsplit(final).path).rstrip("/")
            same = [i for i in items if i.path.rstrip("/") == want]
            return final, (same[0] if same else None)
        log.debug("no /.well-known/carddav (HTTP %s): using %s", resp.status_code, root)
        return root, None

    def _home(self, start: str, info: DavResponse) -> str:
        home = info.href_of(CARD, "addressbook-home-set")
        if home:
            return urljoin(start, home)
        principal = info.href_of(DAV, "current-user-principal")
        if principal:
            purl = urljoin(start, principal)
            pinfo = self._one(purl, _DISCOVERY_PROPS)
            home = pinfo.href_of(CARD, "addressbook-home-set") if pinfo else None
            return urljoin(purl, home) if home else purl
        return start

    @staticmethod
    def _matches(url: str, info: DavResponse, name: str) -> bool:
        path = unquote(urlsplit(url).path).rstrip("/")
        return name.strip("/") in (path.split("/")[-1], path.strip("/")) or name in (
            info.text(DAV, "displayname"),
            path,
        )

    def _create(self, url: str, display_name: str, create: bool) -> str | None:
        if not create:
            return None
        name = xml_escape(display_name)
        body = (
            f"{_XML_HEAD}<d:mkcol {_NSDECL}><d:set><d:prop>"
            "<d:resourcetype><d:collection/><c:addressbook/></d:resourcetype>"
            f"<d:displayname>{name}</d:displayname>"
            "</d:prop></d:set></d:mkcol>"
        )
        resp = self.request("MKCOL", url, body=body)
        if resp.status_code not in (200, 201):
            raise TargetError(
                f"could not create the address book {unquote(urlsplit(url).path)} "
                f"(extended MKCOL): {_short(resp)}; create it by hand or check the rights"
            )
        log.info("created address book %s", unquote(urlsplit(url).path))
        return url

    # ------------------------------------------------------------------ listing

    def list_etags(self, book: str) -> tuple[dict[str, str | None], str | None, str]:
        """Every member resource of the address book: {name: etag}, the sync-token and the
        method used ("sync-collection" or "propfind"). A truncated sync-collection answer
        (507 on the collection, RFC 6578 section 3.6) is continued from its token."""
        base = _norm(unquote(urlsplit(book).path)).rstrip("/")
        out: dict[str, str | None] = {}
        token: str | None = None
        method = "sync-collection"
        for _ in range(1000):  # each round returns at least one change; 1000 is a guard
            body = (
                _SYNC_BODY.replace(
                    "<d:sync-token/>", f"<d:sync-token>{xml_escape(token)}</d:sync-token>"
                )
                if token
                else _SYNC_BODY
            )
            resp = self.request("REPORT", book, body=body, headers={"Depth": "1"})
            if resp.status_code in (400, 403, 405, 409, 415, 501) and token is None:
                log.debug("sync-collection refused (%s): listing with PROPFIND", _short(resp))
                items = self.propfind(book, _ETAG_PROPS, 1) or []
                self._merge(out, items, base)
                return out, None, "propfind"
            if resp.status_code != 207:
                raise TargetError(f"listing {unquote(urlsplit(book).path)}: {_short(resp)}")
            try:
                items, token = parse_multistatus(resp.content)
            except ValueError as err:
                raise TargetError(f"REPORT sync-collection: {err}") from None
            self._merge(out, items, base)
            truncated = any(i.status == 507 and _norm(i.path).rstrip("/") == base for i in items)
            if not truncated or not token:
                return out, token, method
        raise TargetError(f"listing {unquote(urlsplit(book).path)}: the server never finished")

    @staticmethod
    def _merge(out: dict[str, str | None], items: list[DavResponse], base: str) -> None:
        for item in items:
            path = _norm(item.path)
            if path.rstrip("/") == base or item.is_collection():
                continue
            parent, _, name = path.rpartition("/")
            if parent != base or not name:
                continue
            if item.status == 404:
                out.pop(name, None)  # removed since the token
            else:
                out[name] = strong_etag(item.text(DAV, "getetag"))

    def multiget(self, book: str, names: list[str]) -> dict[Any, Any]:
        """{name: (vCard text, etag)} for the cards that came back among ``names``, by
        addressbook-multiget in chunks of 100, plus under the key ``None`` the set of
        names the server answered 404 for (a card with another per-href status is in
        neither). Raises TargetError if the server refuses."""
        out: dict[Any, Any] = {None: set()}
        base_path = urlsplit(book).path
        for start in range(0, len(names), 100):
            chunk = names[start : start + 100]
            hrefs = "".join(f"<d:href>{base_path}{quote(n, safe='')}</d:href>" for n in chunk)
            body = (
                f"{_XML_HEAD}<c:addressbook-multiget {_NSDECL}><d:prop><d:getetag/>"
                f"<c:address-data/></d:prop>{hrefs}</c:addressbook-multiget>"
            )
            resp = self.request("REPORT", book, body=body)
            if resp.status_code != 207:
                raise TargetError(f"addressbook-multiget: {_short(resp)}")
            try:
                items, _ = parse_multistatus(resp.content)
            except ValueError as err:
                raise TargetError(f"addressbook-multiget: {err}") from None
            for item in items:
                data = item.text(CARD, "address-data")
                name = item.path.rpartition("/")[2]
                if data:
                    etag = strong_etag(item.text(DAV, "getetag"))
                    out[name] = (data, etag)
                elif item.status == 404:
                    out[None].add(name)
        return out

    def get(self, url: str) -> tuple[str, str | None] | None:
        """(text, etag) of a resource, None when it does not exist."""
        resp = self.request("GET", url)
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise TargetError(f"GET {unquote(urlsplit(url).path)}: {_short(resp)}")
        return resp.text, strong_etag(resp.headers.get("etag"))

    def put(
        self, url: str, body: str, *, if_match: str | None = None, create_only: bool = False
    ) -> httpx.Response:
        headers = {"Content-Type": "text/vcard; charset=utf-8"}
        if create_only:
            headers["If-None-Match"] = "*"
        elif if_match:
            headers["If-Match"] = if_match
        return self.request("PUT", url, body=body.encode("utf-8"), headers=headers)

    def delete(self, url: str, *, if_match: str | None = None) -> httpx.Response:
        headers = {"If-Match": if_match} if if_match else {}
        return self.request("DELETE", url, headers=headers)


short_status = _short
