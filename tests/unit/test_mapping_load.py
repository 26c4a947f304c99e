"""Loading mapping files: every problem reported at once, with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.errors import ConfigError
from syncd.mapping import Mapping

ROOT = Path(__file__).resolve().parents[2]


def problems(text: str) -> list[str]:
    return Mapping.validate_text(text, "m.yaml")


def test_valid_minimal_mapping_has_no_problems():
    assert problems("version: 1\nfields:\n  hostname: cn\n") == []


def test_every_problem_at_once_with_lines(tmp_path):
    text = """\
version: 1
key: dn
fields:
  hostname: cn
  owner: "{{ owner | first | no_such_filter }}"
  broken: "{{ cn | first ( }}"
  weird: "two words"
  number: 42
  multi: [cn, sn]
  long:
    value: cn
    type: integer
    colour: red
  escape: "{{ ''.__class__ }}"
  hostname: sn
required: [hostname, nosuch]
skip:
  - "{{ 1 + }}"
  - 17
extra: true
"""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        Mapping.load(path)
    got = info.value.problems
    p = str(path)
    expected_starts = [
        f"{p}:2: key: a DN changes on rename",
        f"{p}:5: field 'owner': no filter named 'no_such_filter'",
        f"{p}:6: field 'broken': ",
        f"{p}:7: field 'weird': 'two words' is neither an attribute name",
        f"{p}:8: field 'number': expected an attribute name",
        f"{p}:9: field 'multi': the list form takes exactly one attribute name",
        f"{p}:12: field 'long': unknown type 'integer'",
        f"{p}:13: unknown key 'colour' in field 'long'",
        f"{p}:14: field 'escape': attribute '__class__' is not accessible",
        f"{p}:15: duplicate key 'hostname' (first at line 4)",
        f"{p}:16: required: no field named 'nosuch'",
        f"{p}:18: skip condition 1: ",
        f"{p}:19: skip condition 2: expected an expression",
        f"{p}:20: unknown key 'extra' in the mapping",
    ]
    for start in expected_starts:
        assert any(line.startswith(start) for line in got), (start, got)
    assert len(got) == len(expected_starts), got
    # str(err) is all of them, one per line, for the CLI
    assert str(info.value).count("\n") == len(got) - 1


def test_yaml_syntax_error_has_a_line():
    got = problems("version: 1\nfields:\n  a: cn\n  b: [unclosed\n  c: sn\n")
    assert len(got) == 1
    assert got[0].startswith("m.yaml:") and "YAML syntax error" in got[0]
    line = int(got[0].split(":")[1])
    assert 4 <= line <= 6


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "m.yaml:1: the mapping file is empty"),
        ("- a\n- b\n", "m.yaml:1: a mapping file is a YAML mapping, not a list"),
        ("fields:\n  a: cn\n", "m.yaml:1: missing 'version'"),
        ("version: 2\nfields:\n  a: cn\n", "m.yaml:1: unsupported mapping version 2"),
        ("version: '1'\nfields:\n  a: cn\n", "m.yaml:1: unsupported mapping version '1'"),
        ("version: 1\n", "m.yaml:1: missing 'fields'"),
        ("version: 1\nfields: {}\n", "m.yaml:2: fields must be a non-empty mapping"),
        ("version: 1\nfields:\n  a: cn\nrequired: a\n", "m.yaml:4: required must be a list"),
        ("version: 1\nfields:\n  a: {type: str}\n", "m.yaml:3: field 'a': missing 'value'"),
        ("version: 1\nfields:\n  a: {value: cn, required: maybe}\n", "required must be true"),
        ("version: 1\nfields:\n  a b: cn\n", "m.yaml:3: field 'a b': a field name is"),
        ("version: 1\nfields:\n  a: '{{ x }'\n", "m.yaml:3: field 'a': "),
        ("version: 1\nfields:\n  a: '{% include \"x\" %}'\n", "include is not allowed"),
        ("version: 1\nfields:\n  a: '{% extends \"x\" %}'\n", "extends is not allowed"),
        ("version: 1\nfields:\n  a: \"{{ int('3') }}\"\n", "'int' is not a function here"),
        ("version: 1\nfields:\n  a: '{{ x is nosuchtest }}'\n", "no test named 'nosuchtest'"),
        ("version: 1\nfields:\n  a: \"{{ x['__globals__'] }}\"\n", "item '__globals__' is not"),
        ("version: 1\nfields:\n  a: {value: [cn], type: int}\n", "use type list[int]"),
        ("version: 1\nfields:\n  a: {value: cn, type: int, default: many}\n", "bad default"),
        ("version: 1\nfields:\n  a: cn\nkey: [cn]\n", "m.yaml:4: key: expected an attribute name"),
        ("version: 1\nfields:\n  a: cn\nfeilds: {}\n", "did you mean 'fields'?"),
        ("version: 1\nfields:\n  a: cn\n1: x\n", "m.yaml:4: a key must be text"),
        (
            "version: 1\nfields:\n  a: '{{ owner | dn_value }}'\n",
            "m.yaml:3: field 'a': filter 'dn_value': missing a required argument: 'attr'",
        ),
        (
            "version: 1\nfields:\n  a: '{{ member | lookup }}'\n",
            "filter 'lookup': missing a required argument: 'job'",
        ),
        (
            "version: 1\nfields:\n  a: '{{ tel | phone(cc=49) }}'\n",
            "filter 'phone': got an unexpected keyword argument 'cc'",
        ),
        ("version: 1\nfields:\n  a: '{{ uac is disabled(1) }}'\n", "test 'disabled': too many"),
    ],
)
def test_single_problems(text, fragment):
    got = problems(text)
    assert got, text
    assert any(fragment in line for line in got), got


def test_error_line_inside_a_block_scalar():
    text = "version: 1\nfields:\n  a: |\n    {{ cn\n       | first\n       | nosuch }}\n"
    got = problems(text)
    assert got == ["m.yaml:6: field 'a': no filter named 'nosuch'"]


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="no such mapping file"):
        Mapping.load(tmp_path / "absent.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"version: 1\nfields:\n  a: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        Mapping.load(bad)


def test_attribute_names_allow_options_and_oids():
    m = Mapping.from_text(
        "version: 1\nfields:\n  cert: userCertificate;binary\n  o: 2.5.4.10\n  de: cn;lang-de\n"
    )
    assert m.attributes == {"usercertificate;binary", "2.5.4.10", "cn;lang-de"}


def test_attributes_are_what_the_mapping_reads():
    m = Mapping.from_text(
        """\
