"""User errors: one line, the documented exit code, no traceback, bounded memory."""

from __future__ import annotations

import resource
import time

import yaml

from tests.e2e.conftest import run_in_process
from tests.review_core.conftest import make_staff

BOMB = """\
version: 1
a: &a ["x","x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_yaml_alias_bomb_is_refused_quickly(tmp_path):
    path = tmp_path / "syncd.yaml"
    path.write_text(BOMB)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    out = run_in_process(["-c", str(path), "validate"])
    assert time.monotonic() - started < 10
    assert out.returncode == 2, out
    assert "aliases" in out.stderr and "Traceback" not in out.stderr
    # 10^9 values expanded would take far more than this.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000


def test_deeply_nested_config_is_a_user_error_with_its_line(tmp_path):
    """PyYAML composes recursively: 5000 nested brackets used to end in a RecursionError
    traceback; block-style nesting as deep too."""
    flow = tmp_path / "flow.yaml"
    flow.write_text("version: 1\njobs: " + "[" * 5000 + "]" * 5000 + "\n")
    out = run_in_process(["-c", str(flow), "validate"])
    assert out.returncode == 2, out
    assert f"{flow}:2: YAML nested too deeply" in out.stderr
    assert "Traceback" not in out.stderr
    block = tmp_path / "block.yaml"
    block.write_text("version: 1\n" + "\n".join("  " * i + f"k{i}:" for i in range(3000)))
    out = run_in_process(["-c", str(block), "validate"])
    assert out.returncode == 2, out
    assert f"{block}:53: YAML nested too deeply" in out.stderr
    assert "Traceback" not in out.stderr


def test_ordinary_aliases_still_work(tmp_path):
    setup = make_staff(tmp_path)
    cfg = setup.config.read_text().replace("  hr:\n    type: sql\n", "  hr: &hr\n    type: sql\n")
    setup.config.write_text(cfg)
    assert setup.syncd("validate").returncode == 0


def _with_secrets(setup, *, state: dict | None = None, conn: dict | None = None) -> None:
    cfg = yaml.safe_load(setup.config.read_text())
    if state:
        cfg["state"]["password"] = state
    if conn:
        cfg["connections"]["out"]["password"] = conn
    setup.config.write_text(yaml.safe_dump(cfg))


def test_validate_checks_the_state_password_too(tmp_path, monkeypatch):
    setup = make_staff(tmp_path)
    monkeypatch.delenv("SYNCD_REVIEW_UNSET", raising=False)
    _with_secrets(setup, state={"env": "SYNCD_REVIEW_UNSET"})
    out = setup.syncd("validate")
    assert out.returncode == 2, out
    assert "state.password" in out.stderr and "SYNCD_REVIEW_UNSET is not set" in out.stderr
    # file:line of the reference, like every other config problem
    lines = setup.config.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "SYNCD_REVIEW_UNSET" in text)
    # (the key's line, or the reference's when it is written on the next line)
    assert any(f"{setup.config}:{n}: state.password" in out.stderr for n in (line - 1, line))


def test_a_malformed_state_url_is_not_echoed(tmp_path):
    setup = make_staff(tmp_path)
    cfg = yaml.safe_load(setup.config.read_text())
    cfg["state"]["url"] = "postgresql+psycopg//syncd:hunter2@db/syncd"
    setup.config.write_text(yaml.safe_dump(cfg))
    out = setup.syncd("validate")
    assert out.returncode == 2 and "state.url: not a database URL" in out.stderr, out
    assert "hunter2" not in out.stderr + out.stdout
