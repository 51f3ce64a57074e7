"""The benchmark's outside systems send what the services accept: a refused command would leave the
bench waiting on a proposal that can never get through (it happened once the forged-actor check came)."""

from __future__ import annotations

import uuid
from pathlib import Path

from bench import pipeline
from bench.__main__ import bench_env
from shared.auth import InboundAllowList
from shared.envelope import from_kafka
from shared.events import Actor, ReportProgress, SubmitProposal
from shared.settings import CommonSettings


def test_the_bench_commands_come_from_allowed_sources_and_name_actors_they_may_act_for(tmp_path: Path) -> None:
    env = bench_env(CommonSettings(), "t", tmp_path)
    allow_list = InboundAllowList(env["PROPOSALFLOW_ALLOWED_SOURCES"].split(","))
    proposal_id = str(uuid.uuid4())
    _key, value, headers = pipeline.submission(proposal_id, 1)
    sent = [
        (from_kafka(value, headers), SubmitProposal),
        (pipeline.progress_report(proposal_id, "dg-zrzyj"), ReportProgress),
    ]
    for envelope, command_type in sent:
        command = command_type.model_validate(envelope.data)
        assert allow_list.admits(envelope.source), envelope.source
        assert allow_list.forged_actor(envelope.source, Actor.model_validate(command.actor)) is None
