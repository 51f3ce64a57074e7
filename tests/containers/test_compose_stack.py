"""The compose stack as an ops team runs it: images built without a registry, docker-compose.yml started
with podman, and everything used only through the published ports and `podman` itself.

One proposal goes from the Kafka door to 办结 (closed, its measure implemented); the hardening the compose
file declares (non-root, read-only root filesystem, health check, restart policy) is checked from inside
the containers; a service container killed with SIGKILL comes back and nothing is lost or doubled.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from shared.envelope import Envelope, to_kafka
from shared.events import SUBMISSIONS, Role, SubmitProposal
from tests.containers.conftest import PORTAL_SOURCE, ComposeStack, podman
from tests.e2e.test_handling_lifecycle import PROPOSAL, REPLY
from tests.e2e.test_lifecycle import eventually
from tests.lifecycle_driver import Walk

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1800)]

WAIT_S = 180.0  # generous: two shared cores run nine containers here


async def submit_through_the_kafka_door(stack: ComposeStack, proposal_id: str, member: str) -> None:
    command = SubmitProposal.model_validate(
        {**PROPOSAL, "proposal_id": proposal_id, "first_proposer": {"id": member, "name": "王委员"},
         "actor": {"id": member, "role": "member"}}
    )  # fmt: skip
    envelope = Envelope(type=SubmitProposal.TYPE, source=PORTAL_SOURCE, data=command.model_dump(mode="json"))
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        _key, value, headers = to_kafka(envelope)
        await producer.send_and_wait(SUBMISSIONS, value=value, key=envelope.id.encode(), headers=headers)
    finally:
        await producer.stop()


async def test_a_proposal_goes_from_the_kafka_door_to_closed_through_the_published_ports(stack: ComposeStack) -> None:
    member = stack.token(Role.MEMBER, "m-wang")
    url = stack.urls
    pid = str(uuid.uuid4())
    await submit_through_the_kafka_door(stack, pid, "m-wang")
    async with httpx.AsyncClient(timeout=20) as http:
        walk = Walk.of(http, stack, wait_s=WAIT_S, pid=pid)

        async def submitted() -> bool:
            return (await http.get(f"{url['intake']}/proposals/{pid}", headers=member)).status_code == 200

        await eventually(submitted, "the proposal sent through the Kafka door", stack, WAIT_S)
        await walk.file()
        confirmed = await walk.assign()
        assert confirmed["lead_unit"] == "dg-zrzyj"
        await walk.accept()
        await walk.co_opinion("建议将高标准农田建设纳入整治范围")
        await walk.answer(REPLY)
        evaluated = await walk.evaluate()
        assert evaluated["stage"] == "closed"  # 办结
        [measure] = evaluated["measures"]
        await walk.measure_done(measure["id"], "专项资金已设立")

        [assigned_note] = await walk.until(lambda: walk.told(member, "提案已交办"), "the proposer's notification")
        assert "东莞市自然资源局" in assigned_note["body"]

        types = await walk.audited("proposalflow.measure.updated.v1")
        for expected in (
            "proposalflow.proposal.submitted.v1",
            "proposalflow.assignment.assigned.v1",
            "proposalflow.reply.approved.v1",
            "proposalflow.proposal.closed.v1",
        ):
            assert expected in types, expected
        verified = await walk.verified()
        assert verified["ok"] is True, verified


def test_the_hardening_the_compose_file_declares_holds_inside_the_containers(stack: ComposeStack) -> None:
    intake = stack.container("intake")
    # Non-root: the services run as uid 10001.
    assert podman("exec", intake, "id", "-u").stdout.strip() == "10001"
    # Read-only root filesystem: even root in the container cannot write there; /tmp (tmpfs) is writable.
    as_root = podman("exec", "--user", "0", intake, "touch", "/probe", check=False)
    assert as_root.returncode != 0 and "Read-only file system" in as_root.stderr, as_root
    assert podman("exec", intake, "sh", "-c", "echo ok > /tmp/probe && cat /tmp/probe").stdout.strip() == "ok"
    # The health check the compose file declares passes on a ready service (podman runs it on demand).
    for service in ("intake", "audit", "portal", "kafka", "postgres"):
        checked = podman("healthcheck", "run", stack.container(service), check=False)
        assert checked.returncode == 0, f"{service}: {checked.stdout}{checked.stderr}"
    # The image: no compiler, no pip, OCI labels.
    image = stack.compose_env.get("PROPOSALFLOW_IMAGE", "proposalflow:0.1.0")
    tools = podman("exec", intake, "sh", "-c", "command -v gcc cc make pip pip3 || true").stdout.strip()
    assert tools == "", f"build tools in the image: {tools}"
    assert podman("exec", intake, "python", "-c", "import pip", check=False).returncode != 0
    labels = podman("image", "inspect", "--format", "{{json .Labels}}", image).stdout
    for label in (
        "org.opencontainers.image.version",
        "org.opencontainers.image.revision",
        "org.opencontainers.image.source",
    ):
        assert label in labels, labels


async def test_a_killed_service_container_is_restarted_and_nothing_is_lost_or_doubled(stack: ComposeStack) -> None:
    """progress's process is killed with SIGKILL (no shutdown code runs); its restart policy brings it
    back (conmon runs `podman container cleanup`, which restarts an `unless-stopped` container: no
    systemd needed). Proposals filed meanwhile reach it afterwards, each event exactly once."""
    before = stack.state("progress")
    assert before["Running"] is True
    # SIGKILL to the container's process, as a crash or the kernel's OOM killer delivers it. (Not
    # `podman kill -s KILL`: podman 4.3 records that as the user stopping the container and does not
    # restart it, as measured here; see docs/operations.md.)
    os.kill(int(str(before["Pid"])), signal.SIGKILL)

    committee = stack.token(Role.COMMITTEE, "c-office")
    url = stack.urls
    ids = []
    async with httpx.AsyncClient(timeout=20) as http:
        for number in range(8):
            member = stack.token(Role.MEMBER, f"m-kill-{number}")
            body = {
                **PROPOSAL,
                "title": f"关于容器重启后不丢提案的建议（{number}）",
                "first_proposer": {"id": f"m-kill-{number}", "name": "委员"},
            }
            created = await http.post(f"{url['intake']}/proposals", json=body, headers=member)
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
            filed = await http.post(
                f"{url['intake']}/proposals/{ids[-1]}/review", json={"decision": "file"}, headers=committee
            )
            assert filed.status_code == 200, filed.text

        deadline = time.monotonic() + WAIT_S
        while True:
            after = stack.state("progress")
            if after["Running"] and after["StartedAt"] != before["StartedAt"]:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"progress was not restarted by its restart policy: {after}\n{stack.log_tails()}")
            await asyncio.sleep(1)
        assert int(str(after["RestartCount"])) >= int(str(before["RestartCount"])) + 1, after

        async def ready() -> bool:
            try:
                return (await http.get(f"{url['progress']}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(ready, "progress ready again after the kill", stack, WAIT_S)

        async def timelines() -> dict[str, list[dict[str, Any]]] | None:
            found = {}
            for pid in ids:
                response = await http.get(f"{url['progress']}/proposals/{pid}", headers=committee)
                if response.status_code != 200:
                    return None
                timeline = response.json()["timeline"]
                if "proposalflow.assignment.suggested.v1" not in [entry["type"] for entry in timeline]:
                    return None
                found[pid] = timeline
            return found

        found = await eventually(timelines, "every proposal filed during the outage in progress", stack, WAIT_S)
        for pid, timeline in found.items():
            event_ids = [entry["event_id"] for entry in timeline]
            assert len(event_ids) == len(set(event_ids)), f"{pid}: an event applied twice: {timeline}"
            counted = Counter(entry["type"] for entry in timeline)
            assert all(count == 1 for count in counted.values()), f"{pid}: {counted}"
            assert {"proposalflow.proposal.submitted.v1", "proposalflow.proposal.filed.v1"} <= set(counted)
        listed = await http.get(f"{url['progress']}/proposals", headers=committee, params={"limit": 200})
        assert listed.status_code == 200, listed.text
        mine = [item["id"] for item in listed.json()["items"] if item["id"] in ids]
        assert sorted(mine) == sorted(ids), "each proposal filed during the outage listed exactly once"
        verified = (await http.get(f"{url['audit']}/audit/verify", headers=committee)).json()
        assert verified["ok"] is True, verified
