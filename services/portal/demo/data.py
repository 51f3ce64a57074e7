"""The demo city's year: the story's proposals and the year's other proposals, written as a city's
members write them (invented for the demo, not real proposals). Unit ids are those of
services/assignment/units.yaml; the people are those of the development login (labels.DEMO_USERS)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LAND = {
    "title": "关于推进全域土地综合整治的建议",
    "category": "经济建设",
    "body": (
        "我市土地开发强度高, 村镇工业园、耕地和生态用地犬牙交错, 土地利用碎片化问题突出, "
        "制约了产业升级和乡村振兴。建议以镇街为单元统筹推进全域土地综合整治, "
        "整体推进农用地整理、建设用地整理和乡村生态保护修复, 优化国土空间布局。"
    ),
    "suggestions": [
        "编制全域土地综合整治专项规划, 以镇街为单元划定整治区域",
        "设立市级整治专项资金, 引导社会资本参与",
        "推进村镇工业园改造与高标准农田建设联动",
        "建立整治成效评估和耕地占补平衡监管机制",
    ],
}

LAND_CO_OPINIONS = {
    "dg-nyj": "建议将高标准农田建设和撂荒地复耕纳入整治范围, 我局负责农用地整理的技术指导。",
    "dg-fgj": "建议将整治项目纳入市重大项目库, 统筹中央预算内投资和专项债券支持。",
    "dg-humen": "虎门镇愿作为首批试点镇, 已梳理村镇工业园低效用地约 1200 亩。",
}

LAND_REPLY = (
    "陈委员: 您提出的《关于推进全域土地综合整治的建议》收悉。我局会同市农业农村局、市发展和改革局和虎门镇"
    "认真研究, 现答复如下: 一、已启动全域土地综合整治专项规划编制, 以镇街为单元划定首批整治区域; "
    "二、市财政设立整治专项资金, 并通过专项债券和社会资本多渠道筹资; 三、将村镇工业园改造与高标准农田建设"
    "捆绑实施; 四、建立整治成效评估和耕地保护监管机制。下一步将按十项举措逐项落实, 定期向您通报进展。"
)

# (举措, 责任单位, 完成时限: months from today)
LAND_MEASURES = [
    ("编制全域土地综合整治专项规划", "dg-zrzyj", 3),
    ("划定首批 6 个镇街整治区域", "dg-zrzyj", 4),
    ("设立市级整治专项资金 5 亿元", "dg-fgj", 5),
    ("争取整治项目纳入省重大项目库", "dg-fgj", 6),
    ("完成高标准农田建设 1.2 万亩", "dg-nyj", 8),
    ("复耕撂荒地 3000 亩", "dg-nyj", 7),
    ("虎门镇村镇工业园改造试点 1200 亩", "dg-humen", 9),
    ("建立耕地占补平衡动态监管平台", "dg-zrzyj", 6),
    ("出台社会资本参与整治的激励办法", "dg-fgj", 5),
    ("建立整治成效年度评估机制", "dg-zrzyj", 10),
]

# The one measure dropped over the year, and why (a dropped measure always says why).
LAND_DROPPED_MEASURE = "争取整治项目纳入省重大项目库"
LAND_DROPPED_REASON = "省重大项目库本年度不再增补, 改由市级专项债券支持, 资金已落实"

AI_SERIES = "2026-ai-manufacturing"

# 系列提案: three proposals on AI for manufacturing, 16 suggestions, 12 of them adopted.
AI_PROPOSALS: list[dict[str, Any]] = [
    {
        "title": "关于以人工智能赋能制造业数字化转型的建议",
        "body": (
            "我市制造业规模大但数字化水平参差不齐, 中小企业用不起、不会用人工智能。建议系统推进人工智能在制造业的应用。"
        ),
        "suggestions": [
            "设立制造业人工智能应用专项资金",
            "建设面向中小企业的工业大模型公共服务平台",
            "每年遴选一批人工智能应用标杆工厂",
            "对购买人工智能服务的中小企业给予券式补贴",
            "建立制造业数据分类分级和安全共享规则",
            "组建市级人工智能产业联盟",
        ],
        "adopted": [True, True, True, True, True, False],
        "classification": "A",
    },
    {
        "title": "关于加快培育智能制造人才的建议",
        "body": "人工智能与智能制造人才缺口明显, 企业招不到、留不住复合型人才。建议加强智能制造人才培养与引进。",
        "suggestions": [
            "支持职业院校开设智能制造与人工智能专业",
            "建立校企联合实训基地",
            "将智能制造工程师纳入紧缺人才目录",
            "对企业开展人工智能技能培训给予补贴",
            "举办智能制造技能大赛",
        ],
        "adopted": [True, True, True, True, False],
        "classification": "A",
    },
    {
        "title": "关于推动人工智能在产业集群落地应用的建议",
        "body": "我市电子信息、装备制造等产业集群特色鲜明, 建议以集群为单位推动人工智能场景开放和应用落地。",
        "suggestions": [
            "发布产业集群人工智能应用场景清单",
            "在松山湖建设人工智能中试验证基地",
            "支持龙头企业开放供应链数据",
            "设立人工智能应用风险补偿资金",
            "建立人工智能应用成效评估体系",
        ],
        "adopted": [True, True, True, False, False],
        "classification": "B",
    },
]

AI_REPLY = (
    "周委员: 您领衔提出的人工智能赋能制造业系列提案收悉。市工业和信息化局会同市科学技术局认真研究, "
    "对其中可行的建议已纳入我市人工智能产业发展行动方案, 具体如下。"
)


@dataclass(frozen=True)
class YearProposal:
    """One of the year's other proposals, and how far its handling has come by today."""

    title: str
    category: str
    suggestions: list[str]
    outcome: str  # submitted, not_filed, assigned, handling, reply_review, answered, closed
    proposer: str = "m-chen"
    grade: str = "satisfied"
    classification: str = "A"
    adopted: list[bool] = field(default_factory=list)


