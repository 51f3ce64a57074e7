"""Configuration from the environment (`PROPOSALFLOW_*`), with defaults that run locally.

Two layers: :class:`CommonSettings` holds what every service shares (the broker, JWT, logging),
read from `PROPOSALFLOW_<FIELD>`; each service adds its own model, read from
`PROPOSALFLOW_<SERVICE>_<FIELD>` (its database, its HTTP port), built with
:func:`service_settings_model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SERVICES = ("intake", "assignment", "progress", "notify", "audit")

DEFAULT_HTTP_PORTS = {
    "intake": 8101,
    "assignment": 8102,
    "progress": 8103,
    "notify": 8104,
    "audit": 8105,
}

DEVELOPMENT_JWT_SECRET = "proposalflow-development-secret-change-me-0123456789"


class CommonSettings(BaseSettings):
    """What every service reads: the broker, authentication, logging, the policy file."""

    model_config = SettingsConfigDict(env_prefix="PROPOSALFLOW_", extra="ignore")

    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: str | None = None
    topic_partitions: int = Field(default=12, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)

    jwt_secret: str = DEVELOPMENT_JWT_SECRET
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_jwks_url: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None

    allowed_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CloudEvents `source` values allowed to write the inbound command topics (comma-separated).",
    )
    log_level: str = "INFO"
    log_json: bool = True
    data_dir: Path = Path(".data")
    policy_file: Path | None = None

    retry_attempts: int = Field(default=5, ge=1, description="Tries before a message is dead-lettered.")
    retry_base_delay_s: float = Field(default=0.2, gt=0)
    retry_max_delay_s: float = Field(default=30.0, gt=0)
    outbox_poll_interval_s: float = Field(default=0.5, gt=0)
    outbox_batch_size: int = Field(default=200, ge=1)

    @field_validator("allowed_sources", mode="before")
    @classmethod
    def _split_sources(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class ServiceSettings(BaseSettings):
    """A service's own settings: its database and HTTP address. Subclassed per service."""

    model_config = SettingsConfigDict(extra="ignore")

    service: str = ""
    database_url: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = 0
    consumer_group: str = ""

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
        return self.model_copy(update=updates)


def service_settings(service: str) -> ServiceSettings:
    """Read `PROPOSALFLOW_<SERVICE>_*` for one service, with its defaults filled in."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")
    settings_cls = type(
        f"{service.capitalize()}Settings",
        (ServiceSettings,),
        {"model_config": SettingsConfigDict(env_prefix=f"PROPOSALFLOW_{service.upper()}_", extra="ignore")},
    )
    own: ServiceSettings = settings_cls(service=service)
    return own.with_defaults(CommonSettings())
