"""A second city from its files alone: `proposalflow city init` on 临江市's files (tests/data/cities/linjiang, a
made-up city: its own units, an A/B/C/D reply scheme, its own grades and categories, other windows, automatic
assignment), then the five services and the portal as processes on real Kafka with nothing but the settings
`city.env` names. A proposal goes through: routed to the city's own unit, due by the city's windows,
answered in the city's classes, evaluated in its grades, counted in its rates."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from proposalflow.cli import app
from shared.events import Role
from shared.policy import deadline_for, load_policy
from shared.settings import SERVICES, CommonSettings
from tests.e2e.test_lifecycle import eventually
from tests.lifecycle_driver import Walk
from tests.procs import Suite, free_port, running, start_service, stop_service, wait_ready
from tests.reliability.workload import prepare_topics

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

LINJIANG = Path(__file__).resolve().parents[1] / "data" / "cities" / "linjiang"
PROPOSAL = {
    "title": "关于优化江北片区公交线路的建议",
    "body": "江北片区公交覆盖不足, 部分小区到地铁站没有接驳公交, 群众出行不便。",
    "category": "城乡建设",
    "first_proposer": {"id": "m-lin", "name": "林委员"},
    "suggestions": ["增设江北片区地铁接驳公交线", "优化公交站点布局"],
}
REPLY = {
    "text": "经研究, 我局已将江北片区接驳线纳入明年公交线网优化计划, 站点布局将分步调整。",
    "classification": "C",  # 列入计划逐步解决: adopted in 临江市's scheme (Dongguan's C is not)
    "adoptions": [{"number": 1, "adopted": True, "how": "纳入明年计划"}, {"number": 2, "adopted": True}],
}


@pytest.fixture
async def city(tmp_path: Path, kafka_bootstrap: str) -> AsyncIterator[Suite]:
    """临江市's suite: the city's files written by `proposalflow city init`, its settings from city.env."""
    written = CliRunner().invoke(app, ["city", "init", str(LINJIANG), "--out", str(tmp_path / "city")])
    assert written.exit_code == 0, written.output
    lines = (tmp_path / "city" / "city.env").read_text(encoding="utf-8").splitlines()
    settings = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    run = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        **settings,
        "PROPOSALFLOW_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PROPOSALFLOW_DATA_DIR": str(tmp_path / "data"),
        "PROPOSALFLOW_JWT_SECRET": f"city-secret-{run}-0123456789abcdef0123456789",
        "PYTHONUNBUFFERED": "1",
    }
    for service in SERVICES:
        env[f"PROPOSALFLOW_{service.upper()}_CONSUMER_GROUP"] = f"city-{run}-{service}"
    # The city's groups start at the topics' current end: the earlier tests' traffic is not the city's.
    groups = [env[f"PROPOSALFLOW_{service.upper()}_CONSUMER_GROUP"] for service in SERVICES]
    await prepare_topics(kafka_bootstrap, groups, partitions=CommonSettings().topic_partitions)
    with running(env, tmp_path) as suite:
        await wait_ready(suite)
        yield suite


async def test_a_second_city_runs_a_proposal_end_to_end_from_its_files_alone(city: Suite, tmp_path: Path) -> None:
    policy, dongguan = load_policy(city.env["PROPOSALFLOW_POLICY_FILE"]), load_policy(None)
    member = city.token(Role.MEMBER, "m-lin")
    committee = city.token(Role.COMMITTEE, "c-linjiang")
    lead = city.token(Role.UNIT, "u-jtj", unit="lj-jtj")
    url = city.urls
    async with httpx.AsyncClient(timeout=10) as http:
        walk = Walk.of(
            http, city, member="m-lin", committee="c-linjiang", lead=("u-jtj", "lj-jtj"), co=("u-zjj", "lj-zjj")
        )
        wrong_category = await http.post(
            f"{url['intake']}/proposals", json={**PROPOSAL, "category": "经济建设"}, headers=member
        )
        assert wrong_category.status_code == 422, wrong_category.text  # Dongguan's category, not 临江市's
        await walk.submit(PROPOSAL)
        pid = walk.pid
        await walk.file()

        # 交办: automatic in 临江市 (no dispatcher), by the city's own rule (公交 → 市交通局 with 市住建局).
        async def assigned() -> dict[str, Any] | None:
            response = await http.get(f"{url['assignment']}/assignments/{pid}", headers=committee)
            body = response.json() if response.status_code == 200 else None
            return body if body and body["status"] == "assigned" else None

        assignment = await eventually(assigned, "the automatic assignment", city)
        assert (assignment["lead_unit"], assignment["co_units"]) == ("lj-jtj", ["lj-zjj"])
        assigned_at = datetime.fromisoformat(assignment["assigned_at"])
        for name, field in (
            ("reply_deadline", "reply_due"),  # 2 months (Dongguan: 3)
            ("dispute_window", "dispute_until"),  # 10 working days (Dongguan: 5)
            ("co_opinion_deadline", "co_opinion_due"),  # 15 working days (Dongguan: 1 month)
        ):
            due = deadline_for(policy, name, assigned_at)  # type: ignore[arg-type]
            assert assignment[field] == due.isoformat(), name
            assert due != deadline_for(dongguan, name, assigned_at), f"{name}: the city's window is not Dongguan's"

        await walk.stage("assigned", what="the assignment in progress")
        handling = await walk.accept()
        assert handling["reply_due"] == assignment["reply_due"]
        await walk.co_opinion("同意调整站点布局")

        unknown_class = await http.post(
            f"{url['progress']}/proposals/{pid}/replies", json={**REPLY, "classification": "E"}, headers=lead
        )
        assert unknown_class.status_code == 422, unknown_class.text
        answered = await walk.answer(REPLY)
        reviewed_at = datetime.fromisoformat(answered["replies"][-1]["reviewed_at"])
        assert answered["evaluation_due"] == deadline_for(policy, "evaluation_window", reviewed_at).isoformat()

        dongguan_grade = {"handling_grade": "satisfied", "result_grade": "satisfied"}
        refused = await http.post(f"{url['progress']}/proposals/{pid}/evaluations", json=dongguan_grade, headers=member)
        assert refused.status_code == 422, refused.text
        evaluated = await walk.evaluate("manyi", "jiben_manyi")
        assert evaluated["stage"] == "closed"

        # 办理统计 in the city's terms: its first class and adopted classes, its unit's rates.
        stats = (await http.get(f"{url['progress']}/stats", headers=committee)).json()
        assert stats["reply_classes"] == {"first": {"code": "A", "label": "已经解决"}, "adopted": ["A", "B", "C"]}
        unit = stats["per_unit"]["lj-jtj"]
        assert (unit["replies_on_time"], unit["replies_due"], unit["on_time_reply_rate"]) == (1, 1, 1.0)
        assert (unit["adopted_class_replies"], unit["first_class_replies"], unit["replies_final"]) == (1, 0, 1)
        assert (unit["suggestions_adopted"], unit["suggestions"]) == (2, 2)
        assert (unit["proposals_satisfied"], unit["proposals_evaluated"], unit["satisfaction_rate"]) == (1, 1, 1.0)
        exported = await http.get(f"{url['progress']}/stats/export.csv", headers=committee)
        assert "承办单位,lj-jtj," in exported.content.decode("utf-8-sig")

    # The portal reads the same policy file: the city's title, nothing of Dongguan's.
    port = free_port()
    portal_env = {
        **city.env,
        "PROPOSALFLOW_PORTAL_HTTP_PORT": str(port),
        **{
            f"PROPOSALFLOW_PORTAL_{service.upper()}_URL": city.urls[service]
            for service in ("intake", "assignment", "progress")
        },
    }
    city.urls["portal"] = city.replica_urls["portal"] = f"http://127.0.0.1:{port}"
    city.logs["portal"] = tmp_path / "portal.log"
    city.processes["portal"] = start_service("portal", portal_env, city.logs["portal"])
    try:
        await wait_ready(city, ["portal"])
        async with httpx.AsyncClient(timeout=10) as http:
            page = (await http.get(f"{city.urls['portal']}/public")).text
        assert "临江市政协提案工作平台" in page and "东莞" not in page
    finally:
        stop_service(city.processes.pop("portal"))
