"""A small EWS (Exchange Web Services) emulator for tests.

It is an HTTP server on 127.0.0.1 (random port, a thread of the test process) that
speaks real EWS SOAP to the real ``exchangelib`` client, for exactly the operations the
Exchange target uses:

GetFolder, FindFolder, CreateFolder, FindItem, GetItem, CreateItem, UpdateItem,
DeleteItem, CreateAttachment, DeleteAttachment.

Anything else is refused with a SOAP fault (``ErrorInvalidOperation``), so a target that
starts using a new operation fails loudly here instead of passing against a fake.

State lives in memory: a mailbox folder tree (root, msgfolderroot, contacts) and a public
folder tree (publicfoldersroot), items (contacts, distribution lists) kept as the XML
elements the client sent, each with an id and a change key, extended properties and
attachments. Tests assert on this stored state (:meth:`EwsEmulator.items_in`,
:meth:`EwsEmulator.item_dict`), never on what the client believes.

Authentication: HTTP Basic against one configured user/password, and NTLM through
``pyspnego``'s acceptor (a real NTLM handshake, checked against the same password; it
reads its credentials from the file named by ``$NTLM_USER_FILE``, which the emulator
sets for the test process). ``tls={"cert": .., "key": ..}`` serves https.
Counters: :attr:`~EwsEmulator.http_requests` (every HTTP request) and
:attr:`~EwsEmulator.operations` (authenticated SOAP requests by operation).

Fault injection (each for the next N requests or item changes):
:meth:`~EwsEmulator.inject_busy` (HTTP 500 + ``ErrorServerBusy`` fault with
``BackOffMilliseconds``), :meth:`~EwsEmulator.inject_unauthorized` (HTTP 401),
:meth:`~EwsEmulator.inject_conflict` (``ErrorIrresolvableConflict`` per item change),
:meth:`~EwsEmulator.inject_item_busy` (``ErrorServerBusy`` per item of a batch).
A stale ChangeKey with ``ConflictResolution="NeverOverwrite"`` is a conflict too.
:attr:`~EwsEmulator.refuse_inline_attachments` makes CreateItem refuse items that carry
attachments inline.
"""

from __future__ import annotations

import base64
import binascii
import copy
import itertools
import logging
import os
import ssl
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lxml import etree

log = logging.getLogger(__name__)

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
E = "http://schemas.microsoft.com/exchange/services/2006/errors"
NSMAP = {"s": SOAP, "m": M, "t": T}


def _m(tag: str) -> str:
    return f"{{{M}}}{tag}"


def _t(tag: str) -> str:
    return f"{{{T}}}{tag}"


# FieldURI local names whose element name differs (the collection elements).
_URI_TO_ELEMENT = {
    "EmailAddress": "EmailAddresses",
    "PhysicalAddress": "PhysicalAddresses",
    "PhoneNumber": "PhoneNumbers",
    "ImAddress": "ImAddresses",
}

# Item classes the emulator stores; anything else in CreateItem is refused per item.
_ITEM_TAGS = {"Contact": "IPM.Contact", "DistributionList": "IPM.DistList"}

IMPLEMENTED = (
    "GetFolder",
    "FindFolder",
    "CreateFolder",
    "FindItem",
    "GetItem",
    "CreateItem",
    "UpdateItem",
    "DeleteItem",
    "CreateAttachment",
    "DeleteAttachment",
)


