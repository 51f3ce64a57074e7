"""The five services on a secured broker, as production runs them: TLS with a CA of its own, a SCRAM-SHA-512
user per service, and the StandardAuthorizer holding exactly the ACLs docs/operations.md lists (read from
that file). A proposal goes through its whole lifecycle. A service with a wrong password, a service
missing the ACL to consume and one missing the ACL to publish say which setting or ACL, keep their work,
and do it once fixed. Two outside systems (two units' OA systems), each a Kafka user of its own writing
only its own topic, as docs/operations.md adds one: system A cannot act for system B, neither by writing
B's topic (the brokers refuse it) nor by claiming B's source on its own (`unit-report.rejected`), nor for a
unit outside its grant; nothing changes, and the audit log shows which system sent what.

The broker is the test's own (deploy/kafka-local with KAFKA_LOCAL_SECURITY=SASL_SSL, on free ports).
"""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from aiokafka.errors import TopicAuthorizationFailedError

from shared.envelope import Envelope, to_kafka
from shared.events import ASSIGNMENTS, NOTIFICATIONS, UNIT_REPORTS, ReportProgress, Role, system_topic
from shared.kafka_access import connection_problem
from shared.producer import kafka_client_options
from shared.settings import SERVICES, CommonSettings
from shared.topics import all_topic_names
from tests.e2e.test_handling_lifecycle import PROPOSAL, REPLY
from tests.e2e.test_lifecycle import eventually
from tests.lifecycle_driver import Walk
from tests.procs import ROOT, Suite, free_port, running, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.security]

OPERATIONS = ROOT / "docs" / "operations.md"
OVERLAY = ROOT / "deploy" / "k8s" / "overlays" / "production"
KAFKA_LOCAL = ROOT / "deploy" / "kafka-local" / "kafka-local.sh"
OPS_USER = "proposalflow-ops"


@dataclass(frozen=True)
class OutsideSystem:
    """A unit's OA system: its Kafka user is its name, and it writes only its own topic."""

    name: str
    source: str
    unit: str

    @property
    def topic(self) -> str:
        return system_topic(UNIT_REPORTS, self.name)

    @property
    def allow_list_entry(self) -> str:
        return f"{self.name}@{self.source}=unit:{self.unit}"

    def grant(self) -> Grant:
        """docs/operations.md, "Adding an outside system": WRITE on its own topic, nothing else."""
        return Grant(self.name, ("Write",), (("topic", self.topic),), prefixed=False)


# The lead unit of the lifecycle's proposal, and another unit.
SYSTEM_A = OutsideSystem("oa-zrzyj", "/oa/dg-zrzyj", "dg-zrzyj")
SYSTEM_B = OutsideSystem("oa-czj", "/oa/dg-czj", "dg-czj")


def user_of(service: str) -> str:
    """The Kafka user a service runs as (docs/operations.md, the production overlay)."""
    return f"proposalflow-{service}"


@dataclass(frozen=True)
class Grant:
    """One `kafka-acls.sh --add`: operations on resources of one pattern type, for one user."""

    user: str
    operations: tuple[str, ...]
    resources: tuple[tuple[str, str], ...]  # ("topic" | "group", name)
    prefixed: bool

    def args(self) -> list[str]:
        args = ["--add", "--allow-principal", f"User:{self.user}"]
        if self.prefixed:
            args += ["--resource-pattern-type", "prefixed"]
        for operation in self.operations:
            args += ["--operation", operation]
        for kind, name in self.resources:
            args += [f"--{kind}", name]
        return args


