"""deploy/k8s rendered by kustomize itself (the pinned binary `make kustomize` installs under .cache/tools),
so the tests check what `kubectl apply -k` would apply. A patch that matches nothing fails the render,
as it fails `kustomize build`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
KUSTOMIZE = Path(os.environ.get("KUSTOMIZE", ROOT / ".cache" / "tools" / "kustomize"))


def render(directory: Path) -> list[dict[str, Any]]:
    """`kustomize build DIRECTORY` as documents; ValueError with kustomize's own message if it fails."""
    if not KUSTOMIZE.is_file():
        pytest.fail(f"kustomize is not installed at {KUSTOMIZE}: run `make kustomize` (or `make test`)")
    built = subprocess.run(
        [str(KUSTOMIZE), "build", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    if built.returncode != 0:
        raise ValueError(f"kustomize build {directory} failed: {built.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    template = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [*template.get("containers", []), *template.get("initContainers", [])]


KUBECONFORM = Path(os.environ.get("KUBECONFORM", ROOT / ".cache" / "tools" / "kubeconform"))


def kubeconform_schemas(docs: list[dict[str, Any]], kubernetes_version: str, into: Path) -> str:
    """kubeconform's schema layout for the kinds in `docs`, from the schemas kubernetes-validate ships
    for that Kubernetes version (no download: kubeconform would fetch its own from GitHub). Those refer
    to a shared `/api/_definitions.json`, which kubeconform cannot resolve, so each schema gets the
    definitions inlined. Returns the -schema-location template."""
    import json

    import kubernetes_validate

    source = (
        Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{kubernetes_version}-local-strict"
    )
    definitions = json.loads((source / "_definitions.json").read_text(encoding="utf-8"))["$defs"]
    into.mkdir(parents=True, exist_ok=True)
    for doc in docs:
        group, _, version = doc["apiVersion"].rpartition("/")
        suffix = f"-{group.split('.')[0]}-{version}" if group else f"-{version}"
        name = f"{doc['kind'].lower()}{suffix}.json"
        text = (source / name).read_text(encoding="utf-8").replace('"/api/_definitions.json#/', '"#/')
        schema = json.loads(text)
        schema["$defs"] = definitions
        (into / name).write_text(json.dumps(schema), encoding="utf-8")
    return str(into / "{{ .ResourceKind }}{{ .KindSuffix }}.json")


def kubeconform(docs: list[dict[str, Any]], kubernetes_version: str, workdir: Path) -> dict[str, Any]:
    """Runs kubeconform -strict on `docs`; its JSON report (resources and summary)."""
    import json

    if not KUBECONFORM.is_file():
        pytest.fail(f"kubeconform is not installed at {KUBECONFORM}: run `make kustomize` (or `make test`)")
    location = kubeconform_schemas(docs, kubernetes_version, workdir / "schemas")
    checked = subprocess.run(
        [str(KUBECONFORM), "-strict", "-summary", "-output", "json", "-schema-location", location, "-"],
        input=yaml.safe_dump_all(docs),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report: dict[str, Any] = json.loads(checked.stdout)
    return report
