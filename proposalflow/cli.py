"""The `proposalflow` command: run a service, create topics, migrate, issue a development token,
export the event schemas and AsyncAPI documents, verify and export the audit log, list and replay dead
letters, list and retry outbox rows the relay could not publish, onboard a city from its files."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import ValidationError

from shared import events
from shared.settings import PORTAL, SERVICES, CommonSettings, service_settings

app = typer.Typer(
    help="ProposalFlow: CPPCC proposal handling (政协提案办理) on Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
schemas_app = typer.Typer(help="Event schemas and AsyncAPI documents.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead letters: list them, replay them once the cause is fixed.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")
app.add_typer(dlq_app, name="dlq")
outbox_app = typer.Typer(
    help="The outbox: rows the relay could never publish (failed), and sending them again.", no_args_is_help=True
)
app.add_typer(outbox_app, name="outbox")
settings_app = typer.Typer(
    help="Configuration: the reference generated from the settings models.", no_args_is_help=True
)
app.add_typer(settings_app, name="settings")
audit_app = typer.Typer(help="The audit log (审计日志): verify the hash chain, export entries.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _check_service(service: str) -> str:
    if service not in SERVICES:
        raise typer.BadParameter(f"unknown service {service!r}; one of: {', '.join(SERVICES)}")
    return service


@app.command()
def run(
    service: Annotated[str, typer.Argument(help=f"One of: {', '.join((*SERVICES, PORTAL))}")],
    host: Annotated[str | None, typer.Option(help="Listen address (default from settings)")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default from settings)")] = None,
    migrate_first: Annotated[bool, typer.Option("--migrate/--no-migrate", help="Migrate before start")] = True,
) -> None:
    """Run one service: its HTTP API and its Kafka consumers, in this process (or the web portal 门户)."""
    import uvicorn

    from shared.observability import configure_logging

    if service != PORTAL:
        _check_service(service)
    try:
        common = CommonSettings()
    except ValidationError as exc:
        # A refused configuration is the operator's to fix: say what, without a traceback.
        reasons = "; ".join(str(error["msg"]).removeprefix("Value error, ") for error in exc.errors())
        typer.echo(f"{service} refuses to start: {reasons}", err=True)
        raise typer.Exit(2) from exc
    settings = service_settings(service)
    configure_logging(service, common.log_level, log_format=common.log_format)
    if migrate_first and service != PORTAL:
        from shared.migrate import upgrade

        upgrade(service)
    uvicorn.run(
        f"services.{service}.app:app",
        host=host or settings.http_host,
        port=port or settings.http_port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )


@app.command()
def migrate(
    service: Annotated[str, typer.Argument(help="A service, or 'all'")] = "all",
) -> None:
    """Bring the service databases up to the latest migration."""
    from shared.migrate import upgrade

    targets = SERVICES if service == "all" else (_check_service(service),)
    for name in targets:
        upgrade(name)
        typer.echo(f"{name}: migrated ({service_settings(name).database_url})")


@topics_app.command("create")
def topics_create(
    partitions: Annotated[int | None, typer.Option(help="Partitions per topic (default from settings: 12)")] = None,
    replication_factor: Annotated[int | None, typer.Option(help="Replication factor")] = None,
    system_topic: Annotated[
        list[str] | None,
        typer.Option(
            "--system-topic",
            help="Also an outside system's own inbound topic, e.g. proposalflow.unit-reports.oa-dg-fgj (repeatable)",
        ),
    ] = None,
) -> None:
    """Create every ProposalFlow topic, dead-letter topics included, and the outside systems' own inbound
    topics named; existing ones are left alone."""
    from shared.topics import create_topics, outside_system_topic

    for name in system_topic or []:
        try:
            outside_system_topic(name)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--system-topic") from exc
    common = CommonSettings()
    created = asyncio.run(
        create_topics(
            common,
            partitions or common.topic_partitions,
            replication_factor or common.topic_replication_factor,
            system_topic or [],
        )
    )
    for name, state in created.items():
        typer.echo(f"{name}: {state}")
    refused = [name for name, state in created.items() if state.startswith("refused")]
    if refused:
        typer.echo(f"could not create {len(refused)} topics: {', '.join(refused)}", err=True)
        raise typer.Exit(1)


@dlq_app.command("list")
def dlq_list(
    service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}")],
    limit: Annotated[int, typer.Option(help="At most this many")] = 100,
) -> None:
    """Show a service's dead letters: where each came from and why it failed."""
    from shared.dlq import list_dead_letters

    letters = asyncio.run(list_dead_letters(CommonSettings(), _check_service(service), limit))
    for letter in letters:
        line = f"{letter.partition}@{letter.offset}\t{letter.original_topic}\t{letter.failed_at}\t{letter.error}"
        if letter.omitted:
            line += f"\t[left out: {', '.join(letter.omitted)}; the original is at {letter.original_at}]"
        typer.echo(line)
    typer.echo(f"{len(letters)} dead letter(s)")


