"""城市接入: `proposalflow city init` takes a city's files (YAML or CSV), names every problem by file, line and
field, and writes the files the services read. Dongguan's own files are the example; 临江市
(tests/data/cities/linjiang, made up) is the second city."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from proposalflow.city import CityError, read_city, write_city
from proposalflow.cli import app
from services.assignment.catalogs import LABELLED_FILE, ROUTING_FILE, load_labelled, load_routing
from services.assignment.domain import suggest_route
from shared.policy import load_policy

ROOT = Path(__file__).resolve().parents[2]
LINJIANG = ROOT / "tests" / "data" / "cities" / "linjiang"


@pytest.fixture
def linjiang(tmp_path: Path) -> Path:
    """A copy of 临江市's files to break."""
    return Path(shutil.copytree(LINJIANG, tmp_path / "linjiang"))


def problems(source: Path) -> list[str]:
    with pytest.raises(CityError) as refused:
        read_city(source)
    assert str(refused.value).startswith(f"the city in {source} has {len(refused.value.problems)} problem(s):")
    return [str(problem) for problem in refused.value.problems]


def replace(file: Path, old: str, new: str) -> None:
    text = file.read_text(encoding="utf-8")
    assert old in text, old
    file.write_text(text.replace(old, new), encoding="utf-8")


def test_dongguans_files_are_a_city_as_they_are(tmp_path: Path) -> None:
    source = tmp_path / "dongguan"
    source.mkdir()
    shutil.copy(ROOT / "shared" / "policies" / "dongguan.yaml", source / "policy.yaml")
    shutil.copy(ROOT / ROUTING_FILE, source / "units.yaml")  # units, leaders and rules in one file
    shutil.copy(LABELLED_FILE, source / "labelled_proposals.yaml")
    city = read_city(source)
    assert city.policy == load_policy()
    assert city.table == load_routing()
    assert city.labelled == load_labelled()


def test_the_second_city_reads_from_csv_and_yaml(tmp_path: Path) -> None:
    city = read_city(LINJIANG)
    assert city.policy.city == "临江市" and [c.code for c in city.policy.reply_classes] == ["A", "B", "C", "D"]
    assert [u.id for u in city.table.units][:2] == ["lj-fgw", "lj-jtj"]
    assert city.table.units[-1].kind == "town" and all(u.active for u in city.table.units)
    assert [leader.title for leader in city.table.leaders] == ["市长", "副市长(分管交通、城建)"]
    first_rule = city.table.rules[0]
    assert (first_rule.keywords, first_rule.lead, first_rule.co) == (
        ["公交", "地铁", "道路", "停车"],
        "lj-jtj",
        ["lj-zjj"],
    )
    assert city.table.category_defaults["社会民生"] == "lj-mzj" and city.table.fallback == "lj-fgw"
    assert city.labelled[0].suggestions == ["优化线网", "增设接驳线"]
    assert city.labelled[1].body == "中心城区学位紧张,入学矛盾突出。"  # a quoted cell keeps its comma
    proposal_route = suggest_route("关于优化江北片区公交线路的建议", "江北片区公交覆盖不足。", "城乡建设", city.table)
    assert (proposal_route.lead, proposal_route.co) == ("lj-jtj", ("lj-zjj",))


def test_what_init_writes_is_what_the_services_read(tmp_path: Path) -> None:
    out = tmp_path / "out"
    files = write_city(read_city(LINJIANG), out)
    env = dict(line.split("=", 1) for line in (out / "city.env").read_text("utf-8").splitlines()[1:])
    assert env == {name: str(path) for name, path in files.items()}
    assert load_policy(env["PROPOSALFLOW_POLICY_FILE"]).title == "临江市政协提案工作平台"
    assert load_routing(Path(env["PROPOSALFLOW_ASSIGNMENT_CATALOG_FILE"])) == read_city(LINJIANG).table
    assert len(load_labelled(Path(env["PROPOSALFLOW_ASSIGNMENT_TRAINING_FILE"]))) == 5


def test_a_bad_cell_in_a_csv_is_named_by_file_line_and_column(linjiang: Path) -> None:
    replace(linjiang / "units.csv", "lj-jyj,临江市教育局,市教育局,bureau,", "lj-jyj,临江市教育局,市教育局,county,")
    replace(linjiang / "units.csv", "lj-mzj,临江市民政局", "LJ MZJ,临江市民政局")
    found = problems(linjiang)
    assert found[:2] == [
        "units.csv, line 5, kind: Input should be 'bureau', 'town', 'street' or 'other' (got 'county')",
        "units.csv, line 6, id: String should match pattern '^[a-z0-9][a-z0-9-]{1,99}$' (got 'LJ MZJ')",
    ]
    # lj-jyj's own line has the problem: the rules and past proposals that name it do not repeat it; lj-mzj
    # is no unit at all now, and every place that names it says so.
    assert not [p for p in found[2:] if "'lj-jyj'" in p]
    assert found[2].startswith("routing.csv, line 5, lead: 'lj-mzj' is not an active unit of the catalog")


