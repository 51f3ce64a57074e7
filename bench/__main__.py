"""`python -m bench`: the pipeline and the baseline on one broker; a table on the terminal and a JSON file.

The broker comes from `PROPOSALFLOW_KAFKA_BOOTSTRAP_SERVERS` (`make bench` starts a fresh one).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy.engine import make_url

from bench import baseline, pipeline
from bench.suite import ROOT, Suite, cpu_seconds, memory_of
from shared.settings import SERVICES, CommonSettings
from shared.topics import all_topic_names, create_topics


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def summarise(
    name: str, sent: list[tuple[str, float]], arrived: dict[str, float | None], **extra: Any
) -> dict[str, Any]:
    """Throughput is messages through per second from the first send to the last arrival."""
    done = {i: at for i, at in arrived.items() if at is not None}
    latencies = [done[i] - t for i, t in sent if i in done]
    first = min(t for _, t in sent)
    span = (max(done.values()) - first) if done else None
    return {
        "scenario": name,
        "sent": len(sent),
        "through": len(latencies),
        "seconds": round(span, 2) if span else None,
        "throughput_per_s": round(len(latencies) / span, 1) if span else None,
        "latency_ms": {f"p{q}": _ms(percentile(latencies, q)) for q in (50, 95, 99)},
        **extra,
    }


def postmaster_of(port: int) -> int | None:
    """The pid of the PostgreSQL server listening on `port` on this machine (its data directory's
    `postmaster.pid` names the port), or None."""
    for pid in _pids():
        if _comm(pid) != "postgres" or _comm(_parent(pid)) == "postgres":
            continue
        try:
            arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            data = Path(arguments[arguments.index(b"-D") + 1].decode())
            if int((data / "postmaster.pid").read_text().splitlines()[3]) == port:
                return pid
        except (OSError, ValueError, IndexError):
            continue
    return None


def other_cpu(postgres: bool = False) -> dict[str, float]:
    """CPU seconds used so far by what shares the machine with the services: the broker (its pid in
    `PROPOSALFLOW_BENCH_BROKER_PID`, which `make bench` sets) and this process (load, bots, observer)."""
    used = {"bench": cpu_seconds(os.getpid())}
    broker = os.environ.get("PROPOSALFLOW_BENCH_BROKER_PID", "")
    if broker.isdigit():
        used["broker"] = cpu_seconds(int(broker))
    if postgres:
        # The server's processes (its backends live as long as the services' pools): the postmaster in
        # `PROPOSALFLOW_BENCH_POSTGRES_PID` (`main` sets it from --postgres) and its children, not other
        # servers on the machine; without it, every process named postgres.
        server = os.environ.get("PROPOSALFLOW_BENCH_POSTGRES_PID", "")
        if server.isdigit():
            pids = [int(server), *(pid for pid in _pids() if _parent(pid) == int(server))]
        else:
            pids = [pid for pid in _pids() if _comm(pid) == "postgres"]
        used["postgres"] = sum(cpu_seconds(pid) for pid in pids)
    return used


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


async def service_counts(http: httpx.AsyncClient, suite: Suite) -> dict[str, dict[str, float]]:
    """Per service, its replicas summed, from their Prometheus metrics so far: records consumed (every
    outcome, and each outcome but `handled` apart), records published from the outbox, the partition
    assignments its consumers received (`rebalances`), the batches its consumers handled and its relay's turns
    (with rows, and empty)."""
    counts: dict[str, dict[str, float]] = {}
    for instance in suite.instances:
        moved = counts.setdefault(instance.service, {"consumed": 0.0, "published": 0.0, "rebalances": 0.0})
        text = (await http.get(f"{instance.url}/metrics")).text
        for line in text.splitlines():
            if line.startswith("proposalflow_events_processed_total{"):
                moved["consumed"] += float(line.rsplit(" ", 1)[1])
                outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
                if outcome != "handled":
                    moved[outcome] = moved.get(outcome, 0.0) + float(line.rsplit(" ", 1)[1])
            elif line.startswith("proposalflow_outbox_published_total "):
                moved["published"] += float(line.rsplit(" ", 1)[1])
            elif line.startswith("proposalflow_consumer_rebalances_total{"):
                moved["rebalances"] += float(line.rsplit(" ", 1)[1])
            elif line.startswith("proposalflow_consumer_batches_total{"):
                moved["batches"] = moved.get("batches", 0.0) + float(line.rsplit(" ", 1)[1])
            elif line.startswith("proposalflow_outbox_relay_turns_total{"):
                key = "turns" if 'rows="some"' in line else "empty turns"
                moved[key] = moved.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


NOT_RECORDS = frozenset({"rebalances", "batches", "turns", "empty turns"})
"""What `service_counts` counts beside records: rebalances, consumer batches and relay turns."""


def records_moved(counts: dict[str, dict[str, float]]) -> dict[str, float]:
    """Records consumed (every outcome) and published by all the services: what one proposal costs in Kafka
    records, for the per-record ratio."""
    moved: dict[str, float] = {"consumed": 0.0, "published": 0.0}
    for service in counts.values():
        for key, value in service.items():
            if key not in NOT_RECORDS:
                moved[key] = moved.get(key, 0.0) + value
    return moved


async def idle_cpu(suite: Suite, postgres: bool, seconds: float) -> dict[str, float]:
    """CPU ms per second of every service (replicas summed), the broker and the PostgreSQL server while no
    load runs: what the running suite costs by the second (fetches, heartbeats, polls and sweeps), which a
    scenario's CPU per proposal includes for as long as it lasts."""
    services, others = suite.cpu(), other_cpu(postgres)
    started = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - started
    used = {s: round((v - services[s]) * 1000 / elapsed, 1) for s, v in suite.cpu().items()}
    used["services"] = round(sum(used.values()), 1)
    used.update({k: round((v - others[k]) * 1000 / elapsed, 1) for k, v in other_cpu(postgres).items() if k != "bench"})
    return used


