"""Size and time bounds of one render: payloads that build huge values or loop for
ever are a MappingError for that entry (quarantined), never a daemon out of memory."""

from __future__ import annotations

import resource

import pytest

from syncd.contracts import Change, Op
from syncd.errors import MappingError
from syncd.mapping import Mapping, limits

HUGE = [
    # printf widths taken from the arguments
    "{{ '%*d' % (50000000, 1) }}",
    "{{ '%.*f' % (50000000, 1.5) }}",
    "{{ '%*s' | format(50000000, 'x') }}",
    # str.format with a nested (argument) width
    "{{ '{:{}}'.format('x', 50000000) }}",
    "{{ '{0:>{1}}'.format('x', 50000000) }}",
    # one argument repeated by the format string
    "{{ ('{0}' * 300000).format('x' * 100000) }}",
    "{{ ('%(a)s' * 150000) % {'a': 'x' * 100000} }}",
    # chained replace, as a method and as a filter
    "{{ (cn | first)" + ".replace('p', 'pppppppppp')" * 9 + " }}",
    "{{ cn | first" + " | replace('p', 'pppppppppp')" * 9 + " }}",
    "{{ ('x' * 100000).replace('', 'yyyyyyyyyy') }}",
    # repetition of a list, then joined
    "{{ (['x' * 100000] * 1000) | join }}",
    "{{ ''.join(['x' * 100000] * 1000) }}",
    "{{ (['x' * 100000] * 1000) | join(',') | length }}",
    # padding methods
    "{{ 'x'.ljust(50000000) }}",
    "{{ 'x'.zfill(50000000) }}",
    "{{ ('\t' * 100000).expandtabs(1000) }}",
    # concatenation doubling
    "{% set ns = namespace(s='xxxxxxxxxx') %}{% for i in range(40) %}"
    "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
    "{% set ns = namespace(s='xxxxxxxxxx') %}{% for i in range(40) %}"
    "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s | length }}",
    "{% set ns = namespace(s=['x']) %}{% for i in range(40) %}"
    "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s | length }}",
    # quadratic list concatenation inside one C call
    "{{ ([[1, 2]] * 600000) | sum(start=[]) | length }}",
]

SLOW = [
    # nested loops and exponential recursion: no single big value, only time
    "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    "{% for a in range(100000) %}{% for b in 'x' * 100000 %}{% endfor %}{% endfor %}",
    "{% for a in range(100000) %}{{ (cn | first).upper() }}{% endfor %}" * 1000,
    "{% for a in range(100000) %}{% for b in range(100000) %}{{ '' }}{% endfor %}{% endfor %}",
]


def mapping(expr: str) -> Mapping:
    return Mapping.from_text(f"version: 1\nfields:\n  x: {expr!r}\n  cn: cn\n", "t.yaml")


def change() -> Change:
    return Change(Op.UPSERT, "src-1", "cn=pc-1,dc=example,dc=com", {"cn": ["pc-1"]})


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("expr", HUGE)
def test_huge_values_are_a_mapping_error(expr):
    m = mapping(expr)
    before = _max_rss_mb()
    with pytest.raises(MappingError, match=r"^field 'x': SecurityError: .*(size|limit)"):
        m.map(change())
    # Nothing near the 50-500 MB the payload asks for was ever allocated.
    assert _max_rss_mb() - before < 100


@pytest.mark.parametrize("expr", SLOW)
def test_endless_work_is_a_mapping_error(expr, monkeypatch):
    monkeypatch.setattr(limits, "TIME_LIMIT", 0.3)  # the default (2 s) works the same
    m = mapping(expr)
    with pytest.raises(MappingError, match=r"^field 'x': SecurityError: .*longer than"):
        m.map(change())


def test_the_next_entry_maps_normally_after_a_refused_one():
    m = Mapping.from_text(
        "version: 1\nfields:\n  x: \"{{ '%*d' % ((l | first | int), 1) }}\"\n",
        "t.yaml",
    )
    bad = Change(Op.UPSERT, "1", "cn=a,dc=x", {"l": ["50000000"]})
    good = Change(Op.UPSERT, "2", "cn=b,dc=x", {"l": ["5"]})
    with pytest.raises(MappingError):
        m.map(bad)
    assert m.map(good).fields["x"] == "    1"


@pytest.mark.parametrize(
    "expr, want",
    [
        ("{{ '%5d|%-4s|%.2f' % (42, 'ab', 3.14159) }}", "   42|ab  |3.14"),
        ("{{ '%(a)s-%(b)03d' % {'a': 'x', 'b': 7} }}", "x-007"),
        ("{{ '%*d' % (4, 1) }}", "   1"),
        ("{{ '%s' | format('v') }}", "v"),
        ("{{ '{:>{}}'.format('x', 3) }}", "  x"),
        ("{{ '{0}-{1}'.format('a', 'b') }}", "a-b"),
        ("{{ 'a,b'.replace(',', ', ') }}", "a, b"),
        ("{{ cn | first | replace('-', '_') }}", "pc_1"),
        ("{{ ['a', 'b'] | join('+') }}", "a+b"),
        ("{{ ', '.join(['a', 'b']) }}", "a, b"),
        ("{{ 'ab'.ljust(4, '.') }}", "ab.."),
        ("{{ 'x' ~ 'y' }}", "xy"),
        ("{{ [1, 2] + [3] }}", [1, 2, 3]),
        ("{{ [[1], [2]] | sum(start=[]) }}", [1, 2]),
        ("{{ [1, 2, 3] | sum }}", 6),
        ("{% for a in range(3) %}{{ a }}{% endfor %}", "012"),
    ],
)
def test_ordinary_formatting_still_works(expr, want):
    assert mapping(expr).map(change()).fields["x"] == want
