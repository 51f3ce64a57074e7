"""Enough of kustomize to render deploy/k8s without the binary: resources (files and directories),
namespace, images, replicas, strategic-merge patches (by name, or a target) and JSON 6902 patches.

A patch or an image or a replicas entry that matches nothing raises: a typo in an overlay fails the
tests, as it would fail `kustomize build`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

# Lists merged element by element on this key in a strategic merge patch (the ones the manifests use).
_MERGE_KEYS = {"containers": "name", "volumes": "name", "volumeMounts": "name", "env": "name", "ports": "name"}
_CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _merge(base: Any, patch: Any, key: str | None = None) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for name, value in patch.items():
            merged[name] = _merge(base[name], value, name) if name in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and key in _MERGE_KEYS:
        merge_key = _MERGE_KEYS[key]
        merged_list = [copy.deepcopy(item) for item in base]
        for item in patch:
            for index, existing in enumerate(merged_list):
                if existing.get(merge_key) == item.get(merge_key):
                    merged_list[index] = _merge(existing, item)
                    break
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(patch)


def _json_patch(doc: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for operation in operations:
        *parents, last = operation["path"].lstrip("/").split("/")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if operation["op"] == "add" and last == "-":
            node.append(copy.deepcopy(operation["value"]))
        elif operation["op"] in ("add", "replace"):
            if isinstance(node, list):
                node[int(last)] = copy.deepcopy(operation["value"])
            else:
                node[last] = copy.deepcopy(operation["value"])
        else:
            raise ValueError(f"unsupported JSON patch operation {operation['op']!r}")
    return doc


def _selected(doc: dict[str, Any], target: dict[str, Any]) -> bool:
    if "kind" in target and doc["kind"] != target["kind"]:
        return False
    if "name" in target and doc["metadata"]["name"] != target["name"]:
        return False
    if "labelSelector" in target:
        labels = doc["metadata"].get("labels", {})
        for requirement in target["labelSelector"].split(","):
            name, value = requirement.split("=")
            if labels.get(name.strip()) != value.strip():
                return False
    return True


def render(directory: Path) -> list[dict[str, Any]]:
    """The documents `kustomize build directory` would print (for the features above)."""
    kustomization = load_documents(directory / "kustomization.yaml")[0]
    docs: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        docs += render(path) if path.is_dir() else load_documents(path)
    for patch in kustomization.get("patches", []):
        content = load_documents(directory / patch["path"])[0]
        target = patch.get("target")
        if target is None:
            target = {"kind": content["kind"], "name": content["metadata"]["name"]}
        hits = [index for index, doc in enumerate(docs) if _selected(doc, target)]
        if not hits:
            raise ValueError(f"patch {patch['path']} matches no resource ({target})")
        for index in hits:
            docs[index] = (
                _json_patch(docs[index], content) if isinstance(content, list) else _merge(docs[index], content)
            )
    for entry in kustomization.get("replicas", []):
        hits = [
            doc
            for doc in docs
            if doc["kind"] in ("Deployment", "StatefulSet") and doc["metadata"]["name"] == entry["name"]
        ]
        if not hits:
            raise ValueError(f"replicas for {entry['name']} match no workload")
        for doc in hits:
            doc["spec"]["replicas"] = entry["count"]
    for image in kustomization.get("images", []):
        found = False
        for doc in docs:
            for container in containers(doc):
                name, _, _tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image['newTag']}"
                    found = True
        if not found:
            raise ValueError(f"image {image['name']} is used by no container")
    if namespace := kustomization.get("namespace"):
        for doc in docs:
            if doc["kind"] not in _CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = namespace
    return docs


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    template = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [*template.get("containers", []), *template.get("initContainers", [])]
