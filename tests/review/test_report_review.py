"""Run report review: finding the right job's latest report."""

from __future__ import annotations

from syncd.report import latest_report


def test_latest_report_is_exactly_this_jobs(tmp_path):
    for name in [
        "hr-20261127T023000Z-run9.json",
        "hr-20261128T023000Z-run10.json",
        "hr-20261128T023000Z-run11.json",  # same second, later run
        "hr-2024-20261128T030000Z-run3.json",  # job "hr-2024", newer
        "hr-20261128T040000Z-dry-run.json",  # not a run report
    ]:
        (tmp_path / name).write_text("{}")
    assert latest_report(tmp_path, "hr").name == "hr-20261128T023000Z-run11.json"
    assert latest_report(tmp_path, "hr-2024").name == "hr-2024-20261128T030000Z-run3.json"
    assert latest_report(tmp_path, "h[r]") is None