class _Fault(Exception):
    """Answer the whole request with a SOAP fault."""

    def __init__(self, code: str, message: str, status: int = 500, back_off_ms: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.back_off_ms = back_off_ms


class _ItemError(Exception):
    """Answer one response message of a request with ResponseClass=Error."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Folder:
    id: str
    changekey: str
    parent_id: str | None
    name: str
    folder_class: str | None
    distinguished: str | None = None


@dataclass
class Attachment:
    id: str
    name: str
    content_type: str
    content: bytes
    is_contact_photo: bool


@dataclass
class Item:
    id: str
    changekey: str
    folder_id: str
    elem: Any  # lxml element <t:Contact> / <t:DistributionList> without ItemId/Attachments
    attachments: list[Attachment] = field(default_factory=list)
    seq: int = 0

    @property
    def kind(self) -> str:
        return etree.QName(self.elem).localname


def _uri_key(uri_elem: Any) -> tuple:
    """Identity of an ExtendedFieldURI (PropertyType is not part of it)."""
    a = uri_elem.attrib
    return (
        a.get("DistinguishedPropertySetId"),
        (a.get("PropertySetId") or "").lower() or None,
        (a.get("PropertyTag") or "").lower() or None,
        a.get("PropertyName"),
        a.get("PropertyId"),
    )


class EwsEmulator:
    """The emulator. ``start()`` it, point exchangelib at :attr:`url`, ``stop()`` it."""

    def __init__(
        self,
        username: str = "syncd",
        password: str = "s3cret-pw",
        mailbox: str = "sync@example.com",
        domain: str = "EXAMPLE",
        tls: dict[str, str] | None = None,
    ):
        """``tls``: ``{"cert": PEM, "key": PEM}`` to serve https instead of http."""
        self.username = username
        self.password = password
        self.mailbox = mailbox
        self.domain = domain
        self.tls = tls
        self.lock = threading.RLock()
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self.folders: dict[str, Folder] = {}
        self.items: dict[str, Item] = {}
        self.recoverable: dict[str, Item] = {}
        """Items deleted with DeleteType SoftDelete/MoveToDeletedItems (a user can get
        them back); HardDelete removes them for good."""
        self.http_requests = 0
        """Every HTTP request received, including 401s and NTLM handshake legs."""
        self.operations: Counter[str] = Counter()
        """Authenticated SOAP requests by operation name."""
        self.last_headers: dict[str, str] = {}
        self.impersonated: Counter[str] = Counter()
        """SOAP requests with an ExchangeImpersonation header, by impersonated address."""
        self.auth_schemes: Counter[str] = Counter()
        """Successful authentications by scheme: basic (per request), ntlm (per handshake)."""
        self._busy_left = 0
        self._busy_ms = 0
        self._unauth_left = 0
        self._conflict_left = 0
        self._item_busy_left = 0
        self._item_busy_ms = 0
        self._status_left: list[int] = []
        self._ntlm_file: str | None = None
        self._in_cache: dict[Any, set[str]] = {}
        self.max_request_bytes = 64 * 1024 * 1024
        """Largest request body accepted: Exchange 2013+ EWS sets maxAllowedContentLength
        (IIS) and maxReceivedMessageSize (WCF) to 64 MiB. A bigger request gets HTTP 413
        (IIS request filtering may say 404.13 instead; either way nothing is done)."""
        self.refuse_inline_attachments: str | None = None
        """None, "fault" (CreateItem with attachments inside an item gets a schema
        validation fault) or "item" (that item alone is refused): to test a server that
        only takes attachments through CreateAttachment."""
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._make_tree()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> EwsEmulator:
        handler = type("Handler", (_Handler,), {"emu": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls["cert"], self.tls["key"])
            self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._ntlm_file:
            with _suppress():
                os.unlink(self._ntlm_file)
            self._ntlm_file = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "emulator not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/EWS/Exchange.asmx"

    # ------------------------------------------------------------------ fault injection
    def inject_busy(self, count: int, back_off_ms: int = 50) -> None:
        """The next ``count`` SOAP requests get ErrorServerBusy with BackOffMilliseconds."""
        with self.lock:
            self._busy_left, self._busy_ms = count, back_off_ms

    def inject_unauthorized(self, count: int) -> None:
        """The next ``count`` requests get HTTP 401 whatever their credentials."""
        with self.lock:
            self._unauth_left = count

    def inject_status(self, status: int, count: int = 1) -> None:
        """The next ``count`` requests get a bare HTTP ``status`` (e.g. 503 from a load
        balancer or IIS in front of Exchange)."""
        with self.lock:
            self._status_left = [status] * count

    def inject_item_busy(self, count: int, back_off_ms: int = 50) -> None:
        """The next ``count`` items of CreateItem/UpdateItem/DeleteItem requests are
        answered one by one with ResponseClass=Error ErrorServerBusy (BackOffMilliseconds
        in the message's MessageXml) and left unprocessed, as a throttled mailbox
        answers part of a batch; the request itself succeeds (HTTP 200)."""
        with self.lock:
            self._item_busy_left, self._item_busy_ms = count, back_off_ms

    def _item_busy(self, op: str) -> Any:
        """A busy answer for this item if one is due, else None (call under the lock)."""
        if self._item_busy_left <= 0:
            return None
        self._item_busy_left -= 1
        msg = self._err(
            op,
            _ItemError(
                "ErrorServerBusy",
                "The server cannot service this request right now. Try again later.",
            ),
        )
        mx = etree.SubElement(msg, _m("MessageXml"))
        etree.SubElement(mx, _t("Value"), Name="BackOffMilliseconds").text = str(self._item_busy_ms)
        return msg

    def inject_conflict(self, count: int) -> None:
        """The next ``count`` item changes of UpdateItem fail with ErrorIrresolvableConflict."""
        with self.lock:
            self._conflict_left = count

    def reset_counters(self) -> None:
        with self.lock:
            self.http_requests = 0
            self.operations.clear()

    # ------------------------------------------------------------------ state helpers
    def _new_id(self, prefix: str) -> str:
        raw = f"{prefix}:{next(self._ids):08d}:emu".encode()
        return base64.b64encode(b"\x00\x00AAMk" + raw).decode()

    def _new_ck(self) -> str:
        return base64.b64encode(f"CK{next(self._ids):010d}".encode()).decode()

    def _add_folder(
        self, parent_id: str | None, name: str, folder_class: str | None, dist: str | None = None
    ) -> Folder:
        f = Folder(self._new_id("F"), self._new_ck(), parent_id, name, folder_class, dist)
        self.folders[f.id] = f
        return f

    def _make_tree(self) -> None:
        root = self._add_folder(None, "", None, "root")
        top = self._add_folder(root.id, "Top of Information Store", "IPF.Note", "msgfolderroot")
        self._add_folder(top.id, "Contacts", "IPF.Contact", "contacts")
        self._add_folder(top.id, "Inbox", "IPF.Note", "inbox")
        self._add_folder(None, "", None, "publicfoldersroot")

    def folder_by_path(self, path: str) -> Folder | None:
        """``"Contacts/Company Directory"`` (under msgfolderroot) or ``"public:/A/B"``."""
        with self.lock:
            if path.startswith("public:"):
                cur = self._distinguished("publicfoldersroot")
                parts = [p for p in path[len("public:") :].split("/") if p]
            else:
                cur = self._distinguished("msgfolderroot")
                parts = [p for p in path.split("/") if p]
            for part in parts:
                kids = [
                    f
                    for f in self.folders.values()
                    if f.parent_id == cur.id and f.name.lower() == part.lower()
                ]
                if not kids:
                    return None
                cur = kids[0]
            return cur

    def make_folder(self, path: str, folder_class: str = "IPF.Contact") -> Folder:
        """Create (as if by hand) every missing folder of ``path``."""
        with self.lock:
            prefix = "public:" if path.startswith("public:") else ""
            rest = path[len(prefix) :]
            parts = [p for p in rest.split("/") if p]
            cur = self._distinguished("publicfoldersroot" if prefix else "msgfolderroot")
            for part in parts:
                nxt = self.folder_by_path(prefix + "/".join([*self._path_parts(cur), part]))
                cur = nxt or self._add_folder(cur.id, part, folder_class)
            return cur

    def _path_parts(self, folder: Folder) -> list[str]:
        parts: list[str] = []
        cur: Folder | None = folder
        while cur is not None and cur.distinguished not in ("msgfolderroot", "publicfoldersroot"):
            parts.append(cur.name)
            cur = self.folders.get(cur.parent_id or "")
        return list(reversed(parts))

    def _distinguished(self, name: str) -> Folder:
        for f in self.folders.values():
            if f.distinguished == name:
                return f
        raise _ItemError("ErrorFolderNotFound", f"The distinguished folder {name} does not exist.")

    def add_contact_by_hand(self, path: str, display_name: str, email: str | None = None) -> str:
        """Store a contact as a person would in Outlook (no syncd tag). Returns its id."""
        with self.lock:
            folder = self.folder_by_path(path)
            assert folder is not None, path
            elem = etree.Element(_t("Contact"), nsmap={"t": T})
            etree.SubElement(elem, _t("DisplayName")).text = display_name
            if email:
                addrs = etree.SubElement(elem, _t("EmailAddresses"))
                e = etree.SubElement(addrs, _t("Entry"), Key="EmailAddress1")
                e.text = email
            item = Item(self._new_id("I"), self._new_ck(), folder.id, elem, seq=next(self._seq))
            self.items[item.id] = item
            return item.id

    def items_in(self, path: str) -> list[Item]:
        """Stored items of a folder, in creation order."""
        with self.lock:
            folder = self.folder_by_path(path)
            if folder is None:
                return []
            return sorted(
                (i for i in self.items.values() if i.folder_id == folder.id), key=lambda i: i.seq
            )

    def item_dict(self, item: Item | str) -> dict[str, Any]:
        """A plain view of a stored item, for assertions.

        Simple children become ``{LocalName: text}``; ``EmailAddresses``/``PhoneNumbers``/
        ``ImAddresses`` become ``{Key: text}``, ``PhysicalAddresses`` ``{Key: {Sub: text}}``,
        ``Members`` a list of dicts, ``Body`` its text; extended properties go to
        ``"extended"`` as ``{PropertyName or tag: value}``, attachments to
        ``"attachments"`` as dicts with ``content`` bytes.
        """
        with self.lock:
            if isinstance(item, str):
                item = self.items[item]
            out: dict[str, Any] = {
                "_id": item.id,
                "_changekey": item.changekey,
                "_kind": item.kind,
                "extended": {},
                "attachments": [
                    {
                        "id": a.id,
                        "name": a.name,
                        "content_type": a.content_type,
                        "content": a.content,
                        "is_contact_photo": a.is_contact_photo,
                    }
                    for a in item.attachments
                ],
            }
            for child in item.elem:
                name = etree.QName(child).localname
                if name == "ExtendedProperty":
                    uri = child.find(_t("ExtendedFieldURI"))
                    label = (
                        uri.get("PropertyName") or uri.get("PropertyTag") or uri.get("PropertyId")
                    )
                    out["extended"][label] = child.findtext(_t("Value"))
                elif name in ("EmailAddresses", "PhoneNumbers", "ImAddresses"):
                    out[name] = {e.get("Key"): e.text for e in child}
                elif name == "PhysicalAddresses":
                    out[name] = {
                        e.get("Key"): {etree.QName(s).localname: s.text for s in e} for e in child
                    }
                elif name == "Members":
                    members = []
                    for mem in child:
                        mbx = mem.find(_t("Mailbox"))
                        entry: dict[str, Any] = {}
                        if mbx is not None:
                            for s in mbx:
                                sn = etree.QName(s).localname
                                entry[sn] = s.get("Id") if sn == "ItemId" else s.text
                        members.append(entry)
                    out[name] = members
                else:
                    out[name] = child.text
            return out

    # ------------------------------------------------------------------ auth
    def ntlm_user_file(self) -> str:
        """The credential file pyspnego's NTLM acceptor reads (DOMAIN:USER:PASSWORD)."""
        if self._ntlm_file is None:
            fd, path = tempfile.mkstemp(prefix="ews-ntlm-")
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{self.domain}:{self.username}:{self.password}\n")
            self._ntlm_file = path
        return self._ntlm_file

    def check_basic(self, header: str) -> bool:
        try:
            raw = base64.b64decode(header.split(" ", 1)[1]).decode("utf-8")
        except (IndexError, ValueError, binascii.Error, UnicodeDecodeError):
            return False
        user, _, pw = raw.partition(":")
        if "\\" in user:
            user = user.split("\\", 1)[1]
        return user.lower() == self.username.lower() and pw == self.password

    # ------------------------------------------------------------------ SOAP dispatch
    def handle_soap(self, body: bytes) -> tuple[int, bytes]:
        """Answer one authenticated SOAP request: (HTTP status, response bytes)."""
        try:
            root = etree.fromstring(body, parser=etree.XMLParser(resolve_entities=False))
        except etree.XMLSyntaxError as err:
            return 500, _fault_xml("ErrorSchemaValidation", f"bad XML: {err}")
        sbody = root.find(f"{{{SOAP}}}Body")
        if sbody is None or len(sbody) == 0:
            return 500, _fault_xml("ErrorSchemaValidation", "no SOAP Body")
        op_elem = sbody[0]
        op = etree.QName(op_elem).localname
        imp = root.find(f"{{{SOAP}}}Header/{_t('ExchangeImpersonation')}/{_t('ConnectingSID')}/*")
        with self.lock:
            self.operations[op] += 1
            if imp is not None:
                self.impersonated[imp.text or ""] += 1
            if self._busy_left > 0:
                self._busy_left -= 1
                return 500, _fault_xml(
                    "ErrorServerBusy",
                    "The server cannot service this request right now. Try again later.",
                    back_off_ms=self._busy_ms,
                )
            self._in_cache = {}
            if op not in IMPLEMENTED:
                return 500, _fault_xml(
                    "ErrorInvalidOperation",
                    f"The EWS emulator does not implement the operation {op}.",
                )
            try:
                messages = getattr(self, f"_op_{op}")(op_elem)
            except _Fault as f:
                return f.status, _fault_xml(f.code, f.message, back_off_ms=f.back_off_ms)
        resp = etree.Element(_m(f"{op}Response"), nsmap=NSMAP)
        rms = etree.SubElement(resp, _m("ResponseMessages"))
        for msg in messages:
            rms.append(msg)
        return 200, _envelope(resp)

    # -- response message helpers
    @staticmethod
    def _ok(op: str) -> Any:
        msg = etree.Element(_m(f"{op}ResponseMessage"), ResponseClass="Success", nsmap=NSMAP)
        etree.SubElement(msg, _m("ResponseCode")).text = "NoError"
        return msg

    @staticmethod
    def _err(op: str, err: _ItemError) -> Any:
        msg = etree.Element(_m(f"{op}ResponseMessage"), ResponseClass="Error", nsmap=NSMAP)
        etree.SubElement(msg, _m("MessageText")).text = err.message
        etree.SubElement(msg, _m("ResponseCode")).text = err.code
        etree.SubElement(msg, _m("DescriptiveLinkKey")).text = "0"
        return msg

    # -- folders
    def _resolve_folder(self, elem: Any) -> Folder:
        tag = etree.QName(elem).localname
        if tag == "DistinguishedFolderId":
            return self._distinguished(elem.get("Id"))
        if tag == "FolderId":
            f = self.folders.get(elem.get("Id"))
            if f is None:
                raise _ItemError("ErrorFolderNotFound", "The specified folder could not be found.")
            return f
        raise _ItemError("ErrorInvalidIdMalformed", f"unexpected folder id element {tag}")

    def _folder_elem(self, f: Folder) -> Any:
        tag = "ContactsFolder" if (f.folder_class or "").startswith("IPF.Contact") else "Folder"
        el = etree.Element(_t(tag), nsmap={"t": T})
        etree.SubElement(el, _t("FolderId"), Id=f.id, ChangeKey=f.changekey)
        if f.parent_id:
            parent = self.folders[f.parent_id]
            etree.SubElement(el, _t("ParentFolderId"), Id=parent.id, ChangeKey=parent.changekey)
        if f.folder_class:
            etree.SubElement(el, _t("FolderClass")).text = f.folder_class
        etree.SubElement(el, _t("DisplayName")).text = f.name
        if f.distinguished:
            etree.SubElement(el, _t("DistinguishedFolderId")).text = f.distinguished
        count = sum(1 for i in self.items.values() if i.folder_id == f.id)
        kids = sum(1 for g in self.folders.values() if g.parent_id == f.id)
        etree.SubElement(el, _t("TotalCount")).text = str(count)
        etree.SubElement(el, _t("ChildFolderCount")).text = str(kids)
        etree.SubElement(el, _t("UnreadCount")).text = "0"
        return el

    def _op_GetFolder(self, op: Any) -> list[Any]:
        out = []
        for fid in op.find(_m("FolderIds")):
            try:
                f = self._resolve_folder(fid)
            except _ItemError as err:
                out.append(self._err("GetFolder", err))
                continue
            msg = self._ok("GetFolder")
            etree.SubElement(msg, _m("Folders")).append(self._folder_elem(f))
            out.append(msg)
        return out

    def _op_FindFolder(self, op: Any) -> list[Any]:
        deep = op.get("Traversal") == "Deep"
        restriction = op.find(_m("Restriction"))
        view = op.find(_m("IndexedPageFolderView"))
        out = []
        for fid in op.find(_m("ParentFolderIds")):
            try:
                parent = self._resolve_folder(fid)
            except _ItemError as err:
                out.append(self._err("FindFolder", err))
                continue
            found = self._subfolders(parent.id, deep)
            if restriction is not None:
                found = [
                    f for f in found if self._matches(restriction[0], lambda p, f=f: _fval(f, p))
                ]
            page, offset, last = _page(found, view)
            msg = self._ok("FindFolder")
            rf = etree.SubElement(
                msg,
                _m("RootFolder"),
                IndexedPagingOffset=str(offset),
                TotalItemsInView=str(len(found)),
                IncludesLastItemInRange="true" if last else "false",
            )
            fl = etree.SubElement(rf, _t("Folders"))
            for f in page:
                fl.append(self._folder_elem(f))
            out.append(msg)
        return out

    def _subfolders(self, parent_id: str, deep: bool) -> list[Folder]:
        kids = [f for f in self.folders.values() if f.parent_id == parent_id]
        if not deep:
            return kids
        res = []
        for k in kids:
            res.append(k)
            res.extend(self._subfolders(k.id, True))
        return res

    def _op_CreateFolder(self, op: Any) -> list[Any]:
        parent_wrap = op.find(_m("ParentFolderId"))
        out = []
        try:
            parent = self._resolve_folder(parent_wrap[0])
        except _ItemError as err:
            return [self._err("CreateFolder", err) for _ in op.find(_m("Folders"))]
        for fel in op.find(_m("Folders")):
            name = fel.findtext(_t("DisplayName")) or ""
            fclass = fel.findtext(_t("FolderClass"))
            if etree.QName(fel).localname == "ContactsFolder" and not fclass:
                fclass = "IPF.Contact"
            if any(
                g.parent_id == parent.id and g.name.lower() == name.lower()
                for g in self.folders.values()
            ):
                out.append(
                    self._err(
                        "CreateFolder",
                        _ItemError(
                            "ErrorFolderExists", "A folder with the specified name already exists."
                        ),
                    )
                )
                continue
            f = self._add_folder(parent.id, name, fclass)
            msg = self._ok("CreateFolder")
            fs = etree.SubElement(msg, _m("Folders"))
            tag = "ContactsFolder" if (fclass or "").startswith("IPF.Contact") else "Folder"
            fe = etree.SubElement(fs, _t(tag))
            etree.SubElement(fe, _t("FolderId"), Id=f.id, ChangeKey=f.changekey)
            out.append(msg)
        return out

    # -- restrictions
    def _matches(self, expr: Any, getter: Any) -> bool:
        tag = etree.QName(expr).localname
        if tag == "Or" and len(expr) > 1:
            # Fast path for "key IN (...)" (an Or of IsEqualTo on one path): one look-up.
            wanted = self._in_cache.get(expr)
            if wanted is None:
                wanted = self._in_set(expr)
                self._in_cache[expr] = wanted
            if wanted:
                left = getter(expr[0][0])
                return left is not None and left.lower() in wanted
        if tag == "And":
            return all(self._matches(c, getter) for c in expr)
        if tag == "Or":
            return any(self._matches(c, getter) for c in expr)
        if tag == "Not":
            return not self._matches(expr[0], getter)
        if tag == "Exists":
            return getter(expr[0]) is not None
        if tag in ("IsEqualTo", "IsNotEqualTo"):
            left = getter(expr[0])
            const = expr.find(f"{_t('FieldURIOrConstant')}/{_t('Constant')}")
            if const is None:
                raise _Fault("ErrorUnsupportedQueryFilter", "only constants are supported")
            eq = left is not None and left.lower() == (const.get("Value") or "").lower()
            return eq if tag == "IsEqualTo" else not eq
        if tag == "Contains":
            left = getter(expr[0])
            const = expr.find(_t("Constant"))
            return left is not None and (const.get("Value") or "").lower() in left.lower()
        raise _Fault("ErrorUnsupportedQueryFilter", f"restriction {tag} is not implemented")

    @staticmethod
    def _in_set(expr: Any) -> set[str]:
        """Lower-cased constants if ``expr`` is an Or of IsEqualTo on one path, else {}."""
        if not all(etree.QName(c).localname == "IsEqualTo" for c in expr):
            return set()
        if len({etree.tostring(c[0]) for c in expr}) != 1:
            return set()
        consts = expr.xpath(".//t:Constant/@Value", namespaces={"t": T})
        return {c.lower() for c in consts} if len(consts) == len(expr) else set()

    def _item_value(self, item: Item, path: Any) -> str | None:
        tag = etree.QName(path).localname
        if tag == "ExtendedFieldURI":
            prop = _find_extended(item.elem, path)
            return None if prop is None else prop.findtext(_t("Value"))
        if tag == "FieldURI":
            name = path.get("FieldURI").split(":")[-1]
            if name == "ItemClass":
                return _ITEM_TAGS.get(item.kind)
            child = item.elem.find(_t(_URI_TO_ELEMENT.get(name, name)))
            return None if child is None else (child.text or "")
        if tag == "IndexedFieldURI":
            name = path.get("FieldURI").split(":")
            coll = item.elem.find(_t(_URI_TO_ELEMENT.get(name[1], name[1])))
            if coll is None:
                return None
            for entry in coll:
                if entry.get("Key") == path.get("FieldIndex"):
                    if len(name) > 2:
                        return entry.findtext(_t(name[2]))
                    return entry.text
            return None
        raise _Fault("ErrorUnsupportedPathForQuery", f"path {tag} is not supported")

    # -- items
    def _shape(self, shape_elem: Any) -> tuple[str, list[Any]]:
        base = shape_elem.findtext(_t("BaseShape")) or "Default"
        extra = shape_elem.find(_t("AdditionalProperties"))
        return base, (list(extra) if extra is not None else [])

    def _render_item(self, item: Item, base: str, extra: list[Any]) -> Any:
        out = etree.Element(_t(item.kind), nsmap={"t": T})
        etree.SubElement(out, _t("ItemId"), Id=item.id, ChangeKey=item.changekey)
        folder = self.folders[item.folder_id]
        wanted_uris = set()
        for p in extra:
            if etree.QName(p).localname == "FieldURI":
                wanted_uris.add(p.get("FieldURI"))
        if base != "IdOnly" or "item:ParentFolderId" in wanted_uris:
            etree.SubElement(out, _t("ParentFolderId"), Id=folder.id, ChangeKey=folder.changekey)
        if (base != "IdOnly" or "item:Attachments" in wanted_uris) and item.attachments:
            atts = etree.SubElement(out, _t("Attachments"))
            for a in item.attachments:
                atts.append(_attachment_elem(a, item, content=False))
        if base != "IdOnly" or "item:HasAttachments" in wanted_uris:
            etree.SubElement(out, _t("HasAttachments")).text = _xbool(bool(item.attachments))
        if item.kind == "Contact" and (base != "IdOnly" or "contacts:HasPicture" in wanted_uris):
            has_pic = any(a.is_contact_photo for a in item.attachments)
            etree.SubElement(out, _t("HasPicture")).text = _xbool(has_pic)
        if base != "IdOnly":
            for child in item.elem:
                if etree.QName(child).localname != "ExtendedProperty":
                    out.append(copy.deepcopy(child))
        for p in extra:
            tag = etree.QName(p).localname
            if tag == "ExtendedFieldURI":
                prop = _find_extended(item.elem, p)
                if prop is not None:
                    out.append(copy.deepcopy(prop))
            elif base == "IdOnly" and tag == "FieldURI":
                name = p.get("FieldURI").split(":")[-1]
                if name == "ItemClass":
                    etree.SubElement(out, _t("ItemClass")).text = _ITEM_TAGS.get(item.kind)
                    continue
                child = item.elem.find(_t(_URI_TO_ELEMENT.get(name, name)))
                if child is not None:
                    out.append(copy.deepcopy(child))
        return out

    def _get_item(self, item_id_elem: Any) -> Item:
        item = self.items.get(item_id_elem.get("Id"))
        if item is None:
            raise _ItemError(
                "ErrorItemNotFound", "The specified object was not found in the store."
            )
        return item

    def _op_FindItem(self, op: Any) -> list[Any]:
        if op.get("Traversal", "Shallow") != "Shallow":
            raise _Fault("ErrorInvalidOperation", "only Shallow FindItem is implemented")
        base, extra = self._shape(op.find(_m("ItemShape")))
        restriction = op.find(_m("Restriction"))
        view = op.find(_m("IndexedPageItemView"))
        if op.find(_m("QueryString")) is not None:
            raise _Fault("ErrorInvalidOperation", "QueryString is not implemented")
        out = []
        for fid in op.find(_m("ParentFolderIds")):
            try:
                folder = self._resolve_folder(fid)
            except _ItemError as err:
                out.append(self._err("FindItem", err))
                continue
            found = sorted(
                (i for i in self.items.values() if i.folder_id == folder.id), key=lambda i: i.seq
            )
            if restriction is not None:
                found = [
                    i
                    for i in found
                    if self._matches(restriction[0], lambda p, i=i: self._item_value(i, p))
                ]
            page, offset, last = _page(found, view)
            msg = self._ok("FindItem")
            rf = etree.SubElement(
                msg,
                _m("RootFolder"),
                IndexedPagingOffset=str(offset),
                TotalItemsInView=str(len(found)),
                IncludesLastItemInRange="true" if last else "false",
            )
            its = etree.SubElement(rf, _t("Items"))
            for i in page:
                its.append(self._render_item(i, base, extra))
            out.append(msg)
        return out

    def _op_GetItem(self, op: Any) -> list[Any]:
        base, extra = self._shape(op.find(_m("ItemShape")))
        out = []
        for iid in op.find(_m("ItemIds")):
            try:
                item = self._get_item(iid)
            except _ItemError as err:
                out.append(self._err("GetItem", err))
                continue
            msg = self._ok("GetItem")
            etree.SubElement(msg, _m("Items")).append(self._render_item(item, base, extra))
            out.append(msg)
        return out

    def _op_CreateItem(self, op: Any) -> list[Any]:
        saved = op.find(_m("SavedItemFolderId"))
        out = []
        folder_err = None
        folder = None
        if saved is None:
            folder_err = _ItemError("ErrorFolderNotFound", "SavedItemFolderId is required here.")
        else:
            try:
                folder = self._resolve_folder(saved[0])
            except _ItemError as err:
                folder_err = err
        for el in op.find(_m("Items")):
            kind = etree.QName(el).localname
            busy = self._item_busy("CreateItem")
            if busy is not None:
                out.append(busy)
                continue
            if folder_err is not None or folder is None:
                out.append(self._err("CreateItem", folder_err))
                continue
            if kind not in _ITEM_TAGS:
                out.append(
                    self._err(
                        "CreateItem",
                        _ItemError("ErrorInvalidOperation", f"emulator stores no {kind} items"),
                    )
                )
                continue
            if el.find(_t("Attachments")) is not None and self.refuse_inline_attachments:
                if self.refuse_inline_attachments == "fault":
                    raise _Fault(
                        "ErrorSchemaValidation",
                        "The request failed schema validation: The element 'Contact' has "
                        "invalid child element 'Attachments'.",
                    )
                out.append(
                    self._err(
                        "CreateItem",
                        _ItemError("ErrorInvalidPropertySet", "Attachments cannot be set here."),
                    )
                )
                continue
            stored = copy.deepcopy(el)
            atts_el = stored.find(_t("Attachments"))
            if atts_el is not None:
                stored.remove(atts_el)
            if kind == "Contact" and stored.find(_t("DisplayName")) is None:
                out.append(
                    self._err(
                        "CreateItem",
                        _ItemError("ErrorInvalidPropertySet", "DisplayName is required"),
                    )
                )
                continue
            item = Item(self._new_id("I"), self._new_ck(), folder.id, stored, seq=next(self._seq))
            self.items[item.id] = item
            new_atts = []
            if atts_el is not None:
                for a in atts_el:
                    new_atts.append(self._store_attachment(item, a))
            msg = self._ok("CreateItem")
            its = etree.SubElement(msg, _m("Items"))
            resp = etree.SubElement(its, _t(kind))
            etree.SubElement(resp, _t("ItemId"), Id=item.id, ChangeKey=item.changekey)
            if new_atts:
                ra = etree.SubElement(resp, _t("Attachments"))
                for a in new_atts:
                    ra.append(_attachment_elem(a, item, content=False, id_only=True))
            out.append(msg)
        return out

    def _store_attachment(self, item: Item, el: Any) -> Attachment:
        if etree.QName(el).localname != "FileAttachment":
            raise _Fault("ErrorInvalidOperation", "only FileAttachment is implemented")
        att = Attachment(
            id=self._new_id("A"),
            name=el.findtext(_t("Name")) or "",
            content_type=el.findtext(_t("ContentType")) or "application/octet-stream",
            content=base64.b64decode(el.findtext(_t("Content")) or ""),
            is_contact_photo=(el.findtext(_t("IsContactPhoto")) or "").lower() in ("1", "true"),
        )
        if att.is_contact_photo:
            # Exchange keeps one contact photo per contact.
            item.attachments = [a for a in item.attachments if not a.is_contact_photo]
        item.attachments.append(att)
        item.changekey = self._new_ck()
        return att

    def _op_UpdateItem(self, op: Any) -> list[Any]:
        resolution = op.get("ConflictResolution", "AutoResolve")
        out = []
        for change in op.find(_m("ItemChanges")):
            iid = change.find(_t("ItemId"))
            busy = self._item_busy("UpdateItem")
            if busy is not None:
                out.append(busy)
                continue
            try:
                item = self._get_item(iid)
                if self._conflict_left > 0:
                    self._conflict_left -= 1
                    raise _ItemError(
                        "ErrorIrresolvableConflict",
                        "The operation can't be performed because of a write conflict.",
                    )
                ck = iid.get("ChangeKey")
                if resolution == "NeverOverwrite" and ck and ck != item.changekey:
                    raise _ItemError(
                        "ErrorIrresolvableConflict",
                        "The send or update operation could not be performed because the change "
                        "key passed in the request does not match the current change key for "
                        "the item.",
                    )
                new_elem = copy.deepcopy(item.elem)
                for upd in change.find(_t("Updates")):
                    self._apply_update(new_elem, upd, item.kind)
                if item.kind == "Contact" and new_elem.find(_t("DisplayName")) is None:
                    raise _ItemError("ErrorInvalidPropertyDelete", "DisplayName cannot be deleted")
            except _ItemError as err:
                out.append(self._err("UpdateItem", err))
                continue
            item.elem = new_elem
            item.changekey = self._new_ck()
            msg = self._ok("UpdateItem")
            its = etree.SubElement(msg, _m("Items"))
            resp = etree.SubElement(its, _t(item.kind))
            etree.SubElement(resp, _t("ItemId"), Id=item.id, ChangeKey=item.changekey)
            cr = etree.SubElement(msg, _m("ConflictResults"))
            etree.SubElement(cr, _t("Count")).text = "0"
            out.append(msg)
        return out

    def _apply_update(self, elem: Any, upd: Any, kind: str) -> None:
        action = etree.QName(upd).localname
        if action not in ("SetItemField", "DeleteItemField", "AppendToItemField"):
            raise _ItemError("ErrorInvalidOperation", f"{action} is not implemented")
        path = upd[0]
        ptag = etree.QName(path).localname
        if action == "AppendToItemField":
            raise _ItemError("ErrorInvalidOperation", "AppendToItemField is not implemented")
        value = None
        if action == "SetItemField":
            holder = upd[1]
            if etree.QName(holder).localname != kind:
                raise _ItemError("ErrorIncorrectUpdatePropertyCount", "wrong item type in update")
            if len(holder) != 1:
                raise _ItemError(
                    "ErrorIncorrectUpdatePropertyCount",
                    "An object within a change description must contain one and only one property "
                    "to modify.",
                )
            value = holder[0]
        if ptag == "ExtendedFieldURI":
            old = _find_extended(elem, path)
            if old is not None:
                elem.remove(old)
            if value is not None:
                elem.append(copy.deepcopy(value))
            return
        if ptag == "FieldURI":
            name = path.get("FieldURI").split(":")[-1]
            tag = _t(_URI_TO_ELEMENT.get(name, name))
            old = elem.find(tag)
            if value is not None and value.tag != tag:
                raise _ItemError("ErrorInvalidPropertySet", f"value element does not match {name}")
            if old is not None:
                elem.remove(old)
            if value is not None:
                elem.append(copy.deepcopy(value))
            return
        if ptag == "IndexedFieldURI":
            parts = path.get("FieldURI").split(":")
            index = path.get("FieldIndex")
            coll_tag = _t(_URI_TO_ELEMENT.get(parts[1], parts[1]))
            coll = elem.find(coll_tag)
            entry = None
            if coll is not None:
                entry = next((e for e in coll if e.get("Key") == index), None)
            if value is None:  # delete
                if entry is None:
                    return
                if len(parts) > 2:
                    sub = entry.find(_t(parts[2]))
                    if sub is not None:
                        entry.remove(sub)
                    if len(entry) == 0:
                        coll.remove(entry)
                else:
                    coll.remove(entry)
                if len(coll) == 0:
                    elem.remove(coll)
                return
            if value.tag != coll_tag:
                raise _ItemError("ErrorInvalidPropertySet", "indexed value does not match path")
            new_entry = value.find(_t("Entry"))
            if new_entry is None or new_entry.get("Key") != index:
                raise _ItemError("ErrorInvalidPropertySet", "indexed entry key does not match")
            if coll is None:
                coll = etree.SubElement(elem, coll_tag)
            if len(parts) > 2:
                if entry is None:
                    entry = etree.SubElement(coll, _t("Entry"), Key=index)
                for sub in new_entry:
                    old = entry.find(sub.tag)
                    if old is not None:
                        entry.remove(old)
                    entry.append(copy.deepcopy(sub))
            else:
                if entry is not None:
                    coll.remove(entry)
                coll.append(copy.deepcopy(new_entry))
            return
        raise _ItemError("ErrorInvalidOperation", f"path {ptag} is not implemented")

    def _op_DeleteItem(self, op: Any) -> list[Any]:
        out = []
        for iid in op.find(_m("ItemIds")):
            busy = self._item_busy("DeleteItem")
            if busy is not None:
                out.append(busy)
                continue
            try:
                item = self._get_item(iid)
            except _ItemError as err:
                out.append(self._err("DeleteItem", err))
                continue
            del self.items[item.id]
            if op.get("DeleteType") in ("SoftDelete", "MoveToDeletedItems"):
                # Recoverable (the dumpster / Deleted Items): kept aside, out of folders.
                self.recoverable[item.id] = item
            out.append(self._ok("DeleteItem"))
        return out

    def _op_CreateAttachment(self, op: Any) -> list[Any]:
        parent = op.find(_m("ParentItemId"))
        out = []
        for a in op.find(_m("Attachments")):
            try:
                item = self._get_item(parent)
            except _ItemError as err:
                out.append(self._err("CreateAttachment", err))
                continue
            att = self._store_attachment(item, a)
            msg = self._ok("CreateAttachment")
            atts = etree.SubElement(msg, _m("Attachments"))
            atts.append(_attachment_elem(att, item, content=False, id_only=True))
            out.append(msg)
        return out

    def _op_DeleteAttachment(self, op: Any) -> list[Any]:
        out = []
        for aid in op.find(_m("AttachmentIds")):
            owner = None
            for item in self.items.values():
                if any(a.id == aid.get("Id") for a in item.attachments):
                    owner = item
                    break
            if owner is None:
                out.append(
                    self._err(
                        "DeleteAttachment",
                        _ItemError("ErrorAttachmentNotFound", "The attachment was not found."),
                    )
                )
                continue
            owner.attachments = [a for a in owner.attachments if a.id != aid.get("Id")]
            owner.changekey = self._new_ck()
            msg = self._ok("DeleteAttachment")
            etree.SubElement(
                msg, _m("RootItemId"), RootItemId=owner.id, RootItemChangeKey=owner.changekey
            )
            out.append(msg)
        return out


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        return True


def _xbool(v: bool) -> str:
    return "true" if v else "false"


def _fval(f: Folder, path: Any) -> str | None:
    name = (path.get("FieldURI") or "").split(":")[-1]
    return {"DisplayName": f.name, "FolderClass": f.folder_class}.get(name)


def _find_extended(elem: Any, uri: Any) -> Any:
    key = _uri_key(uri)
    for prop in elem.findall(_t("ExtendedProperty")):
        u = prop.find(_t("ExtendedFieldURI"))
        if u is not None and _uri_key(u) == key:
            return prop
    return None


def _attachment_elem(a: Attachment, item: Item, content: bool, id_only: bool = False) -> Any:
    el = etree.Element(_t("FileAttachment"), nsmap={"t": T})
    etree.SubElement(
        el, _t("AttachmentId"), Id=a.id, RootItemId=item.id, RootItemChangeKey=item.changekey
    )
    if id_only:
        return el
    etree.SubElement(el, _t("Name")).text = a.name
    etree.SubElement(el, _t("ContentType")).text = a.content_type
    etree.SubElement(el, _t("Size")).text = str(len(a.content))
    etree.SubElement(el, _t("IsInline")).text = "false"
    etree.SubElement(el, _t("IsContactPhoto")).text = _xbool(a.is_contact_photo)
    if content:
        etree.SubElement(el, _t("Content")).text = base64.b64encode(a.content).decode()
    return el


def _page(found: list[Any], view: Any) -> tuple[list[Any], int, bool]:
    if view is None:
        return found, len(found), True
    start = int(view.get("Offset", "0"))
    if view.get("BasePoint", "Beginning") != "Beginning":
        raise _Fault("ErrorInvalidOperation", "only BasePoint=Beginning is implemented")
    size = int(view.get("MaxEntriesReturned", "1000"))
    page = found[start : start + size]
    end = start + len(page)
    return page, end, end >= len(found)


def _envelope(body_child: Any) -> bytes:
    env = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"s": SOAP})
    header = etree.SubElement(env, f"{{{SOAP}}}Header")
    etree.SubElement(
        header,
        _t("ServerVersionInfo"),
        MajorVersion="15",
        MinorVersion="1",
        MajorBuildNumber="2507",
        MinorBuildNumber="6",
        Version="V2017_07_11",
        nsmap={"h": T},
    )
    body = etree.SubElement(env, f"{{{SOAP}}}Body")
    body.append(body_child)
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def _fault_xml(code: str, message: str, back_off_ms: int | None = None) -> bytes:
    env = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"s": SOAP})
    body = etree.SubElement(env, f"{{{SOAP}}}Body")
    fault = etree.SubElement(body, f"{{{SOAP}}}Fault")
    fc = etree.SubElement(fault, "faultcode", nsmap={"a": T})
    fc.text = f"a:{code}"
    etree.SubElement(fault, "faultstring").text = message
    detail = etree.SubElement(fault, "detail")
    etree.SubElement(detail, f"{{{E}}}ResponseCode", nsmap={"e": E}).text = code
    etree.SubElement(detail, f"{{{E}}}Message", nsmap={"e": E}).text = message
    if back_off_ms is not None:
        mx = etree.SubElement(detail, _t("MessageXml"), nsmap={"t": T})
        etree.SubElement(mx, _t("Value"), Name="BackOffMilliseconds").text = str(back_off_ms)
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


