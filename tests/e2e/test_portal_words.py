"""No codes where words belong: the demo year loaded into the five services, every demo user (and the
public) signs in to the portal and opens every page it can reach by a link, and no page shows a raw
code: a stage, status, kind, grade, channel or any other enum value of the event models, the policy or
the services' domains; a reply class without its label; a unit's or leader's id instead of its name.

The codes come from the models themselves (every StrEnum and every Literal of their fields), so a new
kind or status that a page forgets to put in words fails here, naming the page and the code."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from enum import StrEnum
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

import services.assignment.domain
import services.intake.domain
import services.notify.rules
import services.progress.domain
import shared.events
import shared.policy
from services.portal.demo.story import Demo
from services.portal.labels import DEMO_USERS
from services.portal.settings import PortalSettings
from shared.events import Role
from shared.policy import default_policy
from shared.settings import CommonSettings
from tests.e2e.conftest import Suite

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

MODELS = (
    shared.events,
    shared.policy,
    services.intake.domain,
    services.assignment.domain,
    services.progress.domain,
    services.notify.rules,
)
# A code that reads as an identifier: single letters (the reply classes A, B, C) are checked apart.
IDENTIFIER = re.compile(r"[a-z][a-z0-9_]{2,}")


def _literals(annotation: Any) -> Iterator[str]:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        yield from (arg for arg in typing.get_args(annotation) if isinstance(arg, str))
    elif origin in (typing.Union, types.UnionType, list, tuple, set, frozenset, dict, typing.Annotated):
        for arg in typing.get_args(annotation):
            yield from _literals(arg)
    elif isinstance(annotation, type) and issubclass(annotation, StrEnum):
        yield from (member.value for member in annotation)


def raw_codes() -> dict[str, str]:
    """Every enum value of the event models, the policy and the services' domains, with where it is from."""
    codes: dict[str, str] = {}

    def add(code: str, origin: str) -> None:
        if IDENTIFIER.fullmatch(code):
            codes.setdefault(code, origin)

    for module in MODELS:
        for name, thing in vars(module).items():
            if isinstance(thing, type) and issubclass(thing, StrEnum) and thing.__module__ == module.__name__:
                for member in thing:
                    add(member.value, f"{module.__name__}.{name}")
            elif isinstance(thing, type) and issubclass(thing, BaseModel) and thing.__module__ == module.__name__:
                for field, info in thing.model_fields.items():
                    for code in _literals(info.annotation):
                        add(code, f"{module.__name__}.{name}.{field}")
            elif typing.get_origin(thing) is typing.Literal:
                for code in _literals(thing):
                    add(code, f"{module.__name__}.{name}")
    for grade in default_policy().evaluation_grades:
        add(grade.code, "policy evaluation_grades")
    return codes


class VisibleText(HTMLParser):
    """What a person reads on a page: text, and the placeholders and titles of fields; not the markup,
    the values forms send, scripts or styles."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.hidden = 0
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.hidden += 1
        found = dict(attrs)
        for shown in ("placeholder", "title", "alt"):
            if found.get(shown):
                self.parts.append(str(found[shown]))
        if tag == "a" and (href := found.get("href")):
            self.links.append(href)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def read(html: str) -> tuple[str, list[str]]:
    parser = VisibleText()
    parser.feed(html)
    return " ".join(parser.parts), parser.links


def findings(page: str, text: str, codes: dict[str, str], ids: dict[str, str], classes: set[str]) -> list[str]:
    """What on one page is a code instead of words."""
    found = []
    for word in sorted(set(re.findall(r"[A-Za-z][A-Za-z0-9_]*", text))):
        if word in codes:
            found.append(f"{page}: raw code {word!r} (from {codes[word]})")
    for identifier, what in ids.items():
        if re.search(rf"(?<![\w-]){re.escape(identifier)}(?![\w-])", text):
            found.append(f"{page}: {what} id {identifier!r} instead of its name")
    # "A 类答复占比" names a figure; a reply's class reads "A 类 (已解决或采纳)".
    for code in sorted(set(re.findall(r"(?<![A-Za-z])([A-Z]) 类(?! \()(?!答复)", text)) & classes):
        found.append(f"{page}: reply class {code!r} without its label")
    return found


def _is_page(href: str) -> bool:
    return href.startswith("/") and not href.startswith(("/static", "/find", "//"))


async def crawl(client: httpx.AsyncClient, start: list[str]) -> dict[str, str]:
    """Every page reachable by a link from `start`, by path: its visible text (a download counts as none)."""
    seen: dict[str, str] = {}
    queue = list(start)
    while queue:
        path = queue.pop(0).split("#")[0]
        if path in seen:
            continue
        answer = await client.get(path)
        assert answer.status_code == 200, f"{path}: a linked page answered {answer.status_code}"
        if not answer.headers.get("content-type", "").startswith("text/html"):
            # A download (the committee's .xlsx and .csv exports), not a page: its bytes are no words.
            seen[path] = ""
            continue
        seen[path], links = read(answer.text)
        queue += [link for link in links if _is_page(link) and link.split("#")[0] not in seen]
    return seen


@pytest.mark.parametrize("suite", ["sqlite"], indirect=True)
async def test_no_demo_page_shows_a_raw_code_to_any_role(suite: Suite, portal: str) -> None:
    settings = PortalSettings(
        intake_url=suite.urls["intake"], assignment_url=suite.urls["assignment"], progress_url=suite.urls["progress"]
    )
    await Demo(settings, CommonSettings(jwt_secret=suite.env["PROPOSALFLOW_JWT_SECRET"]), say=lambda _: None).play()

    codes = raw_codes()
    assert {"meeting", "visit", "handling", "in_progress", "lead_co", "sms", "satisfied"} <= set(codes), (
        "the codes are read from the models"
    )
    async with httpx.AsyncClient(timeout=20) as http:
        headers = suite.token(Role.COMMITTEE, "c-office")
        units = (await http.get(f"{suite.urls['assignment']}/units", params={"limit": 200}, headers=headers)).json()
        leaders = (await http.get(f"{suite.urls['assignment']}/leaders", params={"limit": 200}, headers=headers)).json()
    ids = {unit["id"]: "unit" for unit in units["items"]} | {leader["id"]: "leader" for leader in leaders["items"]}
    classes = {kind.code for kind in default_policy().reply_classes}

    problems: list[str] = []
    pages = 0
    # The committee first: its visit fills the portal's catalog of unit names, as in real use.
    for user in sorted(DEMO_USERS, key=lambda user: user.role != Role.COMMITTEE):
        async with httpx.AsyncClient(base_url=portal, timeout=30, follow_redirects=True) as client:
            signed_in = await client.post("/login/dev", data={"user": user.key})
            assert "已登录" in signed_in.text, f"{user.key} could not sign in"
            seen = await crawl(client, [str(signed_in.url.path), "/public"])
        assert any(path.startswith("/proposals/") for path in seen) or user.role == Role.DISPATCHER, (
            f"{user.key} reached no proposal page: {sorted(seen)}"
        )
        pages += len(seen)
        for path, text in seen.items():
            problems += findings(f"{path} as {user.key}", text, codes, ids, classes)
    async with httpx.AsyncClient(base_url=portal, timeout=30, follow_redirects=True) as anonymous:
        for path, text in (await crawl(anonymous, ["/public", "/login"])).items():
            pages += 1
            problems += findings(f"{path} as the public", text, codes, ids, classes)

    assert pages > 50, f"only {pages} pages were scanned"
    assert not problems, f"{len(problems)} codes where words belong:\n" + "\n".join(problems)
