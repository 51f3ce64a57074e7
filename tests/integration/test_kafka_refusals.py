"""A service configured for TLS that meets a plaintext broker (the production settings on a development
broker) is told which setting to check, on the real test broker."""

from __future__ import annotations

import pytest

from shared.kafka_access import connection_problem
from shared.settings import CommonSettings

pytestmark = pytest.mark.kafka


async def test_tls_settings_against_a_plaintext_listener_name_the_security_protocol(kafka_bootstrap: str) -> None:
    settings = CommonSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="proposalflow-intake",
        kafka_sasl_password="secret",
    )
    problem = await connection_problem(settings)
    assert problem is not None
    assert "PROPOSALFLOW_KAFKA_SECURITY_PROTOCOL (now SASL_SSL)" in problem


async def test_the_plaintext_broker_accepts_plaintext_settings(kafka_bootstrap: str) -> None:
    assert await connection_problem(CommonSettings(kafka_bootstrap_servers=kafka_bootstrap)) is None
