"""The portal's own settings (`PROPOSALFLOW_PORTAL_*`): where the services' APIs are, and the login."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PortalSettings(BaseSettings):
    """Where the portal finds the APIs it reads and writes through."""

    model_config = SettingsConfigDict(env_prefix="PROPOSALFLOW_PORTAL_", extra="ignore", env_ignore_empty=True)

    intake_url: str = Field(default="http://127.0.0.1:8101", description="Base URL of intake's API.")
    assignment_url: str = Field(default="http://127.0.0.1:8102", description="Base URL of assignment's API.")
    progress_url: str = Field(default="http://127.0.0.1:8103", description="Base URL of progress's API.")
    dev_login: bool = Field(
        default=False,
        description="Offer the development login page (demo users, tokens signed with the HS256 secret). "
        "Also on while the secret is the built-in development one; never set in production.",
    )
    secure_cookie: bool = Field(default=False, description="Send the session cookie over HTTPS only (behind TLS).")
    api_timeout_s: float = Field(default=10.0, gt=0, description="How long a page waits for an API.")
