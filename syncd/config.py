"""The configuration file: one YAML document with connections and jobs.

``load_config(path)`` validates everything it can (the file itself, each connection
block against its connector's model, each job's source/target blocks, every mapping
file a job names) and raises one :class:`~syncd.errors.ConfigError` that lists **all**
problems, each as ``FILE:LINE: what is wrong``.

Example::

    version: 1
    state: {url: "sqlite:////var/lib/syncd/state.db"}
    connections:
      corp-ldap:
        type: ldap
        url: ldaps://ldap.example.com
        bind_dn: cn=syncd,ou=services,dc=example,dc=com
        password: {env: SYNCD_LDAP_PASSWORD}
      inventory-db:
        type: sql
        url: postgresql+psycopg://syncd@db.example.com/inventory
        password: {credential: inventory-db}
    jobs:
      inventory:
        source: {connection: corp-ldap, base: "ou=devices,dc=example,dc=com",
                 filter: "(objectClass=device)"}
        mapping: mappings/inventory-openldap-device.yaml
        target: {connection: inventory-db, table: devices}
        max_deletes: 10%
        schedule: {cron: "*/15 * * * *"}
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from syncd import registry
from syncd.contracts import ConnectorSpec
from syncd.errors import ConfigError
from syncd.paths import config_relative
from syncd.secrets import SecretRef
from syncd.yamlsrc import YamlDoc, load_yaml

DEFAULT_CONFIG_PATHS = ("syncd.yaml", "/etc/syncd/syncd.yaml")
SYSTEM_CONFIG_DIR = Path("/etc/syncd")
"""The service's config directory (ConfigurationDirectory=syncd in the units)."""
SYSTEM_STATE_DIR = Path("/var/lib/syncd")
"""The service's state directory (StateDirectory=syncd in the units)."""
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: int | str) -> int:
    """Seconds from ``900``, ``"900"``, ``"15m"``, ``"24h"``, ``"7d"``. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 900, 15m, 24h")
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration like 900, 15m, 24h or 7d")
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetentionSection(_Strict):
    runs: int | str | None = Field(
        "90d",
        description="keep the run history this long (e.g. 90d; null: forever). A job's "
        "latest run and latest successful run are always kept",
    )
    audit: int | str | None = Field(
        "365d", description="keep audit log rows (syncd history) this long (null: forever)"
    )
    reports: int | str | None = Field(
        "90d", description="keep run report files (report_dir) this long (null: forever)"
    )

    @field_validator("runs", "audit", "reports")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is not None:
            parse_duration(value)
        return value

    def seconds(self, what: str) -> int | None:
        """The retention of ``what`` (runs, audit, reports) in seconds; None: forever."""
        value = getattr(self, what)
        return None if value is None else parse_duration(value)


class StateSection(_Strict):
    url: str | None = Field(
        None,
        description="SQLAlchemy URL of the state store, without a password. Default: SQLite "
        "file state.db in $STATE_DIRECTORY (systemd), in /var/lib/syncd for "
        "/etc/syncd/syncd.yaml (the daemon's place, also from a shell), else beside the "
        "config file.",
    )
    password: SecretRef | None = Field(None, description="database password (secret reference)")
    retention: RetentionSection = Field(
        default_factory=RetentionSection,
        description="how long history is kept: pruned at the end of each `syncd sync` and "
        "once a day by the daemon",
    )

    @field_validator("url")
    @classmethod
    def _no_inline_password(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError:
            # Not echoed: a mistyped URL may still hold a password.
            raise ValueError(
                "not a database URL (expected e.g. postgresql+psycopg://syncd@db/syncd)"
            ) from None
        from syncd.urls import url_secret_problem

        problem = "a password" if url.password else url_secret_problem(value)
        if problem:
            raise ValueError(
                "the URL must not contain the password; use state.password: {env: NAME}"
            )
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            # Relative to the config file, as the SQL connector's SQLite files are.
            path = config_relative(Path(url.database).expanduser(), info)
            return url.set(database=str(path)).render_as_string(hide_password=False)
        return value


class DaemonSection(_Strict):
    listen: str | None = Field(None, description="host:port for /metrics and /healthz")
    node: str = Field(default_factory=socket.gethostname, description="this node's name")
    log_format: Literal["auto", "text", "json"] = Field(
        "auto", description="auto: text on a terminal, JSON lines otherwise (journal)"
    )
    log_level: str = Field("INFO", description="level of the general log")
    change_log_level: str = Field("INFO", description="level of the one-line-per-change log")


class ScheduleSection(_Strict):
    cron: str | None = Field(None, description='crontab expression, e.g. "*/15 * * * *"')
    interval: int | None = Field(None, description="seconds (or 15m, 1h) between runs")
    jitter: int | None = Field(None, description="random delay of up to N seconds")
    timezone: str | None = Field(None, description="time zone of cron times (default: local)")

    @field_validator("interval", "jitter", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value)
        except ValueError as err:
            raise ValueError(f"invalid cron expression {value!r}: {err}") from None
        return value

    @model_validator(mode="after")
    def _one(self) -> ScheduleSection:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("a schedule needs exactly one of cron or interval")
        return self


def parse_max_deletes(value: int | str) -> int | float:
    """``25`` -> 25 objects; ``"10%"`` -> 0.10 (a share). Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("max_deletes is a count (25) or a percentage ('10%')")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("max_deletes cannot be negative")
        return value
    text = str(value).strip()
    if text.endswith("%"):
        try:
            pct = float(text[:-1])
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage like '10%'") from None
        if not 0 <= pct <= 100:
            raise ValueError("a percentage must be between 0% and 100%")
        return pct / 100.0
    if text.isdigit():
        return int(text)
    raise ValueError(f"{value!r} is neither a count (25) nor a percentage ('10%')")


