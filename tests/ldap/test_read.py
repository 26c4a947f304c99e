"""LdapSource full reads against a real slapd: paging, limits, values, DNs, errors."""

from __future__ import annotations

import base64
import ssl
import uuid
from pathlib import Path

import pytest
from ldap3.utils.dn import parse_dn
from pydantic import ValidationError

from syncd.connectors.ldap import CONNECTOR, wire
from syncd.connectors.ldap.source import LdapSource, LdapSourceOptions
from syncd.contracts import Op
from syncd.errors import ConnectionFailed, SourceError
from tests.ldap.conftest import PEOPLE, make_source, people_ldif, read_all
from tests.servers.slapd import Slapd
from tests.servers.tls import make_ca_and_cert

pytestmark = pytest.mark.slapd


@pytest.fixture
def slapd1200(tmp_path):
    with Slapd(tmp_path / "slapd", ldif=people_ldif(1200)) as server:
        yield server


def test_connector_spec():
    assert CONNECTOR.name == "ldap"
    assert CONNECTOR.source_class is LdapSource
    assert CONNECTOR.source_model is LdapSourceOptions


def test_paged_read_streams_page_by_page(slapd1200, root_pw_file, monkeypatch):
    searches = []
    real = wire.search

    def counting(conn, base, filter, scope="sub", attributes=None, controls=(), **kw):
        searches.append([c[0] for c in controls])
        return real(conn, base, filter, scope, attributes, controls, **kw)

    monkeypatch.setattr(wire, "search", counting)
    source = make_source(
        slapd1200, root_pw_file, changes="full", page_size=100, filter="(objectClass=inetOrgPerson)"
    )
    read = source.read(None)
    first = next(read.changes)
    paged_so_far = sum(1 for s in searches if wire.OID_PAGED in s)
    assert paged_so_far == 1  # the first change arrives before page 2 is even asked for
    rest = list(read.changes)
    changes = [first, *rest]
    assert len(changes) == 1200
    assert len({c.source_id for c in changes}) == 1200
    assert sum(1 for s in searches if wire.OID_PAGED in s) == 12
    assert all(c.op is Op.UPSERT for c in changes)
    assert read.outcome.complete is True and read.outcome.method == "full"
    one = next(c for c in changes if c.dn == f"uid=p000007,{PEOPLE}")
    assert one.attributes["cn"] == ["Person 7"]
    assert one.attributes["mail"] == ["p7@example.com"]
    assert str(uuid.UUID(one.source_id)) == one.source_id
    assert one.attributes["entryuuid"] == [one.source_id]


def test_size_limit_without_paging_rights_is_a_failed_read(slapd1200):
    # Anonymous is not covered by "limits users size.pr=unlimited": sizelimit 500 applies.
    source = make_source(slapd1200, None, changes="full", page_size=100)
    read = source.read(None)
    got = []
    with pytest.raises(SourceError, match="size limit") as err:
        for change in read.changes:
            got.append(change)
    assert read.outcome is None
    assert len(got) <= 500
    assert "incomplete" in str(err.value)


def test_missing_base_dn(slapd, root_pw_file):
    source = make_source(slapd, root_pw_file, changes="full", base="ou=nope,dc=example,dc=com")
    read = source.read(None)
    with pytest.raises(SourceError, match=r"ou=nope,dc=example,dc=com.*does not exist"):
        list(read.changes)
    assert read.outcome is None


def test_empty_result_is_a_normal_complete_read(slapd, root_pw_file):
    source = make_source(slapd, root_pw_file, changes="full", filter="(uid=nobody)")
    changes, read = read_all(source)
    assert changes == []
    assert read.outcome.complete is True


def test_connection_lost_mid_read(slapd1200, root_pw_file):
    source = make_source(slapd1200, root_pw_file, changes="full", page_size=100)
    read = source.read(None)
    next(read.changes)
    slapd1200.stop()
    with pytest.raises(SourceError, match=r"connection|server"):
        list(read.changes)
    assert read.outcome is None


def test_server_down_at_read_is_connection_failed(slapd, root_pw_file):
    source = make_source(slapd, root_pw_file)
    slapd.stop()
    with pytest.raises(ConnectionFailed, match="connection refused"):
        source.read(None)


