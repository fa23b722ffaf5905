"""`make lint`'s import-cycle check (scripts/import_cycles.py) finds circles, type-only ones
included, and the package itself has none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "import_cycles.py"


def _check(package: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), str(package)],
                          capture_output=True, text=True, timeout=60)


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_circle_through_a_type_checking_import_fails_the_check(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "owner.py": "from pkg.part import Part\n",
        "part.py": ("from typing import TYPE_CHECKING\n"
                    "if TYPE_CHECKING:\n    from pkg.owner import Owner\n"),
    })
    result = _check(root)
    assert result.returncode == 1
    assert "pkg.owner <-> pkg.part" in result.stdout


def test_a_circle_of_relative_imports_in_a_subpackage_fails_the_check(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "sub/__init__.py": "",
        "sub/a.py": "from . import b\n",
        "sub/b.py": "from .c import thing\n",
        "sub/c.py": "from pkg.sub.a import x\n",
    })
    result = _check(root)
    assert result.returncode == 1
    assert "(3 modules)" in result.stdout


def test_owners_down_events_up_passes(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "roles.py": "from typing import Protocol\nclass Owner(Protocol): ...\n",
        "owner.py": "from pkg.part import Part\n",
        "part.py": "from pkg.roles import Owner\n",
    })
    result = _check(root)
    assert result.returncode == 0 and result.stdout == ""


def test_webgarden_has_no_import_cycle() -> None:
    result = _check(ROOT / "src" / "webgarden")
    assert result.returncode == 0, result.stdout
