"""Stored plans (issue 11.2): `plan --out FILE` then `apply FILE` applies exactly those
actions, or refuses (exit 9, nothing written) when anything moved. Real slapd, real CLI."""

from __future__ import annotations

import json
import stat

import pytest

from tests.e2e.hrsetup import EXISTING, JPEG, PEOPLE, Hr, dump, row

pytestmark = pytest.mark.slapd

JANE = f"uid=jane.doe,ou=sales,{PEOPLE}".lower()


@pytest.fixture
def hr(tmp_path, slapd):
    slapd.add(EXISTING)
    work = tmp_path / "work"
    work.mkdir()
    setup = Hr(work, slapd, max_deletes=1)
    setup.export(
        row("E0001", "Jane", "Doe", "Sales", pw="Hunter2-Secret", pin="4711", photo=JPEG),
        row("E0002", "Big", "Boss", "Sales", "CEO"),
        row("E0009", "Old", "Timer", "Eng"),
    )
    return setup


def test_stored_plan_is_applied_then_refused_once_state_moved(hr):
    path = hr.dir / "night.plan"
    res = hr.syncd("plan", "hr", "--out", str(path))
    assert "mode 0600" in res.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "Hunter2" not in text and "4711" not in text
    data = json.loads(text)
    assert data["job"] == "hr" and len(data["actions"]) == 3
    assert all(a["digest"] for a in data["actions"])
    assert JANE not in dump(hr.slapd), "plan --out writes nothing to the target"

    out = hr.syncd("apply", str(path)).stdout
    assert "1 created" in out and "2 updated" in out, out
    assert JANE in dump(hr.slapd)
    # committed like a sync: nothing left to do
    assert "nothing to change" in hr.syncd("plan", "hr").stdout
    status = json.loads(hr.syncd("status", "hr", "--json").stdout)[0]
    assert status["runs"][0]["status"] == "ok" and status["objects"] == 3

    again = hr.syncd("apply", str(path), check=False)
    assert again.returncode == 9, again
    assert "state of job hr changed" in again.stderr and "nothing was written" in again.stderr
    assert "Traceback" not in again.stderr


def test_apply_refuses_when_the_source_changed(hr):
    path = hr.dir / "night.plan"
    hr.syncd("plan", "hr", "--out", str(path))
    hr.export(
        row("E0001", "Jane", "Doe", "Sales", "Director"),
        row("E0002", "Big", "Boss", "Sales", "CEO"),
        row("E0009", "Old", "Timer", "Eng"),
        n=2,
    )
    before = dump(hr.slapd)
    res = hr.syncd("apply", str(path), check=False)
    assert res.returncode == 9, res
    assert "the source (or the target) changed" in res.stderr
    assert dump(hr.slapd) == before
    status = json.loads(hr.syncd("status", "hr", "--json").stdout)[0]
    assert status["objects"] == 0, "no state committed"


@pytest.mark.parametrize("edited", ["mapping", "config"])
def test_apply_refuses_an_edited_config_or_mapping(hr, edited):
    path = hr.dir / "night.plan"
    hr.syncd("plan", "hr", "--out", str(path))
    name = "hr-map.yaml" if edited == "mapping" else "syncd.yaml"
    file = hr.dir / name
    file.write_text(file.read_text() + "\n# edited\n")
    res = hr.syncd("apply", str(path), check=False)
    assert res.returncode == 9 and f"the {edited}" in res.stderr, res
    assert JANE not in dump(hr.slapd)


def test_apply_passes_the_deletion_gate_only_with_allow_deletes(hr):
    others = [row("E0003", "Ann", "Lee", "Eng"), row("E0004", "Bo", "Ek", "Eng")]
    hr.export(
        row("E0001", "Jane", "Doe", "Sales"),
        row("E0002", "Big", "Boss", "Sales", "CEO"),
        row("E0009", "Old", "Timer", "Eng"),
        *others,
        n=2,
    )
    hr.syncd("sync", "hr", "--no-progress")
    hr.export(row("E0009", "Old", "Timer", "Eng"), *others, n=3)  # 2 leavers, max_deletes 1
    path = hr.dir / "leavers.plan"
    hr.syncd("plan", "hr", "--out", str(path))
    res = hr.syncd("apply", str(path), check=False)
    assert res.returncode == 6 and "max_deletes" in res.stderr, res
    out = hr.syncd("apply", str(path), "--allow-deletes").stdout
    assert "2 deleted" in out, out
    assert (
        "employeetype"
        in dump(hr.slapd, "ou=disabled,dc=example,dc=com")[
            "uid=jane.doe,ou=disabled,dc=example,dc=com"
        ]
    )


def test_apply_refuses_what_is_not_a_plan(hr):
    bad = hr.dir / "bad.plan"
    bad.write_text("{}")
    res = hr.syncd("apply", str(bad), check=False)
    assert res.returncode == 2 and "not a syncd plan file" in res.stderr


def test_a_stored_only_plan_applies_just_that_entry(hr):
    path = hr.dir / "jane.plan"
    hr.syncd("plan", "hr", "--only", "E0001", "--out", str(path))
    assert json.loads(path.read_text())["options"]["only"] == ["E0001"]
    out = hr.syncd("apply", str(path)).stdout
    assert "1 created" in out and "updated" not in out, out
    people = dump(hr.slapd)
    assert JANE in people and f"uid=bboss,{PEOPLE}".lower() in people
