"""The shipped HR mappings on dates as real exports write them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from syncd.contracts import Change, Op
from syncd.errors import MappingError
from syncd.mapping import Mapping

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ["hr-csv-openldap.yaml", "hr-csv-ad.yaml"]


def _row(**dates: str) -> Change:
    attrs: dict[str, list[str | bytes]] = {
        "employeeid": ["E1"],
        "givenname": ["Ann"],
        "surname": ["Lee"],
        "department": ["Sales"],
        "mail": ["ann.lee@example.com"],
    }
    attrs.update({k.lower(): [v] for k, v in dates.items()})
    return Change(Op.UPSERT, "E1", None, attrs)


def _iso(days: int) -> str:
    return (dt.date.today() + dt.timedelta(days=days)).isoformat()


@pytest.mark.parametrize("name", MAPPINGS)
def test_iso_dates_decide_enabled(name):
    m = Mapping.load(ROOT / "mappings" / name)
    assert m.map(_row(startDate=_iso(-30), endDate=_iso(30))).fields["enabled"] is True
    assert m.map(_row(startDate=_iso(-30), endDate=_iso(-1))).fields["enabled"] is False
    assert m.map(_row(startDate=_iso(3))).fields["enabled"] is False
    assert m.map(_row()).fields["enabled"] is True
    # Compact ISO 8601 compares right too (a leaver whose end date passed this month).
    past = (dt.date.today() - dt.timedelta(days=1)).strftime("%Y%m%d")
    assert m.map(_row(startDate="20200101", endDate=past)).fields["enabled"] is False


@pytest.mark.parametrize("name", MAPPINGS)
@pytest.mark.parametrize("end", ["German", "US"])
def test_a_non_iso_date_quarantines_instead_of_disabling(name, end):
    """15.01.2027 (German Excel) compared as text with today's ISO date said 'ended';
    a running contract must not disable anyone: the entry is quarantined instead."""
    m = Mapping.load(ROOT / "mappings" / name)
    future = dt.date.today() + dt.timedelta(days=60)
    text = future.strftime("%d.%m.%Y") if end == "German" else future.strftime("%m/%d/%Y")
    with pytest.raises(MappingError, match="endDate"):
        m.map(_row(startDate=_iso(-30), endDate=text))
