"""What the admin verbs print for a person (`--json` prints the server's answer as it is).

Rows (`list ...`) are a table with a header line; one object (`cache stats`, `recycle`,
`stop`, `start`, `cache flush`) is a sentence or aligned `name  value` lines. Sizes are in
binary units through `format_bytes`, the one spelling the whole command line uses; the
JSON keeps plain bytes, for programs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from webgarden.config.values import format_bytes

#: Fields that hold a number of bytes, wherever they appear.
BYTE_FIELDS = frozenset({"rss", "private", "bytes"})


def cell(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name in BYTE_FIELDS and isinstance(value, int | float):
        return format_bytes(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "(none)"
    columns = list(rows[0])
    cells = [[cell(c, row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
              for r in cells]
    return "\n".join(lines)


def fields(answer: Mapping[str, Any]) -> str:
    width = max((len(name) for name in answer), default=0)
    return "\n".join(f"{name.ljust(width)}  {cell(name, value)}" for name, value in answer.items())


def answer(command: str, result: Any) -> str:
    """The human text for a verb's answer."""
    if isinstance(result, list):
        return table(result)
    if not isinstance(result, dict):
        return str(result)
    pool = result.get("pool")
    if command == "recycle" and pool is not None:
        old = result.get("recycling") or []
        replaced = f"; replacing worker(s) {cell('', old)}" if old else ""
        return f"recycling application pool {pool!r}{replaced}"
    if command in ("stop", "start") and pool is not None:
        return f"application pool {pool!r} is {result.get('state')}"
    if command == "flush" and "flushed" in result:
        return f"flushed {result['flushed']} cache entr{'y' if result['flushed'] == 1 else 'ies'}"
    return fields(result)
