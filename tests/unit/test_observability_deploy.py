"""The dashboard and alert rules an ops team installs refer only to metrics the services export, with
labels those metrics have; and the metrics say what they should."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import REGISTRY

from shared.observability import METRICS, otlp_tracer_provider
from shared.offsets import record_lag
from shared.settings import CommonSettings

OBSERVABILITY = Path(__file__).resolve().parents[2] / "deploy" / "observability"
# Series Prometheus itself adds, and labels every scraped series carries.
PROMETHEUS_SERIES = {"up"}
SCRAPE_LABELS = {"instance", "job", "le"}


def exported() -> dict[str, set[str]]:
    """Every series name ProposalFlow exports (with _total, _bucket… suffixes) → its label names."""
    series: dict[str, set[str]] = {}
    for collector in vars(METRICS).values():
        labels = set(collector._labelnames)
        for family in collector.describe():
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
            for suffix in suffixes[family.type]:
                series[family.name + suffix] = labels
    return series


def expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every alert rule and dashboard panel target."""
    found = []
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            found.append((f"alert {rule['alert']}", rule["expr"]))
    dashboard = json.loads((OBSERVABILITY / "grafana" / "dashboards" / "proposalflow.json").read_text(encoding="utf-8"))
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            found.append((f"panel {panel['title']}", target["expr"]))
    return found


def test_dashboard_and_alerts_cover_what_matters() -> None:
    text = " ".join(expr for _, expr in expressions())
    for metric in (
        "proposalflow_consumer_lag",
        "proposalflow_handler_seconds_bucket",
        "proposalflow_outbox_backlog",
        "proposalflow_dead_letters_total",
        "proposalflow_deliveries_failed_total",
    ):
        assert metric in text


@pytest.mark.parametrize(("where", "expr"), expressions())
def test_every_referenced_metric_and_label_exists(where: str, expr: str) -> None:
    series = exported()
    metrics = {name for name in re.findall(r"\b(proposalflow_[a-z_]+|up)\b", expr)}
    assert metrics, f"{where}: no metric found in {expr!r}"
    unknown = sorted(metric for metric in metrics if metric not in series and metric not in PROMETHEUS_SERIES)
    assert unknown == [], f"{where} uses metrics no service exports: {unknown}"
    # A label used anywhere must be on every metric of the expression: `a and b` matches on labels both have.
    allowed = set.intersection(*(series.get(metric, set()) for metric in metrics)) | SCRAPE_LABELS
    used = {label.strip() for group in re.findall(r"by \(([^)]*)\)", expr) for label in group.split(",")}
    used |= set(re.findall(r"\{(\w+)=", expr))
    assert sorted(used - allowed) == [], f"{where} groups by labels the metrics lack"


def test_alert_rules_say_what_happened_and_what_to_do() -> None:
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_grafana_provisioning_points_at_the_committed_dashboard() -> None:
    provider = yaml.safe_load(
        (OBSERVABILITY / "grafana" / "provisioning" / "dashboards" / "proposalflow.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    datasource = yaml.safe_load(
        (OBSERVABILITY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    dashboard = json.loads((OBSERVABILITY / "grafana" / "dashboards" / "proposalflow.json").read_text(encoding="utf-8"))
    uids = {panel["datasource"]["uid"] for panel in dashboard["panels"]}
    assert uids == {datasource["datasources"][0]["uid"]}


class FakeRecord:
    topic = "proposalflow.proposals"
    partition = 3
    offset = 41


class FakeConsumer:
    def __init__(self, highwater: int | None) -> None:
        self._highwater = highwater

    def highwater(self, partition: Any) -> int | None:
        assert (partition.topic, partition.partition) == ("proposalflow.proposals", 3)
        return self._highwater


def lag() -> float | None:
    return REGISTRY.get_sample_value(
        "proposalflow_consumer_lag", {"group": "g-lag", "topic": "proposalflow.proposals", "partition": "3"}
    )


def test_consumer_lag_is_the_records_after_the_one_just_processed() -> None:
    record_lag("g-lag", FakeConsumer(highwater=50), FakeRecord())
    assert lag() == 8  # offsets 42..49 are still to be read
    record_lag("g-lag", FakeConsumer(highwater=42), FakeRecord())
    assert lag() == 0


def test_consumer_lag_is_left_alone_when_the_consumer_does_not_know_the_end_yet() -> None:
    record_lag("g-lag", FakeConsumer(highwater=60), FakeRecord())
    record_lag("g-lag", FakeConsumer(highwater=None), FakeRecord())
    assert lag() == 18
    record_lag("g-lag", None, FakeRecord())
    assert lag() == 18


def test_deliveries_failed_is_a_counter_by_channel_for_notify() -> None:
    before = REGISTRY.get_sample_value("proposalflow_deliveries_failed_total", {"channel": "sms"}) or 0
    METRICS.deliveries_failed.labels("sms").inc()
    assert REGISTRY.get_sample_value("proposalflow_deliveries_failed_total", {"channel": "sms"}) == before + 1


def test_traces_are_exported_only_when_an_otlp_endpoint_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert otlp_tracer_provider("intake", CommonSettings()) is None
    monkeypatch.setenv("PROPOSALFLOW_OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    provider = otlp_tracer_provider("intake", CommonSettings())
    assert isinstance(provider, TracerProvider)
    try:
        assert provider.resource.attributes["service.name"] == "proposalflow-intake"
        (processor,) = provider._active_span_processor._span_processors
        assert processor._batch_processor._exporter._endpoint == "http://collector:4318/v1/traces"
    finally:
        provider.shutdown()


def test_the_standard_otel_variable_alone_turns_tracing_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    provider = otlp_tracer_provider("audit", CommonSettings())
    assert isinstance(provider, TracerProvider)
    provider.shutdown()
