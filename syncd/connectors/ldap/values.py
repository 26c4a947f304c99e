"""Raw LDAP entries -> :class:`syncd.contracts.Change`, per the shared value convention.

* attribute names lower-cased (a ``;binary`` option is dropped, other options kept);
* a value is ``str`` when it is valid UTF-8, ``bytes`` otherwise;
* attributes known to be binary (objectGUID, objectSid, jpegPhoto, certificates...)
  are always ``bytes``, even when their bytes happen to be valid UTF-8;
* the source id comes from ``id_attribute``: entryUUID as its string form, objectGUID
  (and other GUID attributes) as the canonical ``xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx``
  string of the little-endian Microsoft layout, objectSid as ``S-1-5-...``.

The AD connector uses these functions too.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable
from hashlib import blake2b

from syncd.connectors.ldap import wire
from syncd.contracts import Change, Op

BINARY_ATTRIBUTES = frozenset(
    {
        "objectguid",
        "objectsid",
        "sidhistory",
        "tokengroups",
        "jpegphoto",
        "thumbnailphoto",
        "thumbnaillogo",
        "photo",
        "audio",
        "usercertificate",
        "cacertificate",
        "certificaterevocationlist",
        "authorityrevocationlist",
        "crosscertificatepair",
        "deltarevocationlist",
        "usersmimecertificate",
        "userpkcs12",
        "ntsecuritydescriptor",
        "msexchmailboxguid",
        "msexchmailboxsecuritydescriptor",
        "msexcharchiveguid",
        "msexchblockedsendershash",
        "msexchsafesendershash",
        "msexchsaferecipientshash",
        "ms-ds-consistencyguid",
        "msds-consistencyguid",
        "msds-generationid",
        "msds-allowedtoactonbehalfofotheridentity",
        "logonhours",
        "replpropertymetadata",
        "dnsrecord",
        "securityidentifier",
        "terminalserver",
        "ipsecdata",
        "invocationid",
    }
)

GUID_ATTRIBUTES = frozenset(
    {
        "objectguid",
        "msexchmailboxguid",
        "msexcharchiveguid",
        "ms-ds-consistencyguid",
        "msds-consistencyguid",
        "invocationid",
    }
)


def attribute_name(raw: bytes) -> str:
    """Lower-cased attribute description, without a ``;binary`` transfer option."""
    name = raw.decode("ascii", "replace").lower()
    if name.endswith(";binary"):
        name = name[:-7]
    return name


def decode_values(name: str, values: list[bytes], binary: frozenset[str]) -> list[str | bytes]:
    """Apply the value convention to the raw values of one attribute."""
    if name in binary:
        return list(values)
    out: list[str | bytes] = []
    for value in values:
        try:
            out.append(value.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(value)
    return out


_NAMES: dict[bytes, str] = {}
"""Raw attribute description -> its name: a directory has few distinct ones."""


def decode_attributes(
    raw: Iterable[tuple[bytes, list[bytes]]],
    binary: frozenset[str] = BINARY_ATTRIBUTES,
    drop: frozenset[str] = frozenset(),
) -> dict[str, list[str | bytes]]:
    """Raw (type, values) pairs -> ``{lower-name: [values]}``; names in ``drop`` skipped.
    Two descriptions that fold to the same name are merged in server order."""
    # The hot path of every read: a name cache and one comprehension per attribute.
    attrs: dict[str, list[str | bytes]] = {}
    names = _NAMES
    for raw_name, values in raw:
        name = names.get(raw_name)
        if name is None:
            name = attribute_name(raw_name)
            if len(names) < 10000:
                names[raw_name] = name
        if name in drop:
            continue
        if name in binary:
            decoded: list[str | bytes] = list(values)
        else:
            try:
                if len(values) == 1:  # most attributes: no comprehension frame
                    decoded = [values[0].decode("utf-8")]
                else:
                    decoded = [v.decode("utf-8") for v in values]
            except UnicodeDecodeError:
                decoded = decode_values(name, values, binary)
        if name in attrs:
            attrs[name].extend(decoded)
        else:
            attrs[name] = decoded
    return attrs


def guid_to_str(raw: bytes) -> str:
    """objectGUID bytes (little-endian Microsoft layout) -> canonical lower-case string."""
    return str(uuid.UUID(bytes_le=bytes(raw)))


def uuid_to_str(raw: bytes) -> str:
    """RFC 4122 (big-endian) 16 bytes, e.g. a syncrepl syncUUID -> canonical string."""
    return str(uuid.UUID(bytes=bytes(raw)))


def nsuniqueid_to_uuid(text: str) -> str:
    """389-ds nsUniqueId ``eb9f54c3-ef4711f1-b7d3be69-7b7a8471`` -> UUID text
    ``eb9f54c3-ef47-11f1-b7d3-be697b7a8471``. Raises ValueError if not 32 hex digits."""
    return str(uuid.UUID(hex=text.replace("-", "")))


def uuid_to_nsuniqueid(raw: bytes) -> str:
    """16 bytes -> 389-ds nsUniqueId text form (the inverse of nsuniqueid_to_uuid)."""
    h = bytes(raw).hex()
    return f"{h[0:8]}-{h[8:16]}-{h[16:24]}-{h[24:32]}"


def sid_to_str(raw: bytes) -> str:
    """objectSid bytes -> ``S-1-5-21-...``."""
    raw = bytes(raw)
    if len(raw) < 8:
        raise ValueError("objectSid is too short")
    count = raw[1]
    authority = int.from_bytes(raw[2:8], "big")
    subs = [int.from_bytes(raw[8 + 4 * k : 12 + 4 * k], "little") for k in range(count)]
    return "S-" + "-".join(str(x) for x in [raw[0], authority, *subs])


def id_from_value(id_attribute: str, value: str | bytes) -> str:
    """The source id string of one value of ``id_attribute`` (already lower-cased)."""
    if id_attribute in GUID_ATTRIBUTES:
        if isinstance(value, str):  # a GUID already in text form (e.g. from LDIF tools)
            return str(uuid.UUID(value))
        if len(value) != 16:
            raise ValueError(f"{id_attribute} is not 16 bytes")
        return guid_to_str(value)
    if id_attribute == "objectsid":
        return sid_to_str(value) if isinstance(value, bytes) else value
    if id_attribute == "entryuuid" and isinstance(value, str):
        return value.lower()
    if id_attribute == "nsuniqueid" and isinstance(value, str):
        # 389-ds writes the 128 bits as 8-8-8-8 hex digits; its syncrepl names the entry
        # by the same bits as a UUID. One text form (the UUID's) for every method.
        return nsuniqueid_to_uuid(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def source_id(attributes: dict[str, list[str | bytes]], id_attribute: str) -> str | None:
    """The entry's stable id from ``id_attribute`` (first value); None when absent."""
    values = attributes.get(id_attribute)
    if not values:
        return None
    return id_from_value(id_attribute, values[0])


