"""What an ops team runs is checked without a container engine: the image's contents, the compose file
against the Compose Specification, the Kubernetes manifests (rendered as kustomize would) against the
Kubernetes schemas, and every setting the services read is given in compose and in the ConfigMap or a
Secret reference, never a credential in a ConfigMap."""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from proposalflow.cli import app
from proposalflow.configref import all_settings, is_secret, settings_of
from shared.settings import DEFAULT_HTTP_PORTS, SERVICES
from tests.kustomize import containers, kubeconform, render

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"  # the oldest Kubernetes the manifests promise to run on


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


# The image ----------------------------------------------------------------------------------------


def test_every_data_file_of_the_services_ships_in_the_package() -> None:
    """The image installs the wheel, not the source tree: migrations, policies and catalogues must be
    package data, or a container starts without them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = project["tool"]["setuptools"]["package-data"]["*"]
    missing = [
        str(path.relative_to(ROOT))
        for top in ("shared", "services")
        for path in (ROOT / top).rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.suffix not in (".py", ".pyc")
        and not any(path.match(pattern) for pattern in patterns)
    ]
    assert missing == [], f"add their patterns to [tool.setuptools.package-data]: {missing}"


def test_the_image_is_multi_stage_non_root_with_a_healthcheck_and_no_build_tools() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    stages = re.findall(r"^FROM \S+ AS (\w+)", dockerfile, re.MULTILINE)
    assert stages == ["build", "runtime"]
    final = dockerfile.split("AS runtime", 1)[1]
    assert re.search(r"^USER 10001", final, re.MULTILINE)
    assert "HEALTHCHECK" in final and "/healthz" in final
    assert "org.opencontainers.image.version" in final
    assert "COPY shared" not in final and "PYTHONPATH" not in final, "the final stage installs the wheel only"
    assert "pip uninstall --yes pip setuptools wheel" in final
    assert re.search(r'ENTRYPOINT \["proposalflow"\]', final)


# Compose ------------------------------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads((ROOT / "tests" / "data" / "compose_spec.json").read_text(encoding="utf-8"))
    jsonschema.Draft201909Validator(schema).validate(compose())


def test_compose_runs_kafka_in_kraft_mode_pinned_and_postgres_with_a_database_per_service() -> None:
    services = compose()["services"]
    kafka = services["kafka"]
    # Every image name comes from the environment; the default is the public image, of the same Kafka
    # version as the jars deploy/kafka-local and the offline image (deploy/images/build.sh) use.
    default = re.fullmatch(r"\$\{KAFKA_IMAGE:-apache/kafka:(4\.1\.\d+)\}", kafka["image"])
    assert default, kafka["image"]
    pom = (ROOT / "deploy" / "kafka-local" / "pom.xml").read_text(encoding="utf-8")
    assert f"<kafka.version>{default[1]}</kafka.version>" in pom
    assert re.fullmatch(r"\$\{POSTGRES_IMAGE:-postgres:16\.\d+-bookworm\}", services["postgres"]["image"])
    assert services["intake"]["image"].startswith("${PROPOSALFLOW_IMAGE:-proposalflow:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    init_sql = (ROOT / "deploy" / "postgres" / "init-databases.sql").read_text(encoding="utf-8")
    assert {f"CREATE DATABASE {service};" for service in SERVICES} <= set(init_sql.splitlines())
    assert any("init-databases.sql" in volume for volume in services["postgres"]["volumes"])


def test_compose_services_wait_for_init_and_are_healthy_only_when_ready() -> None:
    services = compose()["services"]
    assert services["init"]["restart"] == "no"
    assert "topics create" in " ".join(services["init"]["entrypoint"])
    assert "migrate" in " ".join(services["init"]["entrypoint"])
    for service in SERVICES:
        spec = services[service]
        assert spec["command"] == ["run", service, "--no-migrate"], "migrations run once, in init"
        assert spec["depends_on"]["init"] == {"condition": "service_completed_successfully"}
        assert spec["depends_on"]["kafka"] == {"condition": "service_healthy"}
        assert spec["restart"] == "unless-stopped"
        probe = " ".join(spec["healthcheck"]["test"])
        assert f"127.0.0.1:{DEFAULT_HTTP_PORTS[service]}/readyz" in probe
        assert spec["environment"][f"PROPOSALFLOW_{service.upper()}_HTTP_PORT"] == DEFAULT_HTTP_PORTS[service]


@pytest.mark.parametrize("service", SERVICES)
def test_compose_gives_each_service_every_setting_it_reads(service: str) -> None:
    environment = compose()["services"][service]["environment"]
    missing = [setting.env for setting in settings_of(service) if setting.env not in environment]
    assert missing == [], f"add to docker-compose.yml ({service}): {missing}"


def test_compose_sets_no_variable_that_no_model_reads() -> None:
    known = {setting.env for setting in all_settings()}
    for name, spec in compose()["services"].items():
        unknown = [key for key in spec.get("environment", {}) if key.startswith("PROPOSALFLOW_") and key not in known]
        assert unknown == [], f"{name} sets settings no model reads (typo?): {unknown}"


def test_compose_init_job_reaches_every_database() -> None:
    environment = compose()["services"]["init"]["environment"]
    for service in SERVICES:
        assert f"@postgres:5432/{service}" in environment[f"PROPOSALFLOW_{service.upper()}_DATABASE_URL"]


# Kubernetes ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["base", "overlays/production"])
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(K8S / request.param)


def test_manifests_are_valid_kubernetes_resources(rendered: list[dict[str, Any]]) -> None:
    for doc in rendered:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kubeconform_finds_every_rendered_object_valid(rendered: list[dict[str, Any]], tmp_path: Path) -> None:
    report = kubeconform(rendered, KUBERNETES_VERSION, tmp_path)
    problems = [entry for entry in report.get("resources") or [] if entry["status"] != "statusValid"]
    assert problems == []
    assert report["summary"] == {"valid": len(rendered), "invalid": 0, "errors": 0, "skipped": 0}


def test_kubeconform_rejects_a_field_kubernetes_does_not_know(tmp_path: Path) -> None:
    deployment = next(doc for doc in render(K8S / "base") if doc["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    report = kubeconform([deployment], KUBERNETES_VERSION, tmp_path)
    assert report["summary"]["invalid"] == 1, report


def test_every_service_has_deployment_service_and_disruption_budget(rendered: list[dict[str, Any]]) -> None:
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in rendered}
    for service in SERVICES:
        assert {("Deployment", service), ("Service", service), ("PodDisruptionBudget", service)} <= kinds
    assert ("Job", "proposalflow-migrate") in kinds
    assert ("ConfigMap", "proposalflow-config") in kinds


def test_pods_probe_health_and_readiness_run_non_root_read_only_with_limits(rendered: list[dict[str, Any]]) -> None:
    workloads = [doc for doc in rendered if doc["kind"] in ("Deployment", "Job")]
    for doc in workloads:
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in containers(doc):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert "memory" in container["resources"]["limits"]
            if doc["kind"] == "Deployment":
                assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
                assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
                assert container["args"] == ["run", doc["metadata"]["name"], "--no-migrate"]


def _environment(doc: dict[str, Any], configmaps: dict[str, dict[str, str]]) -> tuple[set[str], set[str]]:
    """(variables from ConfigMaps, variables from Secret references) of a workload's container."""
    (container,) = containers(doc)
    from_config: set[str] = set()
    for source in container.get("envFrom", []):
        from_config |= set(configmaps[source["configMapRef"]["name"]])
    from_secret = {entry["name"] for entry in container.get("env", []) if "secretKeyRef" in entry.get("valueFrom", {})}
    plain = {entry["name"] for entry in container.get("env", []) if "value" in entry}
    return from_config | plain, from_secret


