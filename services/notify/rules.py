"""通知规则: the rules file that says who is told what, on which channels, in which words.

The file (services/notify/rules.yaml by default) is validated when notify starts: an unknown event
type, recipient kind, channel or event field is an error naming it, and every template must compile.
Templates are Jinja2 with StrictUndefined, so a misspelt variable fails loudly instead of printing
nothing.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.events import Event, message_class


class Channel(StrEnum):
    """渠道: where a notification goes."""

    INBOX = "inbox"  # 站内消息
    WEBHOOK = "webhook"
    EMAIL = "email"
    SMS = "sms"  # 短信


class RecipientKind(StrEnum):
    """Who a rule tells, resolved from the event and notify's record of the proposal."""

    PROPOSERS = "proposers"  # 提案者: first proposer and cosigners
    FIRST_PROPOSER = "first_proposer"  # 第一提案人
    COSIGNERS = "cosigners"  # 联名提案人
    LEAD_UNIT = "lead_unit"  # 主办单位
    CO_UNITS = "co_units"  # 会办单位
    SPLIT_UNITS = "split_units"  # 分办单位 other than the lead
    REPLYING_UNITS = "replying_units"  # the units that reply: lead and split units
    REMOVED_UNITS = "removed_units"  # 改办后不再办理的单位: units the event took the proposal from
    EVENT_UNIT = "event_unit"  # the unit(s) the event names (disputed, dispute upheld, deadline…)
    EVALUATING_SIGNER = "evaluating_signer"  # the signer the event names (evaluation deadline)
    SUPERVISING_LEADER = "supervising_leader"  # 督办领导
    LEADING_LEADER = "leading_leader"  # 领办领导
    COMMITTEE = "committee"  # 提案委员会
    DISPATCHER = "dispatcher"  # 交办机关


class ChannelTemplate(BaseModel):
    """A channel's own words for a rule (e.g. a shorter SMS); what it leaves out falls back to the rule's."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = None
    body: str | None = None


class Rule(BaseModel):
    """One rule: when `event` happens (and its fields match `when`), tell `to` on `channels`."""

    model_config = ConfigDict(extra="forbid")

    event: str
    when: dict[str, str | int | bool] = Field(default_factory=dict)
    to: list[str] = Field(min_length=1)
    channels: list[Channel] = Field(min_length=1)
    title: str = Field(min_length=1)
    body: str = Field(min_length=1)
    templates: dict[Channel, ChannelTemplate] = Field(default_factory=dict)

    @field_validator("event")
    @classmethod
    def _known_event(cls, value: str) -> str:
        found = message_class(value)
        if found is None or not issubclass(found, Event):
            raise ValueError(f"unknown event type {value!r}: it is not an event in shared/events.py")
        return value

    @field_validator("to")
    @classmethod
    def _known_recipients(cls, value: list[str]) -> list[str]:
        known = {kind.value for kind in RecipientKind}
        for kind in value:
            if kind not in known:
                raise ValueError(f"unknown recipient kind {kind!r}; expected one of {', '.join(sorted(known))}")
        return value

    @model_validator(mode="after")
    def _when_names_fields(self) -> Rule:
        event_class = message_class(self.event)
        assert event_class is not None
        for name in self.when:
            if name not in event_class.model_fields:
                raise ValueError(f"`when` names {name!r}, which is not a field of {self.event}")
        return self

    def recipient_kinds(self) -> list[RecipientKind]:
        return [RecipientKind(kind) for kind in self.to]


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(min_length=1)


class RulesError(ValueError):
    """The rules file is not usable; the message names the file, the rule and what is wrong."""


def local_date(value: date | datetime | str, timezone: str = "Asia/Shanghai") -> str:
    """A date as people read it here (2026年12月1日); a timestamp first moves to local time."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
    if isinstance(value, datetime):
        local = value.astimezone(ZoneInfo(timezone))
        return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}"
    return f"{value.year}年{value.month}月{value.day}日"


def template_environment(timezone: str = "Asia/Shanghai") -> jinja2.Environment:
    """Plain text (no HTML escaping: inbox, SMS and email bodies are text), strict about names."""
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701 - plain text
    environment.filters["local_date"] = lambda value: local_date(value, timezone)
    environment.filters["names"] = lambda units: "、".join(unit["name"] for unit in units)
    return environment


class CompiledRule:
    """A validated rule with its templates compiled."""

    def __init__(self, rule: Rule, environment: jinja2.Environment) -> None:
        def compiled(source: str, where: str) -> jinja2.Template:
            try:
                return environment.from_string(source)
            except jinja2.TemplateSyntaxError as exc:
                raise RulesError(f"{where}: template error: {exc}") from exc

        self.rule = rule
        self.title = compiled(rule.title, "title")
        self.body = compiled(rule.body, "body")
        self.per_channel = {
            channel: (
                compiled(template.title, f"templates.{channel}.title") if template.title else self.title,
                compiled(template.body, f"templates.{channel}.body") if template.body else self.body,
            )
            for channel, template in rule.templates.items()
        }

    def matches(self, event_type: str, event: Event) -> bool:
        if event_type != self.rule.event:
            return False
        return all(getattr(event, name) == value for name, value in self.rule.when.items())

    def render(self, channel: Channel, context: dict[str, Any]) -> tuple[str, str]:
        title, body = self.per_channel.get(channel, (self.title, self.body))
        return title.render(context).strip(), body.render(context).strip()


def load_rules(path: Path, timezone: str = "Asia/Shanghai") -> list[CompiledRule]:
    """Read, validate and compile a rules file; :class:`RulesError` says what is wrong and where."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RulesError(f"{path}: cannot read the rules file: {exc}") from exc
    try:
        parsed = RulesFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']} (got {error['input']!r})"
            for error in exc.errors()
        )
        raise RulesError(f"{path}: {problems}") from exc
    environment = template_environment(timezone)
    compiled = []
    for index, rule in enumerate(parsed.rules):
        try:
            compiled.append(CompiledRule(rule, environment))
        except RulesError as exc:
            raise RulesError(f"{path}: rules.{index} ({rule.event}) {exc}") from exc
    return compiled
