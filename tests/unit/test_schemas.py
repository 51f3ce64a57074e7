"""The published contract stays in step with the code: docs/schemas and docs/asyncapi are generated
from the event models, and a change that forgets to regenerate them fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from proposalflow.cli import app, schema_documents
from services.progress.domain import reply_content_valid
from shared.errors import RuleViolation
from shared.events import Message
from shared.policy import default_policy

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_committed_schemas_match_the_models() -> None:
    result = CliRunner().invoke(app, ["schemas", "export", "--check"])
    assert result.exit_code == 0, result.output


def test_every_event_type_has_a_schema_and_every_service_an_asyncapi_document() -> None:
    documents = schema_documents()
    for ce_type in Message.registry():
        assert Path("schemas") / f"{ce_type}.json" in documents
    for service in ("intake", "assignment", "progress", "notify", "audit"):
        document = documents[Path("asyncapi") / f"{service}.json"]
        assert document["asyncapi"] == "3.0.0"


def test_asyncapi_shows_what_intake_consumes_and_publishes() -> None:
    document = json.loads((DOCS / "asyncapi" / "intake.json").read_text(encoding="utf-8"))
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {"proposalflow.submissions", "proposalflow.proposals"}
    # Intake reads the shared topic and every outside system's own, by pattern (docs/decisions.md): the
    # document names the topic and says so.
    inbound = next(c for c in document["channels"].values() if c["address"] == "proposalflow.submissions")
    assert "`proposalflow.submissions.<system>`" in inbound["description"]
    schemas = document["components"]["schemas"]
    assert {"SubmitProposal", "ProposalSubmitted", "ProposalFiled", "SubmissionRejected"} <= set(schemas)


def test_a_stale_file_is_reported(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["schemas", "export", "--out", str(tmp_path)]).exit_code == 0
    stale = tmp_path / "schemas" / "proposalflow.proposal.filed.v1.json"
    stale.write_text("{}", encoding="utf-8")
    result = runner.invoke(app, ["schemas", "export", "--check", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "proposal.filed" in result.output


def test_the_published_reply_schemas_say_the_adoption_rule_the_optional_field_hides() -> None:
    """采纳情况 is optional in the schema (a proposal may have no suggestions), but progress refuses a
    reply that leaves out a suggestion: the field's description names that rule, so an integrator
    learns it from the schema before the first rejection."""
    with pytest.raises(RuleViolation) as refused:
        reply_content_valid(default_policy().reply_classes[0].code, [1], 2, default_policy())
    for ce_type in ("proposalflow.unit-report.reply-submitted.v1", "proposalflow.reply.drafted.v1"):
        schema = json.loads((DOCS / "schemas" / f"{ce_type}.json").read_text(encoding="utf-8"))
        assert "adoptions" not in schema.get("required", []), ce_type
        description = schema["properties"]["adoptions"].get("description", "")
        assert refused.value.rule in description and "1..n" in description, ce_type
