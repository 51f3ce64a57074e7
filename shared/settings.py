"""Configuration from the environment (`PROPOSALFLOW_*`), with defaults that run locally.

Two layers: :class:`CommonSettings` holds what every service shares (the broker, JWT, logging),
read from `PROPOSALFLOW_<FIELD>`; each service adds its own model, read from
`PROPOSALFLOW_<SERVICE>_<FIELD>` (its database, its HTTP port), built with
:func:`service_settings_model`.

An empty variable means "not set" (the default applies): a container platform's ConfigMap or a
compose file can then list every setting, the optional ones empty.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.events import SYSTEM_NAME

SERVICES = ("intake", "assignment", "progress", "notify", "audit")

PORTAL = "portal"
"""门户: the web dashboard (services/portal), a thin process with no database and no Kafka consumer:
it reads and writes only through the services' HTTP APIs, so it is not among :data:`SERVICES`."""

DEFAULT_HTTP_PORTS = {
    "intake": 8101,
    "assignment": 8102,
    "progress": 8103,
    "notify": 8104,
    "audit": 8105,
    PORTAL: 8080,
}

DEVELOPMENT_JWT_SECRET = "proposalflow-development-secret-change-me-0123456789"

MIN_JWT_SECRET_BYTES = 32
"""RFC 7518 §3.2: an HS256 key must be at least as long as the hash (256 bits)."""