@dlq_app.command("replay")
def dlq_replay(
    service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}")],
    limit: Annotated[int | None, typer.Option(help="At most this many (default: all)")] = None,
) -> None:
    """Send a service's dead letters back to their original topics (once the cause is fixed). A letter
    too large to have been written whole is replayed from its original in the source topic; if that is
    gone, replay stops there and says where it was."""
    from shared.dlq import OriginalUnavailable, replay

    try:
        sent = asyncio.run(replay(CommonSettings(), _check_service(service), limit=limit))
    except OriginalUnavailable as exc:
        typer.echo(f"replay stopped: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"replayed {sent} dead letter(s) of {service}")


async def _with_outbox(service: str, action: Callable[[Any, Any], Awaitable[Any]]) -> Any:
    """Run `action(engine, metadata)` against the service's database (its settings' URL)."""
    from shared.db import create_engine

    metadata = importlib.import_module(f"services.{service}.store").metadata
    engine = create_engine(service_settings(service).database_url)
    try:
        return await action(engine, metadata)
    finally:
        await engine.dispose()


@outbox_app.command("failed")
def outbox_failed(
    service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}")],
    limit: Annotated[int, typer.Option(help="At most this many")] = 100,
) -> None:
    """Show the service's outbox rows that the relay marked failed (refused for good by the broker: too
    large for the topic, not authorized) and why; they are unsent, and the rows behind them went on."""
    from shared.outbox import failed_rows

    rows = asyncio.run(
        _with_outbox(_check_service(service), lambda engine, metadata: failed_rows(engine, metadata, limit))
    )
    for row in rows:
        typer.echo(
            f"{row.id}\t{row.failed_at.isoformat()}\t{row.topic}\t{row.type}\tproposal {row.key}\t"
            f"{row.value_bytes} bytes\t{row.error}"
        )
    typer.echo(f"{len(rows)} failed outbox row(s)")
    if rows:
        typer.echo(f"once the cause is fixed: proposalflow outbox retry {service} [--id N]")


@outbox_app.command("retry")
def outbox_retry(
    service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}")],
    row_id: Annotated[int | None, typer.Option("--id", help="Only this row (default: every failed row)")] = None,
) -> None:
    """Clear the failed mark so the relay sends the rows again (once the cause is fixed: the topic's
    max.message.bytes raised, the ACL granted). If the cause is still there, they are marked failed again."""
    from shared.outbox import retry_failed_rows

    cleared = asyncio.run(
        _with_outbox(_check_service(service), lambda engine, metadata: retry_failed_rows(engine, metadata, row_id))
    )
    if row_id is not None and not cleared:
        typer.echo(f"no failed outbox row {row_id} in {service}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{cleared} outbox row(s) of {service} will be sent again by its relay")


