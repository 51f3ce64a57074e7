"""The command path every service shares, through both doors (HTTP and the inbound Kafka topics).

- The errors a use case raises: :class:`RuleViolation` (422), :class:`StateConflict` (409),
  :class:`NotYours` (403), :class:`NotFound` (404); each rule names itself (`rule`), so the person
  refused learns which rule refused them.
- :func:`problem_for`: the one mapping of those errors to RFC 9457 problem+json.
- :class:`CommandRunner`: one HTTP write in one transaction, with `Idempotency-Key` replay; the
  request's fingerprint is its method, path and body, so a key reused for another request is refused.
- :class:`InboundDoor`: the checks of a command on an inbound topic (type, source, the source's own topic,
  schema, role, forged actor); a command that fails them becomes a :class:`Refusal`, published as the
  service's `…rejected`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.auth import InboundAllowList, Principal
from shared.envelope import Envelope
from shared.errors import NotFound, NotYours, RuleViolation, StateConflict
from shared.events import Actor, Command, Message, Rejection, Role
from shared.http import Problem, remember_idempotent, replay_idempotent, request_fingerprint

__all__ = [
    "CommandRunner",
    "InboundDoor",
    "NotFound",
    "NotYours",
    "Refusal",
    "RuleViolation",
    "StateConflict",
    "named_proposal",
    "problem_for",
    "rejection",
]


def problem_for(exc: RuleViolation) -> Problem:
    """403 for another's item, 409 for the wrong state, 422 for any other rule; `errors` names the rule."""
    status = 403 if isinstance(exc, NotYours) else 409 if isinstance(exc, StateConflict) else 422
    title = {403: "Forbidden", 409: "Conflict", 422: "Request refused"}[status]
    return Problem(status, title, exc.message, errors=[{"rule": exc.rule, "message": exc.message}])


# HTTP: one write, once per Idempotency-Key -----------------------------------------------------------

Missing = str | Callable[[NotFound], str]
"""The 404 detail of a use case that found nothing: a text, or one made from the :class:`NotFound`."""

Action = Callable[[AsyncConnection], Awaitable[Any]]


def _detail(missing: Missing, exc: NotFound) -> str:
    return missing if isinstance(missing, str) else missing(exc)


def fingerprint(request: Request, body: BaseModel | dict[str, Any] | None) -> str:
    """What makes two requests the same request: method, path and the validated body (a model as the
    route read it, defaults included; or the fields a partial update sets)."""
    content = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    return request_fingerprint([request.method, request.url.path, content])


class CommandRunner:
    """Runs a service's writes: one transaction, the use case's errors as problems, and an
    `Idempotency-Key` answered with the first answer (stored in the same transaction as the effect)."""

    def __init__(
        self, transaction: Callable[[], AbstractAsyncContextManager[AsyncConnection]], metadata: MetaData
    ) -> None:
        self.transaction = transaction
        self.metadata = metadata

    async def once(
        self,
        request: Request,
        principal: Principal,
        key: str | None,
        body: BaseModel | dict[str, Any] | None,
        action: Action,
        *,
        missing: Missing,
        status: int = 200,
        headers: Callable[[Any], dict[str, str]] | None = None,
    ) -> Response:
        """A POST: replay a repeated key, else act and remember the answer under the key."""
        digest = fingerprint(request, body)
        async with self.transaction() as conn:
            replay = await replay_idempotent(conn, self.metadata, principal.id, key, digest)
            if replay is not None:
                return replay
            result = await decide(action, conn, missing)
            await remember_idempotent(conn, self.metadata, principal.id, key, digest, status, result)
        return JSONResponse(result, status_code=status, headers=headers(result) if headers else None)

    async def run(self, action: Action, *, missing: Missing) -> Any:
        """A write without a key (PATCH, PUT, DELETE: repeating them is harmless)."""
        async with self.transaction() as conn:
            return await decide(action, conn, missing)


async def decide(action: Action, conn: AsyncConnection, missing: Missing) -> Any:
    """Run a use case; what it refuses becomes the problem the caller reads."""
    try:
        return await action(conn)
    except NotFound as exc:
        raise Problem(404, "Not found", _detail(missing, exc)) from exc
    except RuleViolation as exc:
        raise problem_for(exc) from exc


# Kafka: the inbound command topics ------------------------------------------------------------------


