"""The portal in a real headless Chromium (Debian's, driven by Playwright), over the five services and
the portal as processes on real Kafka: each role signs in, sees its page and not the others', uses its
main form, and finds the change on the next page load.

With PROPOSALFLOW_SCREENSHOTS=<dir> the test then loads the demo year and saves the main pages there
(that is how docs/screenshots/ is made)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from services.portal.demo.data import LAND
from services.portal.demo.story import Demo
from services.portal.settings import PortalSettings
from shared.events import Role
from shared.settings import CommonSettings
from tests.e2e.conftest import Suite
from tests.e2e.test_lifecycle import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

# A page load behind a form waits on two or three services; on a busy two-core CI machine that can
# take longer than Playwright's default five seconds.
expect.set_options(timeout=20_000)

TITLE = "关于盘活存量低效土地的建议"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (apt-get install chromium); .ci/run installs it"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium)
        yield launched
        await launched.close()


async def sign_in(browser: Browser, base: str, user: str) -> Page:
    """A fresh browser context (its own cookies) signed in as a demo user of the development login."""
    context = await browser.new_context(base_url=base, locale="zh-CN")
    page = await context.new_page()
    await page.goto("/login")
    await page.click(f'button[data-user="{user}"]')
    await expect(page.locator(".notice.ok")).to_contain_text("已登录")
    return page


# SQLite only: the page flow does not depend on the database, which test_lifecycle already runs on both;
# one run here takes about a minute and a half on two cores.
@pytest.mark.parametrize("suite", ["sqlite"], indirect=True)
async def test_each_role_signs_in_sees_its_page_uses_its_form_and_sees_the_change(
    suite: Suite, portal: str, browser: Browser
) -> None:
    committee_api = suite.token(Role.COMMITTEE, "c-office")
    url = suite.urls

    async def stage(pid: str) -> str | None:
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.get(f"{url['progress']}/proposals/{pid}", headers=committee_api)
            return answer.json()["stage"] if answer.status_code == 200 else None

    # 委员: submits on the form; the proposal is listed on the next load; no committee page for members.
    member = await sign_in(browser, portal, "member")
    await expect(member.locator("header nav")).not_to_contain_text("委员会工作台")
    await member.fill("input[name=title]", TITLE)
    await member.fill("textarea[name=body]", "我市存量低效土地较多, 建议加快盘活, 提高土地利用效率。")
    await member.fill("textarea[name=suggestions]", "摸清低效用地底数\n完善收储激励政策")
    await member.click("#submit button")
    await expect(member.locator(".notice.ok")).to_contain_text("已提交")
    await member.reload()
    await expect(member.locator("#mine")).to_contain_text(TITLE)
    pid = (await member.locator("#mine a", has_text=TITLE).get_attribute("href") or "").rsplit("/", 1)[-1]
    assert (await member.goto("/committee")).status == 403  # type: ignore[union-attr]

    # 提案委员会: the KPIs and the review queue; files the proposal and makes it key.
    committee = await sign_in(browser, portal, "committee")
    await expect(committee.locator("[data-testid=kpis]")).to_contain_text("立案率")
    await expect(committee.locator("#review-queue")).to_contain_text(TITLE)
    await committee.click(f"#review-queue a[href='/proposals/{pid}']")
    await expect(committee.locator("form[data-form=accept]")).to_have_count(0)
    await committee.click("form[data-form=review] button[value=file]")
    await expect(committee.locator(".notice.ok")).to_contain_text("已立案")
    await expect(committee.locator("[data-testid=stage]")).to_contain_text("案号")

    async def routed() -> bool:
        async with httpx.AsyncClient(timeout=10) as http:
            headers = suite.token(Role.DISPATCHER, "d-office")
            return (await http.get(f"{url['assignment']}/assignments/{pid}", headers=headers)).status_code == 200

    await eventually(routed, "the routing suggestion", suite)
    await committee.reload()
    await committee.select_option("form[data-form=designate-key] select[name=leader]", "leader-cwfsz")
    await committee.click("form[data-form=designate-key] button")
    await expect(committee.locator(".notice.ok")).to_contain_text("重点提案")

    # 交办机关: confirms the suggested routing (市自然资源局 主办).
    dispatcher = await sign_in(browser, portal, "dispatcher")
    await expect(dispatcher.locator("main")).to_contain_text("市自然资源局")
    await dispatcher.click(f"form[action='/proposals/{pid}/confirm'] button")
    await expect(dispatcher.locator(".notice.ok")).to_contain_text("已交办")
    await eventually(lambda: _is(stage(pid), "assigned", "handling"), "the assignment in progress", suite)

    # 承办单位 (lead): signs for it from its inbox.
    lead = await sign_in(browser, portal, "unit-zrzyj")
    await expect(lead.locator("header nav")).not_to_contain_text("委员会工作台")
    await expect(lead.locator("#to-sign")).to_contain_text("待签收 (1)")
    await lead.click(f"#to-sign a[href='/proposals/{pid}']")
    await expect(lead.locator("form[data-form=review]")).to_have_count(0)
    await lead.click("form[data-form=accept] button")
    await expect(lead.locator(".notice.ok")).to_contain_text("已签收")
    await lead.goto("/unit")
    await expect(lead.locator("#to-sign")).to_contain_text("待签收 (0)")
    async with httpx.AsyncClient(timeout=10) as http:
        assignment = (
            await http.get(f"{url['assignment']}/assignments/{pid}", headers=suite.token(Role.DISPATCHER, "d-office"))
        ).json()
        for unit in assignment["co_units"]:
            headers = suite.token(Role.UNIT, f"u-{unit}", unit=unit)
            accepted = await http.post(f"{url['assignment']}/assignments/{pid}/accept", headers=headers)
            assert accepted.status_code == 200, accepted.text
    await eventually(lambda: _is(stage(pid), "handling"), "handling", suite)

    # 承办单位 (co-handling 市农业农村局): sends its 会办意见, and may not reply.
    co = await sign_in(browser, portal, "unit-nyj")
    await co.goto(f"/proposals/{pid}")
    await expect(co.locator("form[data-form=reply]")).to_have_count(0)
    await co.fill("form[data-form=co-opinion] textarea[name=text]", "建议将高标准农田建设纳入整治范围。")
    await co.click("form[data-form=co-opinion] button")
    # The form posts and redirects: reload only once that page has arrived, or the reload races it.
    await expect(co.locator(".notice.ok")).to_contain_text("会办意见已送主办单位")
    await co.reload()
    await expect(co.locator("main")).to_contain_text("会办意见 · 市农业农村局")
    await expect(co.locator("form[data-form=co-opinion]")).to_have_count(0)

    # The lead unit replies, adopting both suggestions.
    await lead.goto(f"/proposals/{pid}")
    await lead.fill("form[data-form=reply] textarea[name=text]", "经研究, 我局已完成低效用地调查并出台收储激励办法。")
    await lead.check("input[name=adopted_1]")
    await lead.check("input[name=adopted_2]")
    await lead.click("form[data-form=reply] button")
    await expect(lead.locator(".notice.ok")).to_contain_text("等待提案委员会办复审查")
    await expect(lead.locator("main")).to_contain_text("采纳建议 2 / 2 条")

    # A refused form shows the reason in Chinese on its page: the committee returns with no reason.
    await committee.goto(f"/proposals/{pid}")
    await committee.click("form[data-form=review-reply] button[value=return]")
    await expect(committee.locator(".notice.error")).to_contain_text("退回答复时请填写退回理由")
    await committee.click("form[data-form=review-reply] button[value=approve]")
    await expect(committee.locator(".notice.ok")).to_contain_text("审查通过")
    await expect(committee.locator("[data-testid=stage]")).to_contain_text("已答复")

    # 督办领导: its key proposal, and the 督办 form; no committee page.
    leader = await sign_in(browser, portal, "leader")
    await expect(leader.locator(f"[data-proposal='{pid}']")).to_contain_text(TITLE)
    await leader.fill(f"[data-proposal='{pid}'] textarea[name=text]", "召开专题督办会, 要求倒排工期。")
    await leader.click(f"[data-proposal='{pid}'] form button")
    await expect(leader.locator(".notice.ok")).to_contain_text("督办情况已记录")
    await leader.reload()
    await expect(leader.locator(f"[data-proposal='{pid}'] .supervision")).to_contain_text("召开专题督办会")
    assert (await leader.goto("/committee")).status == 403  # type: ignore[union-attr]

    # 委员: evaluates; the proposal is closed on the next load.
    await member.goto(f"/proposals/{pid}")
    await member.select_option("form[data-form=evaluation] select[name=result_grade]", "satisfied")
    await member.click("form[data-form=evaluation] button")
    await expect(member.locator(".notice.ok")).to_contain_text("评价已提交")
    await member.reload()
    await expect(member.locator("[data-testid=stage]")).to_contain_text("已办结")
    await expect(member.locator("form[data-form=evaluation]")).to_have_count(0)

    # 公众: the published reply, without the proposer; no login.
    public = await (await browser.new_context(base_url=portal)).new_page()
    await public.goto("/public")
    await expect(public.locator("main")).to_contain_text(TITLE)
    await expect(public.locator("main")).not_to_contain_text("陈委员")

    await committee.goto("/committee")
    await expect(committee.locator("#key-board")).to_contain_text(TITLE)
    await expect(committee.locator("[data-testid=chart-units]")).to_contain_text("市自然资源局")

    if shots := os.environ.get("PROPOSALFLOW_SCREENSHOTS"):
        await screenshots(suite, portal, browser, Path(shots))


async def _is(value: Any, *expected: str) -> bool:
    return await value in expected


async def screenshots(suite: Suite, portal: str, browser: Browser, out: Path) -> None:
    """Load the demo year into the suite, then save the main page of each role."""
    settings = PortalSettings(
        intake_url=suite.urls["intake"], assignment_url=suite.urls["assignment"], progress_url=suite.urls["progress"]
    )
    await Demo(settings, CommonSettings(jwt_secret=suite.env["PROPOSALFLOW_JWT_SECRET"])).play()
    out.mkdir(parents=True, exist_ok=True)
    for user, path, name in (
        ("committee", "/committee", "committee"),
        ("unit-zrzyj", "/unit", "unit"),
        ("leader", "/leader", "leader"),
        ("member", "/member", "member"),
    ):
        page = await sign_in(browser, portal, user)
        await page.set_viewport_size({"width": 1280, "height": 900})
        await page.goto(path)
        await page.screenshot(path=str(out / f"{name}.png"), full_page=True)
        if user == "leader":
            await page.click(f"main section.card h2 a:has-text('{LAND['title']}')")
            await page.screenshot(path=str(out / "proposal.png"), full_page=True)
    public = await (await browser.new_context(base_url=portal, viewport={"width": 1280, "height": 900})).new_page()
    await public.goto("/public")
    await public.screenshot(path=str(out / "public.png"), full_page=True)