@app.command()
def token(
    role: Annotated[events.Role, typer.Option(help="Role of the principal")],
    sub: Annotated[str, typer.Option(help="Principal id")],
    unit: Annotated[str | None, typer.Option(help="Unit id, for the unit role")] = None,
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    hours: Annotated[float, typer.Option(help="Validity in hours")] = 12.0,
) -> None:
    """Print a development JWT (HS256, signed with PROPOSALFLOW_JWT_SECRET)."""
    from shared.auth import issue_token

    if role == events.Role.UNIT and not unit:
        raise typer.BadParameter("a unit token needs --unit")
    typer.echo(issue_token(CommonSettings(), subject=sub, role=role, unit=unit, name=name, ttl=timedelta(hours=hours)))


@app.command()
def ready(
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds")] = 300.0,
) -> None:
    """Wait until every service and the portal answer /readyz, then print the URLs, the demo logins and
    how to stop (`make run` does this beside the services)."""
    from services.portal.labels import DEMO_USERS
    from shared.ready import Login, banner, local_urls, wait_until_ready

    urls = local_urls()
    try:
        waiting = asyncio.run(wait_until_ready(urls, timeout))
    except KeyboardInterrupt:  # Ctrl-C at `make run` reaches us too: stopping is not an error
        raise typer.Exit(130) from None
    if waiting is None:
        raise typer.Exit(1)
    if waiting:
        typer.echo(f"not ready after {timeout:.0f}s: {', '.join(f'{name} ({urls[name]}/readyz)' for name in waiting)}")
        raise typer.Exit(1)
    logins = [Login(user.key, user.description) for user in DEMO_USERS]
    typer.echo(banner(urls, logins, CommonSettings().kafka_bootstrap_servers))


@app.command()
def demo() -> None:
    """Load a year of the demo city's proposals and play the story of a key proposal through the APIs
    of the running services (`make demo` starts them first); the portal then shows the year."""
    from services.portal.demo.__main__ import main

    asyncio.run(main())


def schema_documents() -> dict[Path, Any]:
    """Every generated document, by path under docs/: JSON Schema per event type, AsyncAPI per service,
    the event catalog and the policy's code tables."""
    from shared.codes import codes_markdown
    from shared.policy import default_policy

    documents: dict[Path, Any] = {}
    for ce_type, model in events.Message.registry().items():
        schema = model.model_json_schema()
        schema["$id"] = f"https://proposalflow.example/schemas/{ce_type}.json"
        schema["x-cloudevents-type"] = ce_type
        schema["x-kafka-topic"] = model.TOPIC
        documents[Path("schemas") / f"{ce_type}.json"] = schema
    for service in SERVICES:
        module = importlib.import_module(f"services.{service}.app")
        documents[Path("asyncapi") / f"{service}.json"] = module.runtime.asyncapi()
    documents[Path("event-catalog.md")] = event_catalog()
    documents[Path("policy-codes.md")] = codes_markdown(default_policy())
    return documents


