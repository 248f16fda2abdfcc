"""The buildx tier: Debian 13's buildx against the Docker 26 daemon (containerd image store) is a
multi-platform builder, and builder/setup-builder.sh selects and checks it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import REPO, BuildxDaemon, require_tool

WANT = ("linux/arm64", "linux/arm/v7")


def _platforms(buildx_ls: str) -> set[str]:
    """Every platform named on the node lines of `docker buildx ls` (the last column)."""
    found: set[str] = set()
    for line in buildx_ls.splitlines():
        if "running" in line:
            found.update(
                p.strip().rstrip("*") for p in line.split("running", 1)[1].split(None, 1)[-1].split(",")
            )
    return found


def test_buildx_lists_arm_platforms(buildx_daemon: BuildxDaemon, binfmt) -> None:
    proc = subprocess.run(
        [buildx_daemon.docker, "buildx", "ls"], env=buildx_daemon.environ(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    default = [line for line in proc.stdout.splitlines() if "running" in line][0]
    assert set(WANT) <= _platforms(default), proc.stdout


def test_multi_platform_oci_output_accepted_by_skopeo(
    tmp_path: Path, buildx_daemon: BuildxDaemon, binfmt
) -> None:
    require_tool("skopeo")
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "hello.txt").write_text("hello from buildx\n")
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    out = tmp_path / "multi.oci.tar"
    build = subprocess.run(
        [
            buildx_daemon.docker,
            "buildx",
            "build",
            "--platform",
            ",".join(WANT),
            "--output",
            f"type=oci,dest={out}",
            str(tmp_path / "ctx"),
        ],
        env=buildx_daemon.environ(),
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci-archive:{out}"], capture_output=True, text=True, check=True
    ).stdout
    index = json.loads(raw)
    platforms = {
        "/".join(
            filter(None, (m["platform"]["os"], m["platform"]["architecture"], m["platform"].get("variant")))
        )
        for m in index["manifests"]
        if m.get("annotations", {}).get("vnd.docker.reference.type") != "attestation-manifest"
    }
    assert platforms == set(WANT), raw
    # Each platform's image is a real one: skopeo reads its config through the index.
    for arch, variant in (("arm64", None), ("arm", "v7")):
        opts = ["--override-arch", arch, "--override-os", "linux"]
        if variant:
            opts += ["--override-variant", variant]
        config = subprocess.run(
            ["skopeo", *opts, "inspect", "--config", f"oci-archive:{out}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert json.loads(config)["architecture"] == arch


def test_multi_platform_push_to_loopback_registry(
    tmp_path: Path, buildx_daemon: BuildxDaemon, binfmt, registry: str
) -> None:
    require_tool("skopeo")
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY Dockerfile /Dockerfile\n")
    ref = f"{registry}/buildx-test/push:{tmp_path.name}"
    build = subprocess.run(
        [
            buildx_daemon.docker,
            "buildx",
            "build",
            "--platform",
            ",".join(WANT),
            "--provenance=false",
            "--push",
            "-t",
            ref,
            str(tmp_path),
        ],
        env=buildx_daemon.environ(),
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    raw = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{ref}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    archs = sorted(m["platform"]["architecture"] for m in json.loads(raw)["manifests"])
    assert archs == ["arm", "arm64"], raw
    subprocess.run(
        [buildx_daemon.docker, "image", "rm", ref], env=buildx_daemon.environ(), capture_output=True
    )


def test_setup_builder_selects_and_checks_the_builder(
    tmp_path: Path, buildx_daemon: BuildxDaemon, binfmt
) -> None:
    config = tmp_path / "docker-config"
    proc = subprocess.run(
        ["bash", str(REPO / "builder" / "setup-builder.sh")],
        env={**buildx_daemon.environ(), "DOCKER_CONFIG": str(config), "DOCKER": buildx_daemon.docker},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "builder dockerify-buildx" in proc.stdout and "linux/arm/v7" in proc.stdout, proc.stdout
    # The context is selected in that config: a plain `docker buildx ls` there shows it as current.
    env = {**buildx_daemon.environ(), "DOCKER_CONFIG": str(config)}
    env.pop("DOCKER_HOST")
    ls = subprocess.run([buildx_daemon.docker, "buildx", "ls"], env=env, capture_output=True, text=True)
    assert ls.returncode == 0, ls.stderr
    assert any(line.startswith("dockerify-buildx*") for line in ls.stdout.splitlines()), ls.stdout