def stage_breakdown(sent: list[tuple[str, float]], observer: pipeline.Observer) -> dict[str, Any]:
    """Median and p99 of when each stage's event happened, from the moment of sending."""
    result: dict[str, Any] = {}
    for stage, kind in pipeline.STAGES.items():
        offsets = [
            observer.proposals[i].last[kind] - t
            for i, t in sent
            if kind in observer.proposals[i].last and observer.proposals[i].done_at is not None
        ]
        result[stage] = {"p50_ms": _ms(percentile(offsets, 50)), "p99_ms": _ms(percentile(offsets, 99))}
    return result


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    load = os.getloadavg()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in load],
    }


SCENARIOS = ("kafka-max", "http-max", "kafka-rate", "http-rate", "replicas")


class Plan:
    """How much load each scenario sends."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.count = args.count or (150 if args.quick else 600)
        self.rates = [float(rate) for rate in str(args.rate).split(",") if rate.strip()]
        self.rate_seconds = args.rate_seconds or (3 if args.quick else 10)
        self.replicas = args.replicas
        self.idle_s = 3.0 if args.quick else 5.0
        self.stall_s = 60.0
        self.profile: Path | None = Path(args.profile) if args.profile else None
        self.postgres: str | None = args.postgres
        self.databases: list[str] = (
            [d.strip() for d in args.databases.split(",") if d.strip()]
            if args.databases
            else (["sqlite", "postgresql"] if args.postgres else ["sqlite"])
        )
        if "postgresql" in self.databases and not self.postgres:
            raise SystemExit("--databases postgresql needs --postgres URL (make bench passes the local server's)")
        self.scenarios: set[str] = set(args.scenarios.split(",")) if args.scenarios else set(SCENARIOS)


async def run_baseline(settings: CommonSettings, plan: Plan, run: str, log_dir: Path) -> list[dict[str, Any]]:
    bootstrap = settings.kafka_bootstrap_servers
    topics = [baseline.topic(run, n) for n in range(baseline.HOPS + 1)]
    await baseline.create_topics(bootstrap, topics, settings.topic_partitions)
    hops = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.baseline", bootstrap, topics[n], topics[n + 1], f"bench-hop-{run}-{n}"],
            cwd=ROOT,
            stdout=(log_dir / f"baseline-hop-{n}.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        for n in range(baseline.HOPS)
    ]
    sink = baseline.Sink(bootstrap, topics[-1])
    sink_task = asyncio.create_task(sink.run())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    _key, value, headers = pipeline.submission(str(uuid.uuid4()), 0)
    counter = iter(range(10**9))

    async def send() -> tuple[str, float]:
        key = f"m-{next(counter)}"
        sent_at = time.time()
        await producer.send(topics[0], value=value, key=key.encode(), headers=headers)
        return key, sent_at

    async def through(sent: list[tuple[str, float]]) -> dict[str, float | None]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(k.encode() not in sink.arrived for k, _ in sent):
            await asyncio.sleep(0.1)
        return {k: sink.arrived.get(k.encode()) for k, _ in sent}

    try:
        warm = [await send()]
        await through(warm)
        results = []
        cpu_before, others_before = sum(cpu_seconds(p.pid) for p in hops), other_cpu()
        sent = [await send() for _ in range(plan.count * 5)]
        arrived = await through(sent)
        cpu_ms = (sum(cpu_seconds(p.pid) for p in hops) - cpu_before) * 1000 / max(1, len(sent))
        others = {k: round((v - others_before[k]) * 1000 / max(1, len(sent)), 2) for k, v in other_cpu().items()}
        results.append(
            summarise(
                "baseline max rate",
                sent,
                arrived,
                door="raw aiokafka",
                cpu_ms_per_proposal={"total": round(cpu_ms, 2)},
                other_cpu_ms_per_proposal=others,
                records_per_proposal={"consumed": float(len(hops)), "published": float(len(hops))},
            )
        )
        loader = pipeline.Loader(producer, pipeline.Observer("", {}), "")
        for rate in plan.rates:
            sent = await loader.at_rate(send, rate, int(rate * plan.rate_seconds))
            results.append(summarise(f"baseline {rate:g}/s", sent, await through(sent), door="raw aiokafka"))
        results[-1]["memory_kib"] = {f"hop-{n}": memory_of(p.pid) for n, p in enumerate(hops)}
        return results
    finally:
        await producer.stop()
        sink_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sink_task
        for process in hops:
            process.terminate()
        for process in hops:
            process.wait(timeout=20)


@contextlib.contextmanager
def profiled(suite: Suite, directory: Path | None, label: str) -> Iterator[None]:
    """Sample every service with py-spy while the block runs (collapsed stacks, one file per process)."""
    if directory is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    spies = [
        subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--nonblocking",
                "--format",
                "raw",
                "--rate",
                "50",
                "-o",
                str(directory / f"{label.replace(' ', '_').replace('/', '')}-{i.service}-{i.replica}.txt"),
                "--pid",
                str(i.process.pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in suite.instances
    ]
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(timeout=30)


@contextlib.contextmanager
def suite_running(env: dict[str, str], log_dir: Path) -> Iterator[Suite]:
    suite = Suite(env=env, log_dir=log_dir)
    try:
        suite.start_all()
        yield suite
    finally:
        suite.stop()


@contextlib.asynccontextmanager
async def postgres_databases(admin_url: str, run: str) -> AsyncIterator[dict[str, str]]:
    """A fresh PostgreSQL database per service on the server of `admin_url` (a SQLAlchemy URL whose role
    may create databases), as `PROPOSALFLOW_<SERVICE>_DATABASE_URL` settings; dropped afterwards."""
    import asyncpg  # type: ignore[import-untyped]
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    admin = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
    names = {service: f"pf_bench_{run.lower()}_{service}" for service in SERVICES}
    try:
        for name in names.values():
            await admin.execute(f'CREATE DATABASE "{name}"')
        yield {
            f"PROPOSALFLOW_{service.upper()}_DATABASE_URL": url.set(database=name).render_as_string(hide_password=False)
            for service, name in names.items()
        }
    finally:
        for name in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def bench_env(settings: CommonSettings, run: str, work: Path) -> dict[str, str]:
    policy = (ROOT / "shared/policies/dongguan.yaml").read_text()
    # 交办 without a person confirming, so that nothing in the loop waits for the dispatcher.
    policy_file = work / "policy.yaml"
    policy_file.write_text(policy.replace("assignment_mode: confirm", "assignment_mode: auto"))
    env = {
        **os.environ,
        "PROPOSALFLOW_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "PROPOSALFLOW_DATA_DIR": str(work / "data"),
        "PROPOSALFLOW_POLICY_FILE": str(policy_file),
        "PROPOSALFLOW_ALLOWED_SOURCES": f"{pipeline.PORTAL},{pipeline.UNIT_OA}",
        "PROPOSALFLOW_JWT_SECRET": f"bench-secret-{run}-0123456789abcdef0123456789",
        "PROPOSALFLOW_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    for service in SERVICES:
        env[f"PROPOSALFLOW_{service.upper()}_CONSUMER_GROUP"] = f"bench-{run}-{service}"
    return env


async def start_groups_at_end(bootstrap: str, groups: list[str]) -> None:
    """Commit the current end of every topic for these consumer groups, so the suite of one database
    starts where the broker is now, not at the history an earlier suite in the same run left."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [
            TopicPartition(topic, partition)
            for topic in all_topic_names()
            for partition in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    for group in groups:
        committer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await committer.start()
        try:
            committer.assign(partitions)
            await committer.commit(ends)
        finally:
            await committer.stop()