def event_catalog() -> str:
    """docs/event-catalog.md: every topic, who writes it, and every type on it with its fields."""
    lines = [
        "# Event catalog",
        "",
        "Generated from `shared/events.py` by `proposalflow schemas export`; do not edit by hand.",
        "Envelope: CloudEvents 1.0, binary mode (`ce_*` headers, JSON data), Kafka key = proposal id;",
        "structured mode (`application/cloudevents+json`) is accepted wherever a service receives.",
        "JSON Schema of each type: `docs/schemas/<type>.json`; AsyncAPI per service: `docs/asyncapi/`;",
        "codes: `docs/policy-codes.md`; how to integrate: `docs/integration.md`.",
        "",
    ]
    shapes: dict[str, Any] = {}
    for topic in [*events.INBOUND_TOPICS, *events.EVENT_TOPICS]:
        lines += [
            f"## `{topic}`",
            "",
            f"Written by: {events.TOPIC_WRITERS[topic]}.",
            "",
            "| type | meaning | fields |",
            "|---|---|---|",
        ]
        for model in events.messages_on(topic):
            doc = (model.__doc__ or "").strip().splitlines()[0]
            lines.append(f"| `{model.TYPE}` | {doc} | {catalog_fields(model, shapes)} |")
        lines.append("")
    lines += catalog_shapes(shapes)
    lines += unit_door_notes()
    lines += ["## Actions without an event door", ""]
    lines += [f"- {action}." for action in events.HTTP_ONLY_ACTIONS]
    lines += [
        "",
        "These are the CPPCC office's own steps, taken in ProposalFlow's own screens: they have no command event.",
        "",
    ]
    lines += [
        "## Dead letters",
        "",
        "`proposalflow.dlq.<service>`: a record that can never be processed, as it came, with the headers",
        "`x-dlq-error`, `x-dlq-consumer`, `x-dlq-original-topic`, `x-dlq-original-partition`,",
        "`x-dlq-original-offset`, `x-dlq-attempts`, `x-dlq-failed-at`.",
        "",
        "A dead letter over the producers' `max_request_size` is sent smaller: first `x-dlq-error` is trimmed,",
        "then the value is left out (null) with `x-dlq-value-omitted` (its size in bytes) and",
        "`x-dlq-value-sha256`, then the original headers (`x-dlq-headers-omitted`: how many) and the key",
        "(`x-dlq-key-omitted`: its size). The original stays in its topic at the offset named;",
        "`proposalflow dlq replay` fetches it from there.",
        "",
    ]
    return "\n".join(lines)


UNITS_IN_THE_CATALOG = [
    "## Units: an object in the assignment events, a bare id elsewhere",
    "",
    'The assignment events name a unit (承办单位) as `UnitRef` `{"id", "name"}` (`lead_unit`, `co_units`,',
    "`split_units`, `unit`, `units`). Commands and the progress events carry the bare unit id (`unit`,",
    '`owner_unit`, an actor\'s `unit`): send `"dg-fgj"`, not an object; it is the `id` of the `UnitRef`.',
    "",
]


def catalog_fields(model: type[events.Message], shapes: dict[str, Any]) -> str:
    """`name`: type for every field of a model (`?` after an optional one); the named shapes it uses
    are gathered into `shapes` for the catalog's shapes section."""
    schema = model.model_json_schema()
    definitions = schema.get("$defs", {})
    shapes.update(definitions)
    required = set(schema.get("required", []))
    return ", ".join(
        f"`{name}`{'' if name in required else '?'}: {_type_of(prop)}{_what(prop)}"
        for name, prop in schema["properties"].items()
    )


def _what(schema: dict[str, Any]) -> str:
    """What a plain string field holds when its description says: a bare unit id, or a code."""
    description = schema.get("description", "")
    if description == events.UNIT_ID:
        return " (bare unit id)"
    if events.UNIT_REF in description:
        return ' (`{"id", "name"}`)'
    if events.POLICY_CODES in description:
        return " (code, docs/policy-codes.md)"
    return ""


def _type_of(schema: dict[str, Any]) -> str:
    """A JSON Schema type as the catalog writes it: string, date, list[UnitRef], `a` / `b`, … or null."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(_type_of(branch) for branch in schema["anyOf"])
    if "const" in schema:
        return f"`{schema['const']}`"
    if "enum" in schema:
        return " / ".join(f"`{value}`" for value in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list[{_type_of(schema.get('items', {}))}]"
    if kind == "string" and schema.get("format") in ("date", "date-time"):
        return str(schema["format"])
    return str(kind)


def catalog_shapes(shapes: dict[str, Any]) -> list[str]:
    """The objects and enumerations the event fields name, with their fields or values."""
    lines = [*UNITS_IN_THE_CATALOG, "## Shapes", "", "| shape | fields or values |", "|---|---|"]
    for name in sorted(shapes):
        shape = shapes[name]
        if "enum" in shape:
            content = " / ".join(f"`{value}`" for value in shape["enum"])
        else:
            required = set(shape.get("required", []))
            content = ", ".join(
                f"`{field}`{'' if field in required else '?'}: {_type_of(prop)}"
                for field, prop in shape.get("properties", {}).items()
            )
        lines.append(f"| `{name}` | {content} |")
    lines += ["", "Codes (categories, reply classes, grades, kinds): `docs/policy-codes.md`.", ""]
    return lines


UNIT_DOOR = [
    ("acceptance-submitted", "签收", "assignment", "POST /assignments/{id}/accept", "assignment.unit-report-rejected"),
    ("dispute-submitted", "异议", "assignment", "POST /assignments/{id}/dispute", "assignment.unit-report-rejected"),
    ("progress-submitted", "办理进展", "progress", "POST /proposals/{id}/progress", "unit-report.rejected"),
    ("co-opinion-submitted", "会办意见", "progress", "POST /proposals/{id}/co-opinions", "unit-report.rejected"),
    ("reply-submitted", "答复", "progress", "POST /proposals/{id}/replies", "unit-report.rejected"),
    (
        "measure-update-submitted",
        "举措落实",
        "progress",
        "POST /proposals/{id}/measures/{measure_id}",
        "unit-report.rejected",
    ),
]
"""The unit's commands on `proposalflow.unit-reports`: who carries each out, its HTTP twin, its refusal."""


