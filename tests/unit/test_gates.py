"""The safety gates: the plan is checked as a whole before anything is written."""

import pytest

from syncd.config import parse_max_deletes
from syncd.errors import GateStopped
from syncd.gates import PlanTotals, allowed_deletes, check


def totals(before=100, read=100, complete=True, deletes=0):
    return PlanTotals(synced_before=before, read=read, complete=complete, deletes=deletes)


def test_percentage_threshold_stops_above_and_passes_at_limit():
    share = parse_max_deletes("10%")
    assert check(totals(deletes=10), share, allow_deletes=False) == []
    with pytest.raises(GateStopped, match=r"deletes or disables 11 objects.*10% of 100 = 10"):
        check(totals(deletes=11), share, allow_deletes=False)


def test_count_threshold():
    assert allowed_deletes(parse_max_deletes(5), 1000) == 5
    with pytest.raises(GateStopped, match="more than max_deletes allows"):
        check(totals(before=1000, read=1000, deletes=6), 5, allow_deletes=False)


def test_allow_deletes_overrides_once_with_a_warning():
    warnings = check(totals(deletes=50), 0.1, allow_deletes=True)
    assert len(warnings) == 1 and "--allow-deletes" in warnings[0]


def test_empty_complete_read_with_synced_objects_is_refused_even_under_threshold():
    # 100% threshold would allow deleting everything: the empty-source guard still stops it
    with pytest.raises(GateStopped, match="returned no objects"):
        check(totals(before=3, read=0, deletes=3), 1.0, allow_deletes=False)


def test_empty_incremental_read_is_normal():
    assert check(totals(before=3, read=0, complete=False), 0.1, allow_deletes=False) == []


def test_first_run_on_empty_state_is_not_gated():
    assert check(totals(before=0, read=0), 0.1, allow_deletes=False) == []


@pytest.mark.parametrize("bad", ["ten", "110%", -1, "5 %x", True])
def test_bad_max_deletes_values_are_refused(bad):
    with pytest.raises(ValueError):
        parse_max_deletes(bad)
