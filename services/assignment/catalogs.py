"""The files assignment starts from: the units catalog and routing rules (`units.yaml`), and the labelled
past proposals the routing ranking learns from (`data/labelled_proposals.yaml`, made by
`tools/generate_labelled.py`)."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from services.assignment.domain import RoutingTable
from services.assignment.learning import Example, proposal_text

ROUTING_FILE = Path(__file__).with_name("units.yaml")


def load_routing(path: Path = ROUTING_FILE) -> RoutingTable:
    return RoutingTable.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


LABELLED_FILE = Path(__file__).parent / "data" / "labelled_proposals.yaml"


class LabelledProposal(BaseModel):
    """A past proposal with the units that handled it."""

    id: str
    title: str
    body: str
    category: str
    suggestions: list[str] = Field(default_factory=list)
    lead_unit: str
    co_units: list[str] = Field(default_factory=list)

    @property
    def text(self) -> str:
        return proposal_text(self.title, self.body, self.suggestions)

    def example(self) -> Example:
        return Example(self.text, self.lead_unit)


def load_labelled(path: Path = LABELLED_FILE) -> list[LabelledProposal]:
    return [LabelledProposal.model_validate(item) for item in yaml.safe_load(path.read_text(encoding="utf-8"))]
