"""Whether this service may reach and use the brokers, and what to tell the operator when it may not.

aiokafka reports refused credentials as "Unable to bootstrap" (the reason only in its own log line) and a
missing ACL as an error code deep in a consumer's loop. These turn both into a sentence that names the
setting or the ACL to fix (docs/operations.md, "Kafka users and ACLs"), for the log and for `/readyz`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)
from aiokafka.protocol.metadata import MetadataRequest

from shared.producer import kafka_client_options, kafka_user
from shared.settings import CommonSettings

ACL_GUIDE = 'docs/operations.md, "Kafka users and ACLs"'

PROBE_TIMEOUT_S = 10.0
"""How long one diagnosing connection may take (a broker that does not answer is an outage, not a refusal)."""


def _hosts(settings: CommonSettings) -> list[tuple[str, int]]:
    hosts = []
    for server in settings.kafka_bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        if host and port.isdigit():
            hosts.append((host.strip("[]"), int(port)))
    return hosts


async def connection_problem(settings: CommonSettings) -> str | None:
    """Why the brokers refuse these settings (credentials, TLS, protocol), found by connecting to each
    bootstrap server directly; None if one accepts them or none answers (an outage, not a refusal)."""
    options = kafka_client_options(settings)
    for host, port in _hosts(settings):
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host,
                    port,
                    request_timeout_ms=int(PROBE_TIMEOUT_S * 1000),
                    ssl_context=options.get("ssl_context"),
                    security_protocol=settings.kafka_security_protocol,
                    sasl_mechanism=settings.kafka_sasl_mechanism or "PLAIN",
                    sasl_plain_username=settings.kafka_sasl_username,
                    sasl_plain_password=settings.kafka_sasl_password,
                ),
                PROBE_TIMEOUT_S,
            )
        except SaslAuthenticationFailed as exc:
            return (
                f"the brokers refused the credentials of SASL user {settings.kafka_sasl_username!r} "
                f"({settings.kafka_sasl_mechanism}): {exc}. Check PROPOSALFLOW_KAFKA_SASL_USERNAME and "
                "PROPOSALFLOW_KAFKA_SASL_PASSWORD, and that the user exists on the brokers"
            )
        except ssl.SSLCertVerificationError as exc:
            return (
                f"cannot verify the TLS certificate of the broker at {host}:{port} ({exc.verify_message}): "
                f"check PROPOSALFLOW_KAFKA_SSL_CAFILE (now {settings.kafka_ssl_cafile or 'unset: the system CAs'})"
            )
        except ssl.SSLError as exc:
            return (
                f"the TLS handshake with {host}:{port} failed ({exc.reason or exc}): check "
                f"PROPOSALFLOW_KAFKA_SECURITY_PROTOCOL (now {settings.kafka_security_protocol}) against the "
                "broker's listener"
            )
        except ConnectionResetError:
            if "SSL" not in settings.kafka_security_protocol:
                continue
            # A plaintext listener takes the TLS hello for a request far too large and hangs up.
            return (
                f"the broker at {host}:{port} hung up during the TLS handshake: check "
                f"PROPOSALFLOW_KAFKA_SECURITY_PROTOCOL (now {settings.kafka_security_protocol}) against the "
                "broker's listener"
            )
        except KafkaConnectionError:
            return _hung_up(settings, host, port)
        except KafkaError as exc:
            return (
                f"the broker at {host}:{port} refused the connection ({exc}): check "
                f"PROPOSALFLOW_KAFKA_SECURITY_PROTOCOL (now {settings.kafka_security_protocol}) and "
                f"PROPOSALFLOW_KAFKA_SASL_MECHANISM (now {settings.kafka_sasl_mechanism or 'unset'})"
            )
        except (OSError, TimeoutError):
            continue
        try:
            await asyncio.wait_for(conn.send(MetadataRequest([])), PROBE_TIMEOUT_S)
        except KafkaConnectionError:
            return _hung_up(settings, host, port)
        except (KafkaError, TimeoutError):
            pass
        finally:
            conn.close()
        return None
    return None


def _hung_up(settings: CommonSettings, host: str, port: int) -> str:
    # It took the connection and closed it on the first bytes: a plaintext client on a TLS or SASL listener.
    return (
        f"the broker at {host}:{port} closed the connection on the first request: check "
        f"PROPOSALFLOW_KAFKA_SECURITY_PROTOCOL (now {settings.kafka_security_protocol}) and "
        f"PROPOSALFLOW_KAFKA_SASL_MECHANISM (now {settings.kafka_sasl_mechanism or 'unset'}) against the broker's "
        "listener"
    )


async def consumer_access_problems(settings: CommonSettings, *, topics: Sequence[str], group: str) -> list[str]:
    """Each ACL this service's Kafka user lacks to consume `topics` in consumer group `group`, as a sentence
    naming it. Transient trouble (a coordinator still loading) is not a problem: the consumer retries it."""
    user = kafka_user(settings)
    admin = AIOKafkaAdminClient(client_id="proposalflow-access-check", **kafka_client_options(settings))
    try:
        await admin.start()
        problems = [
            f"Kafka user {user} may not read topic {topic['topic']}: grant it READ on topic {topic['topic']} "
            f"({ACL_GUIDE})"
            for topic in await admin.describe_topics(list(topics))
            if topic["error_code"] == TopicAuthorizationFailedError.errno
        ]
        with contextlib.suppress(KafkaError):
            try:
                await admin.list_consumer_group_offsets(group)
            except GroupAuthorizationFailedError:
                problems.append(
                    f"Kafka user {user} may not use consumer group {group}: grant it READ on group {group} "
                    f"({ACL_GUIDE})"
                )
        return problems
    finally:
        await admin.close()
