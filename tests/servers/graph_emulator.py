"""A small Microsoft Graph emulator for tests: sign-in (OpenID configuration + OAuth 2
token endpoint) and the JSON REST calls the Graph target makes, over HTTPS on 127.0.0.1.

The real ``msal`` library signs in against it (client secret, or a certificate: the
client assertion JWT's signature is verified with the registered certificate's public
key, and its thumbprint header must match); the real ``httpx`` client talks to it.

Implemented (anything else answers 400 ``NotImplementedInEmulator``):

* ``GET /{tenant}/v2.0/.well-known/openid-configuration``, ``POST /{tenant}/oauth2/v2.0/token``
* ``GET /v1.0/users/{u}``; ``GET|POST users/{u}/contactFolders`` (``$filter=displayName eq``)
* ``GET|POST users/{u}/contactFolders/{f}/contacts`` (``$select``, ``$top``/``$skip`` paging,
  ``$expand=singleValueExtendedProperties($filter=id eq '..' or ..)``)
* ``GET|PATCH|DELETE .../contacts/{c}``, ``GET|PUT|DELETE .../contacts/{c}/photo/$value``
* ``GET .../contacts/delta`` (``Prefer: odata.maxpagesize``, ``$skiptoken`` pages,
  ``$deltatoken`` links; :meth:`GraphEmulator.expire_delta_tokens` makes them 410)
* ``GET groups?$filter=mail eq ..``, ``GET groups/{g}/members/microsoft.graph.user``
* ``POST /v1.0/$batch``: at most 20 requests (else 400), ``dependsOn`` honoured (424 when
  a dependency failed), base64 bodies for non-JSON content types.

Limits enforced as Exchange Online does: a request body over 4 MB is refused (413);
more than 4 requests at once against one mailbox (parallel HTTP requests plus the
independent requests of a batch running together) get 429 (recorded in
:attr:`~GraphEmulator.violations`). Faults: :meth:`~GraphEmulator.inject` answers the
next N requests (HTTP level or inside batches) with 429/503, with or without
``Retry-After``.

State is in memory, per mailbox: folders and contacts (properties as sent, extended
properties, photo bytes). Tests assert on it (:meth:`~GraphEmulator.contacts`); the
``edit``/``remove``/``add_own`` helpers make changes as a person in Outlook would.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import ssl
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes

MAX_BODY = 4 * 1024 * 1024
MAILBOX_CONCURRENCY = 4
BATCH_LIMIT = 20
CONTACT_PROPERTIES = frozenset(
    {
        "displayName",
        "givenName",
        "surname",
        "middleName",
        "initials",
        "nickName",
        "title",
        "fileAs",
        "generation",
        "companyName",
        "department",
        "jobTitle",
        "officeLocation",
        "manager",
        "assistantName",
        "profession",
        "businessHomePage",
        "mobilePhone",
        "personalNotes",
        "emailAddresses",
        "imAddresses",
        "businessPhones",
        "homePhones",
        "categories",
        "businessAddress",
        "homeAddress",
        "otherAddress",
        "birthday",
    }
)
_PROP_ID = re.compile(r"^String \{[0-9a-fA-F-]{36}\} Name [A-Za-z0-9._-]+$")


class _Answer(Exception):
    def __init__(self, status: int, code: str = "", message: str = "", headers=None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


@dataclass
class Contact:
    id: str
    folder: str
    data: dict[str, Any]
    ext: dict[str, tuple[str, str]] = field(default_factory=dict)  # lower id -> (id, value)
    photo: bytes | None = None
    seq: int = 0
    change_key: str = ""


@dataclass
class Mailbox:
    user_id: str
    mail: str
    enabled: bool = True
    folders: dict[str, str] = field(default_factory=dict)  # id -> displayName
    contacts: dict[str, Contact] = field(default_factory=dict)
    tombstones: list[tuple[int, str, str]] = field(default_factory=list)  # seq, folder, id


class GraphEmulator:
    """See the module doc. ``start()`` it, read :attr:`authority_url`/:attr:`graph_url`."""

    def __init__(
        self,
        tls: dict[str, str],
        *,
        tenant: str = "contoso-tenant",
        client_id: str = "11111111-2222-3333-4444-555555555555",
        client_secret: str = "s3cret-Graph-App",
        certificate: str | None = None,
        roles: tuple[str, ...] = ("Contacts.ReadWrite", "User.Read.All", "GroupMember.Read.All"),
        token_ttl: int = 3600,
    ):
        self.tls = tls
        self.tenant = tenant
        self.client_id = client_id
        self.client_secret = client_secret
        self.certificate_pem = certificate
        self.roles = list(roles)
        self.token_ttl = token_ttl
        self._signing_key = uuid.uuid4().hex
        self._token_generation = 0
        self.lock = threading.RLock()
        self.mailboxes: dict[str, Mailbox] = {}  # lower mail / user id -> mailbox
        self.groups: dict[str, tuple[str, list[str]]] = {}  # id -> (mail, member user ids)
        self._seq = itertools.count(1)
        self.seq = 0
        self._ids = itertools.count(1)
        self.delta_tokens: dict[str, tuple[str, str, int, int]] = {}  # tok -> box, folder, seq, gen
        self.skip_tokens: dict[str, tuple[list[dict[str, Any]], str]] = {}
        self.delta_generation = 0
        self.in_flight: Counter = Counter()
        self.max_in_flight: Counter = Counter()
        self.violations: list[tuple[str, int]] = []
        self.injected: list[tuple[str, int, str | None]] = []  # where, status, retry-after
        self.graph_requests = 0
        """HTTP requests to /v1.0 (a $batch counts once)."""
        self.token_requests = 0
        self.login_requests = 0
        self.operations: Counter = Counter()
        """Requests by ``METHOD kind`` (inner requests of batches included)."""
        self.batch_sizes: list[int] = []
        self.largest_body = 0
        self.auth_headers_seen: set[str] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------- lifecycle
    def start(self) -> GraphEmulator:
        emu = self

        class Handler(_Handler):
            emulator = emu

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.tls["cert"], self.tls["key"])
        self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def authority_url(self) -> str:
        return self.base

    @property
    def graph_url(self) -> str:
        return f"{self.base}/v1.0"

    # ------------------------------------------------------- set-up / faults
    def add_mailbox(self, mail: str, *, enabled: bool = True) -> str:
        """A user with (or, ``enabled=False``, without) a mailbox; returns the user id."""
        with self.lock:
            uid = str(uuid.uuid4())
            box = Mailbox(uid, mail, enabled)
            self.mailboxes[mail.lower()] = box
            self.mailboxes[uid] = box
            return uid

    def add_group(self, mail: str, members: list[str]) -> str:
        with self.lock:
            gid = str(uuid.uuid4())
            ids = [self.mailboxes[m.lower()].user_id for m in members]
            self.groups[gid] = (mail, ids)
            return gid

    def inject(self, status: int, count: int = 1, *, where: str = "http", retry_after=None):
        """Answer the next ``count`` Graph requests (``where="http"``) or requests inside
        a batch (``"inner"``) with ``status`` (429/503), ``Retry-After`` only if given."""
        with self.lock:
            self.injected.extend([(where, status, retry_after)] * count)

    def expire_delta_tokens(self) -> None:
        """Every delta link handed out so far answers 410 Gone from now on."""
        with self.lock:
            self.delta_generation += 1

    def expire_access_tokens(self) -> None:
        with self.lock:
            self._token_generation += 1

    # -------------------------------------------------------------- inspect
    def box(self, mailbox: str) -> Mailbox:
        return self.mailboxes[mailbox.lower()]

    def folder_id(self, mailbox: str, name: str) -> str | None:
        box = self.box(mailbox)
        return next((fid for fid, n in box.folders.items() if n == name), None)

    def contacts(self, mailbox: str, folder: str | None = None) -> list[dict[str, Any]]:
        """Contacts as stored: properties, ``id``, ``ext`` ({property name: value}),
        ``photo`` (bytes or None); ``folder`` is a display name (None: all)."""
        with self.lock:
            box = self.box(mailbox)
            fid = self.folder_id(mailbox, folder) if folder is not None else None
            if folder is not None and fid is None:
                return []
            out = []
            for c in box.contacts.values():
                if fid is not None and c.folder != fid:
                    continue
                ext = {pid.rsplit(" Name ", 1)[-1]: v for pid, v in c.ext.values()}
                out.append({**c.data, "id": c.id, "ext": ext, "photo": c.photo})
            return out

    def owned(self, mailbox: str, folder: str, tag: str = "syncd-key") -> dict[str, dict]:
        return {c["ext"][tag]: c for c in self.contacts(mailbox, folder) if tag in c["ext"]}

    # ------------------------------------------------ changes made by a person
    def _touch(self, c: Contact) -> None:
        c.seq = next(self._seq)
        self.seq = c.seq
        c.change_key = uuid.uuid4().hex[:16]

    def edit(self, mailbox: str, contact_id: str, **changes: Any) -> None:
        with self.lock:
            c = self.box(mailbox).contacts[contact_id]
            for k, v in changes.items():
                if v is None:
                    c.data.pop(k, None)
                else:
                    c.data[k] = v
            self._touch(c)

    def remove(self, mailbox: str, contact_id: str) -> None:
        with self.lock:
            box = self.box(mailbox)
            c = box.contacts.pop(contact_id)
            seq = next(self._seq)
            self.seq = seq
            box.tombstones.append((seq, c.folder, c.id))

    def add_own(self, mailbox: str, folder: str, data: dict[str, Any]) -> str:
        """A contact a person made by hand (no syncd property)."""
        with self.lock:
            box = self.box(mailbox)
            fid = self.folder_id(mailbox, folder) or self._new_folder(box, folder)
            c = Contact(self._new_id("c"), fid, dict(data))
            self._touch(c)
            box.contacts[c.id] = c
            return c.id

    # --------------------------------------------------------------- tokens
    def _token_endpoint(self) -> str:
        return f"{self.base}/{self.tenant}/oauth2/v2.0/token"

    def openid_configuration(self) -> dict[str, Any]:
        t = f"{self.base}/{self.tenant}"
        return {
            "issuer": f"{t}/v2.0",
            "authorization_endpoint": f"{t}/oauth2/v2.0/authorize",
            "token_endpoint": self._token_endpoint(),
            "device_authorization_endpoint": f"{t}/oauth2/v2.0/devicecode",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
        }

    def issue_token(self, form: dict[str, str], tenant: str) -> tuple[int, dict[str, Any]]:
        """The token endpoint: client credentials with a secret or a signed assertion."""
        self.token_requests += 1
        bad = {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client."}
        if tenant != self.tenant:
            return 400, {
                "error": "invalid_request",
                "error_description": "AADSTS90002: Tenant not found.",
            }
        if (
            form.get("grant_type") != "client_credentials"
            or form.get("client_id") != self.client_id
        ):
            return 400, {
                "error": "unauthorized_client",
                "error_description": "AADSTS700016: unknown app",
            }
        if not form.get("scope", "").endswith("/.default"):
            return 400, {"error": "invalid_scope", "error_description": "AADSTS1002012: .default"}
        if "client_assertion" in form:
            if not self._assertion_ok(form["client_assertion"]):
                return 401, bad
        elif form.get("client_secret") != self.client_secret or not self.client_secret:
            return 401, bad
        now = int(time.time())
        claims = {
            "aud": form["scope"].rsplit("/.default", 1)[0],
            "iss": f"{self.base}/{self.tenant}/",
            "tid": self.tenant,
            "appid": self.client_id,
            "roles": list(self.roles),
            "gen": self._token_generation,
            "iat": now,
            "exp": now + self.token_ttl,
        }
        token = jwt.encode(claims, self._signing_key, algorithm="HS256")
        return 200, {"token_type": "Bearer", "expires_in": self.token_ttl, "access_token": token}

    def _assertion_ok(self, assertion: str) -> bool:
        if not self.certificate_pem:
            return False
        cert = x509.load_pem_x509_certificate(self.certificate_pem.encode())
        header = jwt.get_unverified_header(assertion)
        sha256 = base64.urlsafe_b64encode(cert.fingerprint(hashes.SHA256())).rstrip(b"=").decode()
        sha1 = base64.urlsafe_b64encode(cert.fingerprint(hashes.SHA1())).rstrip(b"=").decode()
        # msal keeps the base64 padding; compare without it
        given256 = str(header.get("x5t#S256", "")).rstrip("=")
        given1 = str(header.get("x5t", "")).rstrip("=")
        if given256 != sha256 and given1 != sha1:
            return False
        try:
            claims = jwt.decode(
                assertion,
                cert.public_key(),
                algorithms=["PS256", "RS256"],
                audience=self._token_endpoint(),
                issuer=self.client_id,
            )
        except jwt.PyJWTError:
            return False
        return claims.get("sub") == self.client_id

    def _authorize(self, header: str | None) -> list[str]:
        if not header or not header.startswith("Bearer "):
            raise _Answer(401, "InvalidAuthenticationToken", "Access token is empty.")
        self.auth_headers_seen.add(header)
        try:
            claims = jwt.decode(
                header[7:], self._signing_key, algorithms=["HS256"], options={"verify_aud": False}
            )
        except jwt.PyJWTError:
            raise _Answer(
                401, "InvalidAuthenticationToken", "Access token validation failure."
            ) from None
        if claims.get("gen") != self._token_generation:
            raise _Answer(401, "InvalidAuthenticationToken", "Lifetime validation failed.")
        return list(claims.get("roles") or [])

    # ------------------------------------------------------------- dispatch
    def _new_id(self, prefix: str) -> str:
        # Graph ids are long base64 strings; the exact form does not matter to clients.
        return f"AAMk{prefix}{next(self._ids):06d}" + uuid.uuid4().hex

    def _new_folder(self, box: Mailbox, name: str) -> str:
        fid = self._new_id("f")
        box.folders[fid] = name
        return fid

    def _mailbox_of(self, path: str) -> str | None:
        m = re.match(r"^users/([^/?]+)", path)
        if not m:
            return None
        return unquote(m.group(1)).lower()

    def _check_fault(self, where: str) -> None:
        with self.lock:
            for n, (w, status, ra) in enumerate(self.injected):
                if w == where:
                    del self.injected[n]
                    headers = {"Retry-After": str(ra)} if ra is not None else {}
                    raise _Answer(
                        status,
                        "TooManyRequests" if status == 429 else "ServiceUnavailable",
                        "injected",
                        headers,
                    )

    def _enter(self, mailbox: str | None, n: int) -> int:
        """Count n requests running against mailbox; returns how many may run."""
        if mailbox is None:
            return n
        with self.lock:
            box = self.mailboxes.get(mailbox)
            key = box.user_id if box else mailbox
            others = self.in_flight[key]
            self.in_flight[key] += n
            self.max_in_flight[key] = max(self.max_in_flight[key], self.in_flight[key])
            if others + n > MAILBOX_CONCURRENCY:
                self.violations.append((mailbox, others + n))
            return max(0, MAILBOX_CONCURRENCY - others)

    def _leave(self, mailbox: str | None, n: int) -> None:
        if mailbox is None:
            return
        with self.lock:
            box = self.mailboxes.get(mailbox)
            self.in_flight[box.user_id if box else mailbox] -= n

    def http(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Serve one HTTP request."""
        parts = urlsplit(target)
        path = parts.path
        if len(body) > MAX_BODY:
            return _json(413, _Answer(413, "RequestEntityTooLarge", "over 4 MB").body())
        self.largest_body = max(self.largest_body, len(body))
        m = re.match(
            r"^/([^/]+)/(v2\.0/\.well-known/openid-configuration|oauth2/v2\.0/token)$", path
        )
        if m:
            self.login_requests += 1
            if m.group(2).startswith("v2.0"):
                if m.group(1) != self.tenant:
                    return _json(400, {"error": "invalid_tenant"})
                return _json(200, self.openid_configuration())
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            status, answer = self.issue_token(form, m.group(1))
            return _json(status, answer)
        if not path.startswith("/v1.0/"):
            return _json(404, _Answer(404, "NotFound", "no such endpoint").body())
        self.graph_requests += 1
        rel = path[len("/v1.0/") :]
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            roles = self._authorize(headers.get("authorization"))
            self._check_fault("http")
            if rel == "$batch" and method == "POST":
                return _json(200, self._batch(json.loads(body or b"{}"), roles))
            mailbox = self._mailbox_of(rel)
            allowed = self._enter(mailbox, 1)
            try:
                if allowed < 1:
                    raise _Answer(
                        429,
                        "ApplicationThrottled",
                        "MailboxConcurrency limit",
                        {"Retry-After": "1"},
                    )
                ctype = headers.get("content-type", "application/json")
                status, out_headers, payload = self._route(
                    method, rel, query, headers, body, ctype, roles
                )
            finally:
                self._leave(mailbox, 1)
        except _Answer as ans:
            return _json(ans.status, ans.body(), ans.headers)
        if isinstance(payload, bytes):
            return status, out_headers, payload
        return (
            _json(status, payload, out_headers)
            if payload is not None
            else (status, out_headers, b"")
        )

    def _batch(self, req: dict[str, Any], roles: list[str]) -> dict[str, Any]:
        items = req.get("requests")
        if not isinstance(items, list) or not items:
            raise _Answer(400, "BadRequest", "Invalid batch payload.")
        if len(items) > BATCH_LIMIT:
            raise _Answer(
                400, "BadRequest", f"Too many requests in the batch (limit {BATCH_LIMIT})."
            )
        self.batch_sizes.append(len(items))
        by_id = {str(r.get("id")): r for r in items}
        if len(by_id) != len(items):
            raise _Answer(400, "BadRequest", "Duplicate request id.")
        done: dict[str, dict[str, Any]] = {}
        # Waves: requests whose dependencies are done run together (in parallel, as
        # Graph runs them), so each wave counts against the mailbox concurrency.
        remaining = list(items)
        while remaining:
            wave = [r for r in remaining if all(str(d) in done for d in r.get("dependsOn") or [])]
            if not wave:
                raise _Answer(400, "BadRequest", "dependsOn cycle or unknown id")
            per_box: Counter = Counter(self._mailbox_of(r.get("url", "").lstrip("/")) for r in wave)
            allowed = {mb: self._enter(mb, n) for mb, n in per_box.items()}
            try:
                for r in wave:
                    remaining.remove(r)
                    done[str(r["id"])] = self._inner(r, done, allowed, roles)
            finally:
                for mb, n in per_box.items():
                    self._leave(mb, n)
        return {"responses": [done[str(r["id"])] for r in items]}

    def _inner(self, r: dict, done: dict, allowed: dict, roles: list[str]) -> dict[str, Any]:
        rid = str(r["id"])
        if any(not (200 <= done[str(d)]["status"] < 300) for d in r.get("dependsOn") or []):
            return {"id": rid, "status": 424, "body": _Answer(424, "FailedDependency", "").body()}
        url = str(r.get("url", "")).lstrip("/")
        mailbox = self._mailbox_of(url)
        key = mailbox
        if mailbox is not None:
            if allowed.get(key, 1) <= 0:
                return {
                    "id": rid,
                    "status": 429,
                    "headers": {"Retry-After": "1"},
                    "body": _Answer(429, "ApplicationThrottled", "MailboxConcurrency limit").body(),
                }
            allowed[key] -= 1
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        hdrs = {str(k).lower(): str(v) for k, v in (r.get("headers") or {}).items()}
        ctype = hdrs.get("content-type", "application/json")
        raw = r.get("body")
        if raw is None:
            body = b""
        elif ctype.startswith("application/json"):
            body = json.dumps(raw).encode()
        else:
            body = base64.b64decode(raw)
        try:
            self._check_fault("inner")
            status, out_headers, payload = self._route(
                str(r.get("method", "GET")).upper(), parts.path, query, hdrs, body, ctype, roles
            )
        except _Answer as ans:
            return {"id": rid, "status": ans.status, "headers": ans.headers, "body": ans.body()}
        out: dict[str, Any] = {"id": rid, "status": status, "headers": out_headers}
        if isinstance(payload, bytes):
            out["body"] = base64.b64encode(payload).decode()
        elif payload is not None:
            out["body"] = payload
        return out

    # --------------------------------------------------------------- routes
    def _route(self, method, rel, query, headers, body, ctype, roles):
        self.operations[f"{method} {_kind(rel)}"] += 1
        write = method in ("POST", "PATCH", "PUT", "DELETE")
        with self.lock:
            if rel.startswith("groups"):
                return self._groups(rel, query)
            m = re.match(r"^users/([^/]+)(/.*)?$", rel)
            if not m:
                raise _Answer(400, "NotImplementedInEmulator", f"{method} {rel}")
            if write and "Contacts.ReadWrite" not in roles:
                raise _Answer(
                    403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
                )
            if not write and not ({"Contacts.ReadWrite", "Contacts.Read"} & set(roles)):
                raise _Answer(
                    403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
                )
            box = self.mailboxes.get(unquote(m.group(1)).lower())
            if box is None:
                raise _Answer(
                    404,
                    "ErrorInvalidUser",
                    f"The requested user '{unquote(m.group(1))}' is invalid.",
                )
            rest = m.group(2) or ""
            if rest == "" and method == "GET":
                return 200, {}, {"id": box.user_id, "mail": box.mail, "userPrincipalName": box.mail}
            if not box.enabled:
                raise _Answer(
                    404,
                    "MailboxNotEnabledForRESTAPI",
                    "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
                )
            if rest == "/contactFolders":
                return self._folders(box, method, query, body)
            m2 = re.match(
                r"^/contactFolders/([^/]+)(/contacts(?:/([^/]+))?(/photo/\$value)?)?$", rest
            )
            if not m2:
                raise _Answer(400, "NotImplementedInEmulator", f"{method} {rel}")
            fid = m2.group(1)
            if fid not in box.folders:
                raise _Answer(
                    404, "ErrorItemNotFound", "The specified object was not found in the store."
                )
            if m2.group(2) is None:
                if method != "GET":
                    raise _Answer(400, "NotImplementedInEmulator", f"{method} {rel}")
                return 200, {}, {"id": fid, "displayName": box.folders[fid]}
            cid = m2.group(3)
            if cid is None:
                if method == "GET":
                    return 200, {}, self._list(box, fid, rel, query)
                if method == "POST":
                    return 201, {}, self._create(box, fid, _load(body))
                raise _Answer(405, "MethodNotAllowed", method)
            if cid == "delta":
                if method != "GET":
                    raise _Answer(405, "MethodNotAllowed", method)
                return 200, {}, self._delta(box, fid, rel, query, headers)
            c = box.contacts.get(cid)
            if c is None or c.folder != fid:
                raise _Answer(
                    404, "ErrorItemNotFound", "The specified object was not found in the store."
                )
            if m2.group(4):
                return self._photo(c, method, body, ctype)
            if method == "GET":
                return 200, {}, self._render(c, query)
            if method == "PATCH":
                return 200, {}, self._patch(c, _load(body))
            if method == "DELETE":
                del box.contacts[cid]
                seq = next(self._seq)
                self.seq = seq
                box.tombstones.append((seq, fid, cid))
                return 204, {}, None
            raise _Answer(405, "MethodNotAllowed", method)

    def _groups(self, rel, query):
        if rel == "groups":
            f = query.get("$filter", "")
            m = re.match(r"^mail eq '(.*)'$", f)
            if not m:
                raise _Answer(400, "NotImplementedInEmulator", f"groups $filter {f!r}")
            mail = m.group(1).replace("''", "'").lower()
            return (
                200,
                {},
                {"value": [{"id": g} for g, (gm, _) in self.groups.items() if gm.lower() == mail]},
            )
        m = re.match(r"^groups/([^/]+)/members/microsoft\.graph\.user$", rel)
        if not m or m.group(1) not in self.groups:
            raise _Answer(404, "Request_ResourceNotFound", "group not found")
        users = [self.mailboxes[u] for u in self.groups[m.group(1)][1]]
        value = [
            {"id": b.user_id, "mail": b.mail if b.enabled else None, "userPrincipalName": b.mail}
            for b in users
        ]
        return 200, {}, {"value": value}

    def _folders(self, box, method, query, body):
        if method == "POST":
            name = _load(body).get("displayName")
            if not name:
                raise _Answer(400, "ErrorInvalidArgument", "displayName required")
            if name in box.folders.values():
                raise _Answer(
                    409, "ErrorFolderExists", "A folder with the specified name already exists."
                )
            fid = self._new_folder(box, name)
            return 201, {}, {"id": fid, "displayName": name}
        if method != "GET":
            raise _Answer(405, "MethodNotAllowed", method)
        value = [{"id": f, "displayName": n} for f, n in box.folders.items()]
        flt = query.get("$filter")
        if flt:
            m = re.match(r"^displayName eq '(.*)'$", flt)
            if not m:
                raise _Answer(400, "NotImplementedInEmulator", f"$filter {flt!r}")
            want = m.group(1).replace("''", "'")
            value = [v for v in value if v["displayName"] == want]
        if "$top" in query:
            value = value[: int(query["$top"])]
        return 200, {}, {"value": value}

    def _validate(self, data: dict[str, Any]) -> None:
        for k, v in data.items():
            if k == "singleValueExtendedProperties":
                for p in v:
                    if not _PROP_ID.match(str(p.get("id", ""))) or not isinstance(
                        p.get("value"), str
                    ):
                        raise _Answer(400, "ErrorInvalidProperty", "bad extended property")
                continue
            if k not in CONTACT_PROPERTIES:
                raise _Answer(
                    400,
                    "RequestBodyRead",
                    f"The property '{k}' does not exist on type 'microsoft.graph.contact'.",
                )
            if k == "emailAddresses" and v is not None and len(v) > 3:
                raise _Answer(400, "ErrorInvalidArgument", "At most 3 email addresses.")

    def _create(self, box: Mailbox, fid: str, data: dict[str, Any]) -> dict[str, Any]:
        self._validate(data)
        ext = data.pop("singleValueExtendedProperties", [])
        c = Contact(self._new_id("c"), fid, {k: v for k, v in data.items() if v is not None})
        for p in ext:
            c.ext[p["id"].lower()] = (p["id"], p["value"])
        self._touch(c)
        box.contacts[c.id] = c
        return self._render(c, {})

    def _patch(self, c: Contact, data: dict[str, Any]) -> dict[str, Any]:
        self._validate(data)
        for p in data.pop("singleValueExtendedProperties", []):
            c.ext[p["id"].lower()] = (p["id"], p["value"])
        for k, v in data.items():
            if v is None:
                c.data.pop(k, None)
            else:
                c.data[k] = v
        self._touch(c)
        return self._render(c, {})

    def _photo(self, c: Contact, method, body, ctype):
        if method == "GET":
            if c.photo is None:
                raise _Answer(404, "ErrorItemNotFound", "no photo")
            return 200, {"Content-Type": "image/jpeg"}, c.photo
        if method == "PUT":
            if not ctype.startswith("image/"):
                raise _Answer(400, "ErrorInvalidArgument", f"photo content type {ctype}")
            if not body:
                raise _Answer(400, "ErrorInvalidArgument", "empty photo")
            c.photo = bytes(body)
            self._touch(c)
            return 200, {}, None
        if method == "DELETE":
            if c.photo is None:
                raise _Answer(404, "ErrorItemNotFound", "no photo")
            c.photo = None
            self._touch(c)
            return 204, {}, None
        raise _Answer(405, "MethodNotAllowed", method)

    def _render(self, c: Contact, query: dict[str, str]) -> dict[str, Any]:
        sel = query.get("$select")
        data = {"id": c.id, "changeKey": c.change_key}
        if sel:
            names = set(sel.split(","))
            data.update({k: v for k, v in c.data.items() if k in names})
        else:
            data.update(c.data)
        exp = query.get("$expand", "")
        if exp.startswith("singleValueExtendedProperties"):
            wanted = {w.lower() for w in re.findall(r"id eq '([^']*)'", exp)}
            data["singleValueExtendedProperties"] = [
                {"id": pid, "value": v} for low, (pid, v) in c.ext.items() if low in wanted
            ]
        return data

    def _list(self, box, fid, rel, query):
        top = min(int(query.get("$top", 10)), 1000)
        skip = int(query.get("$skip", 0))
        items = sorted((c for c in box.contacts.values() if c.folder == fid), key=lambda c: c.id)
        page = items[skip : skip + top]
        out: dict[str, Any] = {"value": [self._render(c, query) for c in page]}
        if skip + top < len(items):
            q = {**query, "$skip": str(skip + top)}
            out["@odata.nextLink"] = f"{self.graph_url}/{rel}?{urlencode(q)}"
        return out

    def _delta(self, box, fid, rel, query, headers):
        size = 10
        m = re.search(r"odata\.maxpagesize=(\d+)", headers.get("prefer", ""))
        if m:
            size = min(int(m.group(1)), 1000)
        if "$skiptoken" in query:
            got = self.skip_tokens.pop(query["$skiptoken"], None)
            if got is None:
                raise _Answer(410, "SyncStateNotFound", "The sync state is not found.")
            items, final = got
        else:
            since = None
            if "$deltatoken" in query:
                tok = self.delta_tokens.get(query["$deltatoken"])
                if tok is None or tok[3] != self.delta_generation or tok[1] != fid:
                    raise _Answer(
                        410, "SyncStateNotFound", "The sync state generation is not found."
                    )
                since = tok[2]
                select = self.delta_tokens.get(query["$deltatoken"] + ":select")  # type: ignore[arg-type]
                query = {**query, "$select": select} if select else query
            changed = [
                c
                for c in box.contacts.values()
                if c.folder == fid and (since is None or c.seq > since)
            ]
            changed.sort(key=lambda c: c.seq)
            items = [self._render(c, query) for c in changed]
            if since is not None:
                items += [
                    {"id": cid, "@removed": {"reason": "deleted"}}
                    for seq, f, cid in box.tombstones
                    if f == fid and seq > since
                ]
            final = uuid.uuid4().hex
            self.delta_tokens[final] = (box.user_id, fid, self.seq, self.delta_generation)
            if query.get("$select"):
                self.delta_tokens[final + ":select"] = query["$select"]  # type: ignore[assignment]
        page, rest = items[:size], items[size:]
        out: dict[str, Any] = {"value": page}
        base = f"{self.graph_url}/users/{box.user_id}/contactFolders/{fid}/contacts/delta"
        if rest:
            st = uuid.uuid4().hex
            self.skip_tokens[st] = (rest, final)
            out["@odata.nextLink"] = f"{base}?$skiptoken={st}"
        else:
            out["@odata.deltaLink"] = f"{base}?$deltatoken={final}"
        return out


