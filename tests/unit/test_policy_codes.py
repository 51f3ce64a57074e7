"""代码表: the codes an integrator sends and reads are published (progress' `GET /policy/codes`,
docs/policy-codes.md) and the schema fields that take them say where to find them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import httpx
import pytest
import yaml

from services.progress.app import build
from services.progress.domain import StepKind
from shared.codes import CONTRACT_CODES, DEADLINE_KINDS, policy_codes
from shared.migrate import upgrade_async
from shared.policy import POLICY_ENV_VAR, default_policy

DOCS = Path(__file__).resolve().parents[2] / "docs"
PACKAGED_POLICY = Path(__file__).resolve().parents[2] / "shared" / "policies" / "dongguan.yaml"


@pytest.fixture
async def progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    """Progress running another city's policy: four reply classes and its own categories."""
    policy = yaml.safe_load(PACKAGED_POLICY.read_text(encoding="utf-8"))
    policy["city"] = "样例市"
    policy["categories"] = ["城乡建设", "民生保障"]
    policy["reply_classes"].append({"code": "D", "label": "因条件限制无法解决", "counts_as_adopted": False})
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv(POLICY_ENV_VAR, str(policy_file))
    url = f"sqlite+aiosqlite:///{tmp_path}/progress.db"
    monkeypatch.setenv("PROPOSALFLOW_PROGRESS_DATABASE_URL", url)
    await upgrade_async("progress", url)
    runtime, app = build(lambda: datetime(2026, 12, 4, 2, tzinfo=UTC))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://progress") as http:
        yield http
    await runtime.engine.dispose()


async def test_anyone_reads_the_codes_of_the_policy_in_force(progress: httpx.AsyncClient) -> None:
    response = await progress.get("/policy/codes")  # no token: the city's published rules
    assert response.status_code == 200
    codes = response.json()
    assert codes["city"] == "样例市"
    assert codes["categories"] == ["城乡建设", "民生保障"]
    assert [c["code"] for c in codes["reply_classes"]] == ["A", "B", "C", "D"]
    unsatisfied = {"code": "unsatisfied", "label": "不满意", "counts_as_satisfied": False, "triggers_rehandling": True}
    assert unsatisfied in codes["evaluation_grades"]
    assert {"code": "face_to_face", "label": "面商"} in codes["progress_kinds"]
    assert {"code": "instruction", "label": "批示"} in codes["supervision_kinds"]
    assert codes["periods"]["dispute_window"] == "5 working days"


async def test_the_endpoint_is_documented_with_its_schema(progress: httpx.AsyncClient) -> None:
    spec = (await progress.get("/openapi.json")).json()
    answer = spec["paths"]["/policy/codes"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/PolicyCodes"}
    assert "security" not in spec["paths"]["/policy/codes"]["get"]


def test_the_fixed_codes_have_a_label_for_every_value_the_events_allow() -> None:
    for name, (labels, allowed) in CONTRACT_CODES.items():
        assert set(labels) == {str(value) for value in allowed}, name
    assert set(DEADLINE_KINDS) == set(get_args(StepKind))


def test_the_generated_page_lists_the_default_policys_codes() -> None:
    page = (DOCS / "policy-codes.md").read_text(encoding="utf-8")
    codes = policy_codes(default_policy())
    for category in codes.categories:
        assert f"`{category}`" in page
    for grade in codes.evaluation_grades:
        assert f"| `{grade.code}` | {grade.label} |" in page


@pytest.mark.parametrize(
    ("ce_type", "field"),
    [
        ("proposalflow.submission.requested.v1", "category"),
        ("proposalflow.proposal.filed.v1", "category"),
        ("proposalflow.proposal.not-filed.v1", "ground"),
        ("proposalflow.unit-report.reply-submitted.v1", "classification"),
        ("proposalflow.reply.drafted.v1", "classification"),
        ("proposalflow.unit-report.progress-submitted.v1", "kind"),
        ("proposalflow.handling.progress-reported.v1", "kind"),
        ("proposalflow.evaluation.submitted.v1", "handling_grade"),
        ("proposalflow.evaluation.submitted.v1", "result_grade"),
        ("proposalflow.supervision.recorded.v1", "kind"),
        ("proposalflow.measure.updated.v1", "status"),
        ("proposalflow.deadline.overdue.v1", "kind"),
    ],
)
def test_a_field_that_takes_a_code_says_where_the_codes_are(ce_type: str, field: str) -> None:
    schema = json.loads((DOCS / "schemas" / f"{ce_type}.json").read_text(encoding="utf-8"))
    assert "GET /policy/codes" in schema["properties"][field]["description"]


@pytest.mark.parametrize(
    ("ce_type", "field", "shape"),
    [
        ("proposalflow.unit-report.progress-submitted.v1", "unit", "bare unit id"),
        ("proposalflow.unit-report.reply-submitted.v1", "unit", "bare unit id"),
        ("proposalflow.handling.progress-reported.v1", "unit", "bare unit id"),
        ("proposalflow.assignment.assigned.v1", "lead_unit", '{"id", "name"}'),
        ("proposalflow.assignment.accepted.v1", "unit", '{"id", "name"}'),
    ],
)
def test_both_shapes_of_a_unit_are_stated_where_a_unit_is_named(ce_type: str, field: str, shape: str) -> None:
    """A unit is `{"id", "name"}` in the assignment events and a bare id in commands: each schema says
    which, and names the other, so an integrator does not send the object where the id is wanted."""
    schema = json.loads((DOCS / "schemas" / f"{ce_type}.json").read_text(encoding="utf-8"))
    description = schema["properties"][field]["description"]
    assert shape in description and "UnitRef" in description
    catalog = (DOCS / "event-catalog.md").read_text(encoding="utf-8")
    assert "a bare id elsewhere" in catalog and "`unit`: string (bare unit id)" in catalog
