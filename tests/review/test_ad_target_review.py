"""LDAP target against a real Samba AD DC with names as people really have them."""

from __future__ import annotations

import unicodedata

import pytest

from syncd.connectors.ldap.target import ACCOUNTDISABLE
from tests.hr.conftest import create, delete, update
from tests.hr.test_ad_target import entry, uac, user

pytestmark = pytest.mark.samba

NAMES = [
    'Smith, John+Jr "the" <boss>; =x',
    "#hash leading",
    "back\\slash*()",
    "עברית مرحبا 👩‍💻",
    unicodedata.normalize("NFD", "José Núñez"),
]


def test_ad_hostile_names_round_trip(ad):
    make, ou, _groups, conn = ad
    t = make(disabled_ou=None)
    for i, name in enumerate(NAMES):
        key = f"97{i:04d}"
        fields = user(key, "X", "Y", dept=name, cn=name)
        [res] = t.apply([create(key, fields)])
        assert res.ok, (name, res.error)
        tid = res.target_id
        [again] = t.apply([update(key, fields, tid)])
        assert again.ok and "moved" not in (again.detail or ""), (name, again.detail)
        [gone] = t.apply([delete(key, tid)])
        assert gone.ok, (name, gone.error)
        assert uac(entry(conn, ou, f"(employeeID={key})")) & ACCOUNTDISABLE
        [back] = t.apply([update(key, fields, tid)])
        assert back.ok and "re-enabled" in (back.detail or ""), (name, back.detail)
        e = entry(conn, ou, f"(employeeID={key})")
        assert not uac(e) & ACCOUNTDISABLE


def test_ad_nfd_export_of_an_nfc_account_is_left_alone(ad):
    make, ou, _groups, conn = ad
    t = make()
    nfc = unicodedata.normalize("NFC", "Zoë Müller")
    fields = user("980001", "Zoë", "Müller", cn=nfc, displayName=nfc)
    [res] = t.apply([create("980001", fields)])
    assert res.ok, res.error
    nfd = {k: unicodedata.normalize("NFD", v) if k != "mail" else v for k, v in fields.items()}
    [again] = t.apply([update("980001", nfd, res.target_id)])
    assert again.ok, again.error
    assert "moved" not in (again.detail or ""), again.detail
    assert "already up to date" in (again.detail or ""), again.detail
    assert entry(conn, ou, "(employeeID=980001)")["dn"].startswith(f"CN={nfc},")
