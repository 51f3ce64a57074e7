"""落实评价 in a real headless Chromium, over the five services and the portal as processes on real Kafka:
the proposer judges the implementation unsatisfied on the new form and names the measure to reopen, the
measure's unit sees it (carried over, 跨年度) and settles it again on its form, the proposer is satisfied,
and the committee's and the leader's pages show 落实率 and 落实满意率 as computed by hand."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Browser, expect

from shared.events import Role
from tests.e2e.conftest import Suite
from tests.e2e.test_implementation_lifecycle import PROPOSAL, closed_key_proposal
from tests.e2e.test_portal_browser import browser, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]
__all__ = ["browser"]  # the session's Chromium, shared with the other browser test

TITLE = "关于加快撂荒地复耕的建议"


@pytest.mark.parametrize("suite", ["sqlite"], indirect=True)
async def test_the_proposer_reopens_a_measure_on_the_form_and_the_pages_show_the_implementation_figures(
    suite: Suite, portal: str, browser: Browser
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        content = {**PROPOSAL, "title": TITLE, "first_proposer": {"id": "m-chen", "name": "陈委员"}}
        closed = await closed_key_proposal(http, suite, "m-chen", content)
        pid = closed["id"]
        funds, pilot = closed["measures"]
        for measure, unit in ((funds, "dg-zrzyj"), (pilot, "dg-nyj")):
            done = await http.post(
                f"{suite.urls['progress']}/proposals/{pid}/measures/{measure['id']}",
                json={"status": "done", "note": "已完成"},
                headers=suite.token(Role.UNIT, f"u-{unit[3:]}", unit=unit),
            )
            assert done.status_code == 200, done.text
    assert done.json()["implementation_evaluation"]["state"] == "open"

    # 委员: unsatisfied without naming a measure is refused in words; then the pilot is reopened.
    member = await sign_in(browser, portal, "member")
    await member.goto(f"/proposals/{pid}")
    form = "form[data-form=implementation-evaluation]"
    await expect(member.locator("[data-testid=implementation-state]")).to_contain_text("落实评价中")
    await member.select_option(f"{form} select[name=grade]", "unsatisfied")
    await member.click(f"{form} button")
    await expect(member.locator(".notice.error")).to_contain_text("请勾选需要重新落实的举措")
    await member.select_option(f"{form} select[name=grade]", "unsatisfied")
    await member.check(f"{form} input[name='reopen_{pilot['id']}']")
    await member.fill(f"{form} textarea[name=comment]", "试点只覆盖一个镇街")
    await member.click(f"{form} button")
    await expect(member.locator(".notice.ok")).to_contain_text("落实评价已提交")
    await expect(member.locator("[data-testid=implementation-state]")).to_contain_text("举措重新落实中")
    await expect(member.locator(form)).to_have_count(0)

    # 承办单位 (市农业农村局): the reopened measure is in its inbox, carried over into next year; it settles it.
    unit = await sign_in(browser, portal, "unit-nyj")
    await expect(unit.locator("#inbox")).to_contain_text("举措落实")
    await expect(unit.locator("#inbox")).to_contain_text("跨年度")
    await unit.goto(f"/proposals/{pid}")
    await unit.select_option("form[data-form=measure] select[name=status]", "done")
    await unit.fill("form[data-form=measure] input[name=note]", "已扩至五个镇街")
    await unit.click("form[data-form=measure] button")
    await expect(unit.locator(".notice.ok")).to_contain_text("举措落实情况已更新")

    # 委员: the second round opens; satisfied this time.
    await member.reload()
    await expect(member.locator("[data-testid=implementation-state]")).to_contain_text("第 2 轮")
    await member.select_option(f"{form} select[name=grade]", "satisfied")
    await member.click(f"{form} button")
    await expect(member.locator(".notice.ok")).to_contain_text("落实评价已提交")
    await expect(member.locator("[data-testid=implementation-state]")).to_contain_text("落实评价已结束")
    await expect(member.locator("main")).to_contain_text("落实评价 (第 1 轮): 不满意 · 要求重新落实 1 项举措")

    # 落实率 1/1; 举措按期完成率 2/2 (both long before their due dates); 落实满意率 1/2 (one round each way).
    committee = await sign_in(browser, portal, "committee")
    await committee.goto("/committee")
    await expect(committee.locator("[data-testid=implementation-rate]")).to_contain_text("100.0%")
    await expect(committee.locator("[data-testid=implementation-rate]")).to_contain_text("1 / 1")
    await expect(committee.locator("[data-testid=measure-on-time-rate]")).to_contain_text("2 / 2")
    await expect(committee.locator("[data-testid=implementation-satisfaction-rate]")).to_contain_text("50.0%")
    leader = await sign_in(browser, portal, "leader")
    await expect(leader.locator("[data-testid=leader-kpis]")).to_contain_text("落实满意率")
    await expect(leader.locator("[data-testid=implementation-satisfaction-rate]")).to_contain_text("1 / 2")
    await expect(leader.locator(f"section[data-proposal='{pid}']")).to_contain_text("落实评价已结束")