BINARY = bytes(range(256)) * 3 + b"\xff\xd8\xff\xe0 not utf-8 \x80"
UTF8_LOOKING = b"plain ascii photo"  # valid UTF-8, still bytes for jpegPhoto
LATIN1 = b"caf\xe9-latin1"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_binary_and_non_utf8_values(slapd, root_pw_file, tmp_path):
    pem = make_ca_and_cert(tmp_path / "cert", hosts=["x.example"])["cert"]
    cert = ssl.PEM_cert_to_DER_cert(Path(pem).read_text())
    slapd.add(
        f"dn: uid=bin,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: bin\ncn: Bin\nsn: B\n"
        f"jpegPhoto:: {b64(BINARY)}\njpegPhoto:: {b64(UTF8_LOOKING)}\n"
        f"userPassword:: {b64(LATIN1)}\n"
        f"userCertificate;binary:: {b64(cert)}\n"
    )
    slapd.add(
        f"dn: uid=txt,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: txt\ncn: Txt\nsn: T\n"
        f"userPassword: {'plain-text'}\n"
    )
    changes, _ = read_all(make_source(slapd, root_pw_file, changes="full"))
    by_uid = {c.attributes["uid"][0]: c for c in changes if "uid" in c.attributes}
    attrs = by_uid["bin"].attributes
    assert sorted(attrs["jpegphoto"], key=len) == sorted([BINARY, UTF8_LOOKING], key=len)
    assert all(isinstance(v, bytes) for v in attrs["jpegphoto"])
    assert attrs["userpassword"] == [b"caf\xe9-latin1"]  # not UTF-8 -> bytes
    assert attrs["usercertificate"] == [cert]  # ;binary dropped, bytes kept
    assert by_uid["txt"].attributes["userpassword"] == ["plain-text"]  # UTF-8 -> str


SCRIPTS = {
    "latin": "Zoë Ångström-Łukasiewicz",
    "greek": "Αλέξανδρος Παπαδόπουλος",
    "cyrillic": "Александра Иванова",
    "armenian": "Արամ Խաչատրյան",
    "georgian": "ნინო ბერიძე",
    "hebrew": "דוד בן גוריון",
    "arabic": "محمد عبد الله",
    "devanagari": "देवनागरी नाम",
    "bengali": "রবীন্দ্রনাথ ঠাকুর",
    "tamil": "தமிழ் பெயர்",
    "thai": "สมชาย ใจดี",
    "hangul": "김민준",
    "cjk": "王小明 山田太郎",
    "kana": "やまだ タロウ",
    "ethiopic": "ኃይለ ሥላሴ",
    "emoji": "Smiley 😀 𝄞 clef",
    "combining": "e\u0301cole\u0308",
}


def test_unicode_in_every_script(slapd, root_pw_file):
    ldif = ""
    for key, name in SCRIPTS.items():
        ldif += (
            f"dn:: {b64(f'cn={name},{PEOPLE}'.encode())}\nobjectClass: inetOrgPerson\n"
            f"cn:: {b64(name.encode())}\nsn: {key}\n"
            f"description:: {b64(('about ' + name).encode())}\n\n"
        )
    slapd.add(ldif)
    changes, _ = read_all(make_source(slapd, root_pw_file, changes="full"))
    by_sn = {c.attributes["sn"][0]: c for c in changes if "sn" in c.attributes}
    for key, name in SCRIPTS.items():
        change = by_sn[key]
        assert change.attributes["cn"] == [name]
        assert change.attributes["description"] == [f"about {name}"]
        assert change.dn == f"cn={name},{PEOPLE}"


def test_escaped_and_multi_valued_rdns(slapd, root_pw_file):
    slapd.add(
        f"dn: cn=Smith\\, John+uid=js,{PEOPLE}\nobjectClass: inetOrgPerson\n"
        "cn: Smith, John\nuid: js\nsn: Smith\n\n"
        f"dn: cn=a\\+b\\=c\\;d\\\\e,{PEOPLE}\nobjectClass: inetOrgPerson\n"
        "cn: a+b=c;d\\e\nsn: x\n"
    )
    changes, _ = read_all(make_source(slapd, root_pw_file, changes="full"))
    by_sn = {c.attributes["sn"][0]: c for c in changes if "sn" in c.attributes}
    smith = by_sn["Smith"]
    assert smith.attributes["cn"] == ["Smith, John"]
    assert smith.attributes["uid"] == ["js"]
    # The DN is the server's own string (slapd writes "," as \2C): it is kept verbatim
    # so it matches member values of the same server; its parts decode correctly.
    first_rdn = parse_dn(smith.dn)[:2]
    assert {(a.lower(), unescape(v)) for a, v, _ in first_rdn} == {
        ("cn", "Smith, John"),
        ("uid", "js"),
    }
    assert smith.dn.lower().endswith("," + PEOPLE)
    assert by_sn["x"].attributes["cn"] == ["a+b=c;d\\e"]
    assert unescape(parse_dn(by_sn["x"].dn)[0][1]) == "a+b=c;d\\e"


