"""The event contract: names, versions, topics, and the strictness of inbound commands."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from shared.events import ALL_TOPICS, Actor, Command, Event, Message, Role, SubmitProposal

TYPE_NAME = re.compile(r"^proposalflow\.[a-z][a-z-]*\.[a-z][a-z-]*\.v[1-9][0-9]*$")


def test_every_type_is_named_and_versioned_and_travels_on_a_known_topic() -> None:
    registry = Message.registry()
    assert len(registry) >= 25
    for ce_type, model in registry.items():
        assert TYPE_NAME.match(ce_type), ce_type
        assert model.TOPIC in ALL_TOPICS, ce_type
        assert issubclass(model, Event | Command)


def test_every_event_carries_proposal_actor_and_correlation() -> None:
    for model in Message.registry().values():
        if issubclass(model, Event):
            assert {"proposal_id", "actor", "correlation_id"} <= set(model.model_fields), model.TYPE


def _submission(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "actor": {"id": "m-1", "role": "member"},
        "title": "关于加快智能制造的建议",
        "body": "东莞制造业规模大, 需要加快数字化转型。",
        "category": "经济建设",
        "first_proposer": {"id": "m-1", "name": "张三"},
        "suggestions": ["设立专项资金"],
    }
    data.update(overrides)
    return data


def test_a_command_with_an_unknown_field_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError, match="titel"):
        SubmitProposal.model_validate(_submission(titel="typo"))


def test_a_command_without_suggestions_is_refused() -> None:
    with pytest.raises(ValidationError, match="suggestions"):
        SubmitProposal.model_validate(_submission(suggestions=[]))


def test_events_ignore_fields_added_later_within_a_version() -> None:
    from shared.events import ProposalWithdrawn

    event = ProposalWithdrawn.model_validate(
        {"proposal_id": "p", "actor": Actor(id="m", role=Role.MEMBER).model_dump(), "added_in_v1_1": True}
    )
    assert event.proposal_id == "p"
