"""Notify's own settings (`PROPOSALFLOW_NOTIFY_*`): channels, signing, links and the delivery worker."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_RULES_FILE = Path(__file__).with_name("rules.yaml")


class NotifySettings(BaseSettings):
    """How notify reaches people. A channel without its setting (SMTP host, SMS gateway) is off."""

    model_config = SettingsConfigDict(env_prefix="PROPOSALFLOW_NOTIFY_", extra="ignore", env_ignore_empty=True)

    rules_file: Path | None = Field(default=None, description="Rules file (YAML); default: the packaged rules.yaml.")
    public_base_url: str = Field(default="http://127.0.0.1:8080", description="Base of the links in messages.")
    timezone: str = Field(default="Asia/Shanghai", description="Deadlines in messages are local dates here.")

    smtp_host: str | None = Field(default=None, description="SMTP server; email is off when unset.")
    smtp_port: int = 25
    smtp_from: str = "ProposalFlow <noreply@proposalflow.local>"
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None

    sms_gateway_url: str | None = Field(default=None, description="HTTP SMS gateway; SMS is off when unset.")

    webhook_secret: str = Field(
        default="proposalflow-development-webhook-secret", description="HMAC-SHA256 key signing webhook bodies."
    )

    @property
    def rules_path(self) -> Path:
        return self.rules_file or DEFAULT_RULES_FILE

    parked_sweep_interval_s: float = Field(
        default=30.0, gt=0, description="How often events parked for an earlier one are tried again."
    )

    delivery_poll_interval_s: float = Field(default=1.0, gt=0)
    delivery_batch_size: int = Field(default=50, ge=1)
    delivery_timeout_s: float = Field(default=10.0, gt=0, description="Per request; a slow endpoint times out.")
    delivery_max_attempts: int = Field(default=6, ge=1)
    delivery_base_delay_s: float = Field(default=5.0, gt=0)
    delivery_max_delay_s: float = Field(default=3600.0, gt=0)