def unescape(value: str) -> str:
    """RFC 4514 value unescaping (\\XX hex pairs and \\c)."""
    out = bytearray()
    i = 0
    while i < len(value):
        if value[i] == "\\":
            pair = value[i + 1 : i + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                out += bytes.fromhex(pair)
                i += 3
                continue
            out += value[i + 1].encode()
            i += 2
            continue
        out += value[i].encode()
        i += 1
    return out.decode()


def test_attribute_names_lowercased_and_attribute_list(slapd, root_pw_file):
    slapd.add(people_ldif(3))
    source = make_source(
        slapd,
        root_pw_file,
        changes="full",
        attributes=["CN", "Mail"],
        filter="(objectClass=inetOrgPerson)",
    )
    changes, _ = read_all(source)
    assert len(changes) == 3
    for change in changes:
        # asked for cn and mail; the id attribute always comes along
        assert set(change.attributes) == {"cn", "mail", "entryuuid"}


def test_scope_one_and_base(slapd, root_pw_file):
    slapd.add(people_ldif(2))
    one, _ = read_all(
        make_source(slapd, root_pw_file, changes="full", base="dc=example,dc=com", scope="one")
    )
    assert {c.dn for c in one} == {
        "ou=people,dc=example,dc=com",
        "ou=devices,dc=example,dc=com",
        "ou=groups,dc=example,dc=com",
    }
    base, _ = read_all(make_source(slapd, root_pw_file, changes="full", scope="base"))
    assert [c.dn for c in base] == [PEOPLE]


def test_custom_id_attribute_skips_entries_without_it(slapd, root_pw_file):
    slapd.add(people_ldif(3) + f"dn: cn=noid,{PEOPLE}\nobjectClass: person\ncn: noid\nsn: n\n")
    source = make_source(slapd, root_pw_file, changes="full", id_attribute="uid")
    changes, read = read_all(source)
    assert sorted(c.source_id for c in changes) == ["p000000", "p000001", "p000002"]
    assert any("without uid skipped" in n for n in read.outcome.notes)


def test_auto_detects_syncrepl_and_says_so(slapd, root_pw_file):
    _, read = read_all(make_source(slapd, root_pw_file))
    assert read.outcome.method == "syncrepl"
    assert any(n.startswith("using syncrepl") for n in read.outcome.notes)


def test_check_for_doctor(slapd, root_pw_file, tmp_path):
    results = {r.name: r for r in make_source(slapd, root_pw_file).check()}
    assert all(r.ok for r in results.values()), results
    assert "syncrepl" in results["change tracking"].detail
    assert results["paged results control"].ok
    bad = {
        r.name: r
        for r in make_source(slapd, root_pw_file, base="ou=nope,dc=example,dc=com").check()
    }
    assert not bad["base DN"].ok and "does not exist" in bad["base DN"].detail
    assert results["reach and TLS"].detail.endswith("(no TLS)")
    wrong = tmp_path / "wrong.pw"
    wrong.write_text("nope")
    denied = {r.name: r for r in make_source(slapd, wrong).check()}
    assert denied["reach and TLS"].ok and not denied["bind"].ok
    assert "invalid credentials" in denied["bind"].detail and "rootDSE" not in denied
    slapd.stop()
    down = make_source(slapd, root_pw_file).check()
    assert len(down) == 1 and not down[0].ok and "refused" in down[0].detail


def test_check_over_verified_tls(tls300, root_pw_file):
    slapd_tls = tls300
    source = make_source(
        slapd_tls, root_pw_file, conn_kw={"url": slapd_tls.ldaps_url, "ca_file": slapd_tls.ca_file}
    )
    results = {r.name: r for r in source.check()}
    assert "LDAPS, certificate verified" in results["reach and TLS"].detail
    assert all(r.ok for r in results.values())
    untrusted = make_source(slapd_tls, root_pw_file, conn_kw={"url": slapd_tls.ldaps_url})
    (line,) = untrusted.check()
    assert not line.ok and "ca_file" in line.hint


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"base": PEOPLE, "filter": "(&(uid=a)"}, "invalid LDAP filter"),
        ({"base": "not a dn"}, "invalid base DN"),
        ({"base": PEOPLE, "scope": "tree"}, "scope"),
        ({"base": PEOPLE, "changes": "psearch"}, "changes"),
        ({"base": PEOPLE, "full_every": "soon"}, "duration"),
        ({"base": PEOPLE, "changes": "syncrepl", "id_attribute": "uid"}, "entryUUID"),
        ({"base": PEOPLE, "unknown": 1}, "Extra inputs"),
    ],
)
def test_bad_source_options(data, fragment):
    with pytest.raises(ValidationError, match=fragment):
        LdapSourceOptions.model_validate(data)


