"""Every setting a service reads, discovered from the settings models, and docs/configuration.md.

The models are the single source: :class:`~shared.settings.CommonSettings` (`PROPOSALFLOW_*`), the
per-service :class:`~shared.settings.ServiceSettings` (`PROPOSALFLOW_<SERVICE>_*`) and any other
`BaseSettings` a service defines in its own package (found by importing the service's app). The
deployment checks (compose, Kubernetes) use :func:`settings_of` so a new setting cannot be forgotten.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import itertools
import re
import textwrap
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from shared.settings import PORTAL, SERVICES, CommonSettings, ServiceSettings

# Values that must come from a Secret, never a ConfigMap: credentials, keys, and database URLs
# (which carry the database password).
_SECRET = re.compile(r"(SECRET|PASSWORD|HMAC_KEY|DATABASE_URL)$")

# ServiceSettings.service is set by the code from the service name, never from the environment.
_INTERNAL_FIELDS = frozenset({"service"})

# The portal has no database and consumes no topic: it never reads these ServiceSettings fields.
_UNREAD_BY_PORTAL = frozenset({"database_url", "consumer_group", "batch_window_ms"})


@dataclass(frozen=True, slots=True)
class Setting:
    """One environment variable, who reads it, its type, default and meaning."""

    env: str
    scope: str  # "common", or the service that reads it
    type: str
    default: str
    description: str

    @property
    def secret(self) -> bool:
        return is_secret(self.env)


def is_secret(env: str) -> bool:
    """Whether a variable holds a credential (goes to a Secret, never a ConfigMap)."""
    return bool(_SECRET.search(env))


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(str(arg) for arg in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        parts = [_type_name(arg) for arg in typing.get_args(annotation) if arg is not type(None)]
        return " \\| ".join(parts) + " (optional)"
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is not None:
        return "comma-separated list" if origin is list else getattr(origin, "__name__", str(origin))
    return getattr(annotation, "__name__", str(annotation))


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value: Any = info.default_factory()  # type: ignore[call-arg]
    else:
        value = info.default
    if value is None or value == "" or value == [] or (value == 0 and info.annotation is int):
        return "—"
    return f"`{value}`"


def _fields(model: type[BaseSettings], prefix: str, scope: str, skip: frozenset[str] = frozenset()) -> list[Setting]:
    settings = []
    for name, info in model.model_fields.items():
        if name in _INTERNAL_FIELDS or name in skip:
            continue
        settings.append(
            Setting(
                env=f"{prefix}{name}".upper(),
                scope=scope,
                type=_type_name(info.annotation),
                default=_default(info),
                description=" ".join((info.description or "").split()),
            )
        )
    return settings


def _subclasses(cls: type[Any]) -> list[type[Any]]:
    found: list[type[Any]] = []
    sub: type[Any]
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def service_models(service: str) -> list[type[BaseSettings]]:
    """The `BaseSettings` models defined in a service's own package (imported through its app)."""
    importlib.import_module(f"services.{service}.app")
    package = f"services.{service}."
    models = [cls for cls in _subclasses(BaseSettings) if cls.__module__.startswith(package)]
    return sorted(models, key=lambda cls: (cls.__module__, cls.__qualname__))


def settings_of(service: str) -> list[Setting]:
    """Everything `service` reads from the environment, common settings first."""
    found = _fields(CommonSettings, "PROPOSALFLOW_", "common")
    skip = _UNREAD_BY_PORTAL if service == PORTAL else frozenset()
    found += _fields(ServiceSettings, f"PROPOSALFLOW_{service}_", service, skip)
    for model in service_models(service):
        prefix = str(model.model_config.get("env_prefix", ""))
        found += _fields(model, prefix, service)
    unique: dict[str, Setting] = {}
    for setting in found:
        unique.setdefault(setting.env, setting)
    return list(unique.values())


def all_settings() -> list[Setting]:
    """Every setting of every service, each once."""
    unique: dict[str, Setting] = {}
    for service in (*SERVICES, PORTAL):
        for setting in settings_of(service):
            unique.setdefault(setting.env, setting)
    return list(unique.values())


_CALENDAR_FIELDS: dict[str, tuple[str, str]] = {
    "extra_holidays": ("list of dates", "Extra days off (放假) on top of everything else; they win."),
    "extra_workdays": (
        "list of dates",
        "Extra working days (调休上班), e.g. a 31 December worked for the next year's 2 January; they win.",
    ),
    "declared_years": (
        "mapping year → declared year",
        "Whole years as the State Council announced them (国务院办公厅放假安排通知). A declared year replaces "
        "the `holidays` package's table for that year and counts as official: deadlines in it are no longer "
        "provisional. Then run `proposalflow deadlines recompute` (docs/operations.md).",
    ),
}
_DECLARED_YEAR_FIELDS: dict[str, tuple[str, str]] = {
    "holidays": (
        "list of dates (at least one)",
        "Every day off of the year: 法定节假日 and the weekdays given off by 调休 (weekend days inside a "
        "holiday may be listed too). Each must be in the declared year, and listed once.",
    ),
    "workdays": (
        "list of dates",
        "调休上班: the Saturdays and Sundays worked. Each must be a Saturday or Sunday of the declared year, "
        "and not also a holiday.",
    ),
    "announcement": ("text", "Which notice this is (its title or number), for whoever checks the file later."),
}


