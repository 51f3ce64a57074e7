"""Sample lifecycle events for notify's tests, each with the inbox notices the default rules give.

One proposal walks the whole lifecycle (joint, filed, assigned lead + co, disputed, key, deadlines,
reply, unsatisfied evaluation, rehandling, overdue measure, closed, 落实评价 with a reopened measure);
three short ones cover not filed, merged and returned; one is reassigned (its 会办单位 loses it, its
主办单位 becomes 会办).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from shared.events import (
    Actor,
    AssignmentDeadlinesChanged,
    AssignmentDisputed,
    AssignmentDisputeUpheld,
    AssignmentForm,
    AssignmentReassigned,
    DeadlineApproaching,
    DeadlineOverdue,
    EvaluationSubmitted,
    Event,
    HandlingDeadlineChanged,
    ImplementationEvaluated,
    ImplementationEvaluationOpened,
    KeyProposalDesignated,
    MeasureReopened,
    MeasureRequested,
    ProposalAssigned,
    ProposalClosed,
    ProposalCosignRequested,
    ProposalFiled,
    ProposalMerged,
    ProposalNotFiled,
    ProposalReturned,
    ProposalReviewStarted,
    ProposalSubmitted,
    Proposer,
    RehandlingStarted,
    ReplyApproved,
    ReplyReturned,
    Role,
    SessionKind,
    Suggestion,
    UnitRef,
)

COMMITTEE = Actor(id="c-1", role=Role.COMMITTEE)
DISPATCHER = Actor(id="d-1", role=Role.DISPATCHER)
SYSTEM = Actor(id="scheduler", role=Role.SYSTEM)
ZHANG, LI, WANG = Proposer(id="m-1", name="张三"), Proposer(id="m-2", name="李四"), Proposer(id="m-3", name="王五")
ZRJ = UnitRef(id="dg-zrj", name="东莞市自然资源局")
NYJ = UnitRef(id="dg-nyj", name="东莞市农业农村局")
JTJ = UnitRef(id="dg-jtj", name="东莞市交通运输局")
AT = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def submitted(proposal_id: str, title: str, cosigners: list[Proposer]) -> ProposalSubmitted:
    return ProposalSubmitted(
        proposal_id=proposal_id,
        actor=Actor(id=ZHANG.id, role=Role.MEMBER),
        title=title,
        body="我市土地利用碎片化, 建议统筹推进全域土地综合整治。",
        category="经济建设",
        session_kind=SessionKind.INTERIM,
        first_proposer=ZHANG,
        cosigners=cosigners,
        suggestions=[Suggestion(number=1, text="编制整治规划")],
        submitted_at=AT,
    )


def filed(proposal_id: str, title: str, number: str, cosigners: list[Proposer]) -> ProposalFiled:
    return ProposalFiled(
        proposal_id=proposal_id,
        actor=COMMITTEE,
        filing_number=number,
        title=title,
        category="经济建设",
        first_proposer=ZHANG,
        cosigners=cosigners,
        suggestion_count=1,
        filed_at=AT,
    )


def assigned(proposal_id: str, co_units: list[UnitRef]) -> ProposalAssigned:
    return ProposalAssigned(
        proposal_id=proposal_id,
        actor=DISPATCHER,
        assignment_id=f"{proposal_id}-a1",
        form=AssignmentForm.LEAD_CO if co_units else AssignmentForm.SINGLE,
        lead_unit=ZRJ,
        co_units=co_units,
        reply_due=date(2026, 6, 1),
        co_opinion_due=date(2026, 5, 1) if co_units else None,
        dispute_until=date(2026, 3, 10),
        assigned_at=AT,
    )


def approaching(
    proposal_id: str, kind: str, unit: UnitRef, due: date, *, leader: str | None = "l-1", **about: str
) -> DeadlineApproaching:
    """到期提醒 of one deadline (`about`: the signer or measure it is about)."""
    return DeadlineApproaching(
        proposal_id=proposal_id, actor=SYSTEM, unit=unit.id, kind=kind, due=due, **_led(leader), **about
    )


def overdue(proposal_id: str, kind: str, unit: UnitRef, due: date, **about: str) -> DeadlineOverdue:
    """逾期 of one deadline, supervised by l-1 (`about`: the measure it is about)."""
    return DeadlineOverdue(
        proposal_id=proposal_id, actor=SYSTEM, unit=unit.id, kind=kind, due=due, **_led("l-1"), **about
    )


def _led(leader: str | None) -> dict[str, str]:
    return {"supervising_leader": leader} if leader else {}


Expected = set[tuple[str, str]]
"""(recipient, title) of the inbox notices an event gives."""


def lifecycle(prefix: str = "p") -> list[tuple[Event, Expected]]:
    """Events in the order they happen, with the inbox notices each gives."""
    main, refused, merged, returned, moved = (f"{prefix}-{name}" for name in ("main", "no", "merged", "ret", "moved"))
    title = "关于推进全域土地综合整治的建议"
    units = ("unit:dg-zrj", "committee", "l-1")
    return [
        (submitted(main, title, [LI, WANG]), set()),
        (
            ProposalCosignRequested(proposal_id=main, actor=SYSTEM, cosigners=[LI, WANG], due=date(2026, 3, 9)),
            {("m-2", "请确认联名提案"), ("m-3", "请确认联名提案")},
        ),
        (
            ProposalReviewStarted(
                proposal_id=main,
                actor=SYSTEM,
                trigger="cosign_window_closed",
                confirmed_cosigners=[LI],
                unconfirmed_cosigners=[WANG],
            ),
            set(),
        ),
        (filed(main, title, "2026-0001", [LI]), {("m-1", "提案已立案"), ("m-2", "提案已立案")}),
        (
            assigned(main, [NYJ]),
            {
                ("m-1", "提案已交办"),
                ("m-2", "提案已交办"),
                ("unit:dg-zrj", "新交办提案"),
                ("unit:dg-nyj", "新会办提案"),
            },
        ),
        (
            AssignmentDisputed(
                proposal_id=main, actor=DISPATCHER, assignment_id=f"{main}-a1", unit=NYJ, reason="不属于本单位职责"
            ),
            {("dispatcher", "交办异议待处理")},
        ),
        (
            AssignmentDisputeUpheld(proposal_id=main, actor=DISPATCHER, assignment_id=f"{main}-a1", units=[NYJ]),
            {("unit:dg-nyj", "交办异议未采纳")},
        ),
        (
            KeyProposalDesignated(proposal_id=main, actor=COMMITTEE, supervising_leader="l-1", leading_leader="l-2"),
            {("l-1", "重点提案督办"), ("l-2", "重点提案督办")},
        ),
        (
            approaching(main, "co_opinion", NYJ, date(2026, 5, 1)),
            {("unit:dg-nyj", "会办意见即将到期")},
        ),
        (
            overdue(main, "co_opinion", NYJ, date(2026, 5, 1)),
            {("unit:dg-nyj", "会办意见已逾期"), ("committee", "会办意见已逾期")},
        ),
        (
            AssignmentDeadlinesChanged(
                proposal_id=main,
                actor=SYSTEM,
                assignment_id=f"{main}-a1",
                reply_due=date(2026, 6, 2),
                co_opinion_due=date(2026, 5, 6),
                dispute_until=date(2026, 3, 9),
                previous_reply_due=date(2026, 6, 1),
                previous_co_opinion_due=date(2026, 5, 1),
                previous_dispute_until=date(2026, 3, 9),
                reason="法定节假日安排调整",
            ),
            {("unit:dg-zrj", "办复期限调整"), ("unit:dg-nyj", "提案期限调整")},
        ),
        (
            approaching(main, "reply", ZRJ, date(2026, 6, 1)),
            {("unit:dg-zrj", "答复即将到期")},
        ),
        (
            overdue(main, "reply", ZRJ, date(2026, 6, 1)),
            {(recipient, "提案答复已逾期") for recipient in units},
        ),
        (
            ReplyReturned(proposal_id=main, actor=COMMITTEE, reply_id="r-1", reason="未逐条答复建议", unit=ZRJ.id),
            {("unit:dg-zrj", "答复退回修改")},
        ),
        (
            ReplyApproved(proposal_id=main, actor=COMMITTEE, reply_id="r-1", evaluation_due=date(2026, 7, 1)),
            {("m-1", "提案已答复, 请评价"), ("m-2", "提案已答复, 请评价")},
        ),
        (
            HandlingDeadlineChanged(
                proposal_id=main,
                actor=SYSTEM,
                kind="evaluation",
                round=1,
                due=date(2026, 7, 2),
                previous_due=date(2026, 7, 1),
            ),
            {("m-1", "评价期限调整"), ("m-2", "评价期限调整")},
        ),
        (
            approaching(main, "evaluation", ZRJ, date(2026, 7, 1), signer_id="m-2"),
            {("m-2", "提案评价即将到期")},
        ),
        (
            EvaluationSubmitted(
                proposal_id=main,
                actor=Actor(id="m-2", role=Role.MEMBER),
                signer_id="m-2",
                handling_grade="satisfied",
                result_grade="satisfied",
            ),
            set(),
        ),
        (
            EvaluationSubmitted(
                proposal_id=main,
                actor=Actor(id="m-1", role=Role.MEMBER),
                signer_id="m-1",
                handling_grade="satisfied",
                result_grade="unsatisfied",
                comment="措施不具体",
            ),
            {("unit:dg-zrj", "提案者对办理结果不满意"), ("committee", "提案者对办理结果不满意")},
        ),
        (
            RehandlingStarted(proposal_id=main, actor=SYSTEM, reply_due=date(2026, 8, 1)),
            {("unit:dg-zrj", "提案重新办理")},
        ),
        (
            HandlingDeadlineChanged(
                proposal_id=main,
                actor=SYSTEM,
                kind="reply",
                round=2,
                due=date(2026, 8, 3),
                previous_due=date(2026, 8, 1),
            ),
            {("unit:dg-zrj", "重新办理期限调整")},
        ),
        (
            approaching(main, "measure", ZRJ, date(2026, 9, 1), measure_id="ms-1"),
            {("unit:dg-zrj", "举措落实即将到期")},
        ),
        (
            overdue(main, "measure", ZRJ, date(2026, 9, 1), measure_id="ms-1"),
            {(recipient, "举措落实已逾期") for recipient in units},
        ),
        (
            ProposalClosed(proposal_id=main, actor=SYSTEM, closed_at=AT, reason="all_evaluated"),
            {("m-1", "提案已办结"), ("m-2", "提案已办结")},
        ),
        (
            ImplementationEvaluationOpened(
                proposal_id=main, actor=SYSTEM, round=1, evaluation_due=date(2026, 10, 9), signers=["m-1", "m-2"]
            ),
            {("m-1", "提案举措已落实, 请评价落实情况"), ("m-2", "提案举措已落实, 请评价落实情况")},
        ),
        (
            approaching(main, "implementation_evaluation", ZRJ, date(2026, 10, 9), leader=None, signer_id="m-2"),
            {("m-2", "落实评价即将到期")},
        ),
        (
            ImplementationEvaluated(
                proposal_id=main,
                actor=Actor(id="m-1", role=Role.MEMBER),
                signer_id="m-1",
                grade="unsatisfied",
                comment="资金尚未到位",
                satisfied=False,
                reopened_measures=["ms-1"],
                supervising_leader="l-1",
            ),
            {("l-1", "提案者对落实情况不满意"), ("committee", "提案者对落实情况不满意")},
        ),
        (
            MeasureReopened(
                proposal_id=main,
                actor=Actor(id="m-1", role=Role.MEMBER),
                measure_id="ms-1",
                unit=ZRJ.id,
                due=date(2026, 11, 9),
                round=1,
                reason="资金尚未到位",
                supervising_leader="l-1",
            ),
            {("unit:dg-zrj", "举措需重新落实")},
        ),
        (
            MeasureRequested(
                proposal_id=main, actor=Actor(id="m-1", role=Role.MEMBER), unit=ZRJ.id, due=date(2026, 11, 9), round=1
            ),
            {("unit:dg-zrj", "请提出新举措")},
        ),
        (
            approaching(main, "new_measure", ZRJ, date(2026, 11, 9), leader=None),
            {("unit:dg-zrj", "新举措即将到期")},
        ),
        (
            overdue(main, "new_measure", ZRJ, date(2026, 11, 9)),
            {(recipient, "新举措已逾期") for recipient in units},
        ),
        (
            ImplementationEvaluated(
                proposal_id=main,
                actor=Actor(id="m-2", role=Role.MEMBER),
                signer_id="m-2",
                grade="satisfied",
                satisfied=True,
            ),
            set(),
        ),
        (submitted(refused, "关于调整个人所得税的建议", []), set()),
        (
            ProposalNotFiled(proposal_id=refused, actor=COMMITTEE, reason="属于全国性事项", ground="out_of_scope"),
            {("m-1", "提案不予立案")},
        ),
        (submitted(merged, "关于土地整治的另一建议", [WANG]), set()),
        (
            ProposalMerged(
                proposal_id=merged,
                actor=COMMITTEE,
                into_proposal_id=main,
                into_filing_number="2026-0001",
                first_proposer=ZHANG,
                cosigners=[WANG],
            ),
            {("m-1", "提案已并案"), ("m-3", "提案已并案")},
        ),
        (submitted(returned, "关于完善公交线网的建议", []), set()),
        (
            ProposalReturned(proposal_id=returned, actor=COMMITTEE, reason="请补充调研数据"),
            {("m-1", "提案退回修改")},
        ),
        (submitted(moved, "关于优化道路交通的建议", [LI]), set()),
        (filed(moved, "关于优化道路交通的建议", "2026-0002", [LI]), {("m-1", "提案已立案"), ("m-2", "提案已立案")}),
        (
            assigned(moved, [NYJ]),
            {
                ("m-1", "提案已交办"),
                ("m-2", "提案已交办"),
                ("unit:dg-zrj", "新交办提案"),
                ("unit:dg-nyj", "新会办提案"),
            },
        ),
        (
            AssignmentReassigned(
                proposal_id=moved,
                actor=DISPATCHER,
                assignment_id=f"{moved}-a2",
                previous_assignment_id=f"{moved}-a1",
                form=AssignmentForm.LEAD_CO,
                lead_unit=JTJ,
                co_units=[ZRJ],
                reply_due=date(2026, 6, 15),
                co_opinion_due=date(2026, 5, 15),
                dispute_until=date(2026, 3, 20),
                assigned_at=AT,
                reason="职责调整",
            ),
            {
                ("m-1", "提案已改办"),
                ("m-2", "提案已改办"),
                ("unit:dg-jtj", "新交办提案"),
                ("unit:dg-zrj", "新会办提案"),
                ("unit:dg-nyj", "提案已改由他单位办理"),  # 改办 left it no part; 自然资源局 stays as 会办
            },
        ),
        (
            AssignmentDisputeUpheld(proposal_id=moved, actor=DISPATCHER, assignment_id=f"{moved}-a2", units=[JTJ]),
            {("unit:dg-jtj", "交办异议未采纳")},
        ),
    ]