def test_source_options_defaults_and_durations():
    opts = LdapSourceOptions.model_validate(
        {"base": PEOPLE, "filter": "uid=a", "full_every": "24h", "timestamp_overlap": "5m"}
    )
    assert opts.filter == "(uid=a)"
    assert opts.full_every == 86400 and opts.timestamp_overlap == 300
    assert opts.changes == "auto" and opts.scope == "sub" and opts.id_attribute == "auto"


class NoSyncprovSlapd(Slapd):
    """A slapd without the syncprov overlay: no change-tracking control."""

    def setup(self):
        super().setup()
        lines = self.conf.read_text().splitlines()
        self.conf.write_text(
            "\n".join(ln for ln in lines if "syncprov" not in ln and "sessionlog" not in ln) + "\n"
        )


def test_auto_without_syncrepl_uses_timestamps(tmp_path, root_pw_file):
    with NoSyncprovSlapd(tmp_path / "slapd", ldif=people_ldif(3)) as server:
        source = make_source(server, root_pw_file)
        changes, read = read_all(source)
        assert read.outcome.method == "timestamp" and read.outcome.complete is True
        assert any("modifyTimestamp" in n for n in read.outcome.notes)
        assert len(changes) == 4  # ou=people and three people
        with pytest.raises(SourceError, match="does not offer the sync control"):
            make_source(server, root_pw_file, changes="syncrepl").read(None)
        with pytest.raises(SourceError, match="does not offer DirSync"):
            make_source(server, root_pw_file, changes="dirsync").read(None)


@pytest.fixture(scope="module")
def tls300(tmp_path_factory):
    """A TLS slapd with 300 people, shared by the read-only TLS tests of this module."""
    with Slapd(tmp_path_factory.mktemp("tls") / "slapd", tls=True, ldif=people_ldif(300)) as server:
        yield server


@pytest.mark.parametrize("use_ldaps", [True, False], ids=["ldaps", "starttls"])
def test_paged_read_over_tls(tls300, root_pw_file, use_ldaps):
    slapd_tls = tls300
    kw = {"url": slapd_tls.ldaps_url} if use_ldaps else {"start_tls": True}
    source = make_source(
        slapd_tls,
        root_pw_file,
        changes="full",
        page_size=50,
        filter="(objectClass=inetOrgPerson)",
        conn_kw={"ca_file": slapd_tls.ca_file, **kw},
    )
    changes, read = read_all(source)
    assert len({c.source_id for c in changes}) == 300 and read.outcome.complete
    sync_changes, _ = read_all(
        make_source(
            slapd_tls,
            root_pw_file,
            changes="syncrepl",
            filter="(objectClass=inetOrgPerson)",
            conn_kw={"ca_file": slapd_tls.ca_file, **kw},
        )
    )
    assert {c.source_id for c in sync_changes} == {c.source_id for c in changes}


def test_auto_with_a_custom_id_does_not_use_syncrepl(slapd, root_pw_file):
    slapd.add(people_ldif(2))
    source = make_source(
        slapd, root_pw_file, id_attribute="uid", filter="(objectClass=inetOrgPerson)"
    )
    changes, read = read_all(source)
    assert read.outcome.method == "timestamp"
    assert sorted(c.source_id for c in changes) == ["p000000", "p000001"]
    with pytest.raises(SourceError, match="Active Directory only"):
        make_source(slapd, root_pw_file, changes="usn").read(None)


def test_server_hanging_mid_read_times_out(slapd1200, root_pw_file):
    import signal

    source = make_source(
        slapd1200, root_pw_file, changes="full", page_size=100, conn_kw={"timeout": 1}
    )
    read = source.read(None)
    for _ in range(100):  # the whole first page
        next(read.changes)
    slapd1200.proc.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(SourceError, match="no answer from the LDAP server"):
            list(read.changes)
    finally:
        slapd1200.proc.send_signal(signal.SIGCONT)
    assert read.outcome is None


def test_plain_search_without_paging(slapd1200, root_pw_file):
    source = make_source(slapd1200, root_pw_file)
    conn = source._open()
    try:
        entries = list(
            wire.paged_search(
                conn,
                PEOPLE,
                "(objectClass=inetOrgPerson)",
                "sub",
                ["uid"],
                page_size=100,
                paged=False,
            )
        )
    finally:
        source.close()
    assert len(entries) == 1200  # the root DN has no size limit: one search, all entries
    anonymous = make_source(slapd1200, None)
    conn = anonymous._open()
    try:
        with pytest.raises(SourceError, match="size limit after 500"):
            list(
                wire.paged_search(
                    conn, PEOPLE, "(objectClass=*)", "sub", ["uid"], page_size=100, paged=False
                )
            )
    finally:
        anonymous.close()
