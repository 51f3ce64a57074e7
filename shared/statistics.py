"""办理统计口径: the one written definition of every rate the statistics publish.

Progress computes the rates (``services/progress/stats.py``) and describes them in its API schema
from these texts; the portal shows them as tooltips; ``docs/statistics.md`` carries the same texts
(a test keeps the three in step). Each says the numerator, the denominator, what is left out and
which date decides the year.
"""

from __future__ import annotations

YEAR_RULE = "年度按提案提交日期 (政策时区) 计。"
"""Which date decides the year: every figure of a year counts the proposals submitted in it."""

RATE_DEFINITIONS: dict[str, str] = {
    "filing_rate": (
        "立案率: 已立案提案 (有案号; 并案提案按本市政策计为立案 (默认)、不立案或不计入) "
        "÷ 已作出审查决定的提案 (立案 + 不予立案 + 并案)。不计: 撤回的提案、尚在审查中的提案。" + YEAR_RULE
    ),
    "on_time_reply_rate": (
        "按期办复率: 按期答复数 (经办复审查通过、且通过的那一稿在办复期限当日或之前提交) "
        "÷ 已到期的应答复数。应答复数按提案、办理轮次 (重新办理另计一轮) 和答复单位 (分办每个单位各计) 计; "
        "已到期 = 已通过审查, 或办复期限已过。逾期未答复的计入分母; 逾期后才提交的计为不按期。"
        "不计: 未到期且未答复的、期限内提交而尚在办复审查中的、撤回和并案的提案。" + YEAR_RULE
    ),
    "closing_rate": "办结率: 已办结提案 ÷ 已立案提案。不计: 撤回、并案、不予立案的提案。" + YEAR_RULE,
    "satisfaction_rate": (
        "满意率 (按件): 满意的提案 ÷ 已评价的提案。每件提案看最近一轮评价, 该轮所有已评价的提案者"
        "对办理结果的评价均为满意或基本满意 (以政策的评价等级为准) 才计为满意。不计: 尚无评价的提案。" + YEAR_RULE
    ),
    "evaluation_satisfaction_rate": (
        "满意率 (按份): 办理结果评价为满意或基本满意的评价份数 ÷ 全部评价份数, 每位提案者每轮各计一份 "
        "(重新办理前后的评价都计)。不计: 尚未评价的。" + YEAR_RULE
    ),
    "suggestion_adoption_rate": (
        "采纳率 (建议): 被采纳的建议条数 ÷ 已答复提案的建议条数, 每条建议只计一次: "
        "每个答复单位以其最近一次经审查通过的答复为准 (重新办理的答复取代前一轮), "
        "分办时任一单位采纳即计为采纳。不计: 尚无通过审查答复的提案、撤回和并案的提案。" + YEAR_RULE
    ),
    "adopted_class_rate": (
        "采纳类答复占比: 答复类别在政策中计为采纳的答复 ÷ 全部答复, "
        "每个提案的每个答复单位以其最近一次经审查通过的答复计一件。不计: 未通过审查的答复。" + YEAR_RULE
    ),
    "first_class_rate": (
        "首类答复占比: 答复类别为政策答复分类中第一类 (名称见卡片) 的答复 ÷ 全部答复, "
        "每个提案的每个答复单位以其最近一次经审查通过的答复计一件。不计: 未通过审查的答复。" + YEAR_RULE
    ),
    "implementation_rate": (
        "落实率: 已落实的提案 (答复承诺的举措全部完成或说明理由后取消, 且至少一项完成; 落实评价不满意而重新落实的, "
        "再次落实前不计) ÷ 已办结且有举措的提案。不计: 没有举措的提案、撤回和并案的提案。" + YEAR_RULE
    ),
    "measure_on_time_rate": (
        "举措按期完成率: 在期限当日或之前完成的举措 ÷ 已到期的举措。已到期 = 已完成, 或期限已过; 期限按举措当前的期限 "
        "(重新落实的举措按新期限) 计, 完成日期按政策时区。不计: 未到期且未完成的、已取消的举措。" + YEAR_RULE
    ),
    "implementation_satisfaction_rate": (
        "落实满意率: 对落实情况评价为满意或基本满意 (以政策的评价等级为准) 的落实评价份数 ÷ 全部落实评价份数, "
        "每位提案者每轮落实评价各计一份 (重新落实前后的都计)。不计: 尚未评价的。" + YEAR_RULE
    ),
}
"""Rate name (as in the statistics' JSON) → its definition (口径)."""

UNIT_RULE = (
    "按单位统计: 提案计入当前的答复单位 (主办单位; 分办时每个分办单位), 改办后计入新单位; "
    "各单位的按期办复率、采纳率和答复占比只计本单位的答复, 满意率按提案计。"
    "举措按期完成率只计本单位负责的举措, 落实率和落实满意率按提案计。"
)
"""How the per-unit figures attribute a proposal to a unit."""
