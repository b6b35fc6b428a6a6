"""A list setting written in one environment variable: a JSON list, or words separated by commas."""

from __future__ import annotations

import json
from typing import Any


def comma_or_json_list(v: Any) -> Any:
    """``'["a", "b"]'`` or ``"a, b"`` as ``["a", "b"]``; anything that is not a string is returned as it is
    (pydantic validates it next). A string starting with ``[`` that is not JSON raises ValueError saying so."""
    if not isinstance(v, str):
        return v
    if v.lstrip().startswith("["):
        try:
            return json.loads(v)
        except ValueError as exc:
            raise ValueError(f"not a JSON list: {exc}") from None
    return [p.strip() for p in v.split(",") if p.strip()]