def unit_door_notes() -> list[str]:
    """The event catalog's section on the unit door: owners, refusals, correlation, early commands."""
    lines = [
        "## The unit door (`proposalflow.unit-reports`)",
        "",
        "A unit's OA system does every step a unit owns by command. Each command is carried out by the",
        "service that owns its rule, through the same use case as its HTTP route (same rules, same answer),",
        "with the same `PROPOSALFLOW_ALLOWED_SOURCES` grants. Two services read the topic; each leaves the",
        "other's commands alone, and a type nobody knows is refused once, by progress.",
        "",
        "| command (`proposalflow.unit-report.….v1`) | step | carried out by | same as | refused with |",
        "|---|---|---|---|---|",
    ]
    for name, step, service, route, refusal in UNIT_DOOR:
        topic = events.ASSIGNMENTS if service == "assignment" else events.HANDLING
        lines.append(f"| `{name}` | {step} | {service} | `{route}` | `proposalflow.{refusal}.v1` on `{topic}` |")
    lines += [
        "",
        "- **Once per command id.** A command is carried out at most once per CloudEvents (`source`, `id`): a",
        "  redelivered or re-sent command with the same id does nothing more (and gets no second answer). To",
        "  try again after a refusal, send a new id.",
        "- **Correlation.** Every event a command causes (and its refusal) carries the command's `correlationid`",
        "  extension if it sent one, else the command's `id`: in the data as `correlation_id` and in the",
        "  `ce_correlationid` header. A refusal also names the command in `command_id`, `command_source` and",
        "  `command_type`, the rule broken in `errors[].rule`, and what to do in `reason`. Example: the OA sends",
        "  `acceptance-submitted` with id `c-42`; assignment publishes `proposalflow.assignment.accepted.v1` with",
        "  `correlation_id` `c-42`, or `proposalflow.assignment.unit-report-rejected.v1` with `command_id` `c-42`.",
        "- **Early commands are held.** Progress reads `assignment.assigned` from another topic than the unit's",
        "  commands, so a unit's first report may arrive before progress has seen its proposal assigned. Such a",
        "  command (the proposal unknown to progress, or known only as submitted or filed) is held; later",
        "  commands about the same proposal (`ce_subject`, which a command should set to the proposal id) wait",
        "  behind it, in order. As soon as progress has read `assignment.assigned` it is carried out (a sweep",
        "  every `PROPOSALFLOW_PROGRESS_EARLY_COMMAND_RETRY_S`, 5 s, covers a restart or a replica's); after",
        "  `PROPOSALFLOW_PROGRESS_EARLY_COMMAND_HOLD_S` (15 min) it is refused (rule `command_after_assignment`)",
        "  with a reason that says it may be sent again with a new id. Assignment's commands need no hold: the",
        "  unit learns of the assignment from assignment itself.",
        "- **The CPPCC office's own steps stay HTTP-only**: 审查立案 (filing), 交办 confirmation, 改办 and 维持,",
        "  办复审查 (reply review), key designation (重点提案). They are not an outside system's to send.",
        "",
    ]
    return lines