class EndpointSection(BaseModel):
    """A job's source or target: a connection name plus connector-specific options."""

    model_config = ConfigDict(extra="allow")
    connection: str


class JobSection(_Strict):
    description: str = Field("", description="free text shown by status and validate")
    enabled: bool = Field(True, description="false: the daemon does not schedule this job")
    source: EndpointSection
    mapping: str = Field(description="mapping file (YAML), relative to the config file")
    target: EndpointSection
    max_deletes: int | str = Field(
        "10%",
        description="most deletes (or disables) one run may make: a count or a share of the "
        "objects synced so far. Above it the run stops before writing; --allow-deletes "
        "overrides once.",
    )
    max_quarantined: int | str = Field(
        "50%",
        description="most entries one run may quarantine (mapping errors, key clashes, "
        "ambiguous matches) and still succeed: a count or a share of the entries read (or "
        "of the objects synced, when more). Above it the run fails (exit 1) and the cursor "
        "stays; '100%' turns the check off.",
    )
    schedule: ScheduleSection | None = Field(
        None, description="when the daemon runs the job: {cron: ...} or {interval: ...}"
    )
    report_dir: str | None = Field(
        None,
        description="write a report of each run (joiners, movers, leavers, problems) here; "
        "default: no report files",
    )
    correlate: bool = Field(
        True, description="link unlinked records to existing target items (targets that can)"
    )

    @field_validator("max_deletes", "max_quarantined")
    @classmethod
    def _max_deletes(cls, value: int | str) -> int | str:
        parse_max_deletes(value)
        return value


class ConfigFile(_Strict):
    version: Literal[1]
    state: StateSection = Field(default_factory=StateSection)
    daemon: DaemonSection = Field(default_factory=DaemonSection)
    connections: dict[str, dict[str, Any]] = Field(default_factory=dict)
    jobs: dict[str, JobSection] = Field(default_factory=dict)


@dataclass
class ConnectionConfig:
    name: str
    type: str
    spec: ConnectorSpec
    options: BaseModel


@dataclass
class Endpoint:
    connection: ConnectionConfig
    options: BaseModel


@dataclass
class JobConfig:
    name: str
    source: Endpoint
    target: Endpoint
    mapping_path: Path
    max_deletes: int | float
    section: JobSection
    mapping: Any = None  # syncd.mapping.Mapping, loaded with the config

    @property
    def schedule(self) -> ScheduleSection | None:
        return self.section.schedule

    config_dir: Path = Path()

    @property
    def report_dir(self) -> Path | None:
        """Where run reports go (relative paths are relative to the config file)."""
        if not self.section.report_dir:
            return None
        return self.config_dir / Path(self.section.report_dir).expanduser()


