"""Generate LDIF for benchmarks: N `device` entries with realistic attribute sizes."""

from __future__ import annotations

import random


def devices_ldif(n: int, *, base: str = "ou=devices,dc=example,dc=com", seed: int = 1) -> str:
    """N device entries (cn, serialNumber, description, l, ou, owner, seeAlso) with a
    few unicode locations, one entry per object, as one LDIF string."""
    return "\n".join(iter_devices(n, base=base, seed=seed))


def write_devices(path: str, n: int, **kw) -> None:
    """Write :func:`devices_ldif` to ``path`` entry by entry (flat memory)."""
    with open(path, "w", encoding="utf-8") as out:
        for entry in iter_devices(n, **kw):
            out.write(entry + "\n")


def iter_devices(n: int, *, base: str = "ou=devices,dc=example,dc=com", seed: int = 1):
    """The entries of :func:`devices_ldif`, one LDIF record string at a time."""
    rnd = random.Random(seed)
    places = ["Paris", "Lyon", "Zürich", "東京", "São Paulo", "Kraków", "Berlin", "القاهرة"]
    for i in range(n):
        yield (
            f"dn: cn=dev-{i:07d},{base}\n"
            "objectClass: device\n"
            f"cn: dev-{i:07d}\n"
            f"serialNumber: SN-{rnd.randrange(10**9):09d}\n"
            f"description: Device number {i}, model X{rnd.randrange(100)}\n"
            f"l: {rnd.choice(places)}\n"
            f"ou: dept-{rnd.randrange(50)}\n"
            f"owner: uid=user{rnd.randrange(n)},ou=people,dc=example,dc=com\n"
            f"seeAlso: cn=rack-{rnd.randrange(500)},ou=racks,dc=example,dc=com\n"
        )