def documented_grants() -> dict[str, list[Grant]]:
    """The table "Kafka users and ACLs" of docs/operations.md, as the kafka-acls commands it takes."""
    text = OPERATIONS.read_text(encoding="utf-8")
    section = text[text.index("### Kafka users and ACLs") :]
    rows = [line for line in section.splitlines() if line.startswith("| `proposalflow-")]
    columns = {2: ("Read", "topic"), 3: ("Write", "topic"), 4: ("Create", "topic"), 5: ("Read", "group")}
    grants: dict[str, list[Grant]] = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        user = cells[0].strip("`")
        # (prefixed, resources) -> operations; then one command per distinct (operations, prefixed)
        by_operation: dict[tuple[str, bool], list[tuple[str, str]]] = {}
        for index, (operation, kind) in columns.items():
            for item in filter(None, (part.strip() for part in cells[index].split(","))):
                prefixed = item.startswith("prefix ")
                name = re.fullmatch(r"(?:prefix )?`([^`]+)`", item)
                assert name, f"cannot read {item!r} in the row of {user}"
                by_operation.setdefault((operation, prefixed), []).append((kind, name.group(1)))
        merged: dict[tuple[tuple[tuple[str, str], ...], bool], list[str]] = {}
        for (operation, prefixed), resources in by_operation.items():
            merged.setdefault((tuple(resources), prefixed), []).append(operation)
        grants[user] = [
            Grant(user, tuple(operations), resources, prefixed) for (resources, prefixed), operations in merged.items()
        ]
    return grants


