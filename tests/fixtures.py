"""Locate the generated test fixtures (see scripts/make_fixtures.py).

Fixtures are never committed; they are generated into $DOCKERIFY_FIXTURES or
<repo>/.fixtures.  When they are missing or stale, tests are skipped locally
and fail under CI (CI=true), where the generator is expected to have run.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import pathlib
import sys
from typing import Any, NoReturn

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
GENERATOR = REPO / "scripts" / "make_fixtures.py"
FIXTURES_DIR = pathlib.Path(os.environ.get("DOCKERIFY_FIXTURES") or REPO / ".fixtures").resolve()
MANIFEST = FIXTURES_DIR / "fixtures.json"
STAMP = FIXTURES_DIR / ".stamp"
NOT_GENERATED = "fixtures not generated: run `python3 scripts/make_fixtures.py`"
STALE = "fixtures are stale (generator changed): run `python3 scripts/make_fixtures.py`"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _skip_or_fail(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def require(cond: object, reason: str) -> None:
    """Skip the test when cond is false; under CI=true fail it instead."""
    if not cond:
        _skip_or_fail(reason)


@functools.cache
def _generator_hash() -> str:
    spec = importlib.util.spec_from_file_location("_dockerify_make_fixtures", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class body runs.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.source_hash()


def is_current() -> bool:
    """True when fixtures exist and were made by the generator as it is now."""
    return MANIFEST.is_file() and STAMP.is_file() and STAMP.read_text().strip() == _generator_hash()


def _require_current() -> None:
    require(MANIFEST.is_file() and STAMP.is_file(), NOT_GENERATED)
    require(is_current(), STALE)


@functools.cache
def _manifest() -> dict[str, Any]:
    return json.loads(MANIFEST.read_text())


def load_manifest() -> dict[str, Any]:
    """The parsed fixtures.json; skips (fails in CI) when fixtures are missing or stale."""
    _require_current()
    return _manifest()


def entry(name: str) -> dict[str, Any]:
    """The manifest entry of one fixture file, e.g. entry("pi-arm64.img")."""
    fixtures = load_manifest()["fixtures"]
    require(name in fixtures, f"fixture {name!r} is not in {MANIFEST}")
    return fixtures[name]


def fixture(name: str) -> pathlib.Path:
    """Path of a generated fixture file or directory (relative to FIXTURES_DIR)."""
    _require_current()
    path = FIXTURES_DIR / name
    require(path.exists(), f"{NOT_GENERATED} ({path} is missing)")
    return path


def staging(name: str, part: str = "root") -> pathlib.Path:
    """The staging tree ("root" or "boot") a fixture was built from."""
    return fixture(entry(name)["staging"][part])


#: The uncompressed disk-image fixtures (names are fixed by scripts/make_fixtures.py), listed here
#: so tests can parametrize at collection time, before fixtures.json exists.
DISKS = [
    "pi-arm64.img",
    "pi-arm64-ext2.img",
    "pi-arm64-ext3.img",
    "pi-arm64-inline.img",
    "pi-armv6.img",
    "debian-armhf.img",
    "amd64-gpt.img",
]