async def run_pipeline(
    settings: CommonSettings, plan: Plan, run: str, work: Path, log_dir: Path, database: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The five services on one database (`sqlite` or `postgresql`), every scenario of the plan."""
    work.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        env = bench_env(settings, run, work)
        if database == "postgresql":
            assert plan.postgres is not None
            env.update(await stack.enter_async_context(postgres_databases(plan.postgres, run)))
        groups = [env[f"PROPOSALFLOW_{service.upper()}_CONSUMER_GROUP"] for service in SERVICES]
        await start_groups_at_end(settings.kafka_bootstrap_servers, [*groups, *pipeline.bot_groups(run)])
        return await _run_pipeline(settings, plan, run, env, log_dir, postgres=database == "postgresql")


async def _run_pipeline(
    settings: CommonSettings, plan: Plan, run: str, env: dict[str, str], log_dir: Path, *, postgres: bool
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    service_settings = CommonSettings(jwt_secret=env["PROPOSALFLOW_JWT_SECRET"])
    member_token, committee_token = pipeline.tokens(service_settings)
    results: list[dict[str, Any]] = []
    memory: dict[str, Any] = {}
    with suite_running(env, log_dir) as suite:
        await suite.wait_ready()
        observer = pipeline.Observer(suite.urls("audit")[0], {"Authorization": f"Bearer {committee_token}"})
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", enable_idempotence=True, linger_ms=5
        )
        await producer.start()
        committee = pipeline.Committee(settings, suite.urls("intake"), committee_token)
        unit = pipeline.LeadUnit(producer, settings)
        tasks = [
            asyncio.create_task(observer.run()),
            asyncio.create_task(committee.run(pipeline.bot_groups(run)[0])),
            asyncio.create_task(unit.run(pipeline.bot_groups(run)[1])),
        ]
        loader = pipeline.Loader(producer, observer, member_token)
        try:
            async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as http:
                # Warm-up: one proposal through, in a quiet suite, tells what every proposal leaves in the log.
                warm_id, _ = await loader.send_kafka()
                deadline = time.monotonic() + 90
                while pipeline.STAGES["progress"] not in observer.proposals[warm_id].types:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"the warm-up proposal did not get through; logs in {log_dir}")
                    await asyncio.sleep(0.2)
                await asyncio.sleep(3)
                expected = observer.learn(warm_id)
                http_warm_id, _ = await loader.http_sender(http, suite.urls("intake"))()
                await pipeline.wait_through(observer, [http_warm_id], plan.stall_s)

                async def scenario(
                    name: str, door: str, load: Callable[[], Coroutine[Any, Any, list[tuple[str, float]]]]
                ) -> None:
                    idle = await idle_cpu(suite, postgres, plan.idle_s)
                    resends, failures, cpu_before = unit.resends, loader.http_failures, suite.cpu()
                    rejections_before = collections.Counter(unit.rejections)
                    counts_before = await service_counts(http, suite)
                    others_before, moved_before = other_cpu(postgres), records_moved(counts_before)
                    started = time.monotonic()
                    label = f"{'pg' if postgres else 'sqlite'}-{name}-{door}-{len(suite.urls('intake'))}"
                    with profiled(suite, plan.profile, label):
                        sent = await load()
                        tracked = await pipeline.wait_through(observer, [i for i, _ in sent], plan.stall_s)
                    arrived = {i: t.done_at for (i, _), t in zip(sent, tracked, strict=True)}
                    lasted = time.monotonic() - started
                    through = max(1, sum(t.done_at is not None for t in tracked))

                    def per(key: str) -> int:
                        return 1 if key == "rebalances" else through  # rebalances: a count, not per proposal

                    cpu = {s: round((used - cpu_before[s]) * 1000 / through, 1) for s, used in suite.cpu().items()}
                    others = {
                        k: round((v - others_before[k]) * 1000 / through, 1) for k, v in other_cpu(postgres).items()
                    }
                    counts = await service_counts(http, suite)
                    moved = {
                        k: round((v - moved_before.get(k, 0.0)) / through, 2) for k, v in records_moved(counts).items()
                    }
                    per_service = {
                        service: {
                            k: round((v - counts_before.get(service, {}).get(k, 0.0)) / per(k), 2)
                            for k, v in values.items()
                        }
                        for service, values in counts.items()
                    }
                    # What the scenario cost beyond what the suite costs idle for as long as it lasted.
                    above_idle = round(sum(cpu.values()) - idle["services"] * lasted / through, 1)
                    results.append(
                        summarise(
                            name,
                            sent,
                            arrived,
                            door=door,
                            replicas=len(suite.urls("intake")),
                            stages=stage_breakdown(sent, observer),
                            cpu_ms_per_proposal={**cpu, "total": round(sum(cpu.values()), 1)},
                            other_cpu_ms_per_proposal=others,
                            records_per_proposal=moved,
                            records_per_proposal_by_service=per_service,
                            idle_cpu_ms_per_s=idle,
                            services_cpu_ms_per_proposal_above_idle=above_idle,
                            unit_resends=unit.resends - resends,
                            unit_rejections=dict(collections.Counter(unit.rejections) - rejections_before),
                            http_retries=loader.http_failures - failures,
                        )
                    )
                    print(
                        f"  {name}: {results[-1]['through']}/{len(sent)} through, {results[-1]['throughput_per_s']}/s"
                        f" (CPU ms per proposal: services {results[-1]['cpu_ms_per_proposal']['total']},"
                        + "".join(f" {k} {v}" for k, v in others.items())
                        + ")",
                        flush=True,
                    )

                http_send = loader.http_sender(http, suite.urls("intake"))
                count = plan.count
                wanted = plan.scenarios
                if "kafka-max" in wanted:
                    await scenario("pipeline max rate", "kafka", lambda: loader.flat_out(loader.send_kafka, count, 1))
                if "http-max" in wanted:
                    await scenario("pipeline max rate", "http", lambda: loader.flat_out(http_send, count, 32))
                for rate in plan.rates:
                    rate_count = int(rate * plan.rate_seconds)
                    if "kafka-rate" in wanted:
                        await scenario(
                            f"pipeline {rate:g}/s",
                            "kafka",
                            functools.partial(loader.at_rate, loader.send_kafka, rate, rate_count),
                        )
                    if "http-rate" in wanted:
                        await scenario(
                            f"pipeline {rate:g}/s",
                            "http",
                            functools.partial(loader.at_rate, http_send, rate, rate_count),
                        )
                memory["1 replica"] = suite.memory()
                # One more replica of every service at a time, up to --replicas, each measured at maximum rate:
                # the points the scaling model in docs/performance.md is checked against.
                for replicas in range(2, plan.replicas + 1) if "replicas" in wanted else ():
                    for service in SERVICES:
                        suite.start(service)
                    await suite.wait_ready()
                    committee.use(suite.urls("intake"))
                    # Let the consumer groups settle on the new members before loading them.
                    await asyncio.sleep(10)
                    await scenario("pipeline max rate", "kafka", lambda: loader.flat_out(loader.send_kafka, count, 1))
                    memory[f"{replicas} replicas"] = suite.memory()
            memory["expected_audit_entries_per_proposal"] = dict(expected)
            return results, memory
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await producer.stop()


def _cell(value: Any, width: int) -> str:
    return f"{'-' if value is None else value!s:>{width}}"


def cpu_with_server(result: dict[str, Any]) -> float | None:
    """CPU ms per proposal of the services plus, on PostgreSQL, the server's: what the data path costs."""
    services = result.get("cpu_ms_per_proposal", {}).get("total")
    if services is None:
        return None
    return round(float(services) + float(result.get("other_cpu_ms_per_proposal", {}).get("postgres", 0.0)), 1)


def records_ratio(result: dict[str, Any], base: dict[str, Any] | None) -> float | None:
    """Records consumed per second against the raw chain's (max-rate scenarios only: at a fixed rate the
    load, not the pipeline, sets the pace)."""
    per = result.get("records_per_proposal", {}).get("consumed")
    if not base or not per or "max rate" not in result["scenario"] or not result.get("throughput_per_s"):
        return None
    return round(float(result["throughput_per_s"]) * float(per) / (float(base["throughput_per_s"]) * baseline.HOPS), 3)


def table(results: list[dict[str, Any]], base: dict[str, Any] | None = None) -> str:
    """The baseline, then one line per pipeline scenario with every database side by side: proposals per
    second, records consumed per second against the raw chain, p99 latency, CPU ms per proposal (services,
    plus the PostgreSQL server's), and records consumed again as duplicates per proposal."""
    databases = list(dict.fromkeys(r["database"] for r in results if "database" in r))
    header = f"{'scenario':<22}{'door':<7}{'repl':>5}"
    for database in databases:
        short = "pg" if database == "postgresql" else database
        header += f" | {short + ' /s':>9}{'ratio':>7}{'p99 ms':>9}{'CPU ms':>8}{'dup':>6}"
    lines = [header, "-" * len(header)]
    for r in results:
        if "database" not in r:
            cpu = r.get("cpu_ms_per_proposal", {}).get("total")
            lines.append(
                f"{r['scenario']:<22}{'raw':<7}{'-':>5} | {_cell(r['throughput_per_s'], 9)}{'1':>7}"
                f"{_cell(r['latency_ms']['p99'], 9)}{_cell(cpu, 8)}{'-':>6}"
            )
    keys = list(dict.fromkeys((r["scenario"], r["door"], r.get("replicas")) for r in results if "database" in r))
    for scenario, door, replicas in keys:
        line = f"{scenario:<22}{door:<7}{replicas!s:>5}"
        for database in databases:
            key = (scenario, door, replicas)
            found = [
                x
                for x in results
                if x.get("database") == database and (x["scenario"], x["door"], x.get("replicas")) == key
            ]
            if not found:
                line += f" | {'':>9}{'':>7}{'':>9}{'':>8}{'':>6}"
                continue
            r = found[0]
            duplicates = r.get("records_per_proposal", {}).get("duplicate", 0.0)
            line += (
                f" | {_cell(r['throughput_per_s'], 9)}{_cell(records_ratio(r, base), 7)}"
                f"{_cell(r['latency_ms']['p99'], 9)}{_cell(cpu_with_server(r), 8)}{_cell(duplicates, 6)}"
            )
        lines.append(line)
    return "\n".join(lines)


def replica_costs(results: list[dict[str, Any]]) -> str:
    """Per database, scenario and replica count (Kafka door; every scenario but 100/s), per service: CPU ms
    per proposal, the suite's idle CPU ms per second, records consumed per proposal, of them duplicates (read
    again, dropped by the inbox) and parked, the rebalances during the scenario, and the consumer batches and
    relay turns per proposal: where a replica's extra CPU goes, and what a moderate rate costs."""
    lines = []
    for r in results:
        if "database" not in r or r["door"] != "kafka" or r["scenario"] == "pipeline 100/s":
            continue
        by_service = r.get("records_per_proposal_by_service", {})
        idle = r.get("idle_cpu_ms_per_s", {})
        lines.append(
            f"{r['database']}, {r['scenario'].removeprefix('pipeline ')}, {r['replicas']} replica(s): services "
            f"{r['cpu_ms_per_proposal']['total']} ms per "
            f"proposal ({r.get('services_cpu_ms_per_proposal_above_idle')} above idle), idle {idle.get('services')} "
            f"ms/s (broker {idle.get('broker', '-')}, postgres {idle.get('postgres', '-')})"
        )
        for service, counts in by_service.items():
            cpu = r["cpu_ms_per_proposal"].get(service, "-")
            lines.append(
                f"  {service:<11} CPU {cpu:>6} ms  idle {idle.get(service, '-'):>5} ms/s  consumed "
                f"{counts.get('consumed', 0):>5}  dup {counts.get('duplicate', 0.0):>4}  parked "
                f"{counts.get('parked', 0.0):>4}  published {counts.get('published', 0):>5}  rebalances "
                f"{counts.get('rebalances', 0):>3.0f}  batches {counts.get('batches', 0.0):>5}  relay turns "
                f"{counts.get('turns', 0.0):>5} (+{counts.get('empty turns', 0.0)} empty)"
            )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> int:
    settings = CommonSettings()
    plan = Plan(args)
    run = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = ROOT / ".data" / "bench" / run
    log_dir = work / "logs"
    log_dir.mkdir(parents=True)
    print(f"bench {run}: broker {settings.kafka_bootstrap_servers}, logs in {log_dir}", flush=True)
    await create_topics(settings, settings.topic_partitions, 1)
    if plan.postgres and "PROPOSALFLOW_BENCH_POSTGRES_PID" not in os.environ:
        server = postmaster_of(make_url(plan.postgres).port or 5432)
        if server is not None:
            os.environ["PROPOSALFLOW_BENCH_POSTGRES_PID"] = str(server)
    report: dict[str, Any] = {
        "run": run,
        "machine": machine(),
        "quick": args.quick,
        "plan": {
            "count": plan.count,
            "rates": plan.rates,
            "rate_seconds": plan.rate_seconds,
            "replicas": plan.replicas,
        },
        "databases": plan.databases,
    }
    results: list[dict[str, Any]] = []
    if not args.pipeline_only:
        print("baseline (raw aiokafka chain) …", flush=True)
        results += await run_baseline(settings, plan, run.lower(), log_dir)
    memory: dict[str, Any] = {}
    for database in plan.databases:
        print(f"pipeline (five services, {database}) …", flush=True)
        pipeline_results, memory[database] = await run_pipeline(
            settings, plan, f"{run}-{database}", work / database, log_dir / database, database
        )
        results += [{**result, "database": database} for result in pipeline_results]
    report["results"] = results
    report["memory_kib"] = memory
    base = next((r for r in results if r["scenario"] == "baseline max rate"), None)
    for database in plan.databases:
        best = next(
            (
                r
                for r in results
                if r.get("database") == database
                and r["scenario"] == "pipeline max rate"
                and r["door"] == "kafka"
                and r.get("replicas") == 1
            ),
            None,
        )
        if base and best and base["throughput_per_s"] and best["throughput_per_s"]:
            report.setdefault("ratio_pipeline_to_baseline", {})[database] = round(
                best["throughput_per_s"] / base["throughput_per_s"], 3
            )
            # The same, counted in records consumed: a proposal is ~25 records read across the services
            # (audit alone reads 12), the baseline's message 6.
            per = best.get("records_per_proposal", {}).get("consumed")
            if per:
                report.setdefault("ratio_records_consumed_per_s", {})[database] = round(
                    best["throughput_per_s"] * per / (base["throughput_per_s"] * baseline.HOPS), 3
                )
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"{run}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print()
    print(table(results, base))
    print()
    print(replica_costs(results))
    for database, ratio in report.get("ratio_pipeline_to_baseline", {}).items():
        records = report.get("ratio_records_consumed_per_s", {}).get(database)
        print(
            f"pipeline / baseline (Kafka door, 1 replica, {database}): {ratio} in proposals per second, "
            f"{records} in records consumed per second"
        )
    print("\nRSS KiB (now / peak):")
    for database, phases in memory.items():
        for phase, services in phases.items():
            if isinstance(services, dict) and phase != "expected_audit_entries_per_proposal":
                used = ", ".join(f"{s} {m.get('VmRSS')}/{m.get('VmHWM')}" for s, m in services.items())
                print(f"  {database}, {phase}: {used}")
    print(f"\nwritten: {out}")
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smaller load (about two minutes)")
    parser.add_argument("--count", type=int, help="proposals per max-rate scenario (default 600, quick 150)")
    parser.add_argument(
        "--rate",
        default="100,20",
        help="the fixed rates, proposals per second, comma-separated (default 100, the target's, and 20, which "
        "a 2-core machine sustains)",
    )
    parser.add_argument(
        "--rate-seconds", type=float, help="how long the fixed rate runs, seconds (default 10, quick 3)"
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=2,
        help="the replicas scenario runs with 2, 3, … up to this many replicas per service (1: skip)",
    )
    parser.add_argument("--pipeline-only", action="store_true", help="skip the baseline")
    parser.add_argument("--scenarios", help=f"comma-separated subset of: {', '.join(SCENARIOS)}")
    parser.add_argument("--profile", help="directory for py-spy samples of every service, per scenario")
    parser.add_argument("--out", help="JSON file to write (default bench/results/<timestamp>.json)")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="also run the services on PostgreSQL (after SQLite): a database per service is created on this "
        "server (a postgresql+asyncpg:// URL whose role may create databases) and dropped afterwards; "
        "`make bench` passes the local test server's",
    )
    parser.add_argument(
        "--databases",
        help="comma-separated subset of: sqlite, postgresql (default: both with --postgres, else sqlite)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    # The clients' retries while a fresh broker elects its coordinators are expected, not news.
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    sys.exit(asyncio.run(main(parse())))
