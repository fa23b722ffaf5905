"""Which parts may import which (DESIGN.md "Layout"; STYLE.md 17: owners down, events up)."""

from __future__ import annotations

import ast
from pathlib import Path

import webgarden

PACKAGE = Path(webgarden.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name a file imports, at any depth (TYPE_CHECKING included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_worker_imports_nothing_from_the_listener() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(
            name for name in imported_modules(path) if name.startswith("webgarden.listener")
        )
        for path in sorted((PACKAGE / "worker").rglob("*.py"))
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_worker_and_the_listener_share_the_compression_rules_from_a_neutral_module() -> None:
    from webgarden import compression
    from webgarden.worker import wsgi

    assert wsgi.CompressionRules is compression.CompressionRules
    assert not (PACKAGE / "listener" / "compression.py").exists()