def _render(document: Any) -> str:
    if isinstance(document, str):
        return document
    return json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


@schemas_app.command("export")
def schemas_export(
    out: Annotated[Path, typer.Option(help="Folder to write into")] = DOCS,
    check: Annotated[bool, typer.Option(help="Only compare; exit 1 if a committed file is stale")] = False,
) -> None:
    """Write the JSON Schema of every event type and the AsyncAPI 3.0 document of every service."""
    stale: list[str] = []
    for relative, document in schema_documents().items():
        path = out / relative
        text = _render(document)
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(relative))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if check and stale:
        typer.echo("stale: " + ", ".join(stale) + " — run `proposalflow schemas export`", err=True)
        raise typer.Exit(1)
    typer.echo("schemas are up to date" if check else f"schemas written under {out}")


@settings_app.command("doc")
def settings_doc(
    out: Annotated[Path, typer.Option(help="File to write")] = DOCS / "configuration.md",
    check: Annotated[bool, typer.Option(help="Only compare; exit 1 if the committed file is stale")] = False,
) -> None:
    """Write docs/configuration.md: every environment variable of every service, from the settings models."""
    from proposalflow.configref import configuration_reference

    text = configuration_reference()
    if check:
        if not out.exists() or out.read_text(encoding="utf-8") != text:
            typer.echo(f"stale: {out} — run `proposalflow settings doc`", err=True)
            raise typer.Exit(1)
        typer.echo("configuration reference is up to date")
        return
    out.write_text(text, encoding="utf-8")
    typer.echo(f"configuration reference written to {out}")


