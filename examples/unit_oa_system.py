"""A unit's OA system (承办单位办公系统) that does its whole part of a proposal's handling by events alone.

Written the way an outside integrator would, from the published contract only (docs/event-catalog.md,
docs/schemas/, the AsyncAPI documents): another Kafka client (confluent-kafka, librdkafka) and the official
CloudEvents SDK, nothing from ProposalFlow's own code. Install: `pip install confluent-kafka cloudevents`
(or `pip install -e ".[examples]"` in a checkout).

What it does, for the unit it runs for (`--unit`), on the events it reads:

- `proposalflow.assignment.assigned.v1` / `reassigned.v1` naming the unit: 签收 (acceptance-submitted);
  as the lead (or a 分办 unit) it reports 办理进展 (progress-submitted), as a co-handling unit it sends its
  会办意见 (co-opinion-submitted);
- once every co-handling unit's opinion is in (`handling.co-opinion-submitted.v1`): the lead unit's 答复
  (reply-submitted), adopting each suggestion (`proposal.filed.v1` says how many) and committing to a measure;
  a reply the committee returns (`reply.returned.v1`) is drafted again;
- `reply.approved.v1` of its reply: its measures (ids from `reply.drafted.v1`) move to in_progress;
  `proposal.closed.v1` (办结): they are done (举措落实);
- a `…rejected` answering one of its commands is printed; one refused because ProposalFlow had not yet
  caught up (rule `command_after_assignment`) is sent again, with a new id.

Every command goes to `proposalflow.unit-reports` in binary mode, keyed by the proposal id (so its commands
stay in order), with a command id derived from (source, proposal, step): a command re-sent after a crash or a
redelivered event has the same id, and ProposalFlow carries it out once. Events are read at least once
(offsets are committed after they are handled) and deduplicated on their CloudEvents (source, id).

State is kept in memory: a real OA system keeps it in its own database. Run it:

    python examples/unit_oa_system.py --bootstrap 127.0.0.1:19092 --unit dg-zrzyj --source /oa/dg-zrzyj

with `PROPOSALFLOW_ALLOWED_SOURCES` on the services granting it: `/oa/dg-zrzyj=unit:dg-zrzyj`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

UNIT_REPORTS = "proposalflow.unit-reports"
READS = ("proposalflow.proposals", "proposalflow.assignments", "proposalflow.handling")
PREFIX = "proposalflow."
REJECTED = ("proposalflow.unit-report.rejected.v1", "proposalflow.assignment.unit-report-rejected.v1")


def command_type(name: str) -> str:
    return f"{PREFIX}unit-report.{name}.v1"


@dataclass
class Case:
    """What the unit knows of one proposal."""

    proposal_id: str
    role: str = ""  # lead, co or split
    form: str = ""
    co_units: set[str] = field(default_factory=set)
    co_opinions: set[str] = field(default_factory=set)
    suggestion_count: int | None = None
    round: int = 1
    drafts: int = 0  # replies drafted in this round (a returned one is drafted again)
    reply_pending: bool = False  # sent, not yet returned
    measures: list[str] = field(default_factory=list)  # ids of this unit's measures in its latest reply


@dataclass
class Command:
    """A command to send: its CloudEvents type, data, and the step it is (which makes its id)."""

    type: str
    data: dict[str, Any]
    step: str


class UnitOASystem:
    """Reads ProposalFlow's events, decides (`react`), sends commands."""

    def __init__(self, bootstrap: str, unit: str, source: str, person: str, group: str, since_ms: int | None) -> None:
        self.unit, self.source, self.person = unit, source, person
        self.since_ms = since_ms
        self.cases: dict[str, Case] = {}
        self.sent: dict[str, Command] = {}  # command id → command
        self.seen: set[tuple[str, str]] = set()
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
        self.running = True

    # Reading ------------------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """With `--since-ms`: start every partition at that time (a replay from a point in time)."""
        if self.since_ms is not None:
            wanted = [TopicPartition(p.topic, p.partition, self.since_ms) for p in partitions]
            partitions = [self._concrete(consumer, p) for p in consumer.offsets_for_times(wanted, timeout=10)]
        consumer.assign(partitions)
        log("ready", partitions=len(partitions))

    @staticmethod
    def _concrete(consumer: Consumer, partition: TopicPartition) -> TopicPartition:
        """A partition with nothing from that time on yet starts at its end as it is now, as an offset: the
        logical "end" (-1) that `offsets_for_times` answers is resolved only when fetching starts, and an
        event written in between would be skipped."""
        if partition.offset >= 0:
            return partition
        _low, high = consumer.get_watermark_offsets(
            TopicPartition(partition.topic, partition.partition), timeout=10, cached=False
        )
        return TopicPartition(partition.topic, partition.partition, high)

    def run(self) -> None:
        self.consumer.subscribe(list(READS), on_assign=self._on_assign)
        try:
            while self.running:
                message = self.consumer.poll(0.5)
                if message is None:
                    continue
                if message.error():
                    log("kafka error", error=str(message.error()))
                    continue
                self.handle(message)
                self.consumer.commit(message=message, asynchronous=False)
        finally:
            self.producer.flush(10)
            self.consumer.close()

    def handle(self, message: Any) -> None:
        headers = {name: value for name, value in (message.headers() or []) if value is not None}
        try:
            event = ce_kafka.from_kafka_event(ce_kafka.KafkaMessage(headers, message.key(), message.value()))
        except Exception as exc:  # noqa: BLE001 - a record that is no CloudEvent: not ours to act on
            log("skipped a record that is not a CloudEvent", topic=message.topic(), error=str(exc))
            return
        identity = (event.get_source(), event.get_id())
        if identity in self.seen:  # at-least-once delivery: act once per event
            return
        self.seen.add(identity)
        data = event.get_data()
        if not isinstance(data, dict) or not event.get_type().startswith(PREFIX):
            return
        for command in self.react(event.get_type(), data):
            self.send(command)

    # Deciding -----------------------------------------------------------------------------------------

    def react(self, ce_type: str, data: dict[str, Any]) -> list[Command]:
        """The commands one event calls for."""
        proposal_id = str(data.get("proposal_id", ""))
        case = self.cases.get(proposal_id)
        kind = ce_type.removeprefix(PREFIX).removesuffix(".v1")
        if kind == "proposal.filed":
            self.cases.setdefault(proposal_id, Case(proposal_id)).suggestion_count = int(data["suggestion_count"])
            return self._reply(self.cases[proposal_id])
        if kind in ("assignment.assigned", "assignment.reassigned"):
            return self._assigned(proposal_id, data)
        if ce_type in REJECTED:
            return self._rejected(data)
        if case is None or not case.role:
            return []
        if kind == "handling.co-opinion-submitted":
            case.co_opinions.add(str(data["unit"]))
            return self._reply(case)
        if kind == "handling.rehandling-started":
            case.round, case.drafts, case.reply_pending = int(data.get("round", case.round + 1)), 0, False
            return self._reply(case)
        if data.get("unit") != self.unit:
            return self._closed(case) if kind == "proposal.closed" else []
        if kind == "reply.drafted":
            case.measures = [m["id"] for m in data.get("measures", []) if m.get("owner_unit") == self.unit]
            return []
        if kind == "reply.returned":
            case.reply_pending = False
            return self._reply(case)
        if kind == "reply.approved":
            return [self._measure(case, measure_id, "in_progress") for measure_id in case.measures]
        return []

    def _assigned(self, proposal_id: str, data: dict[str, Any]) -> list[Command]:
        lead = data["lead_unit"]["id"]
        co = {unit["id"] for unit in data.get("co_units", [])}
        split = {unit["id"] for unit in data.get("split_units", [])}
        role = "lead" if lead == self.unit else "co" if self.unit in co else "split" if self.unit in split else ""
        case = self.cases.setdefault(proposal_id, Case(proposal_id))
        case.role, case.form, case.co_units = role, str(data["form"]), co
        if not role:
            return []  # 改办 to other units: nothing more for this unit to do
        assignment = data["assignment_id"]
        commands = [self._command(case, "acceptance-submitted", {}, f"accept:{assignment}")]
        if role == "co":
            opinion = {"text": "同意主办单位的办理意见, 并将在职责范围内配合落实。"}
            commands.append(self._command(case, "co-opinion-submitted", opinion, f"co-opinion:{assignment}"))
        else:
            progress = {"kind": "phone", "on": date.today().isoformat(), "text": "已电话联系提案者, 了解具体诉求。"}
            commands.append(self._command(case, "progress-submitted", progress, f"progress:{assignment}"))
        return commands + self._reply(case)

    def _reply(self, case: Case) -> list[Command]:
        """答复, by the lead (or a 分办 unit), once every co-handling unit's opinion is in."""
        if case.role not in ("lead", "split") or case.reply_pending or case.suggestion_count is None:
            return []
        if case.form == "lead_co" and not case.co_units <= case.co_opinions:
            return []
        case.reply_pending, case.drafts = True, case.drafts + 1
        reply = {
            "text": "经研究, 我单位采纳提案的全部建议, 已制定工作方案并明确责任处室和完成时限。",
            "classification": "A",
            "adoptions": [
                {"number": n, "adopted": True, "how": "已纳入年度工作计划"} for n in range(1, case.suggestion_count + 1)
            ],
            "measures": [
                {
                    "text": "按工作方案落实提案建议",
                    "owner_unit": self.unit,
                    "due": (date.today() + timedelta(days=180)).isoformat(),
                }
            ],
        }
        return [self._command(case, "reply-submitted", reply, f"reply:{case.round}:{case.drafts}")]

    def _closed(self, case: Case) -> list[Command]:
        return [self._measure(case, measure_id, "done") for measure_id in case.measures]

    def _measure(self, case: Case, measure_id: str, status: str) -> Command:
        note = "已按计划完成" if status == "done" else "已启动实施"
        body = {"measure_id": measure_id, "status": status, "note": note}
        return self._command(case, "measure-update-submitted", body, f"measure:{measure_id}:{status}")

    def _rejected(self, data: dict[str, Any]) -> list[Command]:
        command = self.sent.get(str(data.get("command_id")))
        if command is None:
            return []  # another system's command
        rules = [error.get("rule") for error in data.get("errors", [])]
        log("rejected", command=command.type, step=command.step, reason=data.get("reason"), rules=rules)
        if "command_after_assignment" in rules:  # ProposalFlow had not caught up yet: it may be resent
            return [Command(command.type, command.data, f"{command.step}:again")]
        return []

    def _command(self, case: Case, name: str, body: dict[str, Any], step: str) -> Command:
        actor = {"id": self.person, "role": "unit", "unit": self.unit}
        data = {"actor": actor, "proposal_id": case.proposal_id, "unit": self.unit, **body}
        return Command(command_type(name), data, step)

    # Sending ------------------------------------------------------------------------------------------

    def send(self, command: Command) -> None:
        proposal_id = str(command.data["proposal_id"])
        command_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.source}#{proposal_id}#{command.step}"))
        event = CloudEvent(
            {
                "id": command_id,
                "source": self.source,
                "type": command.type,
                "subject": proposal_id,
                "datacontenttype": "application/json",
            },
            command.data,
        )
        message = ce_kafka.to_binary_event(event, key_mapper=lambda _event: proposal_id)
        self.sent[command_id] = command
        self.producer.produce(UNIT_REPORTS, value=message.value, key=message.key, headers=list(message.headers.items()))
        self.producer.flush(10)
        log("sent", command=command.type, id=command_id, proposal=proposal_id, step=command.step)


def log(what: str, **facts: Any) -> None:
    print(json.dumps({"at": time.strftime("%H:%M:%S"), "event": what, **facts}, ensure_ascii=False), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True, help="Kafka brokers, host:port[,host:port]")
    parser.add_argument("--unit", required=True, help="The unit's id in ProposalFlow's units catalog")
    parser.add_argument("--source", required=True, help="This system's CloudEvents source (allow-listed)")
    parser.add_argument("--person", default="oa-clerk", help="Who acts, as the commands' actor id")
    parser.add_argument("--group", help="Consumer group (default: oa-<unit>)")
    parser.add_argument("--since-ms", type=int, help="Read from this time (ms since the epoch) on, not from the start")
    args = parser.parse_args(argv)
    system = UnitOASystem(
        args.bootstrap, args.unit, args.source, args.person, args.group or f"oa-{args.unit}", args.since_ms
    )

    def stop(_signum: int, _frame: Any) -> None:
        system.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        system.run()
    except KafkaException as exc:
        log("kafka failure", error=str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