def test_rules_and_past_proposals_must_name_the_citys_units_and_categories(linjiang: Path) -> None:
    replace(linjiang / "routing.csv", "污染|河道|空气,,lj-sthjj,", "污染|河道|空气,,lj-sthjj,lj-sthjj")
    replace(linjiang / "routing.csv", ",生态环境,lj-sthjj,", ",生态文明建设,dg-sthjj,")
    replace(
        linjiang / "labelled_proposals.csv",
        "民营经济发展的建议,民营企业融资难、融资贵。,经济发展,",
        "民营经济发展的建议,民营企业融资难、融资贵。,经济建设,",
    )
    assert problems(linjiang) == [
        "routing.csv, line 4, co: the lead unit lj-sthjj cannot also be a co-handling unit",
        "routing.csv, line 9, lead: 'dg-sthjj' is not an active unit of the catalog (lj-fgw, lj-jiangbei, lj-jtj, "
        "lj-jyj, lj-mzj, lj-sthjj, lj-zjj)",
        "routing.csv, line 9, category: '生态文明建设' is not a category of policy.yaml (经济发展, 社会民生, 城乡建设, "
        "生态环境, 文化教育)",
        "labelled_proposals.csv, line 6, category: '经济建设' is not a category of policy.yaml (经济发展, 社会民生, "
        "城乡建设, 生态环境, 文化教育)",
    ]


def test_yaml_problems_name_the_line_and_the_path_in_the_file(linjiang: Path) -> None:
    (linjiang / "leaders.yaml").write_text(
        "leaders:\n  - {id: leader-lj-sz, title: 市长}\n  - id: leader-lj-sz\n    title: 副市长\n"
        "  - id: 副市长\n    titel: x\n",
        encoding="utf-8",
    )
    replace(linjiang / "policy.yaml", "co_opinion_deadline: 15 working days", "co_opinion_deadline: 3 months")
    replace(linjiang / "policy.yaml", "dispute_window: 10 working days", "dispute_window: 10 weekdays")
    found = problems(linjiang)
    assert found[0].startswith("policy.yaml, line 9, dispute_window: cannot parse duration '10 weekdays'")
    assert found[1:] == [
        "leaders.yaml, line 5, leaders[2].id: String should match pattern '^leader-[a-z0-9-]{1,90}$' (got '副市长')",
        "leaders.yaml, line 5, leaders[2].title: Field required",
        "leaders.yaml, line 6, leaders[2].titel: unknown field",
        "leaders.yaml, line 3, leaders[1].id: leader leader-lj-sz is already defined on line 2",
    ]
    # Once the durations parse, the contradiction between them is named with both fields.
    replace(linjiang / "policy.yaml", "dispute_window: 10 weekdays", "dispute_window: 10 working days")
    (contradiction,) = [p for p in problems(linjiang) if p.startswith("policy.yaml")]
    assert contradiction.startswith(
        "policy.yaml, line 8, co_opinion_deadline, reply_deadline: co_opinion_deadline (3 months) does not end "
        "before reply_deadline (2 months)"
    )


def test_missing_and_doubled_files_and_broken_yaml_are_named(linjiang: Path) -> None:
    (linjiang / "routing.csv").unlink()
    shutil.copy(linjiang / "units.csv", linjiang / "units.yaml")
    (linjiang / "units.yaml").write_text("units: [\n", encoding="utf-8")
    found = problems(linjiang)
    assert found[0] == "units.csv: both units.yaml and units.csv: keep one"
    assert found[1].startswith("units.yaml, line 2: not valid YAML")
    assert "routing.yaml: missing: write routing.yaml or routing.csv" in found


def test_the_command_reports_every_problem_or_writes_the_city(linjiang: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    checked = runner.invoke(app, ["city", "init", str(linjiang), "--check"])
    assert checked.exit_code == 0, checked.output
    assert "临江市: 7 units, 2 leaders, 4 routing rules, 5 category defaults, 5 labelled proposals: no problems" in (
        checked.output
    )
    assert not (tmp_path / "out").exists()
    written = runner.invoke(app, ["city", "init", str(linjiang), "--out", str(tmp_path / "out")])
    assert written.exit_code == 0, written.output
    assert f"PROPOSALFLOW_ASSIGNMENT_CATALOG_FILE={(tmp_path / 'out' / 'catalog.yaml').resolve()}" in written.output

    replace(linjiang / "units.csv", "lj-jtj,临江市交通运输局", "lj-jtj,局")
    refused = runner.invoke(app, ["city", "init", str(linjiang), "--out", str(tmp_path / "again")])
    assert refused.exit_code == 1
    assert "units.csv, line 3, name: String should have at least 2 characters (got '局')" in refused.output
    assert not (tmp_path / "again").exists()


def test_a_list_item_that_is_not_a_record_is_named(linjiang: Path) -> None:
    (linjiang / "leaders.yaml").write_text("leaders:\n  - 市长\n  - {id: leader-lj-sz, title: 市长}\n", "utf-8")
    assert problems(linjiang) == ["leaders.yaml, line 2, leaders[0]: expected a mapping of fields"]
