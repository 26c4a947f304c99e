"""Find connectors through the ``syncd.connectors`` entry-point group.

Built-in connectors are registered in pyproject.toml exactly like third-party ones.
A connector module is imported only when a config names its type.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from syncd.contracts import ConnectorSpec
from syncd.errors import ConfigError

GROUP = "syncd.connectors"


def available() -> list[str]:
    """Names of all installed connector types (without importing them)."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


@cache
def get(name: str) -> ConnectorSpec:
    """Load the connector registered as ``name``.

    Raises ConfigError if no such connector is installed or it is not a ConnectorSpec.
    """
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            try:
                spec = ep.load()
            except (ImportError, AttributeError) as err:
                raise ConfigError(
                    f"connector {name!r} is installed but cannot be loaded ({ep.value}): {err}"
                ) from None
            if not isinstance(spec, ConnectorSpec):
                raise ConfigError(f"connector {name!r} ({ep.value}) is not a ConnectorSpec")
            return spec
    raise ConfigError(
        f"unknown connection type {name!r}; installed: {', '.join(available()) or 'none'}"
    )
