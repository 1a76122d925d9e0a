"""The ledger's one error tree.

Every failure the ledger reports is a :class:`LedgerError`. Each subclass is named after the
thing that failed, and :meth:`LedgerError.diagnostics` explains it to a person. Errors raised
by msgpack, plyvel, PyNaCl or ``cryptography`` are mapped to these at the module that calls
those libraries; none escapes raw.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error the ledger raises."""

    #: A short, stable, machine-readable code (used by the APIs as ``{"error": code}``).
    code: str = "ledger_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def diagnostics(self) -> str:
        """Explain the failure to a person, in one paragraph."""
        return f"{type(self).__name__}: {self.detail}"


class EncodingError(LedgerError):
    """Bytes are not the canonical encoding of an allowed value, or a value cannot be encoded."""

    code = "non_canonical"


class HashAlgorithmError(LedgerError):
    """An unknown or unsupported hash algorithm name."""

    code = "bad_hash_alg"


class KeyMaterialError(LedgerError):
    """A key file or key material that cannot be used."""

    code = "bad_key"


class SignatureError(LedgerError):
    """A signature that does not verify (wrong key, wrong message, wrong chain, malformed)."""

    code = "bad_signature"


class GenesisError(LedgerError):
    """A genesis file that does not follow DESIGN §2."""

    code = "bad_genesis"


class ValidityError(LedgerError):
    """An entry or block that fails validity: consensus-critical, identical on every node.

    ``height`` and ``index`` locate the failure when known (the block height and the entry's
    position in the block).
    """

    code = "invalid"

    def __init__(self, detail: str, *, height: int | None = None, index: int | None = None):
        super().__init__(detail)
        self.height = height
        self.index = index

    def diagnostics(self) -> str:
        where = []
        if self.height is not None:
            where.append(f"height {self.height}")
        if self.index is not None:
            where.append(f"entry {self.index}")
        loc = f" at {', '.join(where)}" if where else ""
        return f"{type(self).__name__}{loc}: {self.detail}"


class AdmissionError(LedgerError):
    """A submission refused by the accepting node's admission policy (never a validity failure)."""

    code = "refused"


class ProofError(LedgerError):
    """A Merkle inclusion or consistency proof that does not hold.

    For a root mismatch, ``expected`` and ``computed`` carry both roots.
    """

    code = "bad_proof"

    def __init__(
        self, detail: str, *, expected: bytes | None = None, computed: bytes | None = None
    ) -> None:
        super().__init__(detail)
        self.expected = expected
        self.computed = computed

    def diagnostics(self) -> str:
        if self.expected is not None and self.computed is not None:
            return (
                f"ProofError: {self.detail} (expected root {self.expected.hex()}, "
                f"computed {self.computed.hex()})"
            )
        return super().diagnostics()


class CheckpointError(LedgerError):
    """A checkpoint without a quorum of valid signatures, or a malformed checkpoint file."""

    code = "bad_checkpoint"


class EquivocationError(CheckpointError):
    """Two validly signed checkpoints (or headers) that contradict each other.

    ``evidence`` holds both signed objects so that they can be shown to anyone.
    """

    code = "equivocation"

    def __init__(self, detail: str, *, evidence: tuple[object, object]) -> None:
        super().__init__(detail)
        self.evidence = evidence


class ReceiptError(LedgerError):
    """A receipt that does not verify; ``field`` names the part that failed."""

    code = "bad_receipt"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field

    def diagnostics(self) -> str:
        if self.field:
            return f"ReceiptError in {self.field}: {self.detail}"
        return super().diagnostics()


class StoreError(LedgerError):
    """The LevelDB store cannot be opened, read or written."""

    code = "store_error"


class CorruptionError(StoreError):
    """A stored value does not match its hash: the data on disk was changed or damaged."""

    code = "corruption"

    def __init__(self, detail: str, *, height: int | None = None) -> None:
        super().__init__(detail)
        self.height = height