@dataclass
class Config:
    path: Path
    state_url: str
    """The state store's URL without its password (safe to show)."""
    daemon: DaemonSection
    connections: dict[str, ConnectionConfig] = field(default_factory=dict)
    jobs: dict[str, JobConfig] = field(default_factory=dict)
    state_password: SecretRef | None = None
    doc: YamlDoc | None = None
    """The parsed file, to tell problems found later (unresolvable secrets) by line."""
    retention: RetentionSection = field(default_factory=RetentionSection)

    def where(self, *loc: Any) -> str:
        """``FILE:LINE`` of a config path such as ("connections", "ldap", "password")."""
        return self.doc.where(loc) if self.doc is not None else str(self.path)

    @property
    def state(self) -> StateSection:
        return StateSection(
            url=self.state_url, password=self.state_password, retention=self.retention
        )

    def open_state(self, *, dry_run: bool = False) -> Any:
        """Open the state store (with its password resolved). Raises SecretError,
        ConnectionFailed or UserError for an unusable store.

        ``dry_run``: write nothing to it. A store that does not exist yet (no SQLite
        file, an empty database) is replaced by an empty one in memory, as a first run
        sees it; one that would need a migration raises StateNotReady."""
        from sqlalchemy.engine import make_url

        from syncd.state import StateStore
        from syncd.state.store import StateNotReady

        if dry_run and self.state_file() is not None and not self.state_file().exists():
            return self._stand_in()
        url = self.state_url
        if self.state_password is not None:
            url = make_url(url).set(password=self.state_password.reveal())
            url = url.render_as_string(hide_password=False)
        if not dry_run:
            return StateStore(url)
        try:
            return StateStore(url, migrate=False)
        except StateNotReady as err:
            if err.version is None:
                return self._stand_in()
            raise

    def _stand_in(self) -> Any:
        """An empty in-memory store for a dry run on a store not created yet; its
        ``stands_in_for`` names the real one."""
        from syncd.state import StateStore
        from syncd.state.store import safe_url

        store = StateStore("sqlite://")
        store.stands_in_for = safe_url(self.state_url)
        return store

    def state_file(self) -> Path | None:
        """The SQLite file of the state store (None for a server database)."""
        from sqlalchemy.engine import make_url

        url = make_url(self.state_url)
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        if url.query.get("uri") == "true":
            return None
        return Path(url.database)

    def job(self, name: str) -> JobConfig:
        """The job called ``name``. Raises ConfigError naming the known jobs."""
        try:
            return self.jobs[name]
        except KeyError:
            known = ", ".join(sorted(self.jobs)) or "none"
            raise ConfigError(f"{self.path}: no job named {name!r} (jobs: {known})") from None


def find_config(explicit: str | None) -> Path:
    """The config file to use: ``explicit``, $SYNCD_CONFIG, ./syncd.yaml, /etc/syncd/syncd.yaml."""
    if explicit:
        return Path(explicit)
    if os.environ.get("SYNCD_CONFIG"):
        return Path(os.environ["SYNCD_CONFIG"])
    for candidate in DEFAULT_CONFIG_PATHS:
        if Path(candidate).exists():
            return Path(candidate)
    raise ConfigError(
        "no config file: pass -c FILE, set SYNCD_CONFIG, or create ./syncd.yaml "
        "or /etc/syncd/syncd.yaml"
    )


def _default_state_url(config_dir: Path) -> str:
    """state.db in $STATE_DIRECTORY (the service); for the service's own config
    (/etc/syncd) in /var/lib/syncd, the directory the service gets, so a root shell
    running plan/status opens the daemon's store, not a second empty one; else beside
    the config file."""
    state_dir = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state_dir:
        base = Path(state_dir)
    elif config_dir.resolve() == SYSTEM_CONFIG_DIR.resolve():
        base = SYSTEM_STATE_DIR
    else:
        base = config_dir
    return f"sqlite:///{(base / 'state.db').resolve()}"


def _format_errors(err: ValidationError, doc: YamlDoc, prefix: tuple[Any, ...]) -> list[str]:
    out = []
    for e in err.errors(include_url=False):
        loc = (*prefix, *e["loc"])
        shown = ".".join(str(p) for p in loc) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown option"
        elif e["type"] == "missing":
            msg = "required option is missing"
        msg = msg.removeprefix("Value error, ")
        out.append(f"{doc.where(loc)}: {shown}: {msg}")
    return out


def _validate_part(
    model: type[BaseModel],
    data: dict[str, Any],
    doc: YamlDoc,
    prefix: tuple[Any, ...],
    problems: list[str],
) -> BaseModel | None:
    try:
        return model.model_validate(data, context={"base_dir": doc.path.parent})
    except ValidationError as err:
        problems.extend(_format_errors(err, doc, prefix))
        return None


