"""CSV source review: exports as Excel and other HR tools really write them."""

from __future__ import annotations

import json
import os

import pytest

from syncd.contracts import Op
from syncd.errors import SourceError
from tests.csvsrc.test_csv_source import read_all, source, write

HEADER = ["Personalnummer", "Vorname", "Nachname", "Abteilung", "E-Mail"]


def _excel(sep: str = ";", trailing: int = 0, rows: int = 3) -> str:
    pad = sep * trailing
    lines = [sep.join(HEADER) + pad]
    for i in range(1, rows + 1):
        lines.append(sep.join([str(i), f"Jörg{i}", "Müller", "Vertrieb", f"j{i}@x.de"]) + pad)
    return "\r\n".join(lines) + "\r\n"


def test_excel_trailing_empty_columns_are_ignored(tmp_path):
    """Excel saves a used range wider than the data: `a;b;c;;;` in every line."""
    f = write(tmp_path / "hr.csv", _excel(trailing=3), encoding="cp1252")
    changes, outcome = read_all(source(f, {"delimiter": ";", "encoding": "cp1252"}))
    assert [c.source_id for c in changes] == ["1", "2", "3"]
    assert changes[0].attributes["surname"] == ["Müller"]
    assert outcome.complete


def test_a_value_in_a_column_without_a_name_still_fails(tmp_path):
    text = _excel(trailing=1).replace("j2@x.de;", "j2@x.de;oops")
    f = write(tmp_path / "hr.csv", text)
    with pytest.raises(SourceError, match="line 3"):
        source(f, {"delimiter": ";"}).read(None)


def test_excel_sep_line_names_the_delimiter(tmp_path):
    """Excel's `sep=;` first line (written by many tools for Excel) is not the header."""
    f = write(tmp_path / "hr.csv", "sep=;\r\n" + _excel(), encoding="utf-8-sig")
    changes, _ = read_all(source(f))
    assert [c.source_id for c in changes] == ["1", "2", "3"]
    assert changes[2].attributes["mail"] == ["j3@x.de"]
    # and line numbers in messages still count the physical lines
    bad = write(tmp_path / "bad.csv", "sep=;\r\n" + _excel() + "4;x\r\n")
    with pytest.raises(SourceError, match="line 6"):
        source(bad).read(None)


def test_utf16_unicode_text_export(tmp_path):
    """Excel's "Unicode Text" is UTF-16 with a BOM, tab separated: its last line break
    is b"\\n\\x00", which is a line break all the same."""
    f = write(tmp_path / "hr.txt", _excel(sep="\t"), encoding="utf-16")
    changes, _ = read_all(source(f, {"delimiter": "\t", "encoding": "utf-16"}))
    assert [c.attributes["given_name"] for c in changes] == [["Jörg1"], ["Jörg2"], ["Jörg3"]]
    cut = write(tmp_path / "cut.txt", _excel(sep="\t").rstrip("\r\n"), encoding="utf-16")
    with pytest.raises(SourceError, match="does not end with a line break"):
        source(cut, {"delimiter": "\t", "encoding": "utf-16"}).read(None)


def test_nul_in_an_id_is_not_an_id(tmp_path):
    """A NUL (or other control character) in the id column is refused like an empty
    id (PostgreSQL cannot store it as a state key), or skipped when allowed."""
    text = _excel(sep=",").replace("\r\n2,", "\r\n2\x00,")
    f = write(tmp_path / "hr.csv", text)
    with pytest.raises(SourceError, match="line 3: control character in employee_id"):
        source(f).read(None)
    changes, outcome = read_all(source(f, skip_rows_without_id=True))
    assert [c.source_id for c in changes if c.op is Op.UPSERT] == ["1", "3"]
    assert any("without employee_id" in n for n in outcome.notes)


def test_export_replaced_between_the_passes_reads_the_validated_file(tmp_path):
    """The HR system renames tonight's second export over the file after it was
    validated: the read goes on with the file it validated (not rows of an unchecked
    one, not a failed night)."""

    f = write(tmp_path / "hr.csv", _excel(sep=",", rows=5))
    read = source(f).read(None)
    nxt = write(tmp_path / "next.csv", _excel(sep=",", rows=2).replace("Müller", "Neu"))
    os.replace(nxt, f)
    changes = list(read.changes)
    assert [c.source_id for c in changes] == ["1", "2", "3", "4", "5"]
    assert changes[0].attributes["surname"] == ["Müller"]
    assert read.outcome is not None and read.outcome.complete
    assert json.loads(read.outcome.cursor)["rows"] == 5


def test_a_modification_time_in_the_future_is_not_a_file_being_written(tmp_path):
    """An SMB/NFS server whose clock is an hour ahead: the export is complete, but
    `changed -3600s ago` refused it every run for an hour (a whole nightly window)."""
    import threading

    f = write(tmp_path / "hr.csv", _excel(sep=","), age=-3600)
    changes, _ = read_all(source(f, {"min_age": 0.3}))
    assert len(changes) == 3
    # ... and one that grows while it is watched is still refused
    g = write(tmp_path / "g.csv", _excel(sep=","), age=-3600)

    def append() -> None:
        with open(g, "a") as out:
            out.write("4,A,B,C,d@x.de\r\n")

    timer = threading.Timer(0.1, append)
    timer.start()
    try:
        with pytest.raises(SourceError, match="still being written"):
            source(g, {"min_age": 0.5}).read(None)
    finally:
        timer.join()


def test_two_columns_for_one_attribute_are_refused(tmp_path):
    """columns maps E-Mail to mail, and the export also has a column Mail (private
    address): one of them silently won per row."""
    text = "Personalnummer,Vorname,Nachname,Abteilung,E-Mail,Mail\n1,A,B,C,a@x.de,a@home.de\n"
    f = write(tmp_path / "hr.csv", text)
    with pytest.raises(SourceError, match=r"same attribute \(mail: E-Mail, Mail\)"):
        source(f).read(None)
