"""Write the committed OpenAPI documents: ``python -m api.openapi [DIR]`` (default ``docs``).

The apps' schemas do not depend on a running node, so a stub service is enough here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from api.internal import create_internal_app
from api.public import create_public_app


def documents() -> dict[str, dict[str, Any]]:
    """``{file name: OpenAPI document}`` for both listeners."""
    stub: Any = object()
    return {
        "openapi-internal.json": create_internal_app(stub).openapi(),
        "openapi-public.json": create_public_app(stub).openapi(),
    }


def render(doc: dict[str, Any]) -> str:
    """Stable text of a document (sorted keys, UTF-8, trailing newline)."""
    return json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    """Write the documents into the folder given (default ``docs``)."""
    out = Path(argv[0]) if argv else Path("docs")
    out.mkdir(parents=True, exist_ok=True)
    for name, doc in documents().items():
        (out / name).write_text(render(doc), encoding="utf-8")
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
