"""Pydantic schemas of the HTTP APIs: the shapes DESIGN §5 fixes, in one place for OpenAPI."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    """Every refusal: a stable code and a sentence saying what and why (DESIGN §6)."""

    error: str = Field(examples=["bad_signature"])
    detail: str = Field(examples=["entries[0]: signature does not verify"])


class EntryStatus(BaseModel):
    """The answer for one submitted entry."""

    entry_id: str
    status: Literal["accepted", "committed", "duplicate"]
    height: int | None = None
    leaf_index: int | None = None
    receipt: dict[str, Any] | None = None


class SubmitResponse(BaseModel):
    """``POST /v1/entries``: one status per submitted entry, in order."""

    entries: list[EntryStatus]


class JsonEnvelope(BaseModel):
    """A JSON envelope: bytes fields of DESIGN §5's table as lowercase hex."""

    payload: dict[str, Any]
    sig: str


class JsonSubmission(BaseModel):
    """``application/json`` body of ``POST /v1/entries``."""

    entries: list[JsonEnvelope]


class EntryRead(BaseModel):
    """A committed entry: its envelope (JSON form), location and id."""

    entry_id: str
    height: int
    leaf_index: int
    entry: dict[str, Any]


class Head(BaseModel):
    """The applied head of this node."""

    height: int
    block: str
    tree_size: int
    root: str
    time: int
    cosigned_tree_size: int | None = None


class Cluster(BaseModel):
    """``GET /v1/cluster`` (DESIGN §5); nodes may add fields (alarms, evidence, …)."""

    model_config = ConfigDict(extra="allow")

    node: str
    leader: str | None
    term: int
    commit_index: int
    applied_height: int
    members: list[dict[str, Any]]
    mode: str
    alarms: list[str]


class AsOf(BaseModel):
    """The log state a verify answer speaks for."""

    tree_size: int
    time: int


class Match(BaseModel):
    """One anchored document with this SHA-256."""

    entry_id: str
    kind: str
    court: str
    doc_type: str | None
    anchored_at: int
    height: int
    receipt_url: str | None


class VerifyResponse(BaseModel):
    """``GET /v1/verify/{sha256-hex}`` (DESIGN §5)."""

    anchored: bool
    sha256: str
    as_of: AsOf
    matches: list[Match]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed or non-canonical input"},
    401: {"model": ErrorBody, "description": "A bearer token is needed"},
    404: {"model": ErrorBody, "description": "Not found"},
    413: {"model": ErrorBody, "description": "Body over the size limit"},
    422: {"model": ErrorBody, "description": "Refused by validity or admission"},
    429: {"model": ErrorBody, "description": "Rate limited"},
    503: {"model": ErrorBody, "description": "Behind, no leader, or commit unknown"},
}