version: 1
key: entryUUID
fields:
  a: givenName
  b: [Mail]
  c: "{{ sn | first }} {{ Title | first }}"
  d: "{{ attrs['msDS-X'] | first }}"
  e: "{{ dn | rdn_value }}{{ source_id }}"
  f: "{{ range(2) | list }}"
skip: "'x' in description"
"""
    )
    assert m.attributes == {
        "entryuuid",
        "givenname",
        "mail",
        "sn",
        "title",
        "msds-x",
        "description",
    }
    assert m.key_attribute == "entryuuid"
    assert m.field_names == ("a", "b", "c", "d", "e", "f")


def test_attributes_through_attrs_with_constant_names():
    m = Mapping.from_text(
        "version: 1\nfields:\n  a: \"{{ attrs.get('Mail') }}\"\n  b: '{{ attrs.sn }}'\n"
        "  c: \"{{ attrs['x-Y'] }}\"\n"
    )
    assert m.attributes == {"mail", "sn", "x-y"}
    m = Mapping.from_text("version: 1\nfields:\n  a: '{{ attrs.keys() | list }}'\n")
    assert m.attributes is None


def test_attributes_unknown_when_attrs_is_used_dynamically():
    m = Mapping.from_text('version: 1\nfields:\n  a: "{{ attrs[cn | first] }}"\n')
    assert m.attributes is None
    m = Mapping.from_text("version: 1\nfields:\n  a: '{{ attrs | length }}'\n")
    assert m.attributes is None


def test_key_attribute_is_none_for_expressions_and_default():
    assert Mapping.from_text("version: 1\nfields:\n  a: cn\n").key_attribute is None
    m = Mapping.from_text("version: 1\nkey: '{{ objectGUID | first | guid }}'\nfields:\n  a: cn\n")
    assert m.key_attribute is None
    assert "objectguid" in m.attributes


@pytest.mark.parametrize("name", ["inventory-openldap-device.yaml", "inventory-ad-computer.yaml"])
def test_shipped_mappings_load(name):
    m = Mapping.load(ROOT / "mappings" / name)
    assert "hostname" in m.field_names and "cn" in m.attributes
    assert m.required == ("hostname",)


def test_documented_filters_and_tests_exist():
    from syncd.mapping.sandbox import MappingEnvironment

    env = MappingEnvironment()
    readme = (ROOT / "mappings" / "README.md").read_text()
    documented = [
        "first", "values", "join", "default", "lower", "upper", "strip", "trim", "int",
        "float", "dn_value", "dn_values", "rdn", "rdn_value", "parent_dn", "dn_parts", "guid",
        "sid", "filetime", "generalized_time", "uac", "disabled", "phone", "email", "b64",
        "hex", "b64decode", "lookup",
    ]  # fmt: skip
    for name in documented:
        assert name in env.filters, name
        assert f"`{name}" in readme, name
    assert {"disabled", "truthy"} <= set(env.tests)
    for removed in ("center", "indent", "wordwrap", "urlize", "xmlattr"):
        assert removed not in env.filters


@pytest.mark.parametrize(
    "value",
    [
        '"{{ ' + "(" * 3000 + "1" + ")" * 3000 + ' }}"',
        '"{{ ' + "[" * 200 + "1" + "]" * 200 + ' }}"',
        '"{{ 1' + " ~ (1" * 500 + ")" * 500 + ' }}"',
        '"{% if ' + "(" * 300 + "1" + ")" * 300 + ' %}x{% endif %}"',
    ],
)
def test_deeply_nested_expression_is_a_config_error_with_its_line(value):
    text = f"version: 1\nfields:\n  ok: cn\n  x: {value}\n  y: '{{{{ cn | lower'\n"
    problems = Mapping.validate_text(text, "t.yaml")
    assert problems[0].startswith("t.yaml:4: field 'x': nested too deeply"), problems
    assert problems[1].startswith("t.yaml:5: field 'y': ")  # the next problem still reported


def test_deeply_nested_yaml_is_a_config_error():
    text = "version: 1\nfields:\n  ok: cn\n  x: " + "[" * 5000 + "]" * 5000 + "\n"
    problems = Mapping.validate_text(text, "t.yaml")
    assert problems == ["t.yaml:4: YAML nested too deeply"], problems