@pytest.mark.parametrize("service", SERVICES)
def test_each_deployment_gets_every_setting_its_service_reads(rendered: list[dict[str, Any]], service: str) -> None:
    configmaps = {doc["metadata"]["name"]: doc["data"] for doc in rendered if doc["kind"] == "ConfigMap"}
    (deployment,) = [doc for doc in rendered if doc["kind"] == "Deployment" and doc["metadata"]["name"] == service]
    from_config, from_secret = _environment(deployment, configmaps)
    missing = [setting.env for setting in settings_of(service) if setting.env not in from_config | from_secret]
    assert missing == [], f"add to the ConfigMap or a Secret reference ({service}): {missing}"


def test_credentials_come_from_secrets_never_from_a_configmap(rendered: list[dict[str, Any]]) -> None:
    secrets = {setting.env for setting in all_settings() if setting.secret}
    assert {"PROPOSALFLOW_JWT_SECRET", "PROPOSALFLOW_AUDIT_HMAC_KEY", "PROPOSALFLOW_KAFKA_SASL_PASSWORD"} <= secrets
    for doc in rendered:
        if doc["kind"] == "ConfigMap":
            leaked = [key for key in doc["data"] if is_secret(key)]
            assert leaked == [], f"credentials in ConfigMap {doc['metadata']['name']}: {leaked}"
        for container in containers(doc):
            inline = [
                entry["name"] for entry in container.get("env", []) if "value" in entry and is_secret(entry["name"])
            ]
            assert inline == [], f"credentials written inline in {doc['metadata']['name']}: {inline}"


def test_configmap_names_only_settings_a_model_reads(rendered: list[dict[str, Any]]) -> None:
    known = {setting.env for setting in all_settings()}
    for doc in rendered:
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "proposalflow-config":
            assert sorted(set(doc["data"]) - known) == []


def test_migration_job_reaches_every_database(rendered: list[dict[str, Any]]) -> None:
    (job,) = [doc for doc in rendered if doc["kind"] == "Job"]
    _, from_secret = _environment(
        job, {doc["metadata"]["name"]: doc["data"] for doc in rendered if doc["kind"] == "ConfigMap"}
    )
    assert {f"PROPOSALFLOW_{service.upper()}_DATABASE_URL" for service in SERVICES} <= from_secret
    assert "migrate all" in " ".join(containers(job)[0]["command"])


