"""Helpers for the CardDAV target tests: targets against the session's Radicale and
read-back of what Radicale holds (plain httpx + vobject, not the code under test)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import vobject

from syncd.connectors.carddav import CardDavConnection, CardDavTarget, CardDavTargetOptions
from syncd.contracts import Action, ActionKind
from tests.servers.fixtures_radicale import book_path, read_cards

pytestmark = pytest.mark.radicale


@pytest.fixture
def make_target(radicale_server, carddav_book, password_file) -> Callable[..., CardDavTarget]:
    """make_target(url=None, open=True, **target_options) -> CardDavTarget (closed after)."""
    made: list[CardDavTarget] = []

    def make(
        *,
        url: str | None = None,
        open: bool = True,
        connection: dict[str, Any] | None = None,
        hooks: dict[str, list[Any]] | None = None,
        **options: Any,
    ) -> CardDavTarget:
        conn = CardDavConnection.model_validate(
            {
                "url": url or radicale_server.url,
                "username": radicale_server.user,
                "password": {"file": str(password_file)},
                "timeout": 5,
                **(connection or {}),
            }
        )
        options.setdefault("addressbook", carddav_book)
        target = CardDavTarget(
            conn, CardDavTargetOptions.model_validate(options), job="test", event_hooks=hooks
        )
        made.append(target)
        if open:
            target.open()
        return target

    yield make
    for t in made:
        t.close()


@pytest.fixture
def cards(radicale_server, carddav_book) -> Callable[[], dict[str, Any]]:
    """cards() -> {UID: parsed vobject card} of the test's address book."""

    def read() -> dict[str, Any]:
        out = {}
        for text in read_cards(radicale_server, book_path(radicale_server, carddav_book)).values():
            card = vobject.readOne(text)
            out[card.uid.value] = card
        return out

    return read


@pytest.fixture
def raw_cards(radicale_server, carddav_book) -> Callable[[], dict[str, str]]:
    """raw_cards() -> {href: vCard text} of the test's address book."""
    return lambda: read_cards(radicale_server, book_path(radicale_server, carddav_book))


def create(key: str, **fields: Any) -> Action:
    return Action(ActionKind.CREATE, source_id=f"s-{key}", key=key, fields=fields)


def update(key: str, target_id: str | None, **fields: Any) -> Action:
    return Action(
        ActionKind.UPDATE,
        source_id=f"s-{key}",
        key=key,
        fields=fields,
        changed=tuple(fields),
        target_id=target_id,
    )


def delete(key: str, target_id: str | None) -> Action:
    return Action(ActionKind.DELETE, source_id=f"s-{key}", key=key, target_id=target_id)


def ok(results: list) -> list:
    bad = [(r.action.key, r.error) for r in results if not r.ok]
    assert not bad, bad
    return results