class CommonSettings(BaseSettings):
    """What every service reads: the broker, authentication, logging, the policy file."""

    model_config = SettingsConfigDict(env_prefix="PROPOSALFLOW_", extra="ignore", env_ignore_empty=True)

    environment: Literal["development", "production"] = Field(
        default="development",
        description="production refuses to start with the development JWT secret, a short secret, RS256 "
        "without a JWKS URL, or an allowed source bound to no outside system.",
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:19092", description="Kafka brokers, host:port, comma-separated."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="SASL_SSL for a managed or Strimzi cluster with authentication."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism; unset for no SASL."
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL user.")
    kafka_sasl_password: str | None = Field(default=None, description="SASL password.")
    kafka_ssl_cafile: str | None = Field(
        default=None, description="CA bundle (PEM) to verify the brokers; unset: the system CAs."
    )
    kafka_max_request_size: int = Field(
        default=1_048_576,
        ge=65_536,
        description="Largest record the producers send, in bytes (aiokafka's max_request_size); keep it at most "
        "the brokers' message.max.bytes (and the topics' max.message.bytes). An event over it is refused where it "
        "is staged (HTTP 413; a dead letter in a handler); a dead letter over it is sent without what it cannot "
        "hold, which stays in its source topic.",
    )
    topic_partitions: int = Field(
        default=12, ge=1, description="Partitions per topic for `proposalflow topics create`."
    )
    topic_replication_factor: int = Field(
        default=1, ge=1, description="Replication factor for `proposalflow topics create` (3 in production)."
    )

    jwt_secret: str = Field(
        default=DEVELOPMENT_JWT_SECRET, description="HS256 signing key of bearer tokens; always set in production."
    )
    jwt_algorithm: Literal["HS256", "RS256"] = Field(default="HS256", description="Token signature algorithm.")
    jwt_jwks_url: str | None = Field(default=None, description="JWKS URL of the identity provider (RS256).")
    jwt_audience: str | None = Field(default=None, description="Required `aud` claim, if set.")
    jwt_issuer: str | None = Field(default=None, description="Required `iss` claim, if set.")

    allowed_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CloudEvents `source` values allowed to write the inbound command topics (comma-separated). "
        "`source=role` or `source=unit:<unit id>` (several joined by +) restricts whom a source may act for; "
        "a bare `source` may act for any role the command allows. `<system>@<source>` binds the source to that "
        "outside system's own topics (`proposalflow.unit-reports.<system>`, `proposalflow.submissions.<system>`): "
        "it is accepted there only, and those topics carry only its system's sources; production binds every source.",
    )
    http_max_body_bytes: int = Field(
        default=1_000_000, ge=1024, description="Largest HTTP request body accepted (413 above, read no further)."
    )
    http_max_json_depth: int = Field(
        default=32,
        ge=4,
        description="Deepest nesting of arrays and objects accepted in an HTTP body (400 above), checked "
        "before the JSON is parsed.",
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["auto", "human", "json"] = Field(
        default="auto",
        description="json: one JSON object per log line; human: short coloured lines (time, service, level, message); "
        "auto: human at a terminal, JSON otherwise (containers, pipes, files).",
    )
    data_dir: Path = Field(default=Path(".data"), description="Where the default SQLite databases live.")
    policy_file: Path | None = Field(
        default=None, description="Policy YAML (deadlines, grades, categories); unset: shared/policies/dongguan.yaml."
    )

    retry_attempts: int = Field(default=5, ge=1, description="Tries before a message is dead-lettered.")
    retry_base_delay_s: float = Field(default=0.2, gt=0, description="First retry delay (doubles, with jitter).")
    retry_max_delay_s: float = Field(default=30.0, gt=0, description="Longest retry delay.")
    outbox_poll_interval_s: float = Field(
        default=2.0,
        gt=0,
        description="How often the outbox relay looks for unsent events when not woken. Every commit that stages "
        "events wakes its own process's relay; the poll finds the rest (a crashed replica's rows, a retry from "
        "the command line), and on PostgreSQL each look is a relay turn, in every replica.",
    )
    outbox_batch_size: int = Field(default=200, ge=1, description="Outbox rows published per batch.")
    offset_commit_interval_s: float = Field(
        default=0.2,
        ge=0,
        description="Consumers commit offsets at most this often (0: after every batch). Always only after the "
        "database has committed the records' effects; a crash re-reads at most this much, which the inbox skips.",
    )

    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector base URL (e.g. http://otel-collector:4318); traces are exported only when "
        "this or the standard OTEL_EXPORTER_OTLP_ENDPOINT is set.",
    )

    @model_validator(mode="after")
    def _production_needs_real_keys(self) -> CommonSettings:
        """Refuse to start a production service that would accept tokens anyone can forge."""
        if self.environment != "production":
            return self
        if self.jwt_algorithm == "RS256":
            if not self.jwt_jwks_url:
                raise ValueError(
                    "PROPOSALFLOW_JWT_ALGORITHM=RS256 needs PROPOSALFLOW_JWT_JWKS_URL (the identity provider's JWKS)"
                )
            return self
        if self.jwt_secret == DEVELOPMENT_JWT_SECRET:
            raise ValueError(
                "PROPOSALFLOW_ENVIRONMENT=production but PROPOSALFLOW_JWT_SECRET is unset or empty, so the published "
                "development secret would sign tokens; set a random secret of at least "
                f"{MIN_JWT_SECRET_BYTES} bytes from a secret store, or use RS256 with PROPOSALFLOW_JWT_JWKS_URL"
            )
        if len(self.jwt_secret.encode()) < MIN_JWT_SECRET_BYTES:
            raise ValueError(
                f"PROPOSALFLOW_JWT_SECRET is {len(self.jwt_secret.encode())} bytes; production needs at least "
                f"{MIN_JWT_SECRET_BYTES} random bytes"
            )
        return self

    @model_validator(mode="after")
    def _production_binds_every_source(self) -> CommonSettings:
        """Refuse to start a production service that would take an outside system's word for who it is: every
        allowed source must name its system, whose own topic only its Kafka user may write."""
        if self.environment != "production":
            return self
        unbound = [source for source, system in parse_source_systems(self.allowed_sources).items() if system is None]
        if unbound:
            raise ValueError(
                f"PROPOSALFLOW_ENVIRONMENT=production but PROPOSALFLOW_ALLOWED_SOURCES has source(s) bound to no "
                f"system: {', '.join(unbound)}. Write each as <system>@<source>[=grants], the system sending on its "
                "own topic proposalflow.unit-reports.<system> or proposalflow.submissions.<system> "
                '(docs/operations.md, "Adding an outside system")'
            )
        return self

    @field_validator("allowed_sources", mode="before")
    @classmethod
    def _split_sources(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("allowed_sources")
    @classmethod
    def _grants_name_roles(cls, value: list[str]) -> list[str]:
        parse_source_grants(value)  # a typo in a grant stops the service at start, naming the entry
        parse_source_systems(value)
        return value


SourceGrants = dict[str, frozenset[tuple[str, str | None]] | None]
"""Per allowed source, whom it may act for: (role, unit or None); None for anyone the command allows."""

_GRANTABLE_ROLES = ("member", "committee", "dispatcher", "unit", "leader", "system", "admin")


def parse_source_grants(entries: list[str]) -> SourceGrants:
    """`/portal/members=member`, `/oa/dg-fgj=unit:dg-fgj`, `/cppcc/platform=member+committee`, `/bare`;
    each may name its system first (`oa-dg-fgj@/oa/dg-fgj=unit:dg-fgj`, see :func:`parse_source_systems`)."""
    grants: SourceGrants = {}
    for entry in entries:
        named, _, granted = entry.partition("=")
        source = split_system(named)[1]
        if not granted:
            grants[source] = None
            continue
        parsed = set()
        for grant in granted.split("+"):
            role, _, unit = grant.partition(":")
            if role not in _GRANTABLE_ROLES or (unit and role != "unit"):
                raise ValueError(
                    f"PROPOSALFLOW_ALLOWED_SOURCES entry {entry!r}: {grant!r} is not a role "
                    f"({', '.join(_GRANTABLE_ROLES)}) or unit:<unit id>"
                )
            parsed.add((role, unit or None))
        grants[source] = frozenset(parsed)
    return grants


_SYSTEM_PREFIX = re.compile(rf"({SYSTEM_NAME})@(.+)")


def split_system(named: str) -> tuple[str | None, str]:
    """`oa-dg-fgj@/oa/dg-fgj` -> ("oa-dg-fgj", "/oa/dg-fgj"); a source without a system name -> (None, source).
    A source that itself holds an `@` is told apart by what precedes it: a system name has no `/` or `:`."""
    bound = _SYSTEM_PREFIX.fullmatch(named)
    return (bound.group(1), bound.group(2)) if bound else (None, named)


SourceSystems = dict[str, str | None]
"""Per allowed source, the outside system it is bound to (whose own inbound topics alone may carry it), or
None for a source sent on the shared inbound topics (development, or systems not yet moved)."""


def parse_source_systems(entries: list[str]) -> SourceSystems:
    """Which system each allowed source belongs to: `<system>@<source>[=grants]` binds the source to
    `proposalflow.submissions.<system>` and `proposalflow.unit-reports.<system>` (docs/decisions.md)."""
    systems: SourceSystems = {}
    for entry in entries:
        system, source = split_system(entry.partition("=")[0])
        if source in systems and systems[source] != system:
            raise ValueError(
                f"PROPOSALFLOW_ALLOWED_SOURCES names source {source!r} twice, for systems "
                f"{systems[source] or '(none)'} and {system or '(none)'}: a source belongs to one system"
            )
        systems[source] = system
    return systems


DEFAULT_BATCH_WINDOW_MS = {"audit": 25}
"""Audit reads every record of every topic and nothing waits for it: a short window turns its one-record
batches into larger ones (docs/performance.md)."""

DEFAULT_BATCH_WINDOW_MS_ON_POSTGRESQL = {"audit": 25, "notify": 10, "progress": 10}
"""On PostgreSQL a batch's fixed statements (`BEGIN`, admit, `COMMIT`, the after-commit look, a relay
turn) are round trips, and replicas split the records into more, smaller batches: a short window for the
two consumers that read the most records gathers them (docs/performance.md, "The fifth round")."""


class ServiceSettings(BaseSettings):
    """A service's own settings: its database and HTTP address. Subclassed per service."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    service: str = ""
    database_url: str = Field(
        default="",
        description="SQLAlchemy async URL, e.g. postgresql+asyncpg://user:pass@host/db "
        "(default: sqlite+aiosqlite:///<DATA_DIR>/<service>.db).",
    )
    http_host: str = Field(default="127.0.0.1", description="Listen address; 0.0.0.0 in a container.")
    http_port: int = Field(default=0, description="Listen port (default: 8101 intake … 8105 audit).")
    consumer_group: str = Field(default="", description="Kafka consumer group (default: proposalflow-<service>).")
    batch_window_ms: int = Field(
        default=-1,
        ge=-1,
        description="How long the consumer may wait for more records to handle them as one batch (0: never; "
        "default: 25 for audit, whose records end the pipeline, and on PostgreSQL 10 for notify and progress, "
        "0 for the others). A longer window means fewer, larger batches (less CPU per record, for the service, "
        "the database and the broker) and that much more latency at this hop.",
    )

    def with_defaults(self, common: CommonSettings) -> ServiceSettings:
        """Fill in the defaults that depend on the service name and the data directory."""
        updates: dict[str, Any] = {}
        if not self.database_url:
            path = (common.data_dir / f"{self.service}.db").as_posix()
            updates["database_url"] = f"sqlite+aiosqlite:///{path}"
        if not self.http_port:
            updates["http_port"] = DEFAULT_HTTP_PORTS.get(self.service, 8100)
        if not self.consumer_group:
            updates["consumer_group"] = f"proposalflow-{self.service}"
        if self.batch_window_ms < 0:
            url = updates.get("database_url", self.database_url)
            defaults = (
                DEFAULT_BATCH_WINDOW_MS_ON_POSTGRESQL if url.startswith("postgresql") else DEFAULT_BATCH_WINDOW_MS
            )
            updates["batch_window_ms"] = defaults.get(self.service, 0)
        return self.model_copy(update=updates)


def service_settings(service: str) -> ServiceSettings:
    """Read `PROPOSALFLOW_<SERVICE>_*` for one service, with its defaults filled in."""
    if service not in (*SERVICES, PORTAL):
        raise ValueError(f"unknown service {service!r}; expected one of {', '.join((*SERVICES, PORTAL))}")
    settings_cls = type(
        f"{service.capitalize()}Settings",
        (ServiceSettings,),
        {
            "model_config": SettingsConfigDict(
                env_prefix=f"PROPOSALFLOW_{service.upper()}_", extra="ignore", env_ignore_empty=True
            )
        },
    )
    own: ServiceSettings = settings_cls(service=service)
    return own.with_defaults(CommonSettings())
