"""The BuildKit frontend with `docker buildx build` on Docker 26 (BuildKit v0.13, containerd image
store): `--load`, multi-platform `--push` to the loopback registry, `--output type=oci`, caching."""

from __future__ import annotations

import json
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.conftest import BuildxDaemon, dockerify, require_tool
from tests.fixtures import fixture
from tests.integration.frontend_support import (
    FRONTEND_LOCAL,
    FRONTEND_REGISTRY,
    STOCK_RUN,
    Builder,
    assert_buildkit_losses,
    buildkit_loss,
    cached_in_stream,
    last_layer,
    link_into,
    require_frontend,
    syntax,
    vertex_statuses,
)

pytestmark = [pytest.mark.daemon, pytest.mark.fixtures]
PREFIX = "frontend-test"


@pytest.fixture(scope="module")
def bx(buildx_daemon: BuildxDaemon, binfmt) -> Builder:
    b = Builder("dockerd-26 buildx", buildx_daemon.docker, dict(buildx_daemon.env), buildx=True)
    require_frontend(b)
    return b


@pytest.fixture(scope="module")
def armhf_tarball(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("armhf-bx")
    dockerify("build", "-q", str(fixture("debian-armhf.img")), "--output", f"oci:{work}/oci:t")
    tarball = work / "debian-armhf-rootfs.tar.gz"
    dockerify("export", f"oci:{work}/oci:t", "--format", "rootfs-tar", "-o", str(tarball))
    return tarball


def oci_diff(b: Builder, context: Path, build_file: str, source: Path, *args: str) -> list[str]:
    """Build to an OCI archive and diff it against the source: BuildKit's own image, judged by
    dockerify's reader of the layers it wrote."""
    out = context.parent / f"{context.name}.oci.tar"
    b.build(context, build_file, "--provenance=false", "--output", f"type=oci,dest={out}", *args)
    proc = dockerify("diff", str(source), f"oci-archive:{out}", check=False)
    assert proc.returncode in (0, 1), proc.stderr
    return [line for line in proc.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("frontend", [FRONTEND_LOCAL, FRONTEND_REGISTRY], ids=["local", "registry"])
def test_card_to_image_load(bx, tmp_path, frontend) -> None:
    card = fixture("pi-arm64.img")
    ctx = tmp_path / "ctx"
    link_into(ctx, card)
    name = f"{PREFIX}/bx-pi-arm64:{frontend.split('/')[0].replace(':', '-')}"
    bx.build(ctx, syntax(frontend) + "FROM pi-arm64.img\n", "--load", "-t", name)
    info = json.loads(bx.run("image", "inspect", name).stdout)[0]
    assert (info["Os"], info["Architecture"]) == ("linux", "arm64")
    assert bx.run("run", "--rm", "--platform", "linux/arm64", name, "uname", "-m").stdout.strip() == "aarch64"
    lines = oci_diff(bx, ctx, syntax(frontend) + "FROM pi-arm64.img\n", card)
    assert [line for line in lines if not buildkit_loss(line)] == []


def test_armhf_tarball_to_image_load(bx, tmp_path, armhf_tarball) -> None:
    ctx = tmp_path / "ctx"
    link_into(ctx, armhf_tarball)
    name = f"{PREFIX}/bx-armhf:1"
    build_file = syntax(FRONTEND_LOCAL) + f"FROM {armhf_tarball.name}\n"
    bx.build(ctx, build_file, "--load", "-t", name)
    info = json.loads(bx.run("image", "inspect", name).stdout)[0]
    assert (info["Architecture"], info.get("Variant")) == ("arm", "v7")
    assert bx.run("run", "--rm", "--platform", "linux/arm/v7", name, "uname", "-m").stdout.strip() == "armv7l"
    lines = oci_diff(bx, ctx, build_file, armhf_tarball)
    assert [line for line in lines if not buildkit_loss(line)] == []


MULTI = (
    "FROM rootfs-${TARGETARCH}.tar.gz\n"
    "RUN uname -m > /arch\n"
    "LABEL org.example.arch=${TARGETARCH}\n"
    'CMD ["cat", "/arch"]\n'
)


@pytest.fixture
def multi_context(tmp_path, armhf_tarball) -> Path:
    ctx = tmp_path / "ctx"
    link_into(ctx, fixture("rootfs-arm64.tar.gz"), armhf_tarball)
    (ctx / armhf_tarball.name).rename(ctx / "rootfs-arm.tar.gz")
    return ctx


def _platforms(index: dict) -> set[str]:
    return {
        "/".join(
            filter(None, (m["platform"]["os"], m["platform"]["architecture"], m["platform"].get("variant")))
        )
        for m in index["manifests"]
        if m.get("platform", {}).get("architecture") != "unknown"
    }


def test_multi_platform_push_gives_one_index(bx, multi_context, registry) -> None:
    require_tool("skopeo")
    ref = f"{registry}/{PREFIX}/multi:{multi_context.parent.name}"
    bx.build(
        multi_context,
        syntax(FRONTEND_LOCAL) + MULTI,
        "--platform",
        "linux/arm64,linux/arm/v7",
        "--provenance=false",
        "--push",
        "-t",
        ref,
    )
    raw = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{ref}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    index = json.loads(raw)
    assert "manifests" in index, raw
    assert _platforms(index) == {"linux/arm64", "linux/arm/v7"}
    for arch, variant, uname in (("arm64", None, "aarch64"), ("arm", "v7", "armv7l")):
        opts = [
            "--override-arch",
            arch,
            "--override-os",
            "linux",
            *(["--override-variant", variant] if variant else []),
        ]
        config = json.loads(
            subprocess.run(
                ["skopeo", *opts, "inspect", "--tls-verify=false", "--config", f"docker://{ref}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert config["architecture"] == arch
        assert config["config"]["Labels"]["org.example.arch"] == arch
        platform = f"linux/{arch}" + (f"/{variant}" if variant else "")
        out = bx.run("run", "--rm", "--pull", "always", "--platform", platform, ref).stdout.strip()
        assert out == uname


def test_multi_platform_oci_output_accepted_by_skopeo_and_umoci(bx, multi_context) -> None:
    require_tool("skopeo", "umoci")
    out = multi_context.parent / "multi.oci.tar"
    bx.build(
        multi_context,
        syntax(FRONTEND_LOCAL) + MULTI,
        "--platform",
        "linux/arm64,linux/arm/v7",
        "--provenance=false",
        "--output",
        f"type=oci,dest={out}",
    )
    index = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--raw", f"oci-archive:{out}"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert _platforms(index) == {"linux/arm64", "linux/arm/v7"}
    layout = multi_context.parent / "layout"
    layout.mkdir()
    with tarfile.open(out) as t:
        t.extractall(layout, filter="tar")
    # umoci unpacks one manifest at a time: give each a tag in a copy of the index.
    idx = json.loads((layout / "index.json").read_text())
    manifests = []
    for m in idx["manifests"]:
        nested = json.loads((layout / "blobs" / "sha256" / m["digest"].split(":")[1]).read_text())
        manifests.extend(nested.get("manifests", [m]))
    for m in manifests:
        m.setdefault("annotations", {})["org.opencontainers.image.ref.name"] = m["platform"]["architecture"]
    (layout / "index.json").write_text(json.dumps({**idx, "manifests": manifests}))
    for arch, uname in (("arm64", "aarch64"), ("arm", "armv7l")):
        bundle = multi_context.parent / f"bundle-{arch}"
        subprocess.run(
            ["umoci", "unpack", "--image", f"{layout}:{arch}", str(bundle)], check=True, capture_output=True
        )
        assert (bundle / "rootfs" / "arch").read_text().strip() == uname


def test_second_build_is_cached(bx, tmp_path) -> None:
    ctx = tmp_path / "ctx"
    link_into(ctx, fixture("pi-arm64.img"))
    (ctx / "app.conf").write_text("one\n")
    build_file = (
        syntax(FRONTEND_LOCAL) + "FROM pi-arm64.img\nCOPY app.conf /etc/app.conf\nRUN cat /etc/app.conf\n"
    )
    name = f"{PREFIX}/bx-cache:1"
    bx.build(ctx, build_file, "--load", "-t", name)
    # The raw status stream, since the plain printer may show only v0.13's later CANCELED of the
    # cached conversion (see vertex_statuses).
    again = bx.build(ctx, build_file, "--load", "-t", name, progress="rawjson")
    assert cached_in_stream(again.stderr, "dockerify: convert pi-arm64.img"), again.stderr[-4000:]
    assert cached_in_stream(again.stderr, "RUN cat /etc/app.conf")
    # New content each run: BuildKit's cache outlives the test, and matches by content.
    (ctx / "app.conf").write_text(f"two {uuid.uuid4()}\n")
    third = bx.build(ctx, build_file, "--load", "-t", name, progress="rawjson")
    assert cached_in_stream(third.stderr, "dockerify: convert pi-arm64.img"), third.stderr[-4000:]
    assert not cached_in_stream(third.stderr, "RUN cat /etc/app.conf")
    assert any(
        s.completed and not s.cached and not s.error
        for s in vertex_statuses(third.stderr, "RUN cat /etc/app.conf")
    )


def test_error_names_the_line(bx, tmp_path) -> None:
    ctx = tmp_path / "ctx"
    link_into(ctx, fixture("pi-arm64.img"))
    proc = bx.build(ctx, syntax(FRONTEND_LOCAL) + "FROM pi-arm64.img\nRUN exit 7\n", check=False)
    assert proc.returncode != 0
    assert "Dockerfile:3: RUN exit 7:" in proc.stderr, proc.stderr[-3000:]
    assert "exit code: 7" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_buildkit_itself_drops_user_xattrs_and_holes(bx, tmp_path) -> None:
    """The losses the diff tests accept are BuildKit's own layer export's: a RUN of its stock
    Dockerfile frontend writing them loses exactly those, and keeps security.capability."""
    out = tmp_path / "stock.oci.tar"
    build_file = f"FROM {FRONTEND_LOCAL}\n{STOCK_RUN}"
    bx.build(tmp_path, build_file, "--no-cache", "--provenance=false", "--output", f"type=oci,dest={out}")
    assert_buildkit_losses(last_layer(out))