def _p(
    title: str,
    category: str,
    outcome: str,
    *suggestions: str,
    proposer: str = "m-chen",
    grade: str = "satisfied",
    classification: str = "A",
) -> YearProposal:
    return YearProposal(title, category, list(suggestions), outcome, proposer, grade, classification)


YEAR = [
    _p(
        "关于增加中心城区公办学位供给的建议",
        "社会建设",
        "closed",
        "新建改扩建公办学校",
        "盘活闲置校舍",
        grade="basically_satisfied",
    ),
    _p(
        "关于完善社区居家养老服务的建议", "社会建设", "closed", "建设社区长者饭堂", "推广家庭养老床位", "培育养老护理员"
    ),
    _p(
        "关于优化公交线网提升接驳效率的建议",
        "社会建设",
        "closed",
        "优化地铁接驳公交",
        "开通通勤定制公交",
        classification="B",
    ),
    _p("关于加强河涌综合整治的建议", "生态文明建设", "closed", "推进雨污分流", "建立河长巡河考核", "引入社会监督"),
    _p("关于推动城中村改造与保护并重的建议", "经济建设", "closed", "保留岭南特色建筑", "完善改造补偿机制"),
    _p("关于提升基层医疗卫生服务能力的建议", "社会建设", "closed", "加强社区卫生服务中心建设", "推行家庭医生签约"),
    _p(
        "关于优化营商环境支持民营企业发展的建议",
        "经济建设",
        "closed",
        "推行涉企事项一网通办",
        "建立政企沟通机制",
        grade="basically_satisfied",
    ),
    _p(
        "关于发展夜间经济和文旅消费的建议",
        "文化建设",
        "closed",
        "打造夜间消费集聚区",
        "举办城市文旅节",
        classification="B",
    ),
    _p("关于加强食品安全社会共治的建议", "社会建设", "closed", "推广明厨亮灶", "建立食品安全有奖举报"),
    _p("关于推进垃圾分类常态化的建议", "生态文明建设", "closed", "完善分类收运体系", "开展垃圾分类进校园"),
    _p(
        "关于加强新就业形态劳动者权益保障的建议",
        "社会建设",
        "answered",
        "扩大职业伤害保障试点",
        "建设户外劳动者驿站",
        proposer="m-zhou",
    ),
    _p("关于推动科技创新券扩面增效的建议", "经济建设", "answered", "扩大创新券适用范围", "简化兑付流程"),
    _p("关于加强青少年心理健康教育的建议", "社会建设", "reply_review", "配齐专职心理教师", "建立家校医联动机制"),
    _p(
        "关于完善新能源汽车充电设施布局的建议",
        "经济建设",
        "handling",
        "在老旧小区建设共享充电桩",
        "推动充电设施纳入新建小区规划",
    ),
    _p("关于加快建设海绵城市的建议", "生态文明建设", "handling", "推广透水铺装", "建设雨水调蓄设施"),
    _p("关于支持非物质文化遗产活态传承的建议", "文化建设", "handling", "设立非遗传承人补贴", "建设非遗展示空间"),
    _p("关于推进智慧交通信号控制的建议", "社会建设", "assigned", "推广自适应信号灯", "建设交通大数据平台"),
    _p("关于加强人才住房保障的建议", "经济建设", "assigned", "筹建人才公寓", "发放租房补贴"),
    _p("关于规范校外培训机构管理的建议", "社会建设", "submitted", "建立预付费资金监管", "加强联合执法"),
    _p("关于发展低空经济的建议", "经济建设", "submitted", "规划低空飞行航线", "建设无人机起降点"),
    _p("关于为某企业解决个人用地纠纷的建议", "经济建设", "not_filed", "协调解决个人用地纠纷"),
]

AI_PROPOSALS_CONTENT = [
    {"title": item["title"], "body": item["body"], "category": "经济建设", "suggestions": item["suggestions"]}
    for item in AI_PROPOSALS
]
