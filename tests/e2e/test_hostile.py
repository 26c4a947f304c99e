"""Hostile and unusual input end to end: binary values, non-UTF-8 bytes, expressions
that raise, sandbox escape attempts, directory values that look like code."""

from __future__ import annotations

import base64
import json
import sqlite3

from tests.e2e.conftest import Setup, device, write_config

PHOTO = bytes(range(256)) * 4 + b"\xff\xd8\xff\xe0"  # every byte value, JPEG-ish tail
RAW = b"\xff\xfe\x00raw"  # not UTF-8

PEOPLE_MAPPING = """\
version: 1
key: entryUUID
fields:
  uid: uid
  name: cn
  photo: jpegPhoto
  secret_bytes: userPassword
"""


def people_setup(tmp_path, slapd, mapping=PEOPLE_MAPPING) -> Setup:
    work = tmp_path / "w"
    work.mkdir()
    url = f"sqlite:///{work}/inventory.db"
    config = write_config(
        work,
        slapd,
        url,
        mapping=mapping,
        source={"base": "ou=people,dc=example,dc=com", "filter": "(objectClass=inetOrgPerson)"},
        target={"table": "people"},
    )
    return Setup(work, config, slapd, url)


def test_binary_and_non_utf8_values_arrive_byte_for_byte(tmp_path, slapd):
    s = people_setup(tmp_path, slapd)
    slapd.add(
        "dn: uid=zoe,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: zoe\n"
        "cn: Zoë Ångström 山田 😀\nsn: Å\n"
        f"jpegPhoto:: {base64.b64encode(PHOTO).decode()}\n"
        # userPassword is an octet string: these bytes are not UTF-8
        f"userPassword:: {base64.b64encode(RAW).decode()}\n"
    )
    s.syncd("sync", "inventory", "--no-progress")
    con = sqlite3.connect(s.dir / "inventory.db")
    try:
        name, photo, raw = con.execute("SELECT name, photo, secret_bytes FROM people").fetchone()
    finally:
        con.close()
    assert name == "Zoë Ångström 山田 😀"
    assert bytes(photo) == PHOTO
    assert bytes(raw) == RAW
    assert "nothing to change" in s.syncd("sync", "inventory", "--no-progress").stdout


def test_values_that_look_like_code_stay_data(inventory):
    hostile = "{{ 7*7 }}'; DROP TABLE devices; --"
    inventory.slapd.add(device("pc-1", "SN-1", description=hostile))
    inventory.syncd("sync", "inventory", "--no-progress")
    con = sqlite3.connect(inventory.dir / "inventory.db")
    try:
        [(desc,)] = con.execute("SELECT description FROM devices").fetchall()
    finally:
        con.close()
    assert desc == hostile


def test_expression_that_raises_quarantines_that_entry_only(tmp_path, slapd):
    mapping = (
        "version: 1\nkey: entryUUID\nfields:\n  hostname: cn\n"
        '  per_site: "{{ 10 // ((l | length) - 1) }}"\n'
    )
    work = tmp_path / "w"
    work.mkdir()
    url = f"sqlite:///{work}/inventory.db"
    s = Setup(work, write_config(work, slapd, url, mapping=mapping), slapd, url)
    slapd.add(device("pc-1", "SN-1", "Paris") + "l: Lyon\n")  # two sites: 10 // 1
    slapd.add(device("pc-2", "SN-2", "Paris"))  # one site: division by zero
    out = s.syncd("sync", "inventory", "--no-progress").stdout
    assert "1 created" in out and "1 quarantined" in out
    [q] = json.loads(s.syncd("status", "--json").stdout)[0]["quarantine"]
    assert "per_site" in q["reason"] and "ZeroDivisionError" in q["reason"]


def test_sandbox_escape_in_a_mapping_is_refused_at_validate(tmp_path, slapd):
    mapping = (
        "version: 1\nkey: entryUUID\nfields:\n"
        "  a: \"{{ ''.__class__.__mro__[1].__subclasses__() }}\"\n"
        "  b: \"{{ cycler.__init__.__globals__.os.system('id') }}\"\n"
    )
    work = tmp_path / "w"
    work.mkdir()
    url = f"sqlite:///{work}/inventory.db"
    s = Setup(work, write_config(work, slapd, url, mapping=mapping), slapd, url)
    res = s.syncd("validate", check=False)
    assert res.returncode == 2
    assert "devices.yaml:4" in res.stderr and "devices.yaml:5" in res.stderr
    assert "Traceback" not in res.stderr


def test_huge_value_payloads_quarantine_their_entry_and_the_run_goes_on(tmp_path, slapd):
    # The entry's description picks which payload its render runs; pc-ok maps normally.
    payloads = {
        "printf": "'%*d' % (50000000, 1)",
        "format": "'{:{}}'.format('x', 50000000)",
        "filter": "'%*s' | format(50000000, 'x')",
        "replace": "(cn | first)" + ".replace('p', 'pppppppppp')" * 9,
        "join": "(['x' * 100000] * 1000) | join",
    }
    cases = "".join(
        f"{{% elif 'kind-{name}' in description %}}{{{{ {expr} }}}}"
        for name, expr in payloads.items()
    )
    mapping = (
        "version: 1\nkey: entryUUID\nfields:\n  hostname: cn\n"
        f'  note: "{{% if not description %}}ok{cases}{{% endif %}}"\n'
    )
    work = tmp_path / "w"
    work.mkdir()
    url = f"sqlite:///{work}/inventory.db"
    s = Setup(work, write_config(work, slapd, url, mapping=mapping), slapd, url)
    for n in range(6):  # more good entries than bad: under the max_quarantined gate
        slapd.add(device(f"pc-ok{n}", f"SN-0{n}"))
    for n, name in enumerate(payloads, start=1):
        slapd.add(device(f"pc-{name}", f"SN-{n}", description=f"kind-{name}"))
    out = s.syncd("sync", "inventory", "--no-progress").stdout
    assert "6 created" in out and f"{len(payloads)} quarantined" in out, out
    reasons = [q["reason"] for q in json.loads(s.syncd("status", "--json").stdout)[0]["quarantine"]]
    assert len(reasons) == len(payloads)
    assert all("field 'note': SecurityError" in r and "size limit" in r for r in reasons), reasons
    con = sqlite3.connect(work / "inventory.db")
    try:
        rows = con.execute("SELECT hostname, note FROM devices ORDER BY hostname").fetchall()
        assert rows == [(f"pc-ok{n}", "ok") for n in range(6)]
    finally:
        con.close()
