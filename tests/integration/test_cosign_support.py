"""Helpers for the cosign/oras interoperability tests (no tests here): the real cosign 2.5.0 and
oras 1.2.0 from Debian 13 (scripts/trixie.sh puts them under /opt/dockerify-trixie/bin), run
offline against the loopback registry, and key pairs made by either tool."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures import require
from tests.integration.test_registry_support import run_cli

TRIXIE_BIN = Path("/opt/dockerify-trixie/bin")
PASSWORD = "correct horse"
ENV = {**os.environ, "COSIGN_PASSWORD": PASSWORD, "DOCKERIFY_KEY_PASSWORD": PASSWORD}
# Offline, against a plain-HTTP loopback registry: no transparency log, no prompts.
SIGN_FLAGS = ["--tlog-upload=false", "--yes", "--allow-insecure-registry"]
VERIFY_FLAGS = ["--insecure-ignore-tlog", "--allow-insecure-registry"]


def tool(name: str) -> str:
    path = TRIXIE_BIN / name
    require(path.exists(), f"{path} is missing (scripts/trixie.sh installs Debian 13's {name})")
    return str(path)


@pytest.fixture(scope="session")
def cosign_bin() -> str:
    return tool("cosign")


@pytest.fixture(scope="session")
def oras_bin() -> str:
    return tool("oras")


def cosign(
    *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [tool("cosign"), *args],
        capture_output=True,
        text=True,
        env={**ENV, **(env or {})},
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"cosign {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def oras(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [tool("oras"), *args], capture_output=True, text=True, cwd=cwd, stdin=subprocess.DEVNULL, timeout=300
    )
    if proc.returncode != 0:
        raise AssertionError(f"oras {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def dockerify(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=ENV, check=check)


@dataclass(frozen=True)
class KeyPair:
    origin: str  # "cosign", "dockerify-cosign" or "dockerify-pkcs8"
    key: Path
    pub: Path

    @property
    def cosign_can_sign(self) -> bool:
        # cosign signs only with its own ENCRYPTED SIGSTORE PRIVATE KEY files
        return self.origin != "dockerify-pkcs8"


def make_keys(directory: Path, origin: str) -> KeyPair:
    directory.mkdir(parents=True, exist_ok=True)
    if origin == "cosign":
        subprocess.run(
            [tool("cosign"), "generate-key-pair"], cwd=directory, env=ENV, check=True, capture_output=True
        )
        return KeyPair(origin, directory / "cosign.key", directory / "cosign.pub")
    fmt = origin.removeprefix("dockerify-")
    dockerify("keygen", "--format", fmt, "--output-key-prefix", str(directory / "k"))
    return KeyPair(origin, directory / "k.key", directory / "k.pub")


ORIGINS = ("cosign", "dockerify-cosign", "dockerify-pkcs8")


@pytest.fixture(scope="session")
def key_pairs(tmp_path_factory: pytest.TempPathFactory, cosign_bin: str) -> dict[str, KeyPair]:
    base = tmp_path_factory.mktemp("cosign-keys")
    return {origin: make_keys(base / origin, origin) for origin in ORIGINS}


@pytest.fixture(scope="session")
def other_keys(tmp_path_factory: pytest.TempPathFactory, cosign_bin: str) -> KeyPair:
    return make_keys(tmp_path_factory.mktemp("cosign-other"), "cosign")


# ---------------------------------------------------------------- the registry, read directly

ACCEPT = (
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json"
)


def get(url: str, accept: str = ACCEPT) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def manifest(registry: str, repo: str, ref: str) -> dict | None:
    status, body, _ = get(f"http://{registry}/v2/{repo}/manifests/{ref}")
    return json.loads(body) if status == 200 else None


def put(url: str, data: bytes, content_type: str, method: str = "PUT") -> None:
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": content_type})
    urllib.request.urlopen(req, timeout=30).close()


def push_blob(registry: str, repo: str, data: bytes) -> str:
    import hashlib

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    req = urllib.request.Request(f"http://{registry}/v2/{repo}/blobs/uploads/", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        location = r.headers["Location"]
    if location.startswith("/"):
        location = f"http://{registry}{location}"
    sep = "&" if "?" in location else "?"
    put(f"{location}{sep}digest={digest}", data, "application/octet-stream")
    return digest


def tags(registry: str, repo: str) -> list[str]:
    status, body, _ = get(f"http://{registry}/v2/{repo}/tags/list", "application/json")
    assert status == 200, body
    return json.loads(body).get("tags") or []


def sig_tag(digest: str, kind: str = "sig") -> str:
    return f"sha256-{digest.removeprefix('sha256:')}.{kind}"
