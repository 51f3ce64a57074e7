"""Documented answers: the OpenAPI of a route names the model of its response body, while the route
keeps answering with the dict its view builds (the models describe the answers; they do not filter or
convert them). tests/unit/test_response_schemas.py checks real answers against what is documented."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def documented(model: type[BaseModel], description: str, *, status: int = 200) -> dict[str, Any]:
    """Keyword arguments of a route decorator: `@routes.get(path, **documented(ProposalView, "…"))`."""
    return {"response_model": None, "responses": {status: {"model": model, "description": description}}}
