"""The schema of `GET /stats` (办理统计), each rate described by its one written definition (口径)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.statistics import RATE_DEFINITIONS, UNIT_RULE, YEAR_RULE


class Figures(BaseModel):
    """The figures of a set of proposals; a rate is null when its denominator is 0."""

    model_config = ConfigDict(extra="forbid")

    submitted: int = Field(description="提交的提案 (撤回的不计)。")
    in_review: int = Field(description="尚在审查中 (未立案、未作决定) 的提案。")
    decided: int = Field(description="立案率的分母: 已作出审查决定的提案。")
    accepted: int = Field(description="立案率的分子: 计为立案的提案。")
    filed: int = Field(description="已立案且未撤回、未并案的提案 (办结率的分母)。")
    filing_rate: float | None = Field(description=RATE_DEFINITIONS["filing_rate"])
    replies_due: int = Field(description="按期办复率的分母: 已到期的应答复数。")
    replies_on_time: int = Field(description="按期办复率的分子: 按期答复数。")
    on_time_reply_rate: float | None = Field(description=RATE_DEFINITIONS["on_time_reply_rate"])
    closed: int = Field(description="已办结的提案。")
    closing_rate: float | None = Field(description=RATE_DEFINITIONS["closing_rate"])
    proposals_evaluated: int = Field(description="满意率 (按件) 的分母: 已评价的提案。")
    proposals_satisfied: int = Field(description="满意率 (按件) 的分子: 满意的提案。")
    satisfaction_rate: float | None = Field(description=RATE_DEFINITIONS["satisfaction_rate"])
    evaluations: int = Field(description="满意率 (按份) 的分母: 评价份数。")
    satisfied: int = Field(description="满意率 (按份) 的分子: 满意或基本满意的评价份数。")
    evaluation_satisfaction_rate: float | None = Field(description=RATE_DEFINITIONS["evaluation_satisfaction_rate"])
    suggestions: int = Field(description="采纳率的分母: 已答复提案的建议条数。")
    suggestions_adopted: int = Field(description="采纳率的分子: 被采纳的建议条数。")
    suggestion_adoption_rate: float | None = Field(description=RATE_DEFINITIONS["suggestion_adoption_rate"])
    replies_final: int = Field(description="答复占比的分母: 各答复单位最近一次经审查通过的答复。")
    adopted_class_replies: int = Field(description="采纳类答复占比的分子。")
    adopted_class_rate: float | None = Field(description=RATE_DEFINITIONS["adopted_class_rate"])
    first_class_replies: int = Field(description="首类答复占比的分子。")
    first_class_rate: float | None = Field(description=RATE_DEFINITIONS["first_class_rate"])
    implemented: int = Field(description="举措已全部落实的提案。")
    closed_with_measures: int = Field(description="落实率的分母: 已办结且有举措的提案。")
    implemented_proposals: int = Field(description="落实率的分子: 其中已落实的提案。")
    implementation_rate: float | None = Field(description=RATE_DEFINITIONS["implementation_rate"])
    measures_due: int = Field(description="举措按期完成率的分母: 已到期的举措。")
    measures_on_time: int = Field(description="举措按期完成率的分子: 按期完成的举措。")
    measure_on_time_rate: float | None = Field(description=RATE_DEFINITIONS["measure_on_time_rate"])
    implementation_evaluations: int = Field(description="落实满意率的分母: 落实评价份数。")
    implementation_satisfied: int = Field(description="落实满意率的分子: 满意或基本满意的落实评价份数。")
    implementation_satisfaction_rate: float | None = Field(
        description=RATE_DEFINITIONS["implementation_satisfaction_rate"]
    )
    carried_over_measures: int = Field(description="跨年度落实: 这些提案中期限在提案年度之后的举措 (不计已取消的)。")
    carried_over_done: int = Field(description="其中已完成的。")
    carried_in_measures: int = Field(
        default=0,
        description="按年度统计: 往年提案中期限在本年度的举措 (跨年度落实转入本年度, 不计已取消的); 其他分组为 0。",
    )
    carried_in_done: int = Field(default=0, description="其中已完成的。")
    overdue: dict[str, int] = Field(description="逾期的待办事项, 按种类 (reply, co_opinion, evaluation, measure)。")


class ReplyClassRef(BaseModel):
    code: str
    label: str


class ReplyClassesUsed(BaseModel):
    """Which reply classes the shares count, from the policy."""

    first: ReplyClassRef = Field(description="The policy's first reply class (首类答复占比 counts it).")
    adopted: list[str] = Field(description="Classes with counts_as_adopted (采纳类答复占比 counts them).")


class KeyBoardRow(BaseModel):
    id: str
    title: str
    filing_number: str | None
    stage: str
    lead_unit: str | None
    leaders: list[str]
    overdue: bool
    measures_total: int
    measures_done: int
    implemented: bool


class Statistics(BaseModel):
    """办理统计 as of a day."""

    as_of: str = Field(description="The day the figures were computed for (overdue and 'fell due' are as of it).")
    reply_classes: ReplyClassesUsed
    overall: Figures = Field(description="Every proposal, all years.")
    per_unit: dict[str, Figures] = Field(description=UNIT_RULE)
    per_year: dict[str, Figures] = Field(description=YEAR_RULE)
    per_category: dict[str, Figures] = Field(description="按提案分类 (提案的当前类别) 统计。")
    overdue_by_unit: dict[str, int] = Field(description="Open steps past due (evaluations left out) by owing unit.")
    key_proposals: list[KeyBoardRow] = Field(description="重点提案 board.")
