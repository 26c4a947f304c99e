"""Paths in a config file are relative to that file's directory.

``load_config`` passes ``context={"base_dir": <config dir>}`` to every model it
validates; a connector declares a path option as :data:`ConfigPath` and gets it
resolved, instead of writing its own validator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, ValidationInfo


def config_relative(path: Path, info: ValidationInfo | None) -> Path:
    """``path`` joined to the config file's directory when it is relative and the
    model is being validated from a config file (unchanged otherwise)."""
    base = ((info.context if info is not None else None) or {}).get("base_dir")
    if base is not None and not path.is_absolute():
        return Path(base) / path
    return path


ConfigPath = Annotated[Path, AfterValidator(config_relative)]
"""A path option, resolved against the directory of the config file that names it."""
