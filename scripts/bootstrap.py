"""Create the project's virtual environment, even where `venv` ships without pip.

Debian splits ensurepip into the python3.X-venv package, so on a machine with only Python
and make, `python3 -m venv` fails. Then the environment is made without pip and pip is
installed from its wheel, fetched from PyPI (a wheel is a zip Python can run from).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.request
import venv
from pathlib import Path


def pip_works(python: Path) -> bool:
    return subprocess.run([python, "-m", "pip", "--version"], capture_output=True).returncode == 0


def main(target: str) -> int:
    env_dir = Path(target)
    python = env_dir / "bin" / "python"
    if python.exists() and pip_works(python):
        return 0
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    except (subprocess.CalledProcessError, OSError):
        venv.EnvBuilder(with_pip=False, clear=True).create(env_dir)
    if pip_works(python):
        return 0
    print("bootstrap: venv has no pip here; installing pip from its wheel on PyPI", file=sys.stderr)
    with urllib.request.urlopen("https://pypi.org/pypi/pip/json", timeout=60) as response:
        release = json.load(response)
    wheel = next(u for u in release["urls"] if u["filename"].endswith(".whl"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / wheel["filename"]
        with urllib.request.urlopen(wheel["url"], timeout=120) as response:
            path.write_bytes(response.read())
        subprocess.run([python, f"{path}/pip", "install", "-q", str(path)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".venv"))
