"""The response bodies of intake's HTTP API, as its OpenAPI document shows them (shared/responses.py).

They describe what `views.py` builds; a draft may still lack what submission requires (an empty title,
no category, no suggestions), so these are looser than the submission's own rules."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from services.intake.domain import ProposalStatus
from shared.events import CATEGORY, NOT_FILED_GROUND, ProposerKind, SessionKind


class SignerView(BaseModel):
    """提案者: one signer of a proposal."""

    id: str
    name: str
    kind: ProposerKind = ProposerKind.MEMBER


class SuggestionView(BaseModel):
    """建议: one numbered suggestion."""

    number: int
    text: str


class ProposalView(BaseModel):
    """A proposal at intake (提案), as every route that reads or changes one answers."""

    id: str
    title: str = Field(description="Empty in a draft not titled yet.")
    body: str
    category: str = Field(description=CATEGORY + " Empty in a draft without one.")
    session_kind: SessionKind
    first_proposer: SignerView
    cosigners: list[SignerView]
    confirmed_cosigners: list[str] = Field(description="联名确认: the ids of the cosigners who have confirmed.")
    suggestions: list[SuggestionView]
    series_id: str | None = Field(description="系列提案 this proposal belongs to.")
    status: ProposalStatus
    cosign_due: date | None = Field(description="联名确认期 end, for a joint proposal awaiting its cosigners.")
    filing_number: str | None = Field(description="案号, once filed (立案).")
    review_reason: str | None
    not_filed_ground: str | None = Field(description=NOT_FILED_GROUND)
    converted_to_opinion: bool = Field(description="不予立案, 转为意见建议.")
    merged_into: str | None = Field(description="并案: the proposal it was merged into.")
    return_reason: str | None = Field(description="退回修改: what to change.")
    withdraw_reason: str | None
    created_at: datetime | None
    submitted_at: datetime | None
    review_started_at: datetime | None
    reviewed_at: datetime | None


class ProposalPage(BaseModel):
    """One page of proposals: a member's own, or all for the committee."""

    items: list[ProposalView]
    limit: int
    offset: int


class SimilarProposal(BaseModel):
    """A filed proposal of the same year like this one (相似提案), for 并案."""

    id: str
    filing_number: str | None
    title: str
    category: str
    score: float = Field(description="Similarity, higher is closer.")


class SimilarProposals(BaseModel):
    items: list[SimilarProposal] = Field(description="Best match first.")
    limit: int
