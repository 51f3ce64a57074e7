"""deploy/prereqs.sh on a bare machine, simulated by a PATH that holds only the shell's basic tools (and
fakes of what a test says is present): `make run` and `make test` stop before anything starts with one
message naming what to install and the command for it, install it themselves when root with apt-get,
and say nothing when everything is there."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "prereqs.sh"

# What the script and make themselves use; everything else is absent unless a test adds it.
BASICS = ("bash", "sh", "cut", "tr", "awk", "paste", "sed", "head", "cat", "echo", "sort", "uniq", "dirname")

EVERY_PACKAGE = (
    "python3 python3-venv openjdk-17-jre-headless maven postgresql chromium fonts-noto-cjk openssl"
    " podman runc debootstrap"
)


class Machine:
    """A PATH of our own: the basic tools, and fakes of Java, Maven, Chromium and the rest on demand."""

    def __init__(self, tmp: Path) -> None:
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.pg_lib = tmp / "postgresql"
        self.pg_lib.mkdir()
        for tool in BASICS:
            found = shutil.which(tool)
            assert found, f"the test needs {tool}"
            (self.bin / tool).symlink_to(found)
        self.user_id(1000)

    def fake(self, name: str, script: str) -> None:
        path = self.bin / name
        path.write_text(f"#!/bin/sh\n{script}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def user_id(self, uid: int) -> None:
        self.fake("id", f"echo {uid}")

    def python(self) -> None:
        (self.bin / "python3").symlink_to(sys.executable)

    def java(self, version: str = "17.0.15") -> None:
        self.fake("java", f"echo 'openjdk version \"{version}\" 2025-04-15' >&2")

    def postgresql(self) -> None:
        bin_dir = self.pg_lib / "16" / "bin"
        bin_dir.mkdir(parents=True)
        for tool in ("postgres", "initdb", "pg_ctl"):
            (bin_dir / tool).write_text("#!/bin/sh\n")
            (bin_dir / tool).chmod(0o755)

    def everything(self) -> None:
        self.python()
        self.java()
        self.fake("mvn", "exit 0")
        self.postgresql()
        self.fake("chromium", "exit 0")
        self.fake("fc-list", "echo 'Noto Sans CJK SC'")
        self.fake("openssl", "exit 0")
        for tool in ("podman", "runc", "debootstrap"):
            self.fake(tool, "exit 0")
        self.fake("make", f'exec {shutil.which("make")} "$@"')

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": str(self.bin),
            "HOME": os.environ.get("HOME", "/tmp"),
            "PROPOSALFLOW_PREREQS_PG_LIB": str(self.pg_lib),
            **extra,
        }

    def prereqs(self, needs: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "bash"), str(SCRIPT), needs],
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path)


def test_on_a_bare_machine_make_test_stops_with_one_message_naming_everything_and_the_command(
    machine: Machine,
) -> None:
    result = machine.prereqs("test")

    assert result.returncode == 1
    assert result.stdout == ""
    message = result.stderr
    assert message.startswith("make test cannot start: this machine lacks\n")
    for what in ("Python 3.11+", "Java 17+", "Maven", "PostgreSQL's server", "Chromium", "CJK"):
        assert what in message, f"{what} is not named in:\n{message}"
    commands = [line.strip() for line in message.splitlines() if "apt-get install" in line]
    assert commands == [f"sudo apt-get install -y {EVERY_PACKAGE}"], message


def test_make_run_asks_only_for_what_it_needs_no_chromium_nor_postgresql(machine: Machine) -> None:
    machine.python()

    result = machine.prereqs("run")

    assert result.returncode == 1
    assert "Java 17+" in result.stderr and "Maven" in result.stderr
    assert "Chromium" not in result.stderr and "PostgreSQL" not in result.stderr
    assert "sudo apt-get install -y openjdk-17-jre-headless maven\n" in result.stderr


def test_an_old_java_is_named_with_the_version_found(machine: Machine) -> None:
    machine.everything()
    machine.java("1.8.0_392")

    result = machine.prereqs("run")

    assert result.returncode == 1
    assert "Java 17+ (runs the Kafka broker; found Java 8)" in result.stderr


def test_with_everything_present_it_says_nothing(machine: Machine) -> None:
    machine.everything()

    for needs in ("run", "test", "ci"):
        result = machine.prereqs(needs)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), needs


def test_as_root_with_apt_get_it_installs_only_what_is_missing(machine: Machine, tmp_path: Path) -> None:
    machine.everything()
    (machine.bin / "chromium").unlink()
    (machine.bin / "fc-list").unlink()
    machine.user_id(0)
    calls = tmp_path / "apt-get.calls"
    chmod = shutil.which("chmod")
    # The fake apt-get "installs" by putting the tools in place, as Debian's packages would.
    machine.fake(
        "apt-get",
        f'echo "$*" >> {calls}\n'
        'case "$*" in *install*) '
        f"printf '#!/bin/sh\\n' > {machine.bin}/chromium; {chmod} +x {machine.bin}/chromium; "
        f"printf '#!/bin/sh\\necho Noto Sans CJK SC\\n' > {machine.bin}/fc-list; {chmod} +x {machine.bin}/fc-list;; "
        "esac",
    )

    result = machine.prereqs("test")

    assert result.returncode == 0, result.stderr
    assert "installing: chromium fonts-noto-cjk" in result.stderr
    assert calls.read_text().splitlines() == [
        "-o DPkg::Lock::Timeout=600 update -qq",
        "-o DPkg::Lock::Timeout=600 install -y -qq chromium fonts-noto-cjk",
    ]


def test_as_root_it_installs_nothing_when_told_not_to(machine: Machine, tmp_path: Path) -> None:
    machine.everything()
    (machine.bin / "chromium").unlink()
    machine.user_id(0)
    machine.fake("apt-get", f"{shutil.which('touch')} {tmp_path / 'apt-get-ran'}")

    result = machine.prereqs("test", PROPOSALFLOW_PREREQS_INSTALL="never")

    assert result.returncode == 1
    assert not (tmp_path / "apt-get-ran").exists()
    assert "\n  apt-get install -y chromium\n" in result.stderr, "root needs no sudo"


@pytest.mark.parametrize("target", ["run", "test"])
def test_make_stops_before_anything_starts(machine: Machine, target: str) -> None:
    """The README's two commands, on the bare machine: the message, and neither a broker, a database,
    a virtualenv nor a linter started."""
    machine.fake("make", f'exec {shutil.which("make")} "$@"')

    result = subprocess.run(
        [str(machine.bin / "make"), "--no-print-directory", "-C", str(ROOT), target],
        env=machine.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode != 0
    assert f"make {target} cannot start: this machine lacks" in result.stderr
    output = result.stdout + result.stderr
    for started in ("kafka-local", "pg-local", "ruff", "mypy", "pip", "honcho"):
        assert started not in output, f"{started} ran:\n{output}"