def policy_calendar_reference() -> list[str]:
    """The policy's `calendar` section, field by field (a field added to the models without a line here fails)."""
    from shared.policy import CalendarOverrides, DeclaredYear

    for model, documented in ((CalendarOverrides, _CALENDAR_FIELDS), (DeclaredYear, _DECLARED_YEAR_FIELDS)):
        if set(model.model_fields) != set(documented):
            raise RuntimeError(f"document every field of {model.__name__} in proposalflow/configref.py")
    lines = [
        "## Policy: the working-day calendar (`calendar`)",
        "",
        "The policy file (`PROPOSALFLOW_POLICY_FILE`, default `shared/policies/dongguan.yaml`) is YAML, validated at",
        "start (a wrong field stops the service, naming the file, the field and the reason). Working days are",
        "mainland China's from the `holidays` package (法定节假日 and 调休), with these on top. A year the package",
        "has no State Council announcement for (today: after 2026) is provisional until declared here; deadlines",
        'in it are flagged `provisional_calendar` (docs/operations.md, "The holiday calendar").',
        "",
        "| field | type | meaning |",
        "|---|---|---|",
    ]
    lines += [f"| `calendar.{name}` | {kind} | {meaning} |" for name, (kind, meaning) in _CALENDAR_FIELDS.items()]
    lines += [
        f"| `calendar.declared_years.<year>.{name}` | {kind} | {meaning} |"
        for name, (kind, meaning) in _DECLARED_YEAR_FIELDS.items()
    ]
    lines += [
        "",
        "```yaml",
        "calendar:",
        "  declared_years:",
        "    2027:",
        "      announcement: 国务院办公厅关于2027年部分节假日安排的通知",
        "      holidays: [2027-01-01, 2027-02-05, 2027-02-06, 2027-02-07]   # … every day off of the year",
        "      workdays: [2027-01-31, 2027-02-20]                           # … every weekend day worked",
        "```",
        "",
    ]
    return lines


def configuration_reference() -> str:
    """docs/configuration.md, generated from the settings models."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the settings models by `proposalflow settings doc`; do not edit by hand.",
        "Every setting is an environment variable; an empty value means unset (the default applies).",
        "Settings marked **secret** belong in a Secret (Kubernetes) or a secret store, never in a ConfigMap.",
        "",
    ]
    settings = all_settings()
    for scope in ("common", *SERVICES, PORTAL):
        rows = [setting for setting in settings if setting.scope == scope]
        if not rows:
            continue
        title = "Every service" if scope == "common" else f"{scope}"
        lines += [f"## {title}", "", "| variable | type | default | meaning |", "|---|---|---|---|"]
        for setting in rows:
            meaning = setting.description + (" **secret**" if setting.secret else "")
            lines.append(f"| `{setting.env}` | {setting.type} | {setting.default} | {meaning.strip()} |")
        lines.append("")
    lines += policy_calendar_reference()
    lines += policy_reference()
    return "\n".join(lines)


def _attribute_docstrings(cls: type[Any]) -> dict[str, str]:
    """A class's attribute docstrings (the string right after `name: type = …`), by attribute."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    found: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            found[node.target.id] = " ".join(following.value.value.split())
    return found


def policy_reference() -> list[str]:
    """The policy file's fields (办理规则), with the Dongguan default and each field's own docstring."""
    from shared.policy import Policy, default_policy

    dongguan = default_policy().model_dump(mode="json")
    meaning = _attribute_docstrings(Policy)
    lines = [
        "## Policy file (办理规则)",
        "",
        "The YAML file `PROPOSALFLOW_POLICY_FILE` names (default: the packaged Dongguan policy,",
        "shared/policies/dongguan.yaml); unknown keys are refused. Periods are written `N months`, `N days`",
        "or `N working days`. Lists and mappings (reply classes, grades, categories…): see the file itself.",
        "",
        "| field | Dongguan | meaning |",
        "|---|---|---|",
    ]
    for name in Policy.model_fields:
        value = dongguan.get(name)
        shown = f"`{value}`" if isinstance(value, str | int | bool) else "see the file"
        lines.append(f"| `{name}` | {shown} | {meaning.get(name, '')} |")
    lines.append("")
    return lines
