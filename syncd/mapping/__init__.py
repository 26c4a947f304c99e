"""Mapping files: how a directory entry becomes a target record.

Usage (the engine)::

    from syncd.mapping import Mapping, MappedRecord
    m = Mapping.load(path)          # ConfigError listing every "FILE:LINE: problem"
    m.attributes                    # lower-cased attributes to request (None: all)
    record = m.map(change, lookup)  # MappedRecord, None (skipped) or MappingError

File format (YAML; ``mappings/README.md`` has the long version)::

    version: 1                        # required; this syncd reads version 1
    description: free text            # optional
    key: entryUUID                    # attribute or expression; default: the source id
    fields:                           # target field: where its value comes from
      hostname: cn                    # attribute: its first value (str/bytes) or None
      ip_addresses: [ipHostNumber]    # [attribute]: all values, a list (maybe empty)
      location: dn                    # the entry's DN
      owner: "{{ owner | first | dn_value('uid') }}"       # one expression: native value
      label: "{{ cn | first }} ({{ l | first }})"          # text around it: a string
      os:                             # long form
        value: "{{ operatingSystem | first }}"
        type: str                     # str int float bool bytes datetime list list[T]
        default: unknown              # used when the value is None, "" or []
        required: true
    required: [hostname]              # same as required: true on each field
    skip:                             # any condition true -> entry is skipped
      - "{{ 'retired' in (description | join(' ') | lower) }}"
      - "isDeleted"                   # braces are optional in skip conditions

Names in expressions: every attribute by any spelling (``givenName`` and ``givenname``
both work; an absent attribute is ``[]``; attributes are always lists), ``dn``,
``source_id`` and ``attrs`` (all attributes, case-insensitive, for names that are not
identifiers: ``attrs['msDS-SupportedEncryptionTypes']``). Filters for directory data
are in :mod:`syncd.mapping.filters`.

Expressions run in Jinja2's immutable sandbox (:mod:`syncd.mapping.sandbox`): values
from the directory are data and are never evaluated; ``__class__`` tricks,
``str.format`` attribute lookups and mutation are refused (a ConfigError at load time
when visible in the text, a MappingError for that entry otherwise).
"""

from syncd.mapping.mapping import MappedRecord, Mapping

__all__ = ["MappedRecord", "Mapping"]
