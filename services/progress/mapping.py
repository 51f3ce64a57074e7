"""Progress's rows and its dossier's typed records, both ways: what the store reads becomes a
`Proposal`, `Reply`, `CoOpinion`, `Evaluation`, `TrackedMeasure` or `ImplementationVerdict`, and what
the unit of work saves is written back as the table's row (its columns by name; sequences as JSON
lists, enums as their values)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.progress.domain import (
    CoOpinion,
    Dossier,
    Evaluation,
    ImplementationEvaluation,
    ImplementationVerdict,
    MeasureStatus,
    Proposal,
    Reply,
    ReplyStatus,
    Stage,
    TrackedMeasure,
)

Record = Proposal | Reply | CoOpinion | Evaluation | TrackedMeasure | ImplementationVerdict
Row = dict[str, Any]


def proposal(row: Mapping[str, Any]) -> Proposal:
    """A `proposals` row (a column left out takes its server default)."""
    state = row.get("implementation_evaluation")
    return Proposal(
        id=row["id"],
        title=row["title"],
        category=row["category"],
        stage=Stage(row["stage"]),
        signers=tuple(row["signers"]),
        submitted_at=row["submitted_at"],
        updated_at=row["updated_at"],
        filing_number=row.get("filing_number"),
        lead_unit=row.get("lead_unit"),
        co_units=tuple(row.get("co_units") or ()),
        form=row.get("form"),
        reply_due=row.get("reply_due"),
        co_opinion_due=row.get("co_opinion_due"),
        suggestion_count=row.get("suggestion_count"),
        is_key=bool(row.get("is_key")),
        leaders=tuple(row.get("leaders") or ()),
        round=int(row.get("round") or 1),
        evaluation_due=row.get("evaluation_due"),
        answered_at=row.get("answered_at"),
        closed_at=row.get("closed_at"),
        implemented_at=row.get("implemented_at"),
        implementation_round=int(row.get("implementation_round") or 0),
        implementation_evaluation=ImplementationEvaluation(state) if state is not None else None,
        implementation_evaluation_due=row.get("implementation_evaluation_due"),
        measure_request_due=row.get("measure_request_due"),
    )


def reply(row: Mapping[str, Any]) -> Reply:
    return Reply(
        id=row["id"],
        proposal_id=row["proposal_id"],
        unit=row["unit"],
        round=row["round"],
        classification=row["classification"],
        text=row["text"],
        adoptions=tuple(row["adoptions"] or ()),
        status=ReplyStatus(row["status"]),
        reply_due=row["reply_due"],
        drafted_at=row["drafted_at"],
        reviewed_at=row["reviewed_at"],
        review_reason=row["review_reason"],
        public=bool(row["public"]),
    )


def co_opinion(row: Mapping[str, Any]) -> CoOpinion:
    return CoOpinion(row["proposal_id"], row["unit"], row["text"], row["submitted_at"])


def evaluation(row: Mapping[str, Any]) -> Evaluation:
    return Evaluation(
        proposal_id=row["proposal_id"],
        round=row["round"],
        signer_id=row["signer_id"],
        handling_grade=row["handling_grade"],
        result_grade=row["result_grade"],
        comment=row["comment"],
        submitted_at=row["submitted_at"],
    )


def measure(row: Mapping[str, Any]) -> TrackedMeasure:
    return TrackedMeasure(
        id=row["id"],
        proposal_id=row["proposal_id"],
        reply_id=row["reply_id"],
        text=row["text"],
        owner_unit=row["owner_unit"],
        due=row["due"],
        status=MeasureStatus(row["status"]),
        note=row["note"],
        updated_at=row["updated_at"],
        done_at=row.get("done_at"),
        reopened=int(row.get("reopened") or 0),
        promised_at=row.get("promised_at"),
    )


def implementation_verdict(row: Mapping[str, Any]) -> ImplementationVerdict:
    return ImplementationVerdict(
        proposal_id=row["proposal_id"],
        round=row["round"],
        signer_id=row["signer_id"],
        grade=row["grade"],
        comment=row["comment"],
        reopened_measures=tuple(row["reopened_measures"] or ()),
        new_measure_requested=bool(row["new_measure_requested"]),
        submitted_at=row["submitted_at"],
    )


def dossier(row: Mapping[str, Any]) -> Dossier:
    """A dossier of the proposal alone (its records loaded separately, or not needed)."""
    return Dossier(proposal(row))
