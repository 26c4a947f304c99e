"""Fixtures for the Exchange target: the EWS emulator and the contract-suite harness.

* ``ews_server``: a started :class:`~tests.servers.ews_emulator.EwsEmulator` (fresh per
  test; it starts in about a millisecond).
* ``ews_password_file``: the emulator's password in a file, for ``{file: PATH}``.
* ``make_exchange_target``: builds an ExchangeTarget against the emulator (back-offs
  recorded instead of slept).
* ``harness_exchange``: the contract suite's harness (contacts in a fresh folder).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from tests.contract.harness import BAD_PASSWORD, Stored, TargetHarness, register
from tests.servers.ews_emulator import EwsEmulator


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_secret(directory: Path, name: str, value: str) -> dict[str, str]:
    path = directory / name
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return {"file": str(path)}


def exchange_target(
    emu: EwsEmulator,
    secret_dir: Path,
    *,
    folder: str = "Contacts/Company Directory",
    kind: str = "contact",
    password: str | None = None,
    endpoint: str | None = None,
    auth: str = "basic",
    username: str | None = None,
    job: str = "test",
    connection: dict[str, Any] | None = None,
    **options: Any,
) -> Any:
    """An ExchangeTarget (not opened) for the emulator; back-off sleeps are recorded in
    ``target.slept`` instead of slept, so throttling tests stay fast."""
    from syncd.connectors.exchange import ExchangeConnection, ExchangeTarget, ExchangeTargetOptions

    pw = emu.password if password is None else password
    conn = ExchangeConnection.model_validate(
        {
            "endpoint": endpoint or emu.url,
            "username": username or emu.username,
            "password": write_secret(secret_dir, f"pw-{abs(hash(pw))}", pw),
            "auth": auth,
            "mailbox": emu.mailbox,
            "timeout": 5,
            **(connection or {}),
        }
    )
    opts = ExchangeTargetOptions.model_validate({"folder": folder, "kind": kind, **options})
    target = ExchangeTarget(conn, opts, job=job)
    target.slept = []  # type: ignore[attr-defined]
    target.sleep = target.slept.append  # type: ignore[attr-defined]
    return target


@pytest.fixture
def ews_server():
    emu = EwsEmulator().start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def make_exchange_target(ews_server, tmp_path):
    def make(**kwargs: Any) -> Any:
        return exchange_target(ews_server, tmp_path, **kwargs)

    return make


@register
class ExchangeHarness(TargetHarness):
    """Contacts in ``Contacts/Contract <n>`` of the emulator: text = DisplayName,
    multi = EmailAddress1..3 (in order, duplicates merged)."""

    name = "exchange"
    capabilities = frozenset(
        {"credentials", "down", "delete", "bad_record", "multi_order", "read_back"}
    )
    max_multi = 3
    apply_timeout = 20.0

    def __init__(self, emu: EwsEmulator, secret_dir: Path):
        super().__init__()
        self.emu = emu
        self.secret_dir = secret_dir
        self.folder = "Contacts/Contract"

    def make_target(self, *, soft_delete: bool = False) -> Any:
        return exchange_target(self.emu, self.secret_dir, folder=self.folder)

    def fields(self, key: str, text: str, multi: list[str]) -> dict[str, Any]:
        return {"display_name": text, "email_addresses": list(multi)}

    def bad_fields(self, key: str) -> dict[str, Any]:
        # Exchange requires a display name; the target refuses the record alone.
        return {"display_name": None, "email_addresses": ["x@example.com"]}

    def stored(self) -> list[Stored]:
        out = []
        for item in self.emu.items_in(self.folder):
            d = self.emu.item_dict(item)
            key = d["extended"].get("syncd-key")
            if key is None:
                continue
            emails = d.get("EmailAddresses", {})
            multi = [
                emails[k]
                for k in ("EmailAddress1", "EmailAddress2", "EmailAddress3")
                if k in emails
            ]
            out.append(Stored(key, d.get("DisplayName") or "", multi))
        return out

    def make_bad_credentials_target(self) -> Any:
        return exchange_target(self.emu, self.secret_dir, folder=self.folder, password=BAD_PASSWORD)

    def make_down_target(self) -> Any:
        url = f"http://127.0.0.1:{_free_port()}/EWS/Exchange.asmx"
        return exchange_target(self.emu, self.secret_dir, folder=self.folder, endpoint=url)


@pytest.fixture
def harness_exchange(ews_server, tmp_path):
    h = ExchangeHarness(ews_server, tmp_path)
    yield h
    h.close()
