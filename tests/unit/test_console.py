"""What `make run` shows a person: short human lines at a terminal (JSON lines anywhere else, or as
PROPOSALFLOW_LOG_FORMAT says), routine Kafka chatter there only at DEBUG, and once everything answers /readyz
a banner with the addresses, the demo logins and how to stop."""

from __future__ import annotations

import json
import logging
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from services.portal.labels import DEMO_USERS
from shared.observability import DemoteChatter, HumanFormatter, bind_context, resolve_log_format
from shared.ready import Login, banner, local_urls, wait_until_ready
from shared.settings import PORTAL, SERVICES, CommonSettings

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def record(message: str, name: str = "proposalflow.runtime", level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_a_human_line_is_time_service_level_message_and_the_proposal() -> None:
    formatter = HumanFormatter("intake", colour=False)

    line = formatter.format(record("intake connected to Kafka at 127.0.0.1:19092"))
    with bind_context(proposal_id="p-42"):
        about = formatter.format(record("submitted", level=logging.WARNING))

    assert re.fullmatch(r"\d\d:\d\d:\d\d intake     INFO    intake connected to Kafka at 127\.0\.0\.1:19092", line)
    assert re.fullmatch(r"\d\d:\d\d:\d\d intake     WARNING submitted  \[p-42\]", about)


def test_a_human_line_is_coloured_when_asked_and_reads_the_same_without_the_colour() -> None:
    plain = HumanFormatter("audit", colour=False).format(record("hash chain verified", level=logging.ERROR))
    coloured = HumanFormatter("audit", colour=True).format(record("hash chain verified", level=logging.ERROR))

    assert "\x1b[31mERROR" in coloured, "errors in red"
    assert "\x1b[" not in plain
    assert ANSI.sub("", coloured) == plain


def test_an_exception_follows_its_human_line() -> None:
    try:
        raise ValueError("bad policy file")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "could not start", None, sys.exc_info())

    text = HumanFormatter("progress", colour=False).format(failed)

    assert text.splitlines()[0].endswith("could not start")
    assert "ValueError: bad policy file" in text


ASSIGNMENT_DUMP = (
    "Consumer proposalflow-progress-e27b assigned to partitions: (TopicPartition(topic='proposalflow.proposals', "
    "partition=4), TopicPartition(topic='proposalflow.proposals', partition=10))"
)
CHATTER = [
    record(ASSIGNMENT_DUMP, "proposalflow.progress.broker"),
    record("Marking the coordinator dead (node 1)for group proposalflow-audit.", "aiokafka.consumer.group_coordinator"),
    record(
        "Heartbeat failed for group proposalflow-progress because it is rebalancing",
        "aiokafka.consumer.group_coordinator",
        logging.WARNING,
    ),
    record(
        "Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError",
        "aiokafka.consumer.group_coordinator",
        logging.ERROR,
    ),
    record("Application startup complete.", "uvicorn.error"),
    record("callback for Task-43 is being executed...", "proposalflow.intake.broker"),
    record('HTTP Request: GET http://127.0.0.1:8101/healthz "HTTP/1.1 200 OK"', "httpx"),
]
KEPT = [
    record("Unable connect to node with id 1: [Errno 111] Connect call failed", "aiokafka", logging.ERROR),
    record("Uvicorn running on http://127.0.0.1:8101 (Press CTRL+C to quit)", "uvicorn.error"),
    record("progress connected to Kafka at 127.0.0.1:19092"),
    record("dead-lettered a record of proposalflow.proposals", "proposalflow.messaging", logging.WARNING),
]


@pytest.mark.parametrize("chatter", CHATTER, ids=lambda r: r.getMessage()[:30])
def test_partition_dumps_and_rebalance_chatter_show_only_at_debug(chatter: logging.LogRecord) -> None:
    assert not DemoteChatter(logging.INFO).filter(chatter)
    assert DemoteChatter(logging.DEBUG).filter(chatter)
    assert chatter.levelname == "DEBUG"


@pytest.mark.parametrize("kept", KEPT, ids=lambda r: r.getMessage()[:30])
def test_what_a_person_needs_keeps_its_level(kept: logging.LogRecord) -> None:
    level = kept.levelname
    assert DemoteChatter(logging.INFO).filter(kept)
    assert kept.levelname == level


def test_the_setting_forces_either_format_and_auto_follows_the_terminal() -> None:
    class Terminal:
        def isatty(self) -> bool:
            return True

    class Pipe:
        def isatty(self) -> bool:
            return False

    assert resolve_log_format("auto", Terminal()) == "human"
    assert resolve_log_format("auto", Pipe()) == "json"
    assert resolve_log_format("json", Terminal()) == "json"
    assert resolve_log_format("human", Pipe()) == "human"


