"""Shared test plumbing: the real components (daemon, registry, qemu, tools) as fixtures.

Locally a missing component skips its tests with a reason; with CI=true the skip becomes a
failure, because CI installs and starts everything (see .ci/run)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures import in_ci, require

REPO = Path(__file__).resolve().parent.parent
REGISTRY = "127.0.0.1:5000"


def dockerify(
    *args: str, check: bool = True, env: dict[str, str] | None = None, **kw
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, in a fresh process."""
    proc = subprocess.run(
        [sys.executable, "-m", "dockerify", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        **kw,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"dockerify {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def require_tool(*names: str) -> None:
    for name in names:
        require(shutil.which(name), f"{name} is not installed (scripts/setup.sh installs it)")


def is_root() -> bool:
    return os.geteuid() == 0


@pytest.fixture(scope="session")
def docker_daemon() -> str:
    require_tool("docker")
    ok = subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    require(ok, "the Docker daemon is not running (scripts/start-daemons.sh starts it)")
    return "docker"


#: Where scripts/trixie.sh puts Debian 13's Docker 26 CLI and buildx, and the socket of the daemon
#: scripts/start-buildx-daemon.sh starts (Docker 26, containerd image store).
TRIXIE = Path(os.environ.get("DOCKERIFY_TRIXIE", "/opt/dockerify-trixie"))
BUILDX_SOCKET = Path("/run/dockerify-buildx/docker.sock")


@dataclass(frozen=True)
class BuildxDaemon:
    """The Docker 26 daemon: `docker` is its CLI; `env` holds DOCKER_HOST and DOCKER_CONFIG (a
    config dir with the buildx plugin) to merge into os.environ for subprocess calls."""

    docker: str
    env: dict[str, str]

    def environ(self) -> dict[str, str]:
        return {**os.environ, **self.env}


@pytest.fixture(scope="session")
def buildx_daemon(tmp_path_factory: pytest.TempPathFactory) -> BuildxDaemon:
    docker = TRIXIE / "bin" / "docker"
    plugin = TRIXIE / "docker-config" / "cli-plugins" / "docker-buildx"
    require(
        docker.exists() and plugin.exists(), f"Docker 26 and buildx are not in {TRIXIE} (scripts/trixie.sh)"
    )
    require(
        BUILDX_SOCKET.is_socket(),
        f"the Docker 26 daemon is not running at {BUILDX_SOCKET} (scripts/start-daemons.sh starts it)",
    )
    # A config dir of the session's own: builds and logins of other sessions stay apart.
    config = tmp_path_factory.mktemp("docker-config")
    (config / "cli-plugins").mkdir()
    (config / "cli-plugins" / "docker-buildx").symlink_to(plugin)
    daemon = BuildxDaemon(
        str(docker), {"DOCKER_HOST": f"unix://{BUILDX_SOCKET}", "DOCKER_CONFIG": str(config)}
    )
    info = subprocess.run(
        [daemon.docker, "info", "--format", "{{.ServerVersion}} {{.DriverStatus}}"],
        env=daemon.environ(),
        capture_output=True,
        text=True,
    )
    require(
        info.returncode == 0,
        f"the Docker 26 daemon at {BUILDX_SOCKET} does not answer: {info.stderr.strip()}",
    )
    require(
        "io.containerd.snapshotter" in info.stdout,
        f"the daemon at {BUILDX_SOCKET} does not use the containerd image store: {info.stdout.strip()}",
    )
    return daemon


@pytest.fixture(scope="session")
def registry() -> str:
    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=3)
        up = True
    except OSError:
        up = False
    require(up, f"no registry on {REGISTRY} (scripts/start-daemons.sh starts one)")
    return REGISTRY


@pytest.fixture(scope="session")
def root_user() -> None:
    require(is_root(), "needs root for the oracle's read-only loop mounts")


@pytest.fixture(scope="session")
def binfmt() -> None:
    ok = all(Path(f"/proc/sys/fs/binfmt_misc/{h}").exists() for h in ("qemu-aarch64", "qemu-arm"))
    require(ok, "qemu-user binfmt handlers are not registered (scripts/start-daemons.sh enables them)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    """Under CI=true every test must really run: a skip (from any source) becomes a failure."""
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped under CI=true, which requires every tier to run: {reason}"


__all__ = ["dockerify", "require_tool", "in_ci", "REGISTRY", "BuildxDaemon"]
