"""The portal marks a due date that may still move (暂定: its year's 放假安排 is not published yet), as the
progress API flags it; a due date in an announced year carries no mark."""

from __future__ import annotations

from shared.events import Role
from tests.unit.test_portal_pages import FakeServices, client, detail, login

PROVISIONAL = "该年度国务院放假安排尚未公布, 期限可能调整"


async def test_an_open_step_due_in_a_provisional_year_is_marked_on_the_proposal_page() -> None:
    services = FakeServices()
    services.proposal = detail(
        reply_due="2027-02-12",
        open_steps=[
            {
                "kind": "reply",
                "unit": "dg-zrzyj",
                "signer_id": None,
                "measure_id": None,
                "due": "2027-02-12",
                "overdue": False,
                "provisional_calendar": True,
            },
            {
                "kind": "co_opinion",
                "unit": "dg-nyj",
                "signer_id": None,
                "measure_id": None,
                "due": "2026-12-14",
                "overdue": False,
                "provisional_calendar": False,
            },
        ],
    )
    async with client(services) as http:
        login(http, Role.COMMITTEE, "c-1")
        page = (await http.get("/proposals/p-land")).text
    [reply_step] = [line for line in page.splitlines() if "期限 2027-02-12" in line]
    assert PROVISIONAL in reply_step and "暂定" in reply_step
    assert page.count(PROVISIONAL) == 1  # the 2026 step is not marked


async def test_a_step_without_the_flag_is_not_marked() -> None:
    async with client(FakeServices()) as http:
        login(http, Role.COMMITTEE, "c-1")
        page = (await http.get("/proposals/p-land")).text
    assert "期限 2026-09-01" in page and PROVISIONAL not in page