def test_the_setting_is_read_from_the_environment_and_refuses_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CommonSettings().log_format == "auto"
    monkeypatch.setenv("PROPOSALFLOW_LOG_FORMAT", "human")
    assert CommonSettings().log_format == "human"
    monkeypatch.setenv("PROPOSALFLOW_LOG_FORMAT", "pretty")
    with pytest.raises(ValueError, match="log_format"):
        CommonSettings()


LOG_ONE_LINE = (
    "import logging\n"
    "from shared.observability import configure_logging\n"
    "configure_logging('notify')\n"
    "logging.getLogger('proposalflow.runtime').info('notify connected to Kafka')\n"
    "logging.getLogger('aiokafka.consumer.group_coordinator').warning("
    "'Marking the coordinator dead (node 1)for group g.')\n"
)


def _child_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROPOSALFLOW_LOG")}
    env.pop("FORCE_COLOR", None)
    env.pop("NO_COLOR", None)
    return env


def test_a_process_whose_output_is_a_terminal_writes_human_coloured_lines() -> None:
    controller, terminal = pty.openpty()
    try:
        child = subprocess.run(
            [sys.executable, "-c", LOG_ONE_LINE],
            cwd=ROOT,
            env=_child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=terminal,
            timeout=60,
        )
        os.close(terminal)
        output = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal's other end is closed: all was read
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(controller)

    assert child.returncode == 0
    text = output.decode()
    assert "\x1b[" in text, "coloured at a terminal"
    lines = [line for line in ANSI.sub("", text).splitlines() if line.strip()]
    assert len(lines) == 1, lines  # the coordinator chatter is not shown
    assert re.fullmatch(r"\d\d:\d\d:\d\d notify     INFO    notify connected to Kafka", lines[0])


def test_a_process_whose_output_is_not_a_terminal_writes_json_lines() -> None:
    child = subprocess.run(
        [sys.executable, "-c", LOG_ONE_LINE], cwd=ROOT, env=_child_env(), capture_output=True, text=True, timeout=60
    )

    entries = [json.loads(line) for line in child.stderr.splitlines()]
    assert entries[0]["service"] == "notify" and entries[0]["message"] == "notify connected to Kafka"
    # A log platform keeps all, at the level the library gave (the fault tests read who held which partition).
    assert entries[1]["level"] == "WARNING" and entries[1]["message"].startswith("Marking the coordinator dead")
    assert len(entries) == 2


def test_the_banner_gives_the_portal_every_demo_login_the_apis_and_how_to_stop() -> None:
    urls = {name: f"http://127.0.0.1:{9000 + n}" for n, name in enumerate((*SERVICES, PORTAL))}
    logins = [Login(user.key, user.description) for user in DEMO_USERS]

    text = banner(urls, logins, "127.0.0.1:19092")

    assert f"{urls[PORTAL]}/login" in text
    for login in logins:
        assert re.search(rf"^ +{re.escape(login.key)} +{re.escape(login.description)}$", text, re.M), login
    for name in SERVICES:
        assert re.search(rf"^ +{name} +{re.escape(urls[name])} ", text, re.M), name
    assert "Ctrl-C" in text and "make stop" in text


def test_the_banner_addresses_follow_the_port_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROPOSALFLOW_INTAKE_HTTP_PORT", "18101")
    monkeypatch.setenv("PROPOSALFLOW_PORTAL_HTTP_PORT", "18080")

    urls = local_urls()

    assert urls["intake"] == "http://127.0.0.1:18101"
    assert urls[PORTAL] == "http://127.0.0.1:18080"
    assert urls["audit"] == "http://127.0.0.1:8105"


async def test_it_waits_until_every_service_answers_readyz() -> None:
    urls = {"intake": "http://intake", "portal": "http://portal"}
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.host)
        ready = request.url.host == "intake" or calls.count("portal") >= 3
        return httpx.Response(200 if ready else 503)

    waiting = await wait_until_ready(urls, 30, interval_s=0.01, transport=httpx.MockTransport(answer))

    assert waiting == []
    assert calls.count("portal") == 3


async def test_it_names_what_never_became_ready_and_goes_quiet_when_its_parent_is_gone() -> None:
    urls = {"intake": "http://intake", "audit": "http://audit"}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "audit":
            raise httpx.ConnectError("refused")
        return httpx.Response(200)

    transport = httpx.MockTransport(answer)
    assert await wait_until_ready(urls, 0.05, interval_s=0.01, transport=transport) == ["audit"]
    assert await wait_until_ready(urls, 30, interval_s=0.01, alive=lambda: False, transport=transport) is None
