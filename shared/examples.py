"""An example of every event and command, made from its model: what the AsyncAPI documents show an
integrator beside each message's schema.

The example is built from the model's JSON Schema (so a type added to `shared/events.py` gets one with
no work here), with realistic values for the fields an integrator meets everywhere (a proposal id, a unit,
a category and the codes of the default policy) and an actor whose role fits the topic. Every example is
valid for its model (tests/unit/test_schemas.py checks it).
"""

from __future__ import annotations

import uuid
from typing import Any

from shared import events
from shared.policy import Policy, default_policy

EXAMPLE_PROPOSAL_ID = "pf-2026-0042"
EXAMPLE_UNIT = "dg-fgj"
EXAMPLE_TIME = "2026-12-04T09:30:00Z"
EXAMPLE_DATE = "2026-12-04"

EXAMPLE_SOURCES = {
    events.SUBMISSIONS: "/portal/members",
    events.UNIT_REPORTS: f"/oa/{EXAMPLE_UNIT}",
}
"""The CloudEvents `source` of an outside system in the examples (an allow-listed member portal, a unit's
OA system); ProposalFlow's own events come from `/proposalflow/<service>`."""

_ACTORS: dict[str, dict[str, Any]] = {
    events.SUBMISSIONS: {"id": "member-1", "role": "member"},
    events.UNIT_REPORTS: {"id": "oa-user-7", "role": "unit", "unit": EXAMPLE_UNIT},
    events.PROPOSALS: {"id": "committee-1", "role": "committee"},
    events.ASSIGNMENTS: {"id": "dispatcher-1", "role": "dispatcher"},
    events.HANDLING: {"id": "unit-user-3", "role": "unit", "unit": EXAMPLE_UNIT},
    events.NOTIFICATIONS: {"id": "/proposalflow/notify", "role": "system"},
}


def _samples(policy: Policy) -> dict[str, Any]:
    """Values by field name, used where the field is a string (or an object, for the few named here)."""
    return {
        "proposal_id": EXAMPLE_PROPOSAL_ID,
        "into_proposal_id": "pf-2026-0017",
        "title": "关于推进全域土地综合整治的建议",
        "body": "我市土地利用碎片化, 建议统筹推进全域土地综合整治, 编制整治规划并建立补偿机制。",
        "text": "已与提案者面商, 明确了办理方案和时间表, 将于下月召开座谈会。",
        "category": policy.categories[0],
        "classification": policy.reply_classes[0].code,
        "handling_grade": policy.evaluation_grades[0].code,
        "result_grade": policy.evaluation_grades[0].code,
        "ground": policy.not_filed_grounds[0],
        "unit": EXAMPLE_UNIT,
        "owner_unit": EXAMPLE_UNIT,
        "filing_number": "2026-0042",
        "into_filing_number": "2026-0017",
        "reason": "不属于本单位职责范围",
        "assignment_id": "asg-7f3c",
        "previous_assignment_id": "asg-51a0",
        "reply_id": "rpl-93d2",
        "measure_id": "msr-1",
        "signer_id": "member-1",
        "leader_id": "leader-2",
        "supervising_leader": "leader-2",
        "notification_id": "ntf-5e1b",
        "recipient": "member-1",
        "cause_event_id": "0b8e2c1e-3f1d-4d52-9a57-1c2b5d0e7a10",
        "cause_event_type": "proposalflow.reply.approved.v1",
        "correlation_id": "5f0c7d9e-8a43-4b7e-9b1a-2d6f3e4c5a21",
        "command_id": "5f0c7d9e-8a43-4b7e-9b1a-2d6f3e4c5a21",
        "command_source": EXAMPLE_SOURCES[events.UNIT_REPORTS],
        "command_type": "proposalflow.unit-report.reply-submitted.v1",
        "errors": [{"rule": "adoption_for_every_suggestion", "message": "say for suggestion 2 whether it was adopted"}],
        "lead_unit": {"id": EXAMPLE_UNIT, "name": "东莞市发展和改革局"},
        "first_proposer": {"id": "member-1", "name": "张三", "kind": "member"},
        "cosigner": {"id": "member-2", "name": "李四", "kind": "member"},
        "adoptions": [{"number": 1, "adopted": True, "how": "已编制整治规划"}],
        "reply_due": "2027-03-04",
        "dispute_until": "2026-12-11",
        "due": "2027-03-04",
    }


def example_of(model: type[events.Message], policy: Policy | None = None) -> dict[str, Any]:
    """A valid example of the model's data: its required fields, and the optional ones named above."""
    policy = policy or default_policy()
    schema = model.model_json_schema()
    samples = _samples(policy)
    if issubclass(model, events.Rejection) and model.TOPIC == events.PROPOSALS:
        samples["command_source"] = EXAMPLE_SOURCES[events.SUBMISSIONS]
        samples["command_type"] = events.SubmitProposal.TYPE
        samples["reason"] = f"unknown category '城市建设'; use one of: {', '.join(policy.categories)}"
        samples["errors"] = [{"rule": "category_known", "message": samples["reason"]}]
    elif issubclass(model, events.Rejection):
        samples["reason"] = "say for suggestion 2 whether it was adopted"
        samples["errors"] = [{"rule": "adoption_for_every_suggestion", "message": samples["reason"]}]
    example = _object(schema, schema.get("$defs", {}), samples, optional=True)
    if "actor" in example:
        example["actor"] = dict(_ACTORS.get(model.TOPIC, {"id": "user-1", "role": "system"}))
    return example


def example_id(ce_type: str, what: str = "event") -> str:
    """A stable CloudEvents id for an example (the generated documents do not change between runs)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"proposalflow-example:{what}:{ce_type}"))


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        return _resolve(defs[ref.rsplit("/", 1)[-1]], defs)
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    if branches:
        return _resolve(branches[0], defs)
    return schema


def _object(schema: dict[str, Any], defs: dict[str, Any], samples: dict[str, Any], *, optional: bool) -> dict[str, Any]:
    required = set(schema.get("required", []))
    result: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        if name not in required and not (optional and name in samples):
            continue
        result[name] = _value(name, prop, defs, samples)
    return result


def _value(name: str, prop: dict[str, Any], defs: dict[str, Any], samples: dict[str, Any]) -> Any:
    schema = _resolve(prop, defs)
    sample = samples.get(name)
    kind = schema.get("type")
    if sample is not None and (
        (kind == "string" and isinstance(sample, str) and "enum" not in schema)
        or (kind == "object" and isinstance(sample, dict))
        or (kind == "array" and isinstance(sample, list))
    ):
        return sample
    if prop.get("default") not in (None, [], "") and not isinstance(prop.get("default"), dict):
        return prop["default"]
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        return _object(schema, defs, samples, optional=False)
    if kind == "array":
        item = _value(name.rstrip("s"), schema.get("items", {}), defs, samples)
        return [item] * max(1, schema.get("minItems", 1))
    if kind == "integer":
        return max(1, schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1))
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return True
    if schema.get("format") == "date":
        return EXAMPLE_DATE
    if schema.get("format") == "date-time":
        return EXAMPLE_TIME
    text = "示例" if name != "suggestion" else "编制全域土地综合整治规划"
    return text.ljust(schema.get("minLength", 1), "。")
