"""Linters and the type checker are part of the test suite."""

import shutil
import subprocess
import sys

from tests.conftest import REPO
from tests.fixtures import require


def test_ruff() -> None:
    require(shutil.which("ruff"), "ruff is not installed (pip install -e .[test])")
    proc = subprocess.run(
        ["ruff", "check", "dockerify", "tests", "scripts", "bench"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "dockerify"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
