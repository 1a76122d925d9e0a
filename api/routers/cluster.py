"""``/v1/cluster``, ``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from api.deps import Service
from api.schemas import Cluster
from api.service import Unavailable

router = APIRouter(tags=["cluster"])


@router.get("/v1/cluster", response_model=Cluster)
def cluster(service: Service) -> dict[str, Any]:
    """This node's view of the consortium: leader, term, commit index, members, alarms."""
    return service.cluster()


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(service: Service) -> dict[str, str]:
    """The node serves correct answers (fails after a committed block failed validity)."""
    ok, why = service.ready()
    if not ok:
        raise Unavailable(why)
    return {"status": "ready"}


@router.get("/metrics", response_class=Response)
def metrics(service: Service) -> Response:
    """Prometheus metrics."""
    data, ctype = service.metrics()
    return Response(data, media_type=ctype)
