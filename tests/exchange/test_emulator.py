"""The EWS emulator itself, driven by the real exchangelib client and raw HTTP: what it
stores, how it pages, and that it answers like Exchange where the target relies on it."""

from __future__ import annotations

import base64

import httpx
import pytest
from exchangelib import BASIC, DELEGATE, Account, Configuration, Credentials, Version
from exchangelib.errors import ErrorIrresolvableConflict, ErrorItemNotFound
from exchangelib.folders import Folder
from exchangelib.items import Contact
from exchangelib.protocol import FailFast
from exchangelib.version import EXCHANGE_2016

SOAP = (
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
    'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">'
    "<s:Body>{}</s:Body></s:Envelope>"
)


@pytest.fixture
def account(ews_server):
    cfg = Configuration(
        service_endpoint=ews_server.url,
        credentials=Credentials(ews_server.username, ews_server.password),
        auth_type=BASIC,
        version=Version(build=EXCHANGE_2016),
        retry_policy=FailFast(),
    )
    return Account(ews_server.mailbox, config=cfg, autodiscover=False, access_type=DELEGATE)


def test_paging_and_stored_items(ews_server, account):
    folder = Folder(parent=account.contacts, name="Paged", folder_class="IPF.Contact")
    folder.save()
    account.bulk_create(folder, [Contact(display_name=f"C{n:03d}") for n in range(230)])
    assert len(ews_server.items_in("Contacts/Paged")) == 230
    ews_server.reset_counters()
    names = [c.display_name for c in folder.all().only("display_name")]
    assert sorted(names) == [f"C{n:03d}" for n in range(230)]
    assert ews_server.operations["FindItem"] >= 3  # 100 + 100 + 30


def test_stale_change_key_with_never_overwrite_is_a_conflict(ews_server, account):
    [res] = account.bulk_create(account.contacts, [Contact(display_name="Orig")])
    item = Contact(account=account, id=res.id, changekey=res.changekey, display_name="One")
    item.save(update_fields=["display_name"])
    stale = Contact(account=account, id=res.id, changekey=res.changekey, display_name="Two")
    with pytest.raises(ErrorIrresolvableConflict, match="change key"):
        account.bulk_update([(stale, ["display_name"])], conflict_resolution="NeverOverwrite")
    assert ews_server.item_dict(res.id)["DisplayName"] == "One"


def test_missing_item_and_delete(ews_server, account):
    [res] = account.bulk_create(account.contacts, [Contact(display_name="Tmp")])
    assert account.bulk_delete([(res.id, res.changekey)]) == [True]
    assert res.id not in ews_server.items
    [again] = account.bulk_delete([(res.id, res.changekey)])
    assert isinstance(again, ErrorItemNotFound)


def test_http_401_without_or_with_wrong_credentials(ews_server):
    body = SOAP.format("<m:GetFolder/>")
    r = httpx.post(ews_server.url, content=body)
    assert r.status_code == 401 and "Basic" in r.headers.get_list("www-authenticate")[0]
    wrong = base64.b64encode(f"{ews_server.username}:nope".encode()).decode()
    r = httpx.post(ews_server.url, content=body, headers={"Authorization": f"Basic {wrong}"})
    assert r.status_code == 401
    assert ews_server.operations.total() == 0


def test_busy_fault_shape(ews_server):
    ews_server.inject_busy(1, back_off_ms=1234)
    good = base64.b64encode(f"{ews_server.username}:{ews_server.password}".encode()).decode()
    body = SOAP.format(
        "<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape>"
        '<m:FolderIds><t:DistinguishedFolderId Id="root"/></m:FolderIds></m:GetFolder>'
    )
    headers = {"Authorization": f"Basic {good}"}
    r = httpx.post(ews_server.url, content=body, headers=headers)
    assert r.status_code == 500
    assert "ErrorServerBusy" in r.text and 'Name="BackOffMilliseconds">1234<' in r.text
    r = httpx.post(ews_server.url, content=body, headers=headers)  # only the next one
    assert r.status_code == 200 and "NoError" in r.text
