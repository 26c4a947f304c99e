"""CSV connector: a file (or the newest file of a drop folder) as a source."""

from syncd.connectors.csv.source import CsvConnection, CsvSource, CsvSourceOptions
from syncd.contracts import ConnectorSpec

CONNECTOR = ConnectorSpec(
    name="csv",
    connection_model=CsvConnection,
    source_class=CsvSource,
    source_model=CsvSourceOptions,
    description="CSV file (HR export) as a source",
)

__all__ = ["CONNECTOR", "CsvConnection", "CsvSource", "CsvSourceOptions"]