@audit_app.command("verify")
def audit_verify(
    anchors: Annotated[
        Path | None,
        typer.Option("--anchors", help="An anchor file: also check every anchored chain head is still in the log."),
    ] = None,
) -> None:
    """Walk the audit hash chain: the first broken entry and why (exit 1), or that all N entries hold."""
    from services.audit import cli as audit_cli

    try:
        report = asyncio.run(audit_cli.verify(anchors))
    except (OSError, ValueError) as exc:
        typer.echo(f"cannot read the anchors: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
    if not report["ok"]:
        raise typer.Exit(1)


@audit_app.command("anchor")
def audit_anchor(
    to: Annotated[
        Path | None, typer.Option("--to", help="Append the anchor to this file (only if the head moved).")
    ] = None,
) -> None:
    """Print the audit chain head as an anchor line (锚定), to keep outside the database."""
    from services.audit import cli as audit_cli

    anchor = asyncio.run(audit_cli.anchor(to))
    if anchor is None:
        typer.echo("nothing new to anchor" if to is not None else "the audit log is empty", err=True)
        return
    typer.echo(anchor.line())


def _aware(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not an RFC 3339 time", param_hint=name) from exc
    if parsed.tzinfo is None:
        raise typer.BadParameter("give a timezone, e.g. 2026-01-01T00:00:00+08:00", param_hint=name)
    return parsed


@audit_app.command("export")
def audit_export(
    fmt: Annotated[Literal["jsonl", "csv"], typer.Option("--format", help="jsonl or csv")] = "jsonl",
    out: Annotated[Path | None, typer.Option(help="File to write (default: standard output)")] = None,
    actor: Annotated[str | None, typer.Option(help="Actor id")] = None,
    unit: Annotated[str | None, typer.Option(help="Acting unit")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="CloudEvents type, or invalid-record")] = None,
    subject: Annotated[str | None, typer.Option(help="Proposal id")] = None,
    topic: Annotated[str | None, typer.Option(help="Kafka topic")] = None,
    since: Annotated[str | None, typer.Option("--from", help="Event time from (RFC 3339, inclusive)")] = None,
    until: Annotated[str | None, typer.Option("--to", help="Event time to (RFC 3339, exclusive)")] = None,
) -> None:
    """Export audit entries, every field, as JSON Lines or CSV, read a page at a time."""
    from services.audit import cli as audit_cli
    from services.audit.store import EntryFilter

    selection = EntryFilter(
        actor=actor,
        unit=unit,
        type=type_,
        subject=subject,
        topic=topic,
        since=_aware(since, "--from"),
        until=_aware(until, "--to"),
    )
    with open(out, "w", encoding="utf-8", newline="") if out else contextlib.nullcontext(sys.stdout) as stream:
        written = asyncio.run(audit_cli.export(stream.write, fmt, selection))
    typer.echo(f"{written} entries exported", err=True)


deadlines_app = typer.Typer(
    help="Deadlines: recompute them after the working-day calendar changed.", no_args_is_help=True
)
app.add_typer(deadlines_app, name="deadlines")


@deadlines_app.command("recompute")
def deadlines_recompute(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would move; change nothing")] = False,
    reason: Annotated[
        str | None, typer.Option(help="Why, as the events and timelines say it (default: the declared years)")
    ] = None,
) -> None:
    """Recompute the deadlines of open proposals on the policy's calendar (after declaring a year's
    放假安排 in the policy): each moved deadline is saved by the service that owns it with a
    `…deadlines-changed` event in its outbox, which its relay publishes. Closed and answered proposals
    keep their dates; running it again changes nothing. Prints every deadline it moved."""
    from sqlalchemy.exc import DBAPIError

    from proposalflow.deadlines import recompute
    from shared.db import create_engine
    from shared.policy import PolicyError, load_policy

    try:
        policy = load_policy(CommonSettings().policy_file)
    except PolicyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc

    async def run() -> list[str]:
        progress = create_engine(service_settings("progress").database_url)
        assignment = create_engine(service_settings("assignment").database_url)
        try:
            report = await recompute(progress, assignment, policy, datetime.now(UTC), reason=reason, dry_run=dry_run)
        finally:
            await progress.dispose()
            await assignment.dispose()
        return report.lines()

    try:
        lines = asyncio.run(run())
    except DBAPIError as exc:
        typer.echo(
            f"cannot recompute: a service database is not reachable or not migrated ({exc.orig}); "
            "check PROPOSALFLOW_PROGRESS_DATABASE_URL and PROPOSALFLOW_ASSIGNMENT_DATABASE_URL, "
            "then `proposalflow migrate`",
            err=True,
        )
        raise typer.Exit(1) from exc
    for line in lines:
        typer.echo(line)


city_app = typer.Typer(help="Cities (城市接入): a city's policy, units, leaders, routing rules and training data.")
app.add_typer(city_app, name="city")


@city_app.command("init")
def city_init(
    source: Annotated[
        Path, typer.Argument(help="The city's files: policy.yaml, units, leaders, routing, labelled_proposals")
    ],
    out: Annotated[Path, typer.Option(help="Where to write the checked city (and its city.env)")] = Path(".data/city"),
    check: Annotated[bool, typer.Option(help="Only check the files; write nothing")] = False,
) -> None:
    """Check a city's files (every problem with its file, line and field) and write them where the services
    read them; `city.env` then names them (`set -a; . <out>/city.env; set +a` before `make run`)."""
    from proposalflow.city import CityError, read_city, write_city

    try:
        city = read_city(source)
    except CityError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    table = city.table
    summary = (
        f"{city.policy.city}: {len(table.units)} units, {len(table.leaders)} leaders, {len(table.rules)} routing "
        f"rules, {len(table.category_defaults)} category defaults, {len(city.labelled)} labelled proposals"
    )
    if check:
        typer.echo(f"{summary}: no problems")
        return
    files = write_city(city, out)
    typer.echo(f"{summary}; written to {out}:")
    for setting, path in files.items():
        typer.echo(f"  {setting}={path}")
    typer.echo(f"  (all in {out / 'city.env'})")


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
