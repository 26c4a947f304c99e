"""CsvSource: encodings, quoting, duplicates, and every way an export can be broken."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from syncd.connectors.csv import CONNECTOR, CsvConnection, CsvSource, CsvSourceOptions
from syncd.contracts import Op
from syncd.errors import SourceError

HEADER = "Personalnummer,Vorname,Nachname,Abteilung,E-Mail\n"


def write(path: Path, text: str | bytes, *, age: float = 60.0, encoding: str = "utf-8") -> Path:
    data = text if isinstance(text, bytes) else text.encode(encoding)
    path.write_bytes(data)
    past = time.time() - age
    os.utime(path, (past, past))
    return path


def source(path: Path, conn: dict | None = None, **opts) -> CsvSource:
    c = {
        "path": str(path),
        "columns": {
            "Personalnummer": "employee_id",
            "Vorname": "given_name",
            "Nachname": "surname",
            "Abteilung": "department",
            "E-Mail": "mail",
        },
    }
    c.update(conn or {})
    opts.setdefault("id_column", "employee_id")
    return CsvSource(
        CsvConnection.model_validate(c), CsvSourceOptions.model_validate(opts), job="hr"
    )


def read_all(src: CsvSource, cursor: str | None = None, full: bool = False):
    read = src.read(cursor, full=full)
    changes = list(read.changes)
    assert read.outcome is not None
    return changes, read.outcome


def rows(n: int, start: int = 1) -> str:
    return "".join(
        f"{i},First{i},Last{i},Dept{i % 3},u{i}@example.com\n" for i in range(start, start + n)
    )


def test_spec_is_registered_shape():
    assert CONNECTOR.name == "csv" and CONNECTOR.source_class is CsvSource
    assert CONNECTOR.connection_model is CsvConnection


def test_reads_rows_with_mapped_headers(tmp_path):
    f = write(tmp_path / "hr.csv", HEADER + rows(3))
    changes, outcome = read_all(source(f))
    assert [c.source_id for c in changes] == ["1", "2", "3"]
    assert all(c.op is Op.UPSERT for c in changes)
    assert changes[0].attributes == {
        "employee_id": ["1"],
        "given_name": ["First1"],
        "surname": ["Last1"],
        "department": ["Dept1"],
        "mail": ["u1@example.com"],
    }
    assert outcome.complete and outcome.method == "csv"
    cur = json.loads(outcome.cursor)
    assert cur["rows"] == 3 and len(cur["sha256"]) == 64 and cur["file"] == "hr.csv"


def test_bom_is_stripped_with_default_and_plain_utf8(tmp_path):
    text = HEADER + "1,Zoë,Ångström,Forschung,z@example.com\n"
    f = write(tmp_path / "bom.csv", b"\xef\xbb\xbf" + text.encode())
    for enc in ("utf-8-sig", "utf-8"):
        changes, _ = read_all(source(f, {"encoding": enc}))
        assert changes[0].source_id == "1"
        assert changes[0].attributes["given_name"] == ["Zoë"]


def test_configured_encoding_and_delimiter(tmp_path):
    text = HEADER.replace(",", ";") + "1;Jürgen;Weiß;Vertrieb;j@example.com\n"
    f = write(tmp_path / "latin.csv", text, encoding="cp1252")
    changes, _ = read_all(source(f, {"encoding": "cp1252", "delimiter": ";"}))
    assert changes[0].attributes["surname"] == ["Weiß"]
    # the same file read as UTF-8 is a failed read, not garbage
    with pytest.raises(SourceError, match="not valid utf-8"):
        read_all(source(f, {"delimiter": ";"}))


def test_quoted_delimiters_and_line_breaks(tmp_path):
    text = HEADER + '1,"Smith, John","O""Brien","Sales\nNorth",j@example.com\n2,A,B,C,d@e\n'
    f = write(tmp_path / "q.csv", text)
    changes, outcome = read_all(source(f))
    assert changes[0].attributes["given_name"] == ["Smith, John"]
    assert changes[0].attributes["surname"] == ['O"Brien']
    assert changes[0].attributes["department"] == ["Sales\nNorth"]
    assert json.loads(outcome.cursor)["rows"] == 2


def test_duplicate_ids_left_alone_rest_goes_on(tmp_path):
    text = HEADER + rows(2) + "3,Dup,One,X,a@x\n" + rows(1, start=4) + "3,Dup,Two,Y,b@x\n"
    f = write(tmp_path / "dup.csv", text)
    changes, outcome = read_all(source(f))
    ops = {(c.op, c.source_id) for c in changes}
    assert (Op.PRESENT, "3") in ops  # seen (not a leaver) ...
    assert (Op.UPSERT, "3") not in ops  # ... but neither row is applied
    assert [c.source_id for c in changes if c.op is Op.UPSERT] == ["1", "2", "4"]
    assert sum(1 for c in changes if c.source_id == "3") == 1
    assert any("duplicate" in n and "3 (lines 4, 6)" in n for n in outcome.notes)


def test_missing_required_column(tmp_path):
    f = write(tmp_path / "m.csv", "Personalnummer,Vorname\n1,A\n")
    with pytest.raises(SourceError, match="'Nachname' is missing"):
        source(f, required_columns=["Nachname"]).read(None)
    with pytest.raises(SourceError, match="employee_id"):
        source(write(tmp_path / "n.csv", "Vorname\nA\n")).read(None)


def test_truncated_file_fails_before_any_change(tmp_path):
    # the last line lost its tail: too few fields and no final line break
    f = write(tmp_path / "t.csv", HEADER + rows(5) + "6,First6,La")
    with pytest.raises(SourceError, match="does not end with a line break"):
        source(f).read(None)
    with pytest.raises(SourceError, match="line 7: 3 fields where the header has 5"):
        source(f, {"require_final_newline": False}).read(None)
    # cut inside a quoted field
    g = write(tmp_path / "u.csv", HEADER + rows(2) + '3,"open quote,x,y,z\n')
    with pytest.raises(SourceError):
        source(g).read(None)


def test_empty_and_header_only_and_missing_file(tmp_path):
    with pytest.raises(SourceError, match="is empty"):
        source(write(tmp_path / "e.csv", "")).read(None)
    with pytest.raises(SourceError, match="fewer than min_rows"):
        source(write(tmp_path / "h.csv", HEADER)).read(None)
    with pytest.raises(SourceError, match="does not exist"):
        source(tmp_path / "nope.csv").read(None)


def test_file_still_being_written(tmp_path):
    f = write(tmp_path / "fresh.csv", HEADER + rows(2), age=0)
    with pytest.raises(SourceError, match="may still be being written"):
        source(f, {"min_age": 30}).read(None)


def test_file_changing_during_the_read(tmp_path):
    f = write(tmp_path / "c.csv", HEADER + rows(3))
    read = source(f).read(None)
    it = iter(read.changes)
    next(it)
    write(f, HEADER + rows(4))  # the export is rewritten mid-read
    with pytest.raises(SourceError, match="changed while being read"):
        list(it)
    assert read.outcome is None


def test_row_count_drop_guard(tmp_path):
    f = write(tmp_path / "d.csv", HEADER + rows(100))
    _, first = read_all(source(f))
    write(f, HEADER + rows(85))  # 15% fewer: within the default 20%
    _, second = read_all(source(f), first.cursor)
    write(f, HEADER + rows(60))  # 29% fewer than the last good run (85)
    with pytest.raises(SourceError, match="25 fewer than the 85"):
        source(f).read(second.cursor)
    with pytest.raises(SourceError):
        source(f, max_drop=10).read(second.cursor)
    _, forced = read_all(source(f), second.cursor, full=True)  # --full accepts it once
    assert any("accepted because of --full" in n for n in forced.notes)
    changes, _ = read_all(source(f, max_drop=None), second.cursor)
    assert len(changes) == 60


def test_empty_id_fails_unless_skipped(tmp_path):
    f = write(tmp_path / "i.csv", HEADER + rows(2) + ",No,Id,X,n@x\n")
    with pytest.raises(SourceError, match="empty employee_id"):
        source(f).read(None)
    changes, outcome = read_all(source(f, skip_rows_without_id=True))
    assert [c.source_id for c in changes] == ["1", "2"]
    assert any("without employee_id" in n for n in outcome.notes)


def test_newest_file_of_drop_directory_and_split(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    header = "id,name,groups\n"
    write(drop / "hr-2026-11-26.csv", header + "1,Old,a\n", age=7200)
    write(drop / "hr-2026-11-27.csv", header + "1,New, staff ; vpn ;\n", age=60)
    write(drop / "notes.txt", "not csv\n", age=1)
    src = CsvSource(
        CsvConnection.model_validate({"path": str(drop), "glob": "hr-*.csv"}),
        CsvSourceOptions.model_validate({"id_column": "id", "split": {"groups": ";"}}),
        job="hr",
    )
    changes, outcome = read_all(src)
    assert changes[0].attributes["name"] == ["New"]
    assert changes[0].attributes["groups"] == ["staff", "vpn"]
    assert "hr-2026-11-27.csv" in outcome.notes[0]
    with pytest.raises(SourceError, match="no file matching"):
        CsvSource(
            CsvConnection.model_validate({"path": str(drop), "glob": "*.xlsx"}),
            CsvSourceOptions.model_validate({"id_column": "id"}),
            job="hr",
        ).read(None)


def test_doctor_check(tmp_path):
    good = source(write(tmp_path / "g.csv", HEADER + rows(1)))
    assert all(c.ok for c in good.check())
    bad = source(tmp_path / "missing.csv")
    [c] = bad.check()
    assert not c.ok and "does not exist" in c.detail


def test_config_models_validate(tmp_path):
    with pytest.raises(ValueError):
        CsvConnection.model_validate({"path": "x.csv", "encoding": "klingon"})
    with pytest.raises(ValueError):
        CsvSourceOptions.model_validate({"id_column": "id", "max_drop": "lots"})
    rel = CsvConnection.model_validate({"path": "hr.csv"}, context={"base_dir": tmp_path})
    assert rel.path == tmp_path / "hr.csv"


def test_large_file_streams(tmp_path):
    f = write(tmp_path / "big.csv", HEADER + rows(20000))
    read = source(f).read(None)
    count = sum(1 for _ in read.changes)
    assert count == 20000 and json.loads(read.outcome.cursor)["rows"] == 20000


def test_crlf_line_ends_and_unchanged_file_note(tmp_path):
    text = (HEADER + rows(2)).replace("\n", "\r\n")
    f = write(tmp_path / "crlf.csv", text)
    changes, first = read_all(source(f))
    assert [c.source_id for c in changes] == ["1", "2"]
    assert changes[1].attributes["mail"] == ["u2@example.com"]
    _, second = read_all(source(f), first.cursor)
    assert any("byte for byte" in n for n in second.notes)
    assert not any("byte for byte" in n for n in first.notes)