class Refusal(Exception):
    """Why an inbound command is not carried out: published as the owning service's `…rejected`."""

    def __init__(self, reason: str, errors: Sequence[dict[str, Any]] | None = None, actor: Actor | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = list(errors or [])
        self.actor = actor

    @classmethod
    def of(cls, exc: RuleViolation, actor: Actor) -> Refusal:
        return cls(exc.message, [{"rule": exc.rule, "message": exc.message}], actor)


class InboundDoor:
    """The checks every command on an inbound topic passes, in order: a known type, an allow-listed
    source, a valid body, a role that may send it (the service's `authorise`), an actor the source may
    speak for.

    Several services may read one topic, each carrying out its own commands: a handler first asks
    :meth:`ignores`, and one door per topic (`answers_unknown`) refuses a type no service knows."""

    def __init__(
        self,
        topic: str,
        commands: Sequence[type[Command]],
        allowed_sources: Sequence[str],
        *,
        sends: str,
        noun: str,
        answers_unknown: bool = True,
    ) -> None:
        self.topic = topic
        self.commands = {command.TYPE: command for command in commands}
        self.allow_list = InboundAllowList(allowed_sources)
        self.sends = sends
        self.noun = noun
        self.answers_unknown = answers_unknown
        self.elsewhere = [
            cls.TYPE
            for cls in Message.registry().values()
            if issubclass(cls, Command) and cls.TOPIC == topic and cls.TYPE not in self.commands
        ]
        """The commands on this topic another service carries out: not this door's to answer."""

    def ignores(self, envelope: Envelope) -> bool:
        """A command for another service on a shared topic, or (unless this door `answers_unknown`) of a
        type nobody carries out: the door leaves it alone, so a command is answered once, by its owner."""
        if envelope.type in self.commands:
            return False
        return envelope.type in self.elsewhere or not self.answers_unknown

    def admit(self, envelope: Envelope, authorise: Callable[[Any], str | None], *, topic: str | None) -> Any:
        """The command, validated; or :class:`Refusal` saying what was wrong.

        `topic` is the one the command was read from: required, so no door forgets it (None only where
        there is no topic, e.g. a unit test). With it, a source that belongs on another system's topic is
        refused, and the command's actor comes back stamped with the topic (`Actor.via`): every event it
        causes names the system it came through."""
        command_class = self.commands.get(envelope.type)
        if command_class is None:
            known = [*self.commands, *self.elsewhere]
            send = known[0] if len(known) == 1 else f"one of {', '.join(known)}"
            raise Refusal(f"unknown command type {envelope.type!r} on {self.topic}; send {send}")
        if not self.allow_list.admits(envelope.source):
            raise Refusal(
                f"source {envelope.source!r} is not allowed to {self.sends}; "
                "ask the proposal office to add it to PROPOSALFLOW_ALLOWED_SOURCES"
            )
        elsewhere = self.allow_list.wrong_topic(envelope.source, topic, self.topic) if topic else None
        if elsewhere:
            raise Refusal(f"forged source: {elsewhere}")
        try:
            command = command_class.model_validate(envelope.data)
        except ValidationError as exc:
            errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
            summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
            raise Refusal(f"invalid {self.noun}: {summary}", errors) from exc
        refused = authorise(command)
        if refused:
            raise Refusal(refused, actor=command.actor)
        forged = self.allow_list.forged_actor(envelope.source, command.actor)
        if forged:
            raise Refusal(f"forged actor: {forged}", actor=command.actor)
        if command.actor.via is not None:
            raise Refusal("actor.via is set by ProposalFlow from the topic a command arrives on; leave it out")
        if topic:
            command = command.model_copy(update={"actor": command.actor.model_copy(update={"via": topic})})
        return command


def rejection(kind: type[Rejection], envelope: Envelope, refusal: Refusal, proposal_id: str) -> Rejection:
    """The `…rejected` event answering a refused command: its id, source and type, and the reason."""
    return kind(
        proposal_id=proposal_id,
        actor=refusal.actor or Actor(id=envelope.source[:200], role=Role.SYSTEM),
        correlation_id=envelope.correlation_id or envelope.id,
        command_id=envelope.id,
        command_source=envelope.source,
        command_type=envelope.type,
        reason=refusal.reason,
        errors=refusal.errors,
    )


def named_proposal(envelope: Envelope) -> str:
    """The proposal a refused command is about: the one its data names, else its subject, else its id."""
    named = envelope.data.get("proposal_id") if isinstance(envelope.data, dict) else None
    return str(named or envelope.subject or envelope.id)[:100]
