"""SQL connector (SQLAlchemy): a table as a target (inventory), a table, view or query as
a source (HR database). SQLite and PostgreSQL are tested; other SQLAlchemy databases
connect but the target's upserts are implemented for those two."""

from syncd.connectors.sql.connection import SqlConnection
from syncd.connectors.sql.source import SqlSource, SqlSourceOptions
from syncd.connectors.sql.target import SqlTarget, SqlTargetOptions
from syncd.contracts import ConnectorSpec

CONNECTOR = ConnectorSpec(
    name="sql",
    connection_model=SqlConnection,
    source_class=SqlSource,
    source_model=SqlSourceOptions,
    target_class=SqlTarget,
    target_model=SqlTargetOptions,
    description="SQL database (SQLite, PostgreSQL): table target; table, view or query source",
)

__all__ = [
    "CONNECTOR",
    "SqlConnection",
    "SqlSource",
    "SqlSourceOptions",
    "SqlTarget",
    "SqlTargetOptions",
]
