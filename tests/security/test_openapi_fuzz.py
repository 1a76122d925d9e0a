"""Schemathesis against both committed OpenAPI specs, on a live single-court node (issue 11).
Budget: ≤ 60 s on an idle machine (generate phase only, 10 cases an operation).

For every operation of ``docs/openapi-internal.json`` and ``docs/openapi-public.json``,
generated requests (valid and invalid by the schema) must never get a 5xx, every answer must
conform to its documented schema and status codes, and a refused request must change nothing
(the applied head is the same before and after).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from node.demo import Cluster
from node.init import init_consortium
from tests.e2e.test_cluster import free_base_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
INTERNAL = schemathesis.openapi.from_path(str(ROOT / "docs" / "openapi-internal.json"))
PUBLIC = schemathesis.openapi.from_path(str(ROOT / "docs" / "openapi-public.json"))
#: A schema-valid request may still be refused for what no schema can say (``first`` above
#: ``second``, a hash written in upper case): refusals must be 4xx, which the other checks hold.
EXCLUDED = [positive_data_acceptance]


@schemathesis.serializer("application/msgpack")
def _msgpack(ctx: Any, value: Any) -> bytes:
    """Generated ``application/msgpack`` bodies (the schema says: binary) go as they are."""
    if isinstance(value, bytes):
        return value
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


FUZZ = settings(max_examples=10, deadline=None, phases=[Phase.generate],
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("openapi") / "c"
    init_consortium(folder, 1, base_port=free_base_port())
    c = Cluster(folder, extra_env={"COURTLEDGER_PUBLIC__RATE_PER_SECOND": "100000",
                                   "COURTLEDGER_PUBLIC__RATE_BURST": "100000"})
    c.start_all()
    try:
        c.wait_ready(timeout=60)
        yield c
    finally:
        c.stop_all()


def _head(c: Cluster) -> Any:
    return httpx.get(c.internal(c.ids[0]) + "/v1/head", timeout=5).json()


def _auth(c: Cluster) -> dict[str, str]:
    token = (c.folder / "keys" / f"{c.ids[0]}-inspector.token").read_text().strip()
    return {"Authorization": f"Bearer {token}"}


@INTERNAL.parametrize()
@FUZZ
def test_internal_api_conforms_and_refusals_change_nothing(node: Cluster, case: Any) -> None:
    before = _head(node)
    response = case.call_and_validate(base_url=node.internal(node.ids[0]),
                                      headers=_auth(node), excluded_checks=EXCLUDED)
    assert response.status_code < 500, response.text
    if 400 <= response.status_code < 500:
        assert _head(node) == before, (case.method, case.path, response.status_code)


@PUBLIC.parametrize()
@FUZZ
def test_public_api_conforms_and_never_writes(node: Cluster, case: Any) -> None:
    before = _head(node)
    response = case.call_and_validate(base_url=node.public(node.ids[0]),
                                      excluded_checks=EXCLUDED)
    assert response.status_code < 500, response.text
    assert _head(node) == before, (case.method, case.path, response.status_code)