def dn_text(raw: bytes) -> str:
    """A DN as text (DNs are UTF-8 by RFC 4514; a broken one keeps replacement marks)."""
    return raw.decode("utf-8", "replace")


def digest_key(id_attribute: str, binary: frozenset[str], drop: frozenset[str]) -> bytes:
    """The key of raw-entry digests (see to_change): every setting that changes how an
    entry's bytes become a Change's attributes (the value convention, the names
    dropped, the id attribute), so a changed setting never lets an old digest match.
    ``drop`` holds every name removed from the attributes, also those removed later
    by the caller."""
    text = repr((1, id_attribute, sorted(binary), sorted(drop)))
    return blake2b(text.encode(), digest_size=32).digest()


_ATTRIBUTES = Change.attributes
"""The slot of ``Change.attributes`` (a slotted dataclass's member descriptor)."""


class RawChange(Change):
    """A Change of a raw-digested entry whose attributes are decoded on first use.

    A complete read of an unchanged directory maps none of its entries (the engine
    skips them on the raw digest), so none of their values need decoding. Anything
    that reads ``attributes`` gets exactly what :func:`decode_attributes` would have
    given at read time; it compares equal to a plain Change with the same fields,
    and pickles and copies as one."""

    __slots__ = ("_binary", "_drop", "_raw")

    def __init__(
        self,
        op: Op,
        source_id: str,
        dn: str | None,
        raw: wire.Entry,
        raw_digest: bytes | None,
        binary: frozenset[str],
        drop: frozenset[str],
    ) -> None:
        self.op = op
        self.source_id = source_id
        self.dn = dn
        self.raw_digest = raw_digest
        self._raw: wire.Entry | None = raw
        self._binary = binary
        self._drop = drop

    @property  # type: ignore[override]
    def attributes(self) -> dict[str, list[str | bytes]]:
        raw = self._raw
        if raw is not None:
            attrs = decode_attributes(raw.attributes, self._binary, self._drop)
            _ATTRIBUTES.__set__(self, attrs)
            self._raw = None
            return attrs
        return _ATTRIBUTES.__get__(self, Change)

    @attributes.setter
    def attributes(self, value: dict[str, list[str | bytes]]) -> None:
        _ATTRIBUTES.__set__(self, value)
        self._raw = None

    def _fields(self) -> tuple:
        return (self.op, self.source_id, self.dn, self.attributes, self.raw_digest)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Change):
            return self._fields() == (
                other.op,
                other.source_id,
                other.dn,
                other.attributes,
                other.raw_digest,
            )
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # as the dataclass: mutable, unhashable

    def __reduce__(self) -> tuple:
        return (Change, self._fields())

    def __repr__(self) -> str:
        return repr(Change(*self._fields()))