def load_config(path: str | Path, *, load_mappings: bool = True) -> Config:
    """Load and validate a config file and the mapping files its jobs name.

    Raises ConfigError listing every problem found (file:line: message).
    """
    path = Path(path)
    doc = load_yaml(path)
    problems = list(doc.problems)
    if not isinstance(doc.data, dict):
        raise ConfigError([*problems, f"{path}:1: the config must be a mapping with version: 1"])
    data = doc.data
    for key in data:
        if key not in ConfigFile.model_fields:
            problems.append(f"{doc.where((key,))}: {key}: unknown option")
    if data.get("version") != 1:
        problems.append(f"{doc.where(('version',))}: version: must be 1")
    state = _validate_part(StateSection, data.get("state") or {}, doc, ("state",), problems)
    daemon = _validate_part(DaemonSection, data.get("daemon") or {}, doc, ("daemon",), problems)
    connections = _section(data, "connections", doc, problems)
    jobs: dict[str, JobSection] = {}
    for name, block in _section(data, "jobs", doc, problems).items():
        job = _validate_part(JobSection, block, doc, ("jobs", name), problems)
        if job is not None:
            jobs[name] = job
    raw = ConfigFile.model_construct(
        version=1,
        state=state or StateSection(),
        daemon=daemon or DaemonSection(),
        connections=connections,
        jobs=jobs,
    )
    cfg = Config(
        path=path,
        state_url=raw.state.url or _default_state_url(path.parent),
        daemon=raw.daemon,
        state_password=raw.state.password,
        retention=raw.state.retention,
        doc=doc,
    )
    for name, block in raw.connections.items():
        loc = ("connections", name)
        if "type" not in block:
            problems.append(
                f"{doc.where(loc)}: connections.{name}: needs a type (one of "
                f"{', '.join(registry.available())})"
            )
            continue
        ctype = str(block["type"])
        try:
            spec = registry.get(ctype)
        except ConfigError as err:
            problems.append(f"{doc.where((*loc, 'type'))}: connections.{name}.type: {err}")
            continue
        rest = {k: v for k, v in block.items() if k != "type"}
        options = _validate_part(spec.connection_model, rest, doc, loc, problems)
        if options is not None:
            cfg.connections[name] = ConnectionConfig(name, ctype, spec, options)

    for name, job in raw.jobs.items():
        loc = ("jobs", name)
        ends: dict[str, Endpoint] = {}
        for role in ("source", "target"):
            section: EndpointSection = getattr(job, role)
            conn = cfg.connections.get(section.connection)
            if conn is None:
                if section.connection not in raw.connections:
                    problems.append(
                        f"{doc.where((*loc, role, 'connection'))}: jobs.{name}.{role}.connection: "
                        f"no connection named {section.connection!r}"
                    )
                continue
            model = conn.spec.source_model if role == "source" else conn.spec.target_model
            cls = conn.spec.source_class if role == "source" else conn.spec.target_class
            if model is None or cls is None:
                problems.append(
                    f"{doc.where((*loc, role))}: jobs.{name}.{role}: a {conn.type} connection "
                    f"cannot be used as a {role}"
                )
                continue
            options = _validate_part(
                model, dict(section.model_extra or {}), doc, (*loc, role), problems
            )
            if options is not None:
                ends[role] = Endpoint(conn, options)
        mapping_path = (path.parent / job.mapping).resolve()
        mapping = None
        if load_mappings:
            mapping = _load_mapping(mapping_path, doc.where((*loc, "mapping")), problems)
        if len(ends) == 2 and (mapping is not None or not load_mappings):
            cfg.jobs[name] = JobConfig(
                name=name,
                source=ends["source"],
                target=ends["target"],
                mapping_path=mapping_path,
                max_deletes=parse_max_deletes(job.max_deletes),
                section=job,
                mapping=mapping,
                config_dir=path.parent.resolve(),
            )
    if problems:
        raise ConfigError(problems)
    return cfg


def _section(data: dict[str, Any], key: str, doc: YamlDoc, problems: list[str]) -> dict:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{doc.where((key,))}: {key}: must be a mapping of names to settings")
        return {}
    bad = [name for name, block in value.items() if not isinstance(block, dict)]
    for name in bad:
        problems.append(f"{doc.where((key, name))}: {key}.{name}: must be a mapping of settings")
    return {name: block for name, block in value.items() if name not in bad}


def _load_mapping(path: Path, where: str, problems: list[str]) -> Any:
    from syncd.mapping import Mapping

    if not path.exists():
        problems.append(f"{where}: mapping file {path} does not exist")
        return None
    try:
        return Mapping.load(path)
    except ConfigError as err:
        problems.extend(err.problems)
        return None