def _kind(rel: str) -> str:
    """A route's shape for counting: ids replaced by ``*``."""
    path = urlsplit(rel).path
    parts = []
    for p in path.split("/"):
        parts.append("*" if (p.startswith("AAMk") or "@" in unquote(p) or len(p) >= 32) else p)
    return "/".join(parts)


def _load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise _Answer(400, "BadRequest", "Unable to read JSON request payload.") from None
    if not isinstance(data, dict):
        raise _Answer(400, "BadRequest", "JSON object expected.")
    return data


def _json(
    status: int, payload: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps(payload).encode(),
    )


class _Handler(BaseHTTPRequestHandler):
    emulator: GraphEmulator
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            # Refuse without reading megabytes we would drop anyway.
            self.rfile.read(length)
            status, headers, body = _json(
                413, _Answer(413, "RequestEntityTooLarge", "over 4 MB").body()
            )
        else:
            raw = self.rfile.read(length) if length else b""
            hdrs = {k.lower(): v for k, v in self.headers.items()}
            status, headers, body = self.emulator.http(self.command, self.path, hdrs, raw)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve


def thumbprint_sha1(cert_pem: str) -> str:
    """Hex SHA-1 thumbprint of a PEM certificate (as the Azure portal shows it)."""
    return (
        x509.load_pem_x509_certificate(cert_pem.encode()).fingerprint(hashes.SHA1()).hex().upper()
    )


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


__all__ = ["GraphEmulator", "Path", "thumbprint_sha1"]
