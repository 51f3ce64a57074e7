"""One proposal driven through its lifecycle over the services' HTTP APIs, as the end-to-end tests, the
second city's and the compose stack's walk it: submit → file → the routing suggestion confirmed (交办) →
accepted (签收) → 会办意见 → reply drafted and approved → evaluated → a measure done, and the audit log read
back.

Each step checks the status its answer must have (the body in the message, so a failure shows what the
service said) and returns the body, for the test to assert what it is about. A wait polls until the
services' events have arrived and fails with the services' logs (`eventually`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from shared.events import Role
from tests.e2e.test_lifecycle import eventually
from tests.procs import Suite

Headers = dict[str, str]
Body = dict[str, Any]


@dataclass
class Walk:
    """A proposal's walk through one running suite: who acts (their `Authorization` headers), where (the
    suite's `urls`), and how long a wait may take. `pid` is the proposal, once submitted."""

    http: httpx.AsyncClient
    suite: Suite
    member: Headers
    committee: Headers
    dispatcher: Headers
    lead: Headers
    co: Headers
    wait_s: float = 60.0
    pid: str = ""

    @classmethod
    def of(
        cls,
        http: httpx.AsyncClient,
        suite: Suite,
        *,
        member: str = "m-wang",
        lead: tuple[str, str] = ("u-zrzyj", "dg-zrzyj"),
        co: tuple[str, str] = ("u-nyj", "dg-nyj"),
        committee: str = "c-office",
        dispatcher: str = "d-office",
        wait_s: float = 60.0,
        pid: str = "",
    ) -> Walk:
        """The people of a walk by their ids (`lead` and `co`: a unit's user and its unit)."""
        return cls(
            http,
            suite,
            member=suite.token(Role.MEMBER, member),
            committee=suite.token(Role.COMMITTEE, committee),
            dispatcher=suite.token(Role.DISPATCHER, dispatcher),
            lead=suite.token(Role.UNIT, lead[0], unit=lead[1]),
            co=suite.token(Role.UNIT, co[0], unit=co[1]),
            wait_s=wait_s,
            pid=pid,
        )

    def url(self, service: str, path: str) -> str:
        return f"{self.suite.urls[service]}{path}"

    async def post(self, service: str, path: str, body: Body, headers: Headers, status: int = 200) -> Body:
        """A POST that must answer `status`; its body."""
        response = await self.http.post(self.url(service, path), json=body, headers=headers)
        assert response.status_code == status, response.text
        return dict(response.json())

    async def until(self, check: Callable[[], Awaitable[Any]], what: str) -> Any:
        """What `check` returns once it is truthy."""
        return await eventually(check, what, self.suite, self.wait_s)

    # The steps, in the order they happen -----------------------------------------------------------

    async def submit(self, proposal: Body) -> Body:
        """提交, by the member: the proposal as intake took it."""
        created = await self.post("intake", "/proposals", proposal, self.member, status=201)
        self.pid = created["id"]
        return created

    async def file(self) -> Body:
        """立案, by the committee."""
        return await self.post("intake", f"/proposals/{self.pid}/review", {"decision": "file"}, self.committee)

    async def suggested(self, what: str = "a routing suggestion") -> Body:
        """The routing suggestion assignment made of the filed proposal."""

        async def suggestion() -> Body | None:
            response = await self.http.get(self.url("assignment", f"/assignments/{self.pid}"), headers=self.dispatcher)
            return dict(response.json()) if response.status_code == 200 else None

        return dict(await self.until(suggestion, what))

    async def confirm(self) -> Body:
        """交办 as suggested, by the dispatcher, once progress has the assignment: the assignment."""
        confirmed = await self.post("assignment", f"/assignments/{self.pid}/confirm", {}, self.dispatcher)
        await self.stage("assigned", what="the assignment in progress")
        return confirmed

    async def assign(self) -> Body:
        """The suggestion awaited and confirmed: the assignment."""
        await self.suggested()
        return await self.confirm()

    async def progress(self, check: Callable[[Body], bool], what: str) -> Body:
        """The proposal in progress once `check` holds of it."""

        async def seen() -> Body | None:
            response = await self.http.get(self.url("progress", f"/proposals/{self.pid}"), headers=self.committee)
            body = response.json() if response.status_code == 200 else None
            return body if body and check(body) else None

        return dict(await self.until(seen, what))

    async def stage(self, *stages: str, what: str) -> Body:
        """The proposal in progress once it is at one of `stages`."""
        return await self.progress(lambda body: body["stage"] in stages, what)

    async def accept(self) -> Body:
        """签收, by the lead unit: the proposal once progress handles it."""
        await self.post("assignment", f"/assignments/{self.pid}/accept", {}, self.lead)
        return await self.stage("handling", what="handling after the lead unit accepted")

    async def co_opinion(self, text: str) -> Body:
        """会办意见, by the co-handling unit."""
        return await self.post("progress", f"/proposals/{self.pid}/co-opinions", {"text": text}, self.co)

    async def answer(self, reply: Body) -> Body:
        """答复 drafted by the lead unit and approved by the committee (办复审查): the proposal answered."""
        drafted = await self.post("progress", f"/proposals/{self.pid}/replies", reply, self.lead)
        reply_id = drafted["replies"][-1]["id"]
        return await self.post(
            "progress", f"/proposals/{self.pid}/replies/{reply_id}/review", {"decision": "approve"}, self.committee
        )

    async def evaluate(self, handling_grade: str = "satisfied", result_grade: str = "satisfied") -> Body:
        """评价, by the member: the proposal as evaluated."""
        grades = {"handling_grade": handling_grade, "result_grade": result_grade}
        return await self.post("progress", f"/proposals/{self.pid}/evaluations", grades, self.member)

    async def measure_done(self, measure_id: str, note: str) -> Body:
        """举措落实, by the lead unit."""
        done = {"status": "done", "note": note}
        return await self.post("progress", f"/proposals/{self.pid}/measures/{measure_id}", done, self.lead)

    # What the others made of it -------------------------------------------------------------------

    async def told(self, headers: Headers, title: str) -> list[Body]:
        """The inbox notices of this proposal with this title, of whoever `headers` names (none yet: [])."""
        response = await self.http.get(self.url("notify", "/inbox"), headers=headers)
        items = response.json()["items"] if response.status_code == 200 else []
        return [item for item in items if item["proposal_id"] == self.pid and item["title"] == title]

    async def audited(self, last: str, what: str = "the whole story in the audit log") -> list[str]:
        """The types of the proposal's audit entries, once one of type `last` is among them."""

        async def types() -> list[str] | None:
            response = await self.http.get(self.url("audit", f"/audit/proposals/{self.pid}"), headers=self.committee)
            found = [entry["type"] for entry in response.json()["entries"]]
            return found if last in found else None

        return list(await self.until(types, what))

    async def verified(self) -> Body:
        """`GET /audit/verify`, as the committee reads it."""
        return dict((await self.http.get(self.url("audit", "/audit/verify"), headers=self.committee)).json())
