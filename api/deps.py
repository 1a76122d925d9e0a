"""Dependencies of the routers, as ``Annotated`` aliases (STYLE.md, FastAPI)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Header, Request

from api.service import NodeService, Unauthorized

_reads = logging.getLogger("courtledger.reads")


def get_service(request: Request) -> NodeService:
    """The node service the app was built with."""
    service: NodeService = request.app.state.service
    return service


Service = Annotated[NodeService, Depends(get_service)]


def require_identity(
    service: Service, request: Request, authorization: Annotated[str | None, Header()] = None
) -> str:
    """The identity behind ``Authorization: Bearer <token>`` (DESIGN §5: reads of entries,
    blocks, receipts and case data need one); :class:`Unauthorized` otherwise.

    Every authenticated read is logged with the identity and the route's template (issue 7:
    "every read is logged with the identity"); never the parameters, which may name a case.
    """
    if not authorization or not authorization.startswith("Bearer "):
        raise Unauthorized("this read needs an identity's bearer token (Authorization: Bearer …)")
    ident = service.authenticate(authorization[len("Bearer "):].strip())
    if ident is None:
        raise Unauthorized("unknown bearer token")
    route = getattr(request.scope.get("route"), "path", "?")
    _reads.info("read %s", route, extra={"identity": ident})
    return ident


Identity = Annotated[str, Depends(require_identity)]
