"""The company address book from Active Directory (Samba AD) end to end: users and groups
-> shipped AD mappings -> engine -> ExchangeTarget -> EWS emulator, photos from
thumbnailPhoto, disabled users leaving the book. Asserts on what the emulator stored."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from syncd.config import load_config
from syncd.engine import run_job

pytestmark = pytest.mark.samba

ROOT = Path(__file__).resolve().parents[2]
FOLDER = "Contacts/Company Directory"
THUMB = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00thumbnail\x00\xff\xd9"
ENABLED = "544"  # NORMAL_ACCOUNT | PASSWD_NOTREQD: enabled without setting a password
DISABLED = "546"


def config(tmp_path: Path, dc, ou: str, emu) -> object:
    (tmp_path / "ad.pw").write_text(dc.admin_pw + "\n")
    (tmp_path / "ews.pw").write_text(emu.password + "\n")
    people_filter = "(&(objectCategory=person)(objectClass=user)(!(isCriticalSystemObject=TRUE)))"
    cfg = {
        "version": 1,
        "state": {"url": f"sqlite:///{tmp_path}/state.db"},
        "connections": {
            "ad": {
                "type": "ldap",
                "url": dc.url,
                "bind_dn": dc.admin_dn,
                "password": {"file": str(tmp_path / "ad.pw")},
                "ca_file": dc.ca_file,
            },
            "exchange": {
                "type": "exchange",
                "endpoint": emu.url,
                "username": emu.username,
                "password": {"file": str(tmp_path / "ews.pw")},
                "auth": "basic",
                "mailbox": emu.mailbox,
            },
        },
        "jobs": {
            "people": {
                "source": {"connection": "ad", "base": ou, "filter": people_filter},
                "mapping": str(ROOT / "mappings" / "contacts-ad-exchange.yaml"),
                "target": {"connection": "exchange", "folder": FOLDER},
                "max_deletes": 5,
            },
            "groups": {
                "source": {
                    "connection": "ad",
                    "base": ou,
                    "filter": "(&(objectClass=group)(!(isCriticalSystemObject=TRUE)))",
                },
                "mapping": str(ROOT / "mappings" / "groups-ad-exchange-dl.yaml"),
                "target": {
                    "connection": "exchange",
                    "folder": FOLDER,
                    "kind": "distribution_list",
                },
                "max_deletes": 5,
            },
        },
    }
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return load_config(path)


def by_name(emu) -> dict[str, dict]:
    return {d["DisplayName"]: d for d in map(emu.item_dict, emu.items_in(FOLDER))}


def test_ad_address_book(samba_dc, samba_ou, ews_server, tmp_path):
    tag = samba_ou[5:13]
    anna = samba_dc.add_user(
        samba_ou,
        f"anna-{tag}",
        givenName="Anna",
        sn="Smith",
        displayName="Anna Smith",
        mail=f"anna-{tag}@example.test",
        title="Sales Lead",
        telephoneNumber="+49 30 2222",
        thumbnailPhoto=THUMB,
        userAccountControl=ENABLED,
    )
    bo = samba_dc.add_user(
        samba_ou,
        f"bo-{tag}",
        givenName="Bo",
        sn="Wong",
        displayName="Bo Wong",
        mail=f"bo-{tag}@example.test",
        userAccountControl=ENABLED,
    )
    samba_dc.add_user(
        samba_ou,
        f"gone-{tag}",
        displayName="Gone Already",
        mail=f"gone-{tag}@example.test",
        userAccountControl=DISABLED,
    )
    samba_dc.add_group(samba_ou, f"sales-{tag}", [anna, bo], displayName="Sales")
    cfg = config(tmp_path, samba_dc, samba_ou, ews_server)

    rep = run_job(cfg, "people")
    assert rep.status == "ok", rep.error
    rep = run_job(cfg, "groups")
    assert rep.status == "ok", rep.error
    items = by_name(ews_server)
    assert set(items) == {"Anna Smith", "Bo Wong", "Sales"}  # the disabled user is skipped
    a = items["Anna Smith"]
    assert a["extended"]["syncd-key"] == samba_dc.guid(anna).lower()
    assert a["JobTitle"] == "Sales Lead"
    assert a["EmailAddresses"] == {"EmailAddress1": f"anna-{tag}@example.test"}
    assert [x["content"] for x in a["attachments"]] == [THUMB]
    members = sorted(m["ItemId"] for m in items["Sales"]["Members"])
    assert members == sorted([a["_id"], items["Bo Wong"]["_id"]])

    # Bo's account is disabled: his contact leaves the book, then the list.
    samba_dc.modify(bo, userAccountControl=DISABLED)
    rep = run_job(cfg, "people")
    assert rep.status == "ok", rep.error
    assert rep.counts["deleted"] == 1
    samba_dc.remove_members(f"CN=sales-{tag},{samba_ou}", bo)
    rep = run_job(cfg, "groups")
    assert rep.status == "ok", rep.error
    items = by_name(ews_server)
    assert set(items) == {"Anna Smith", "Sales"}
    assert [m["ItemId"] for m in items["Sales"]["Members"]] == [a["_id"]]