class _Handler(BaseHTTPRequestHandler):
    """One instance per TCP connection: NTLM state is per connection, as in IIS."""

    emu: EwsEmulator
    protocol_version = "HTTP/1.1"
    # Headers and body in one buffered write, no Nagle: else every keep-alive request
    # waits for the client's delayed ACK (about 40 ms).
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("ews-emulator: " + format, *args)

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/xml; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _unauthorized(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="ews-emulator"')
        self.send_header("WWW-Authenticate", "NTLM")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        with self.emu.lock:
            self.emu.http_requests += 1
        self._send(405, b"")

    def do_POST(self) -> None:
        emu = self.emu
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with emu.lock:
            emu.http_requests += 1
            emu.last_headers = dict(self.headers)
            forced_401 = emu._unauth_left > 0
            if forced_401:
                emu._unauth_left -= 1
            forced_status = emu._status_left[0] if emu._status_left else None
            if forced_status:
                emu._status_left.pop(0)
        if forced_401:
            self._unauthorized()
            return
        if forced_status:
            self._send(forced_status, b"<html><body>Service Unavailable</body></html>")
            return
        if len(body) > emu.max_request_bytes:
            self._send(413, b"<html><body>Request Entity Too Large</body></html>")
            return
        auth = self.headers.get("Authorization", "")
        scheme = auth.split(" ", 1)[0].lower()
        if scheme == "basic":
            if not emu.check_basic(auth):
                self._unauthorized()
                return
            with emu.lock:
                emu.auth_schemes["basic"] += 1
        elif scheme in ("ntlm", "negotiate"):
            if not self._ntlm_step(auth):
                return
        elif not getattr(self, "_ntlm_done", False):
            self._unauthorized()
            return
        status, resp = emu.handle_soap(body)
        self._send(status, resp)

    def _ntlm_step(self, auth: str) -> bool:
        """Run one leg of the NTLM handshake; True when this request is authenticated."""
        import spnego  # from exchangelib's requests_ntlm dependency

        token = base64.b64decode(auth.split(" ", 1)[1])
        ctx = getattr(self, "_ntlm_ctx", None)
        if ctx is None or token[8:12] == b"\x01\x00\x00\x00":
            os.environ["NTLM_USER_FILE"] = self.emu.ntlm_user_file()
            ctx = spnego.server(protocol="ntlm")
            self._ntlm_ctx = ctx
        try:
            out = ctx.step(token)
        except Exception as err:  # bad password, malformed token
            log.debug("ews-emulator: NTLM refused: %s", err)
            self._ntlm_ctx = None
            self._unauthorized()
            return False
        if not ctx.complete:
            self.send_response(401)
            self.send_header("WWW-Authenticate", "NTLM " + base64.b64encode(out or b"").decode())
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False
        self._ntlm_done = True
        self._ntlm_ctx = None
        with self.emu.lock:
            self.emu.auth_schemes["ntlm"] += 1
        return True
