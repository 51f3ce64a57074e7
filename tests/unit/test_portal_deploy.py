"""The portal (门户) is deployed like the services: every setting it reads is given in compose and in
Kubernetes, it starts with `proposalflow run portal`, and it is reached at the port its settings say."""

from __future__ import annotations

from typing import Any

import yaml
from typer.testing import CliRunner

from proposalflow.cli import app
from proposalflow.configref import settings_of
from shared.settings import PORTAL, service_settings
from tests.kustomize import containers, render
from tests.unit.test_deploy import K8S, ROOT, compose


def test_compose_runs_the_portal_with_every_setting_it_reads_and_no_database() -> None:
    portal = compose()["services"][PORTAL]
    missing = [setting.env for setting in settings_of(PORTAL) if setting.env not in portal["environment"]]
    assert missing == []
    assert not [name for name in portal["environment"] if "DATABASE_URL" in name]
    assert portal["command"] == ["run", PORTAL, "--no-migrate"]
    assert portal["environment"]["PROPOSALFLOW_PORTAL_PROGRESS_URL"] == "http://progress:8103"


def test_kubernetes_gives_the_portal_every_setting_and_no_database() -> None:
    rendered = render(K8S / "base")
    configmap: dict[str, Any] = next(doc["data"] for doc in rendered if doc["kind"] == "ConfigMap")
    (deployment,) = [doc for doc in rendered if doc["kind"] == "Deployment" and doc["metadata"]["name"] == PORTAL]
    (container,) = containers(deployment)
    secrets = {entry["name"] for entry in container["env"]}
    assert "PROPOSALFLOW_JWT_SECRET" in secrets and not [name for name in secrets if "DATABASE_URL" in name]
    missing = [setting.env for setting in settings_of(PORTAL) if setting.env not in set(configmap) | secrets]
    assert missing == []
    assert container["ports"][0]["containerPort"] == int(configmap["PROPOSALFLOW_PORTAL_HTTP_PORT"])


def test_the_portal_listens_where_notification_links_point_and_is_in_the_procfile() -> None:
    notify = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))["x-notify-env"]
    assert service_settings(PORTAL).http_port == 8080
    assert "8080" in notify["PROPOSALFLOW_NOTIFY_PUBLIC_BASE_URL"]
    assert "proposalflow run portal" in (ROOT / "Procfile").read_text(encoding="utf-8")


def test_the_cli_refuses_to_migrate_the_portal_which_has_no_database() -> None:
    result = CliRunner().invoke(app, ["migrate", PORTAL])
    assert result.exit_code != 0 and "unknown service" in result.output