def test_production_overlay_uses_sasl_ssl_the_registry_image_and_more_replicas() -> None:
    docs = render(K8S / "overlays" / "production")
    (config,) = [doc for doc in docs if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "proposalflow-config"]
    assert config["data"]["PROPOSALFLOW_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["data"]["PROPOSALFLOW_LOG_LEVEL"] == "INFO", "the base's other keys survive the patch"
    for doc in docs:
        assert doc["metadata"].get("namespace", "proposalflow") == "proposalflow"
        for container in containers(doc):
            assert container["image"].startswith("registry.example.gov.cn/proposalflow/proposalflow:")
            mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
            assert "/etc/kafka-ca" in mounts, f"{doc['metadata']['name']} cannot verify the brokers"
    replicas = {doc["metadata"]["name"]: doc["spec"]["replicas"] for doc in docs if doc["kind"] == "Deployment"}
    assert replicas["intake"] == 3


def test_production_reads_the_citys_policy_from_a_configmap_mounted_read_only() -> None:
    """Another city replaces overlays/production/policy.yaml: every pod reads it from the ConfigMap."""
    from shared.policy import load_policy

    docs = render(K8S / "overlays" / "production")
    [policy] = [
        doc for doc in docs if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].startswith("proposalflow-policy")
    ]
    config = next(
        doc for doc in docs if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "proposalflow-config"
    )
    assert config["data"]["PROPOSALFLOW_POLICY_FILE"] == "/etc/proposalflow/policy.yaml"
    workloads = [doc for doc in docs if doc["kind"] in ("Deployment", "Job")]
    assert len(workloads) == len(SERVICES) + 2  # the five services, the portal and the migration job
    for doc in workloads:
        volumes = {volume["name"]: volume for volume in doc["spec"]["template"]["spec"]["volumes"]}
        assert volumes["policy"]["configMap"]["name"] == policy["metadata"]["name"], doc["metadata"]["name"]
        [mount] = [mount for mount in containers(doc)[0]["volumeMounts"] if mount["name"] == "policy"]
        assert mount == {"name": "policy", "mountPath": "/etc/proposalflow", "readOnly": True}
    # The file in the ConfigMap is a policy the services accept.
    policy_file = K8S / "overlays" / "production" / "policy.yaml"
    assert policy["data"]["policy.yaml"] == policy_file.read_text(encoding="utf-8")
    assert load_policy(policy_file).categories


def test_an_overlay_patch_that_targets_nothing_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{Path(os.path.relpath(K8S / 'base', tmp_path)).as_posix()}]\npatches: [{{path: p.yaml}}]\n",
        encoding="utf-8",
    )
    (tmp_path / "p.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: intak}\n")
    with pytest.raises(ValueError, match="intak"):
        render(tmp_path)


# The configuration reference ----------------------------------------------------------------------


def test_committed_configuration_reference_matches_the_settings_models() -> None:
    result = CliRunner().invoke(app, ["settings", "doc", "--check"])
    assert result.exit_code == 0, result.output


def test_configuration_reference_lists_service_specific_models_and_marks_secrets() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert "`PROPOSALFLOW_PROGRESS_SCHEDULER_INTERVAL_S`" in text  # a model inside services/progress
    line = next(line for line in text.splitlines() if "`PROPOSALFLOW_AUDIT_HMAC_KEY`" in line)
    assert "**secret**" in line


def test_a_stale_configuration_reference_is_reported(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text("# old\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["settings", "doc", "--check", "--out", str(stale)])
    assert result.exit_code == 1


def test_an_empty_variable_means_unset_so_deployments_can_list_every_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.settings import CommonSettings, service_settings

    for name in ("PROPOSALFLOW_KAFKA_SASL_MECHANISM", "PROPOSALFLOW_POLICY_FILE", "PROPOSALFLOW_TOPIC_PARTITIONS"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("PROPOSALFLOW_INTAKE_HTTP_PORT", "")
    common = CommonSettings()
    assert common.kafka_sasl_mechanism is None and common.policy_file is None and common.topic_partitions == 12
    assert service_settings("intake").http_port == 8101


def test_an_empty_notify_rules_file_means_the_packaged_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """docker-compose.yml lists PROPOSALFLOW_NOTIFY_RULES_FILE empty; notify must start on its own rules
    (it once read the empty value as the directory `.` and crashed at start)."""
    from services.notify.settings import DEFAULT_RULES_FILE, NotifySettings

    monkeypatch.setenv("PROPOSALFLOW_NOTIFY_RULES_FILE", "")
    monkeypatch.setenv("PROPOSALFLOW_NOTIFY_SMTP_HOST", "")
    settings = NotifySettings()
    assert settings.rules_path == DEFAULT_RULES_FILE
    assert settings.smtp_host is None
