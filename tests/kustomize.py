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
