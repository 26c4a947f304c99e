"""Built-in connectors, one package per kind of system; each exports CONNECTOR."""
