"""Audit's own settings, `PROPOSALFLOW_AUDIT_*`, beside the service settings every service has."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class AuditSettings(BaseSettings):
    """The HMAC key of the hash chain: without it, a rewrite of the whole chain cannot be made to
    verify. Set it before the first entry and keep it: entries hashed with another key (or none)
    no longer verify. The anchor file keeps the chain head outside the database."""

    model_config = SettingsConfigDict(env_prefix="PROPOSALFLOW_AUDIT_", extra="ignore", env_ignore_empty=True)

    hmac_key: SecretStr | None = None
    anchor_file: Path | None = Field(
        default=None,
        description="Append the chain head here every anchor interval (a write-once volume); unset: no anchoring.",
    )
    anchor_interval_s: float = Field(default=300.0, gt=0, description="How often the chain head is anchored.")

    @property
    def key(self) -> bytes | None:
        secret = self.hmac_key.get_secret_value() if self.hmac_key is not None else ""
        return secret.encode() if secret else None
