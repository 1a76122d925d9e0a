"""What the HTTP apps need from a node: the :class:`NodeService` protocol and its errors.

The apps only translate HTTP to these calls and back (STYLE.md, FastAPI); the node
(``node/service.py``) implements them. ``api`` never imports ``node`` (DESIGN §1), so the
protocol lives here.

Values cross this boundary in the ledger's own data model (bytes stay bytes); the routers turn
them into the JSON forms DESIGN §2/§5 fix (receipts and checkpoint files are already JSON).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from ledger.errors import LedgerError

Wait = Literal["none", "commit", "receipt"]


class ServiceError(LedgerError):
    """An error of the service layer, mapped to an HTTP status by the apps' one handler."""

    code = "service_error"
    status = 500


class BadHash(ServiceError):
    """A hash or id in a path that is not 64 lowercase hex digits: well-formed HTTP whose
    content cannot be processed, so 422 (issue 11), not 400."""

    code = "bad_hash"
    status = 422


class NotFound(ServiceError):
    """The thing asked for does not exist (or is not shown on this listener)."""

    code = "not_found"
    status = 404


class Unauthorized(ServiceError):
    """A read that needs an identity's bearer token came without a valid one."""

    code = "unauthorized"
    status = 401


class TooLarge(ServiceError):
    """A body or upload over the configured limit."""

    code = "too_large"
    status = 413


class RateLimited(ServiceError):
    """Too many requests from one client on the public listener."""

    code = "rate_limited"
    status = 429


class Unavailable(ServiceError):
    """The node cannot answer now (no leader, not ready, stopped by an alarm)."""

    code = "unavailable"
    status = 503


class Behind(Unavailable):
    """This node trails the chain too far to say "not found" honestly (DESIGN §5)."""

    code = "behind"


class CommitUnknown(Unavailable):
    """Leadership was lost while waiting: the entries may or may not commit; retry the same
    envelopes (replay is idempotent by ``entry_id``, DESIGN §5)."""

    code = "commit_unknown"


class NodeService(Protocol):
    """The calls the internal and public apps make on a node."""

    @property
    def chain_id(self) -> bytes:
        """The chain id (genesis header hash)."""
        ...

    @property
    def hash_alg(self) -> str:
        """The chain hash ``H``."""
        ...

    async def submit(self, envelopes: list[dict[str, Any]], wait: Wait) -> list[dict[str, Any]]:
        """Admit a batch (all or nothing) and answer per entry ``{"entry_id": hex, "status":
        "accepted"|"committed"|"duplicate", "height"?, "leaf_index"?, "receipt"?}``.

        Raises a :class:`LedgerError` naming the refused index, :class:`CommitUnknown` or
        :class:`Unavailable`.
        """
        ...

    def entry(self, entry_id: bytes) -> dict[str, Any]:
        """``{"envelope", "height", "leaf_index"}`` of a committed entry, else :class:`NotFound`."""
        ...

    def receipt(self, entry_id: bytes, *, documents_only: bool = False) -> dict[str, Any]:
        """The receipt JSON of a cosigned entry (DESIGN §2), else :class:`NotFound`."""
        ...

    def block(self, height: int) -> dict[str, Any]:
        """An applied block (the ledger value), else :class:`NotFound`."""
        ...

    def genesis_frame(self) -> dict[str, Any]:
        """``{"block": genesis block, "consortium": consortium map}``: a chain bundle's first
        frame (DESIGN §2). It proves itself: the block's ``consortium`` field is the map's hash
        and the block's header hash is the chain id an auditor pins."""
        ...

    def head(self) -> dict[str, Any]:
        """``{"height", "block" (hash bytes), "tree_size", "root", "time"}`` of the applied head."""
        ...

    def checkpoint(self, tree_size: int | None) -> dict[str, Any]:
        """The checkpoint file (JSON) of the latest cosigned checkpoint, or at ``tree_size``."""
        ...

    def consistency(self, first: int, second: int) -> dict[str, Any]:
        """The consistency-proof file between two cosigned tree sizes."""
        ...

    def cluster(self) -> dict[str, Any]:
        """``{"node", "leader", "term", "commit_index", "members", ...}``."""
        ...

    def ready(self) -> tuple[bool, str]:
        """Whether the node serves correct answers, and why not."""
        ...

    def verify_sha256(self, digest: bytes) -> dict[str, Any]:
        """Public verify-by-hash over ``document`` entries (DESIGN §5); :class:`Behind` when the
        node trails the chain."""
        ...

    def case(self, case_no: str) -> list[dict[str, Any]]:
        """Every committed entry of one 案号, in chain order."""
        ...

    def authenticate(self, token: str) -> str | None:
        """The identity id of a bearer token, or None."""
        ...

    def metrics(self) -> tuple[bytes, str]:
        """Prometheus exposition bytes and content type."""
        ...

    # The closed-case inspection (issue 8): the node's verifier engine over applied blocks.
    # Each raises :class:`Unavailable` when inspection is switched off on the node.

    def inspection_findings(self, *, case: str | None = None, court: str | None = None,
                            rule: list[str] | None = None, severity: list[str] | None = None,
                            kind: str | None = None) -> list[dict[str, Any]]:
        """Current findings in report order, in the finding shape of domain/events.md (JSON),
        plus ``filed_at`` (ms) when the case's filing is known."""
        ...

    def inspection_summary(self) -> dict[str, Any]:
        """``{height, now, calendar, ruleset, reports, courts: {court: {cases, violations,
        warnings, cases_with_crit, closed_zb, improper, share}}, rules, severities, months}``."""
        ...

    def inspection_deadlines(self, *, court: str | None = None,
                             limit: int = 200) -> list[dict[str, Any]]:
        """Deadline warnings (findings with a due date), soonest first, each with ``overdue``."""
        ...

    def inspection_case(self, case_no: str) -> dict[str, Any]:
        """``{case, court, entries: [{entry_id, kind, type?, height, block_time, proof, ...}],
        findings}``; :class:`NotFound` for an unknown case."""
        ...
