"""The AsyncAPI documents an integrator reads without the source: valid AsyncAPI 3.0, one message per
CloudEvents type (so a tool maps a record to its type by `ce_type`), structured mode offered where a
service receives, and examples that the services themselves accept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from proposalflow.cli import schema_documents
from shared import events
from shared.envelope import CLOUDEVENTS_JSON, encode_data, from_kafka
from shared.settings import SERVICES

DATA = Path(__file__).resolve().parents[1] / "data"
ASYNCAPI_SERVICES = list(SERVICES)


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    generated = schema_documents()
    return {service: generated[Path("asyncapi") / f"{service}.json"] for service in ASYNCAPI_SERVICES}


def resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return resolve(document, node["$ref"]) if isinstance(node, dict) and set(node) == {"$ref"} else node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def validate(document: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    """A schema of the document (its `$ref`s point into the document's components) against an instance."""
    jsonschema.Draft202012Validator({**schema, "components": document["components"]}).validate(instance)


def test_every_document_is_valid_asyncapi_3_and_every_reference_resolves(
    documents: dict[str, dict[str, Any]],
) -> None:
    official = json.loads((DATA / "asyncapi-3.0.0.schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(official)(official)
    for service, document in documents.items():
        problems = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(document)]
        assert not problems, f"{service}: {problems[:3]}"
        for ref in refs(document):
            assert ref.startswith("#/"), (service, ref)
            resolve(document, ref)  # a dangling reference raises KeyError


def test_every_type_on_a_channel_is_its_own_message_named_by_its_ce_type(documents: dict[str, dict[str, Any]]) -> None:
    for service, document in documents.items():
        receives = {
            op["channel"]["$ref"].rsplit("/", 1)[-1]
            for op in document["operations"].values()
            if op["action"] == "receive"
        }
        for channel_id, channel in document["channels"].items():
            topic = channel["address"]
            if topic.startswith("proposalflow.dlq."):
                continue
            messages = {
                resolve(document, ref["$ref"])["title"]: resolve(document, ref["$ref"])
                for ref in channel["messages"].values()
            }
            for model in events.messages_on(topic):
                binary = messages[model.TYPE]
                assert binary["headers"]["properties"]["ce_type"]["const"] == model.TYPE
                assert binary["payload"] == {"$ref": f"#/components/schemas/{model.__name__}"}
                assert binary["name"] == model.__name__ and binary["summary"]
                structured = messages.get(f"{model.TYPE} (structured mode)")
                if channel_id in receives:
                    assert structured is not None, f"{service} receives {model.TYPE} in structured mode too"
                    assert structured["contentType"] == CLOUDEVENTS_JSON
                    assert structured["payload"]["properties"]["type"]["const"] == model.TYPE
                else:
                    assert structured is None, f"{service} sends binary mode only, not structured {model.TYPE}"
            assert len(messages) == len(events.messages_on(topic)) * (2 if channel_id in receives else 1)


def test_the_inbound_commands_are_offered_in_both_content_modes(documents: dict[str, dict[str, Any]]) -> None:
    owners = {events.SUBMISSIONS: "intake", events.UNIT_REPORTS: "progress"}
    for topic, service in owners.items():
        document = documents[service]
        offered = {
            resolve(document, ref["$ref"])["contentType"]
            for op in document["operations"].values()
            if op["action"] == "receive" and resolve(document, op["channel"]["$ref"])["address"] == topic
            for ref in op["messages"]
        }
        assert offered == {"application/json", CLOUDEVENTS_JSON}, (topic, offered)


def test_every_example_is_valid_for_its_message_and_decodes_as_the_services_decode_it(
    documents: dict[str, dict[str, Any]],
) -> None:
    seen: set[str] = set()
    for document in documents.values():
        for message in document["components"]["messages"].values():
            ce_type = message.get("x-cloudevents-type")
            if ce_type is None:
                continue
            model = events.message_class(ce_type)
            assert model is not None
            for example in message["examples"]:
                validate(document, message["payload"], example["payload"])
                validate(document, message["headers"], example["headers"])
                headers = [(name, str(value).encode()) for name, value in example["headers"].items()]
                envelope = from_kafka(encode_data(example["payload"]), headers)
                assert envelope.type == ce_type
                model.model_validate(envelope.data)  # the model, as the consumer validates it, accepts it
                seen.add(ce_type)
    assert seen == set(events.Message.registry()), "every type has an example in some document"