@dataclass
class SecuredBroker:
    env: dict[str, str]
    data_dir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.env['KAFKA_LOCAL_PORT']}"

    @property
    def cafile(self) -> str:
        return str(self.data_dir / "tls" / "ca.crt")

    def __call__(self, *command: str) -> str:
        done = subprocess.run(
            ["bash", str(KAFKA_LOCAL), *command], env=self.env, cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 0, f"kafka-local.sh {' '.join(command)}: {done.stdout}{done.stderr}"
        return done.stdout

    def client_env(self, user: str, password: str) -> dict[str, str]:
        """The Kafka settings a service or tool runs with: the names and shape of the production overlay."""
        return {
            "PROPOSALFLOW_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "PROPOSALFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "PROPOSALFLOW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "PROPOSALFLOW_KAFKA_SSL_CAFILE": self.cafile,
            "PROPOSALFLOW_KAFKA_SASL_USERNAME": user,
            "PROPOSALFLOW_KAFKA_SASL_PASSWORD": password,
        }


@pytest.fixture
def passwords() -> dict[str, str]:
    return {user: secrets.token_hex(16) for user in [*map(user_of, SERVICES), OPS_USER, SYSTEM_A.name, SYSTEM_B.name]}


@pytest.fixture
def secured_broker(tmp_path: Path, passwords: dict[str, str]) -> Iterator[SecuredBroker]:
    data_dir = tmp_path / "kafka"
    broker = SecuredBroker(
        env={
            **os.environ,
            "KAFKA_LOCAL_SECURITY": "SASL_SSL",
            "KAFKA_LOCAL_PORT": str(free_port()),
            "KAFKA_LOCAL_CONTROLLER_PORT": str(free_port()),
            "KAFKA_LOCAL_DATA_DIR": str(data_dir),
            # TLS, SCRAM and the authorizer on a busy machine take their time to come up.
            "KAFKA_LOCAL_START_TIMEOUT": os.environ.get("KAFKA_LOCAL_START_TIMEOUT", "240"),
            # The users exist from the start (SCRAM credentials bootstrapped at format time); their ACLs
            # are granted by the test.
            "KAFKA_LOCAL_USERS": " ".join(f"{user}={password}" for user, password in passwords.items()),
        },
        data_dir=data_dir,
    )
    broker("start")
    try:
        yield broker
    finally:
        broker("reset")


def test_the_production_overlay_runs_each_service_as_the_user_this_test_proves() -> None:
    config = yaml.safe_load((OVERLAY / "config.yaml").read_text(encoding="utf-8"))["data"]
    assert config["PROPOSALFLOW_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["PROPOSALFLOW_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert config["PROPOSALFLOW_KAFKA_SSL_CAFILE"]
    assert config["PROPOSALFLOW_KAFKA_SASL_USERNAME"] == OPS_USER, "one-off jobs (topics, dlq) run as the ops user"
    # Production mode, as this test runs the services: every allowed source bound to its system's own topic.
    base = yaml.safe_load((OVERLAY.parent.parent / "base" / "configmap.yaml").read_text(encoding="utf-8"))["data"]
    assert base["PROPOSALFLOW_ENVIRONMENT"] == "production"
    assert "PROPOSALFLOW_ALLOWED_SOURCES" in config
    documented = documented_grants()
    for service in SERVICES:
        patch = yaml.safe_load((OVERLAY / "kafka-users" / f"{service}.yaml").read_text(encoding="utf-8"))
        (container,) = patch["spec"]["template"]["spec"]["containers"]
        env = {entry["name"]: entry for entry in container["env"]}
        assert env["PROPOSALFLOW_KAFKA_SASL_USERNAME"]["value"] == user_of(service)
        assert "secretKeyRef" in env["PROPOSALFLOW_KAFKA_SASL_PASSWORD"]["valueFrom"]
        assert user_of(service) in documented


async def test_services_on_a_secured_broker_with_their_documented_acls(
    secured_broker: SecuredBroker, passwords: dict[str, str], tmp_path: Path
) -> None:
    grants = documented_grants()
    assert set(grants) == {*map(user_of, SERVICES), OPS_USER}
    # Assignment starts without READ on its consumer group, notify without WRITE on its topic: granted later.
    no_group = Grant(user_of("assignment"), ("Read",), (("group", "proposalflow-assignment"),), prefixed=False)
    no_write = Grant(user_of("notify"), ("Write",), (("topic", NOTIFICATIONS),), prefixed=False)
    commands = []
    for user_grants in grants.values():
        for grant in user_grants:
            for withheld in (no_group, no_write):
                if (grant.user, grant.operations, grant.prefixed) == (withheld.user, withheld.operations, False):
                    kept = tuple(resource for resource in grant.resources if resource not in withheld.resources)
                    assert len(kept) < len(grant.resources), f"the table no longer grants {withheld}"
                    grant = Grant(grant.user, grant.operations, kept, grant.prefixed)
            commands.append(grant.args())
    commands += [SYSTEM_A.grant().args(), SYSTEM_B.grant().args()]
    with ThreadPoolExecutor(3) as pool:  # each is a JVM start: in parallel they take a third of the time
        list(pool.map(lambda args: secured_broker("acls", *args), commands))

    # A service's user may not create topics: `topics create` as intake fails, naming what is missing.
    intake_env = {**os.environ, **secured_broker.client_env(user_of("intake"), passwords[user_of("intake")])}
    as_intake = subprocess.run(
        [sys.executable, "-m", "proposalflow.cli", "topics", "create"],
        env=intake_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert as_intake.returncode == 1, as_intake.stdout + as_intake.stderr
    assert "refused: Kafka user User:proposalflow-intake may not create it" in as_intake.stdout
    assert f"could not create {len(all_topic_names())} topics" in as_intake.stderr

    # The migration Job's first step, as the ops user, with the outside systems' own topics.
    ops_env = {**os.environ, **secured_broker.client_env(OPS_USER, passwords[OPS_USER])}
    system_topics = [arg for system in (SYSTEM_A, SYSTEM_B) for arg in ("--system-topic", system.topic)]
    created = subprocess.run(
        [sys.executable, "-m", "proposalflow.cli", "topics", "create", "--partitions", "3", *system_topics],
        env=ops_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    assert created.stdout.count(": created") == len(all_topic_names()) + len(system_topics) // 2, created.stdout
    assert f"{SYSTEM_A.topic}: created" in created.stdout

    # Single writer, enforced by the brokers: intake's user may not write assignment's topic.
    intake_settings = CommonSettings.model_validate(
        {
            key.removeprefix("PROPOSALFLOW_").lower(): value
            for key, value in secured_broker.client_env(user_of("intake"), passwords[user_of("intake")]).items()
        }
    )
    producer = AIOKafkaProducer(enable_idempotence=True, acks="all", **kafka_client_options(intake_settings))
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(ASSIGNMENTS, b"{}", key=b"forged")
    finally:
        await producer.stop()

    # Settings the brokers refuse are named: the CA, the protocol.
    untrusted = intake_settings.model_copy(update={"kafka_ssl_cafile": None})
    assert "PROPOSALFLOW_KAFKA_SSL_CAFILE" in str(await connection_problem(untrusted))
    plaintext = intake_settings.model_copy(
        update={"kafka_security_protocol": "PLAINTEXT", "kafka_sasl_mechanism": None}
    )
    assert "PROPOSALFLOW_KAFKA_SECURITY_PROTOCOL" in str(await connection_problem(plaintext))
    assert await connection_problem(intake_settings) is None

    run = secrets.token_hex(4)
    env = {
        **os.environ,
        "PROPOSALFLOW_DATA_DIR": str(tmp_path / "data"),
        "PROPOSALFLOW_JWT_SECRET": f"secured-{run}-0123456789abcdef0123456789abcdef",
        # As the production overlay: production mode, which takes no allowed source bound to no system.
        "PROPOSALFLOW_ENVIRONMENT": "production",
        "PROPOSALFLOW_ALLOWED_SOURCES": ",".join(system.allow_list_entry for system in (SYSTEM_A, SYSTEM_B)),
        "PROPOSALFLOW_LOG_LEVEL": "INFO",
        "PROPOSALFLOW_LOG_FORMAT": "human",
        "PYTHONUNBUFFERED": "1",
    }
    service_env = {
        service: secured_broker.client_env(user_of(service), passwords[user_of(service)]) for service in SERVICES
    }
    service_env["intake"]["PROPOSALFLOW_KAFKA_SASL_PASSWORD"] = "not-" + passwords[user_of("intake")]
    with running(env, tmp_path, service_env) as suite:
        await wait_ready(suite, ["progress", "notify", "audit"])
        # Generous: on a busy machine a request to a service still starting or draining may take a while.
        async with httpx.AsyncClient(timeout=30) as http:
            refused = await eventually(
                lambda: broker_refusal(http, suite, "intake"),
                "intake's readiness to name the refused password",
                suite,
                timeout=90,
            )
            assert "PROPOSALFLOW_KAFKA_SASL_PASSWORD" in refused
            assert "proposalflow-intake" in refused
            missing = await eventually(
                lambda: broker_refusal(http, suite, "assignment"), "assignment's readiness to name the ACL", suite, 90
            )
            assert "READ on group proposalflow-assignment" in missing
            assert "PROPOSALFLOW_KAFKA_SASL_PASSWORD" in suite.logs["intake"].read_text()
            assert "grant it READ on group proposalflow-assignment" in suite.logs["assignment"].read_text()

            # Intake still takes the proposal: it waits in the outbox, nobody has seen it.
            member = suite.token(Role.MEMBER, "m-wang")
            committee = suite.token(Role.COMMITTEE, "c-office")
            created_proposal = await http.post(f"{suite.urls['intake']}/proposals", json=PROPOSAL, headers=member)
            assert created_proposal.status_code == 201, created_proposal.text
            pid = created_proposal.json()["id"]
            filed = await http.post(
                f"{suite.urls['intake']}/proposals/{pid}/review", json={"decision": "file"}, headers=committee
            )
            assert filed.status_code == 200, filed.text
            waiting = unsent_outbox_rows(tmp_path / "data" / "intake.db")
            assert {"proposalflow.proposal.submitted.v1", "proposalflow.proposal.filed.v1"} <= set(waiting)
            assert (await http.get(f"{suite.urls['progress']}/proposals/{pid}", headers=committee)).status_code == 404

            # The password fixed (the Secret corrected, the pod replaced): the outbox drains.
            suite.kill("intake")
            suite.service_env["intake"]["PROPOSALFLOW_KAFKA_SASL_PASSWORD"] = passwords[user_of("intake")]
            await suite.restart("intake")
            await eventually(
                lambda: stage(http, suite, pid, committee, "filed"), "the filed proposal in progress", suite
            )

            async def drained() -> bool:
                return unsent_outbox_rows(tmp_path / "data" / "intake.db") == []

            await eventually(drained, "intake's outbox marked sent", suite)
            dispatcher = suite.token(Role.DISPATCHER, "d-office")
            # Assignment has not consumed it: its consumers wait for their ACL.
            assert (
                await http.get(f"{suite.urls['assignment']}/assignments/{pid}", headers=dispatcher)
            ).status_code == 404

            # The ACL granted: assignment starts consuming by itself, from where its group never committed.
            secured_broker("acls", *no_group.args())
            await wait_ready(suite, ["assignment"], timeout=90)

            async def while_handling() -> None:
                await outside_systems_proven(http, suite, pid, secured_broker, passwords)

            await lifecycle(http, suite, pid, while_handling)

            # Notify told everyone (its inbox is its own database) but may not publish what it did: the
            # rows wait in its outbox, marked failed, the log naming the ACL.
            assert "grant it WRITE on topic proposalflow.notifications" in suite.logs["notify"].read_text()
            failed = cli(env, "outbox", "failed", "notify")
            assert "TopicAuthorizationFailedError" in failed, failed
            assert not await delivery_audited(http, suite, pid)
            secured_broker("acls", *no_write.args())
            assert "will be sent again" in cli(env, "outbox", "retry", "notify")
            await eventually(lambda: delivery_audited(http, suite, pid), "notify's deliveries in the audit log", suite)
            verified = (await http.get(f"{suite.urls['audit']}/audit/verify", headers=committee)).json()
            assert verified["ok"] is True, verified


async def broker_refusal(http: httpx.AsyncClient, suite: Suite, service: str) -> str | None:
    """What `/readyz` says about the broker, once it names a refusal (not just "not connected yet")."""
    response = await http.get(f"{suite.urls[service]}/readyz")
    if response.status_code != 503:
        return None
    text = response.text
    return text if "grant it" in text or "PROPOSALFLOW_KAFKA" in text else None


def cli(env: dict[str, str], *args: str) -> str:
    """`proposalflow …` as an operator runs it beside the services (the outbox commands use only the database)."""
    done = subprocess.run(
        [sys.executable, "-m", "proposalflow.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def delivery_audited(http: httpx.AsyncClient, suite: Suite, pid: str) -> bool:
    committee = suite.token(Role.COMMITTEE, "c-office")
    response = await http.get(f"{suite.urls['audit']}/audit/proposals/{pid}", headers=committee)
    return any(entry["type"] == "proposalflow.notification.delivered.v1" for entry in response.json()["entries"])


def unsent_outbox_rows(database: Path) -> list[str]:
    """The event types waiting in a service's outbox."""
    with sqlite3.connect(database) as conn:
        return [row[0] for row in conn.execute("SELECT type FROM outbox WHERE sent_at IS NULL ORDER BY id")]


async def stage(
    http: httpx.AsyncClient, suite: Suite, pid: str, headers: dict[str, str], *stages: str
) -> dict[str, Any] | None:
    response = await http.get(f"{suite.urls['progress']}/proposals/{pid}", headers=headers)
    body = response.json() if response.status_code == 200 else None
    return body if body and body["stage"] in stages else None


async def lifecycle(
    http: httpx.AsyncClient, suite: Suite, pid: str, while_handling: Callable[[], Awaitable[None]]
) -> None:
    """From the routing suggestion to the implemented measure, every hop over the secured broker;
    `while_handling` runs once the lead unit handles the proposal."""
    walk = Walk.of(http, suite, pid=pid)
    await walk.suggested("a routing suggestion once assignment may consume")
    await walk.confirm()
    await walk.accept()
    await while_handling()
    await walk.answer(REPLY)
    evaluated = await walk.evaluate()
    assert evaluated["stage"] == "closed"
    await walk.until(lambda: walk.told(walk.member, "提案已交办"), "the proposer told of the assignment")
    types = await walk.audited("proposalflow.proposal.closed.v1")
    for expected in (
        "proposalflow.proposal.submitted.v1",
        "proposalflow.proposal.filed.v1",
        "proposalflow.assignment.assigned.v1",
        "proposalflow.assignment.accepted.v1",
        "proposalflow.reply.approved.v1",
        "proposalflow.evaluation.submitted.v1",
    ):
        assert expected in types, expected


def system_producer(broker: SecuredBroker, system: OutsideSystem, password: str) -> AIOKafkaProducer:
    """A producer as the outside system runs it: its own Kafka user over SASL_SSL."""
    settings = CommonSettings.model_validate(
        {
            key.removeprefix("PROPOSALFLOW_").lower(): value
            for key, value in broker.client_env(system.name, password).items()
        }
    )
    return AIOKafkaProducer(acks="all", **kafka_client_options(settings))


def progress_report(pid: str, source: str, unit: str) -> Envelope:
    """办理进展 for `unit`, sent under `source`, by a clerk of that unit."""
    data = {
        "proposal_id": pid,
        "unit": unit,
        "kind": "phone",
        "on": "2026-12-01",
        "text": f"{unit} 电话联系提案人",
        "actor": {"id": f"clerk-{unit}", "role": "unit", "unit": unit},
    }
    return Envelope(type=ReportProgress.TYPE, source=source, subject=pid, data=data)


async def outside_systems_proven(
    http: httpx.AsyncClient, suite: Suite, pid: str, broker: SecuredBroker, passwords: dict[str, str]
) -> None:
    """System A, authenticated as itself, reports for its unit; it cannot make ProposalFlow act for system B
    or for a unit outside its grant, and the audit log shows which system sent each command and caused each
    change."""
    committee = suite.token(Role.COMMITTEE, "c-office")
    honest = progress_report(pid, SYSTEM_A.source, SYSTEM_A.unit)
    as_b = progress_report(pid, SYSTEM_B.source, SYSTEM_B.unit)  # B's source and unit, on A's own topic
    other_unit = progress_report(pid, SYSTEM_A.source, SYSTEM_B.unit)  # A's source, a unit outside its grant
    producer = system_producer(broker, SYSTEM_A, passwords[SYSTEM_A.name])
    await producer.start()
    try:
        for envelope in (honest, as_b, other_unit):
            key, value, headers = to_kafka(envelope)
            await producer.send_and_wait(SYSTEM_A.topic, value, key=key, headers=headers)
        # The brokers refuse A on B's topic, and on the shared topic, which in production nobody writes.
        for elsewhere in (SYSTEM_B.topic, UNIT_REPORTS):
            key, value, headers = to_kafka(as_b)
            with pytest.raises(TopicAuthorizationFailedError):
                await producer.send_and_wait(elsewhere, value, key=key, headers=headers)
    finally:
        await producer.stop()

    async def audited() -> dict[str, list[dict[str, Any]]] | None:
        response = await http.get(f"{suite.urls['audit']}/audit/proposals/{pid}", headers=committee)
        entries: dict[str, list[dict[str, Any]]] = {}
        for entry in response.json()["entries"]:
            entries.setdefault(entry["type"], []).append(entry)
        rejected = {entry["payload"]["command_id"] for entry in entries.get("proposalflow.unit-report.rejected.v1", [])}
        reported = entries.get("proposalflow.handling.progress-reported.v1", [])
        return entries if {as_b.id, other_unit.id} <= rejected and reported else None

    entries = await eventually(audited, "the honest report carried out and both forgeries rejected", suite)
    reasons = {
        entry["payload"]["command_id"]: entry["payload"]["reason"]
        for entry in entries["proposalflow.unit-report.rejected.v1"]
    }
    assert reasons[as_b.id] == (
        f"forged source: topic {SYSTEM_A.topic} belongs to system {SYSTEM_A.name!r}, but source "
        f"{SYSTEM_B.source!r} is system {SYSTEM_B.name!r}'s: a system may send only under its own sources"
    )
    assert reasons[other_unit.id].startswith(
        f"forged actor: source {SYSTEM_A.source!r} may act for unit:{SYSTEM_A.unit} only"
    )
    # Proof kept: every command in the log under the topic it came on, which only A may write, whatever
    # source it claimed; the change it caused names that topic too.
    commands = {entry["event_id"]: entry for entry in entries[ReportProgress.TYPE]}
    assert set(commands) == {honest.id, as_b.id, other_unit.id}
    assert {(entry["topic"], entry["actor"]["via"]) for entry in commands.values()} == {(SYSTEM_A.topic,) * 2}
    assert commands[as_b.id]["source"] == SYSTEM_B.source
    (reported,) = entries["proposalflow.handling.progress-reported.v1"]
    assert reported["actor"] == {"id": "clerk-dg-zrzyj", "role": "unit", "unit": "dg-zrzyj", "via": SYSTEM_A.topic}
    assert reported["correlation_id"] == honest.id

    # Nothing changed for B's unit or beyond A's grant: the one report on the record is A's own.
    response = await http.get(f"{suite.urls['progress']}/proposals/{pid}", headers=committee)
    view = response.json()
    assert view["stage"] == "handling"
    reports = [item for item in view["timeline"] if item["type"] == "proposalflow.handling.progress-reported.v1"]
    assert [item["actor"]["unit"] for item in reports] == [SYSTEM_A.unit]
