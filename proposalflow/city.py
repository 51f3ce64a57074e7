"""城市接入: a city from its files, checked as a whole, written where the services read it.

A city is a directory of files a proposal office can write (YAML, or CSV from a spreadsheet):

| file | holds | required |
|---|---|---|
| ``policy.yaml`` | the 办理规则 (``shared/policy.py``) | yes |
| ``units.yaml`` or ``units.csv`` | 承办单位: id, name, short_name, kind, active | yes |
| ``leaders.yaml`` or ``leaders.csv`` | 督办领导: id, title, active | no |
| ``routing.yaml`` or ``routing.csv`` | 交办规则: keyword rules, each category's default unit, the fallback | yes |
| ``labelled_proposals.yaml`` or ``.csv`` | past proposals with their units, the routing ranking's training data | no |

Dongguan's own files are the example: ``units.yaml`` may hold the leaders and the routing rules too
(``services/assignment/units.yaml``), so Dongguan's directory is its policy, that file and its labelled
proposals. Every problem is reported at once, each naming its file, line and field; the checks cover
each record (the models the services use) and the files together (rules, category defaults and past
proposals name units of the catalog and categories of the policy; ids are unique).

:func:`write_city` writes the checked city where the services read it: ``policy.yaml`` (as written, comments
kept), ``catalog.yaml`` (units, leaders and rules in assignment's seed format), ``labelled_proposals.yaml``
and ``city.env``, the settings that point the services at them.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from services.assignment.catalogs import LabelledProposal
from services.assignment.domain import Leader, RoutingRule, RoutingTable, Unit
from shared.policy import POLICY_ENV_VAR, Policy

CATALOG_ENV_VAR = "PROPOSALFLOW_ASSIGNMENT_CATALOG_FILE"
TRAINING_ENV_VAR = "PROPOSALFLOW_ASSIGNMENT_TRAINING_FILE"
M = TypeVar("M", bound=BaseModel)
LIST_SEPARATORS = re.compile(r"\s*[|、;；]\s*")
"""How a CSV cell lists several values (keywords, units, suggestions): 土地|耕地, 土地、耕地 or 土地;耕地."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a city's files: where (file, line, field) and what."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}, line {self.line}"
        return f"{where}, {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class CityError(ValueError):
    """The city's files cannot be used; ``problems`` says every reason, each with its file, line and field."""

    def __init__(self, source: Path, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        lines = [f"the city in {source} has {len(self.problems)} problem(s):", *(f"  {p}" for p in self.problems)]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class City:
    """A checked city: its policy (and the file's text), its catalog and rules, its training data."""

    policy: Policy
    policy_text: str
    table: RoutingTable
    labelled: list[LabelledProposal]


# Records with where they came from --------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One record of a file (a unit, a rule…) as data, with the lines of its fields."""

    file: str
    path: str
    """Where in the file: ``units[3]`` in YAML, empty in CSV (a row is a record)."""
    data: dict[str, Any]
    line: int
    field_lines: dict[str, int]

    def where(self, loc: Sequence[int | str] = ()) -> tuple[int, str]:
        """(line, field) of the field at ``loc`` in this record."""
        field = _format_loc(loc)
        first = str(loc[0]) if loc else ""
        full = f"{self.path}.{field}" if self.path and field else (self.path or field)
        return self.field_lines.get(first, self.line), full


def _format_loc(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _message(error: Any) -> str:
    kind, message = error["type"], str(error["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return "unknown field"
    value = error.get("input")
    if kind not in ("missing", "value_error") and isinstance(value, (str, int, float, bool)):
        message += f" (got {value!r})"
    return message


def _validated(model: type[M], record: Record, problems: list[Problem]) -> M | None:
    try:
        return model.model_validate(record.data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            line, field = record.where(tuple(error["loc"]))
            problems.append(Problem(record.file, line, field, _message(error)))
        return None


def _yaml(path: Path, problems: list[Problem]) -> tuple[Any, yaml.Node | None]:
    """The file's data and its node tree (for lines); (None, None) after a problem."""
    try:
        loader = yaml.SafeLoader(path.read_text(encoding="utf-8"))
        try:
            node = loader.get_single_node()
            return (loader.construct_document(node) if node is not None else None), node
        finally:
            loader.dispose()
    except UnicodeDecodeError:
        problems.append(Problem(path.name, None, "", "not UTF-8 text"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problems.append(Problem(path.name, mark.line + 1 if mark else None, "", f"not valid YAML: {exc}"))
    return None, None


def _key_lines(node: yaml.Node | None) -> dict[str, int]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(key.value): key.start_mark.line + 1 for key, _ in node.value}


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        return next((value for k, value in node.value if k.value == key), None)
    return None


def _yaml_records(path: Path, data: Any, node: yaml.Node | None, key: str | None) -> Iterator[Record]:
    """The records of a YAML list, bare or under ``key`` of a mapping."""
    items = data.get(key) if key is not None and isinstance(data, dict) else data
    items_node = _child(node, key) if key is not None and isinstance(data, dict) else node
    nodes = items_node.value if isinstance(items_node, yaml.SequenceNode) else []
    for index, item in enumerate(items if isinstance(items, list) else []):
        item_node = nodes[index] if index < len(nodes) else None
        line = item_node.start_mark.line + 1 if item_node is not None else 1
        prefix = f"{key}[{index}]" if key is not None and isinstance(data, dict) else f"[{index}]"
        yield Record(path.name, prefix, item if isinstance(item, dict) else {}, line, _key_lines(item_node))


def _csv_records(path: Path, lists: Sequence[str], problems: list[Problem]) -> list[Record]:
    """The rows of a CSV file (UTF-8, a BOM allowed) as records; ``lists`` are the columns of several values."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        problems.append(Problem(path.name, None, "", "not UTF-8 text (save the sheet as CSV UTF-8)"))
        return []
    reader = csv.DictReader(io.StringIO(text))
    records = []
    for row in reader:
        if None in row:
            problems.append(
                Problem(
                    path.name, reader.line_num, "", "more cells than the header has columns (quote a cell with a comma)"
                )
            )
            continue
        data: dict[str, Any] = {}
        for column, cell in row.items():
            value = (cell or "").strip()
            if column in lists:
                data[column] = [part for part in LIST_SEPARATORS.split(value) if part]
            elif column == "active":
                data[column] = value.lower() not in ("false", "no", "0", "否")
            elif value:
                data[column] = value
        lines = dict.fromkeys(data, reader.line_num)
        records.append(Record(path.name, "", data, reader.line_num, lines))
    return records


def _one_of(source: Path, stem: str, problems: list[Problem], *, required: bool) -> Path | None:
    found = [path for path in (source / f"{stem}.yaml", source / f"{stem}.csv") if path.exists()]
    if len(found) > 1:
        problems.append(Problem(found[1].name, None, "", f"both {stem}.yaml and {stem}.csv: keep one"))
    if not found and required:
        problems.append(Problem(f"{stem}.yaml", None, "", f"missing: write {stem}.yaml or {stem}.csv"))
    return found[0] if found else None


# Reading a city -----------------------------------------------------------------------------------


def read_city(source: Path) -> City:
    """The city in directory ``source``, checked; :class:`CityError` with every problem otherwise."""
    problems: list[Problem] = []
    if not source.is_dir():
        raise CityError(source, [Problem(str(source), None, "", "not a directory")])
    policy, policy_text = _read_policy(source / "policy.yaml", problems)

    units_file = _one_of(source, "units", problems, required=True)
    units_data, units_node = (
        _yaml(units_file, problems) if units_file and units_file.suffix == ".yaml" else (None, None)
    )
    broken_units: list[Record] = []
    units = _section(units_file, units_data, units_node, "units", Unit, [], problems, failed=broken_units)

    leaders_file = _one_of(source, "leaders", problems, required=False)
    leaders: list[tuple[Leader, Record]]
    if leaders_file is not None:
        data, node = _yaml(leaders_file, problems) if leaders_file.suffix == ".yaml" else (None, None)
        leaders = _section(leaders_file, data, node, "leaders", Leader, [], problems)
    else:
        leaders = _section(units_file, units_data, units_node, "leaders", Leader, [], problems, optional=True)

    routing_file = _one_of(source, "routing", problems, required=not _has_rules(units_data))
    rules, defaults, fallback = _read_routing(
        routing_file or units_file, routing_file is None, units_data, units_node, problems
    )

    training_file = _one_of(source, "labelled_proposals", problems, required=False)
    labelled: list[tuple[LabelledProposal, Record]] = []
    if training_file is not None:
        data, node = _yaml(training_file, problems) if training_file.suffix == ".yaml" else (None, None)
        labelled = _section(training_file, data, node, None, LabelledProposal, ["suggestions", "co_units"], problems)

    broken = {str(record.data["id"]) for record in broken_units if record.data.get("id")}
    catalog = _check_together(policy, units, broken, leaders, rules, defaults, fallback, labelled, problems)
    if problems or policy is None or catalog is None:
        raise CityError(source, problems)
    return City(policy, policy_text, catalog, [item for item, _ in labelled])


def _read_policy(path: Path, problems: list[Problem]) -> tuple[Policy | None, str]:
    if not path.exists():
        problems.append(
            Problem("policy.yaml", None, "", "missing: the city's 办理规则 (see shared/policies/dongguan.yaml)")
        )
        return None, ""
    data, node = _yaml(path, problems)
    if data is None:
        return None, ""
    if not isinstance(data, dict):
        problems.append(Problem(path.name, 1, "", "expected a mapping of fields"))
        return None, ""
    lines = _key_lines(node)
    try:
        return Policy.model_validate(data), path.read_text(encoding="utf-8")
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            if not loc and error["type"] == "value_error":  # contradictions: "field, field: why"
                for text in _message(error).split("\n"):
                    fields, _, why = text.partition(": ")
                    first = fields.split(", ")[0]
                    problems.append(Problem(path.name, lines.get(first), fields, why))
            else:
                record = Record(path.name, "", data, 1, lines)
                line, field = record.where(loc)
                problems.append(Problem(path.name, line, field, _message(error)))
    return None, ""


def _section(
    path: Path | None,
    data: Any,
    node: yaml.Node | None,
    key: str | None,
    model: type[M],
    lists: list[str],
    problems: list[Problem],
    *,
    optional: bool = False,
    failed: list[Record] | None = None,
) -> list[tuple[M, Record]]:
    """The valid records of one kind, each with where it came from; the others become problems (and go
    to ``failed``)."""
    if path is None:
        return []
    if path.suffix == ".csv":
        records = _csv_records(path, lists, problems)
    else:
        if data is None:
            return []
        wrapped = isinstance(data, dict)
        if wrapped and key not in data:
            if not optional:
                problems.append(Problem(path.name, 1, key or "", f"missing: list the {key} under '{key}:'"))
            return []
        if not isinstance(data.get(key) if wrapped and key else data, list):
            problems.append(Problem(path.name, 1, key or "", "expected a list"))
            return []
        records = list(_yaml_records(path, data, node, key if wrapped else None))
    found = []
    for record in records:
        item = None
        if not record.data:
            problems.append(Problem(record.file, record.line, record.path, "expected a mapping of fields"))
        else:
            item = _validated(model, record, problems)
        if item is not None:
            found.append((item, record))
        elif failed is not None:
            failed.append(record)
    return found


def _has_rules(units_data: Any) -> bool:
    return isinstance(units_data, dict) and "fallback" in units_data


@dataclass(frozen=True)
class _Default:
    """A category's default unit (or, with no category, the fallback), with where it was written."""

    category: str
    unit: str
    line: int
    field: str
    file: str
    category_field: str = ""
    """Where the category was written, when not in ``field`` (routing.csv: its own column)."""


def _read_routing(
    path: Path | None,
    inside_units: bool,
    units_data: Any,
    units_node: yaml.Node | None,
    problems: list[Problem],
) -> tuple[list[tuple[RoutingRule, Record]], list[_Default], _Default | None]:
    """交办规则: keyword rules, category defaults, the fallback; from routing.yaml/.csv or units.yaml."""
    if path is None:
        return [], [], None
    if path.suffix == ".csv":
        return _routing_csv(path, problems)
    data, node = (units_data, units_node) if inside_units else _yaml(path, problems)
    if not isinstance(data, dict):
        if data is not None:
            problems.append(Problem(path.name, 1, "", "expected a mapping with rules, category_defaults and fallback"))
        return [], [], None
    allowed = {"rules", "category_defaults", "fallback"} | ({"units", "leaders"} if inside_units else set())
    lines = _key_lines(node)
    for unknown in sorted(set(data) - allowed):
        problems.append(
            Problem(
                path.name, lines.get(unknown), str(unknown), f"unknown field (allowed: {', '.join(sorted(allowed))})"
            )
        )
    rules = _section(path, data, node, "rules", RoutingRule, [], problems, optional=True)
    defaults_node = _child(node, "category_defaults")
    default_lines = _key_lines(defaults_node)
    defaults = [
        _Default(
            str(category), str(unit), default_lines.get(str(category), 1), f"category_defaults.{category}", path.name
        )
        for category, unit in (data.get("category_defaults") or {}).items()
    ]
    fallback = data.get("fallback")
    if fallback is None:
        problems.append(Problem(path.name, 1, "fallback", "missing: the unit that gets a proposal no rule matches"))
        return rules, defaults, None
    return rules, defaults, _Default("", str(fallback), lines.get("fallback", 1), "fallback", path.name)


def _routing_csv(
    path: Path, problems: list[Problem]
) -> tuple[list[tuple[RoutingRule, Record]], list[_Default], _Default | None]:
    """routing.csv: columns keywords, category, lead, co. A row with keywords is a keyword rule; with a
    category and no keywords, that category's default unit; with neither, the fallback."""
    rules: list[tuple[RoutingRule, Record]] = []
    defaults: list[_Default] = []
    fallbacks: list[_Default] = []
    for record in _csv_records(path, ["keywords", "co"], problems):
        data = dict(record.data)
        category = data.pop("category", None)
        if data.get("keywords"):
            rule = _validated(RoutingRule, Record(record.file, "", data, record.line, record.field_lines), problems)
            if rule is not None:
                rules.append((rule, record))
            continue
        if "lead" not in data:
            problems.append(Problem(path.name, record.line, "lead", "missing: the unit this row routes to"))
            continue
        where = _Default(category or "", data["lead"], record.line, "lead", path.name, "category")
        (defaults if category else fallbacks).append(where)
    if not fallbacks:
        problems.append(
            Problem(
                path.name,
                None,
                "lead",
                "no fallback row (keywords and category empty): the unit that gets a proposal no rule matches",
            )
        )
    for extra in fallbacks[1:]:
        problems.append(Problem(path.name, extra.line, "lead", "a second fallback row: keep one"))
    return rules, defaults, fallbacks[0] if fallbacks else None


def _check_together(
    policy: Policy | None,
    units: list[tuple[Unit, Record]],
    broken_units: set[str],
    leaders: list[tuple[Leader, Record]],
    rules: list[tuple[RoutingRule, Record]],
    defaults: list[_Default],
    fallback: _Default | None,
    labelled: list[tuple[LabelledProposal, Record]],
    problems: list[Problem],
) -> RoutingTable | None:
    """What no single record can check: unique ids, units and categories that exist. A unit whose own
    record has a problem (``broken_units``) is not reported again where it is named."""
    _unique([(u.id, r) for u, r in units], "id", "unit", problems)
    _unique([(leader.id, r) for leader, r in leaders], "id", "leader", problems)
    _unique([(p.id, r) for p, r in labelled], "id", "past proposal", problems)
    active = {unit.id for unit, _ in units if unit.active}
    catalog = ", ".join(sorted(active)) or "none"
    categories = policy.categories if policy is not None else None

    def known(unit: str, file: str, line: int, field: str) -> None:
        if unit not in active and unit not in broken_units:
            problems.append(Problem(file, line, field, f"{unit!r} is not an active unit of the catalog ({catalog})"))

    def known_in(unit: str, record: Record, loc: tuple[int | str, ...]) -> None:
        known(unit, record.file, *record.where(loc))

    def a_category(category: str, file: str, line: int, field: str) -> None:
        if categories is not None and category not in categories:
            listed = ", ".join(categories)
            problems.append(Problem(file, line, field, f"{category!r} is not a category of policy.yaml ({listed})"))

    for rule, record in rules:
        known_in(rule.lead, record, ("lead",))
        for index, unit in enumerate(rule.co):
            known_in(unit, record, ("co", index))
        if rule.lead in rule.co:
            line, field = record.where(("co",))
            problems.append(
                Problem(record.file, line, field, f"the lead unit {rule.lead} cannot also be a co-handling unit")
            )
    for default in defaults:
        known(default.unit, default.file, default.line, default.field)
        a_category(default.category, default.file, default.line, default.category_field or default.field)
    if fallback is not None:
        known(fallback.unit, fallback.file, fallback.line, fallback.field)
    for proposal, record in labelled:
        known_in(proposal.lead_unit, record, ("lead_unit",))
        for index, unit in enumerate(proposal.co_units):
            known_in(unit, record, ("co_units", index))
        a_category(proposal.category, record.file, *record.where(("category",)))
    if problems or fallback is None:
        return None
    return RoutingTable(
        units=[unit for unit, _ in units],
        leaders=[leader for leader, _ in leaders],
        rules=[rule for rule, _ in rules],
        category_defaults={d.category: d.unit for d in defaults},
        fallback=fallback.unit,
    )


def _unique(ids: list[tuple[str, Record]], field: str, what: str, problems: list[Problem]) -> None:
    first: dict[str, int] = {}
    for value, record in ids:
        line, where = record.where((field,))
        if value in first:
            problems.append(
                Problem(record.file, line, where, f"{what} {value} is already defined on line {first[value]}")
            )
        else:
            first[value] = line


# Writing a city -----------------------------------------------------------------------------------


def write_city(city: City, out: Path) -> dict[str, Path]:
    """Write the checked city into ``out``; the files by setting (``city.env`` names them too)."""
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    files = {
        POLICY_ENV_VAR: out / "policy.yaml",
        CATALOG_ENV_VAR: out / "catalog.yaml",
        TRAINING_ENV_VAR: out / "labelled_proposals.yaml",
    }
    files[POLICY_ENV_VAR].write_text(city.policy_text, encoding="utf-8")
    header = f"# {city.policy.city}: written by `proposalflow city init` from the city's files; edit those, not this.\n"
    catalog = city.table.model_dump(mode="json")
    ordered = {key: catalog[key] for key in ("units", "leaders", "rules", "category_defaults", "fallback")}
    files[CATALOG_ENV_VAR].write_text(header + _dump(ordered), encoding="utf-8")
    labelled = [item.model_dump(mode="json") for item in city.labelled]
    files[TRAINING_ENV_VAR].write_text(header + (_dump(labelled) if labelled else "[]\n"), encoding="utf-8")
    env = [header.rstrip("\n"), *(f"{name}={path}" for name, path in files.items())]
    (out / "city.env").write_text("\n".join(env) + "\n", encoding="utf-8")
    return files


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=120)
