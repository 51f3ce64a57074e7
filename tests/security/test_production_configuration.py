"""In production a service refuses to start with a JWT secret anyone can know: the published
development secret (what an empty PROPOSALFLOW_JWT_SECRET falls back to), a short one, or RS256
without the identity provider's JWKS. In development the fallback keeps `make run` working."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from pydantic import ValidationError

from shared.settings import DEVELOPMENT_JWT_SECRET, CommonSettings

pytestmark = pytest.mark.security

REAL_SECRET = "k3J9-q2Lm8Zx7Vb4Nc6Tr1Yw5Ue0Pa3Sd"  # 34 bytes


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PROPOSALFLOW_JWT_") or name == "PROPOSALFLOW_ENVIRONMENT":
            monkeypatch.delenv(name)


@pytest.mark.parametrize("secret", ["", DEVELOPMENT_JWT_SECRET])
def test_production_refuses_an_unset_or_the_development_secret(monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    monkeypatch.setenv("PROPOSALFLOW_ENVIRONMENT", "production")
    monkeypatch.setenv("PROPOSALFLOW_JWT_SECRET", secret)
    with pytest.raises(ValidationError, match="PROPOSALFLOW_JWT_SECRET is unset or empty"):
        CommonSettings()


def test_production_refuses_a_secret_shorter_than_256_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROPOSALFLOW_ENVIRONMENT", "production")
    monkeypatch.setenv("PROPOSALFLOW_JWT_SECRET", "short-secret")
    with pytest.raises(ValidationError, match="is 12 bytes; production needs at least 32"):
        CommonSettings()


def test_production_with_rs256_needs_the_jwks_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROPOSALFLOW_ENVIRONMENT", "production")
    monkeypatch.setenv("PROPOSALFLOW_JWT_ALGORITHM", "RS256")
    with pytest.raises(ValidationError, match="RS256 needs PROPOSALFLOW_JWT_JWKS_URL"):
        CommonSettings()
    monkeypatch.setenv("PROPOSALFLOW_JWT_JWKS_URL", "https://sso.example.gov.cn/.well-known/jwks.json")
    assert CommonSettings().jwt_jwks_url == "https://sso.example.gov.cn/.well-known/jwks.json"


def test_production_starts_with_a_real_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROPOSALFLOW_ENVIRONMENT", "production")
    monkeypatch.setenv("PROPOSALFLOW_JWT_SECRET", REAL_SECRET)
    assert CommonSettings().jwt_secret == REAL_SECRET


def test_development_falls_back_to_the_development_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROPOSALFLOW_JWT_SECRET", "")
    settings = CommonSettings()
    assert (settings.environment, settings.jwt_secret) == ("development", DEVELOPMENT_JWT_SECRET)


def test_a_production_service_without_a_secret_exits_with_the_reason_and_no_traceback() -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PROPOSALFLOW_JWT_")}
    env |= {"PROPOSALFLOW_ENVIRONMENT": "production", "PROPOSALFLOW_JWT_SECRET": ""}
    started = subprocess.run(
        [sys.executable, "-m", "proposalflow.cli", "run", "intake", "--no-migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 2
    assert started.stderr.startswith("intake refuses to start: PROPOSALFLOW_ENVIRONMENT=production but ")
    assert "Traceback" not in started.stderr


def test_production_takes_no_outside_system_at_its_word(monkeypatch: pytest.MonkeyPatch) -> None:
    """In production every allowed source names its system, so only that system's own topic (which only its
    Kafka user may write) carries it: a source on the shared topic would be whatever a producer claims."""
    monkeypatch.setenv("PROPOSALFLOW_ENVIRONMENT", "production")
    monkeypatch.setenv("PROPOSALFLOW_JWT_SECRET", REAL_SECRET)
    monkeypatch.setenv("PROPOSALFLOW_ALLOWED_SOURCES", "oa-fgj@/oa/dg-fgj=unit:dg-fgj,/portal/members=member")
    with pytest.raises(
        ValidationError, match=re.escape("bound to no system: /portal/members. Write each as <system>@<source>")
    ):
        CommonSettings()
    monkeypatch.setenv("PROPOSALFLOW_ALLOWED_SOURCES", "oa-fgj@/oa/dg-fgj=unit:dg-fgj,portal@/portal/members=member")
    assert CommonSettings().allowed_sources == ["oa-fgj@/oa/dg-fgj=unit:dg-fgj", "portal@/portal/members=member"]
    monkeypatch.setenv("PROPOSALFLOW_ENVIRONMENT", "development")
    monkeypatch.setenv("PROPOSALFLOW_ALLOWED_SOURCES", "/portal/members=member")
    assert CommonSettings().allowed_sources == ["/portal/members=member"]