class _TypeTest(dict):
    """raw description -> does it fold to ``name``? Filled on first sight of each
    description, so a test is one dict look-up (see :func:`type_matcher`)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def __missing__(self, raw_name: bytes) -> bool:
        hit = attribute_name(raw_name) == self.name
        if len(self) < 10000:
            self[raw_name] = hit
        return hit


@functools.lru_cache(maxsize=64)
def type_matcher(name: str) -> tuple[Callable[[bytes], bool], frozenset[int]]:
    """A test of raw attribute descriptions: does it fold to ``name`` (lower-case, as
    :func:`attribute_name` gives)? Answers are cached: a directory has few types. With
    it, every length such a description can have (``name``, or ``name;binary``: the
    ASCII decoding keeps one character per byte), for :meth:`wire.Entry.values_of`."""
    size = len(name.encode("ascii", "replace"))
    return _TypeTest(name).__getitem__, frozenset({size, size + len(";binary")})


def _id_of(values: list[bytes] | None, id_attribute: str, binary: frozenset[str]) -> str | None:
    """The source id of the raw values of ``id_attribute`` (the first one decoded as
    :func:`decode_attributes` would decode it, then :func:`id_from_value`)."""
    if values is None:
        return None
    return id_from_value(id_attribute, decode_values(id_attribute, values[:1], binary)[0])


def entry_change(
    entry: wire.Entry,
    id_attribute: str,
    *,
    binary: frozenset[str] = BINARY_ATTRIBUTES,
    drop: frozenset[str] = frozenset(),
    sid: str | None = None,
    digest_key: bytes | None = None,
) -> Change | None:
    """:func:`to_change` of an entry as received. With ``digest_key`` the Change is a
    :class:`RawChange` that holds the entry: its attributes are parsed and decoded
    only if something reads them, and only its id is looked for now."""
    if digest_key is None or not entry.body:
        return to_change(
            entry.dn, entry.attributes, id_attribute, binary=binary, drop=drop, sid=sid
        )
    if sid is None:
        sid = _id_of(entry.values_of(*type_matcher(id_attribute)), id_attribute, binary)
        if sid is None:
            return None
    digest = blake2b(entry.body, digest_size=16, key=digest_key).digest()
    return RawChange(Op.UPSERT, sid, dn_text(entry.dn), entry, digest, binary, drop)


def to_change(
    dn: bytes,
    raw: Iterable[tuple[bytes, list[bytes]]],
    id_attribute: str,
    *,
    binary: frozenset[str] = BINARY_ATTRIBUTES,
    drop: frozenset[str] = frozenset(),
    sid: str | None = None,
    body: bytes | memoryview | None = None,
    digest_key: bytes | None = None,
) -> Change | None:
    """An upsert ``Change`` for a raw entry, or None if it has no ``id_attribute``.

    ``sid`` overrides the id (syncrepl gives the entryUUID in its state control).
    ``drop`` removes attributes that were only fetched for bookkeeping.
    ``body``, the entry's encoded DN and attributes (wire.Entry.body), with
    ``digest_key`` (:func:`digest_key` of the read's settings) gives the Change a
    ``raw_digest``: equal bodies decode to equal attributes under equal settings.
    """
    if body and digest_key is not None:
        entry = wire.Entry(dn, list(raw), body=body)
        return entry_change(
            entry, id_attribute, binary=binary, drop=drop, sid=sid, digest_key=digest_key
        )
    attrs = decode_attributes(raw, binary)
    if sid is None:
        sid = source_id(attrs, id_attribute)
        if sid is None:
            return None
    for name in drop:
        attrs.pop(name, None)
    return Change(Op.UPSERT, sid, dn_text(dn), attrs)
