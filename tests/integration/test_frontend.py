"""The BuildKit frontend on Debian's dockerd 20.10 (BuildKit v0.8): `DOCKER_BUILDKIT=1 docker build`
with `# syntax=` naming dockerify's frontend image, from the local image store and the loopback
registry. Every check is made by the real daemon, qemu-user, fsck and dockerify's diff."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import dockerify, require_tool
from tests.fixtures import fixture
from tests.integration.frontend_support import (
    FRONTEND_LOCAL,
    FRONTEND_REGISTRY,
    STOCK_RUN,
    Builder,
    assert_buildkit_losses,
    buildkit_loss,
    debian_builder,
    last_layer,
    link_into,
    ran,
    require_frontend,
    syntax,
    was_cached,
)

pytestmark = [pytest.mark.daemon, pytest.mark.fixtures]
PREFIX = "frontend-test"


@pytest.fixture(scope="module")
def builder(binfmt) -> Builder:
    b = debian_builder()
    require_frontend(b)
    return b


@pytest.fixture(scope="module")
def armhf_tarball(tmp_path_factory) -> Path:
    """A Debian armhf rootfs tarball: the armhf fixture card's tree, written by dockerify."""
    work = tmp_path_factory.mktemp("armhf")
    dockerify("build", "-q", str(fixture("debian-armhf.img")), "--output", f"oci:{work}/oci:t")
    tarball = work / "debian-armhf-rootfs.tar.gz"
    dockerify("export", f"oci:{work}/oci:t", "--format", "rootfs-tar", "-o", str(tarball))
    return tarball


def inspect(b: Builder, name: str) -> dict:
    return json.loads(b.run("image", "inspect", name).stdout)[0]


def diff_clean(source: Path, image: str) -> None:
    """`dockerify diff` of the source and the image shows nothing but BuildKit's own losses."""
    proc = dockerify("diff", str(source), f"docker-daemon:{image}", check=False)
    assert proc.returncode in (0, 1), proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert [line for line in lines if not buildkit_loss(line)] == [], proc.stdout[-3000:]


@pytest.mark.parametrize("frontend", [FRONTEND_LOCAL, FRONTEND_REGISTRY], ids=["local", "registry"])
def test_card_to_image(builder, tmp_path, frontend) -> None:
    card = fixture("pi-arm64.img")
    link_into(tmp_path, card)
    name = f"{PREFIX}/pi-arm64:{frontend.split('/')[0].replace(':', '-')}"
    fresh = ("--no-cache",) if frontend == FRONTEND_LOCAL else ()  # one run that converts for sure
    proc = builder.build(tmp_path, syntax(frontend) + "FROM pi-arm64.img\n", *fresh, "-t", name)
    if fresh:
        # The fixture has user.* and trusted.* xattrs: the conversion says BuildKit drops them.
        assert "xattrs that BuildKit's layer export drops" in proc.stderr, proc.stderr[-3000:]
    info = inspect(builder, name)
    assert (info["Os"], info["Architecture"]) == ("linux", "arm64")
    assert "io.dockerify.disk-layout" in info["Config"]["Labels"]
    assert builder.run("run", "--rm", name, "uname", "-m").stdout.strip() == "aarch64"
    diff_clean(card, name)


def test_armhf_tarball_to_image(builder, tmp_path, armhf_tarball) -> None:
    link_into(tmp_path, armhf_tarball)
    name = f"{PREFIX}/armhf:1"
    builder.build(tmp_path, syntax(FRONTEND_LOCAL) + f"FROM ./{armhf_tarball.name}\n", "-t", name)
    info = inspect(builder, name)
    assert (info["Architecture"], info.get("Variant")) == ("arm", "v7")
    assert builder.run("run", "--rm", name, "uname", "-m").stdout.strip() == "armv7l"
    diff_clean(armhf_tarball, name)


CONFIG_BUILD = """ARG GREETING=hello
FROM {base} AS base
ARG GREETING
ENV GREETING=${{GREETING}} LANG=C.UTF-8
LABEL org.example.flow="frontend test" org.example.greeting=${{GREETING}}
WORKDIR /srv/app
COPY app.conf ./
RUN echo "$GREETING from $(uname -m)" > /srv/app/greeting && chown 1000:1000 /srv/app/greeting
FROM base AS final
COPY --from=base /srv/app/greeting /srv/app/copied
USER 1000:1000
EXPOSE 8080 53/udp
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /srv/app/greeting /srv/app/copied /srv/app/app.conf; id -u; pwd"]
"""


@pytest.mark.parametrize(
    ("base", "fixture_name", "arch", "uname"),
    [
        ("pi-arm64.img", "pi-arm64.img", "arm64", "aarch64"),
        ("debian-armhf.img", "debian-armhf.img", "arm", "armv7l"),
    ],
)
def test_instructions(builder, tmp_path, base, fixture_name, arch, uname) -> None:
    link_into(tmp_path, fixture(fixture_name))
    (tmp_path / "app.conf").write_text("setting=1\n")
    name = f"{PREFIX}/instructions-{arch}:1"
    builder.build(
        tmp_path,
        syntax(FRONTEND_LOCAL) + CONFIG_BUILD.format(base=base),
        "-t",
        name,
        "--build-arg",
        "GREETING=bonjour",
    )
    info = inspect(builder, name)
    c = info["Config"]
    assert info["Architecture"] == arch
    assert "GREETING=bonjour" in c["Env"] and "LANG=C.UTF-8" in c["Env"]
    assert c["Labels"]["org.example.flow"] == "frontend test"
    assert c["Labels"]["org.example.greeting"] == "bonjour"
    assert c["WorkingDir"] == "/srv/app"
    assert c["User"] == "1000:1000"
    assert set(c["ExposedPorts"]) == {"8080/tcp", "53/udp"}
    assert c["Entrypoint"] == ["/bin/sh", "-c"]
    out = builder.run("run", "--rm", name).stdout.split()
    assert out == ["bonjour", "from", uname, "bonjour", "from", uname, "setting=1", "1000", "/srv/app"]


def test_multi_platform_to_local_dirs(builder, tmp_path, armhf_tarball) -> None:
    """BuildKit v0.8 cannot store several platforms as one image, but exports them to directories."""
    link_into(tmp_path, fixture("rootfs-arm64.tar.gz"))
    (tmp_path / "rootfs-arm.tar.gz").unlink(missing_ok=True)
    link_into(tmp_path, armhf_tarball)
    (tmp_path / armhf_tarball.name).rename(tmp_path / "rootfs-arm.tar.gz")
    out = tmp_path / "out"
    build_file = (
        syntax(FRONTEND_LOCAL)
        + "# platforms=linux/arm64,linux/arm/v7\n"
        + "FROM rootfs-${TARGETARCH}.tar.gz\nRUN uname -m > /arch\n"
    )
    builder.build(tmp_path, build_file, "--output", f"type=local,dest={out}")
    assert sorted(p.name for p in out.iterdir()) == ["linux_arm64", "linux_arm_v7"]
    assert (out / "linux_arm64" / "arch").read_text().strip() == "aarch64"
    assert (out / "linux_arm_v7" / "arch").read_text().strip() == "armv7l"


def test_export_sdcard_keeps_ids_and_is_clean(builder, tmp_path) -> None:
    require_tool("e2fsck", "fsck.vfat", "sfdisk")
    card = fixture("pi-arm64.img")
    link_into(tmp_path, card)
    out = tmp_path / "out"
    build_file = (
        syntax(FRONTEND_LOCAL)
        + "FROM pi-arm64.img AS pi\nRUN echo exported > /etc/exported\nFROM pi AS card\nEXPORT --format=sdcard card.img\n"
    )
    builder.build(tmp_path, build_file, "--target", "card", "--output", f"type=local,dest={out}")
    exported = out / "card.img"
    assert exported.is_file()
    src = json.loads(dockerify("inspect", "--json", str(card)).stdout)["disk"]
    dst = json.loads(dockerify("inspect", "--json", str(exported)).stdout)["disk"]
    assert dst["disk_id"] == src["disk_id"]
    for a, b in zip(src["partitions"], dst["partitions"], strict=True):
        assert a["partuuid"] == b["partuuid"]
        assert a["fs"].get("uuid") == b["fs"].get("uuid")
        assert a["fs"].get("volume_id") == b["fs"].get("volume_id")
    # Each filesystem, cut out at its offset, is clean for its own fsck.
    for part, tool in zip(dst["partitions"], (["fsck.vfat", "-n"], ["e2fsck", "-fn"]), strict=True):
        image = tmp_path / f"part{part['number']}"
        with open(exported, "rb") as f, open(image, "wb") as g:
            f.seek(part["start"])
            g.write(f.read(part["size"]))
        fsck = subprocess.run([*tool, str(image)], capture_output=True, text=True)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    proc = dockerify("diff", str(card), str(exported), check=False)
    # Exactly what the RUN step changed: the new file and its directory's mtime. Owners, modes,
    # xattrs, devices, hard links and holes all come through the export stage.
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 2, proc.stdout[-3000:]
    assert lines[0].startswith("M /etc  mtime: 1700000000 -> ")
    assert lines[1] == "+ /etc/exported  (only in the second)"


def test_second_build_is_cached_and_a_change_reruns_only_its_step(builder, tmp_path) -> None:
    link_into(tmp_path, fixture("pi-arm64.img"))
    (tmp_path / "app.conf").write_text("one\n")
    (tmp_path / "unrelated.txt").write_text("a\n")
    build_file = (
        syntax(FRONTEND_LOCAL) + "FROM pi-arm64.img\nCOPY app.conf /etc/app.conf\nRUN cat /etc/app.conf\n"
    )
    name = f"{PREFIX}/cache:1"
    builder.build(tmp_path, build_file, "-t", name)
    again = builder.build(tmp_path, build_file, "-t", name)
    assert was_cached(again.stderr, "dockerify: convert pi-arm64.img"), again.stderr[-4000:]
    assert was_cached(again.stderr, "RUN cat /etc/app.conf")
    (tmp_path / "unrelated.txt").write_text("b\n")
    third = builder.build(tmp_path, build_file, "-t", name)
    assert was_cached(third.stderr, "dockerify: convert pi-arm64.img")
    assert was_cached(third.stderr, "RUN cat /etc/app.conf")
    # New content each run: BuildKit's cache outlives the test, and matches by content.
    (tmp_path / "app.conf").write_text(f"two {uuid.uuid4()}\n")
    fourth = builder.build(tmp_path, build_file, "-t", name)
    assert was_cached(fourth.stderr, "dockerify: convert pi-arm64.img"), fourth.stderr[-4000:]
    assert ran(fourth.stderr, "RUN cat /etc/app.conf"), fourth.stderr[-4000:]


@pytest.mark.parametrize(
    ("build_file", "files", "expected"),
    [
        ("FROM pi-arm64.img\nFROOM x\n", {}, "Dockerfile:3: unknown instruction FROOM"),
        ("FROM absent.img\n", {}, "Dockerfile:2: FROM absent.img: no such file in the build context"),
        ("FROM pi-arm64.img\nCOPY absent.txt /\n", {}, "Dockerfile:3: COPY absent.txt: no such file"),
        ("FROM pi-arm64.img\nRUN --network=none true\n", {}, "Dockerfile:3: RUN does not support --network"),
        (
            "FROM corrupt.img\n",
            {"corrupt.img": b"\x00" * 4096},
            "Dockerfile:2: FROM corrupt.img: corrupt.img",
        ),
        ("FROM pi-arm64.img\nRUN exit 7\n", {}, "Dockerfile:3: RUN exit 7:"),
    ],
    ids=[
        "unknown-instruction",
        "missing-card",
        "missing-copy",
        "unsupported-option",
        "corrupt-card",
        "run-fails",
    ],
)
def test_errors_name_the_line(builder, tmp_path, build_file, files, expected) -> None:
    link_into(tmp_path, fixture("pi-arm64.img"))
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    proc = builder.build(tmp_path, syntax(FRONTEND_LOCAL) + build_file, check=False)
    assert proc.returncode != 0
    errors = [
        line for line in proc.stderr.splitlines() if line.startswith(("error:", "ERROR:", "failed to solve"))
    ]
    assert errors, proc.stderr[-3000:]
    message = errors[-1]
    assert expected in message, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert not message.rstrip().endswith("exit code: 1")


def test_export_initramfs_boots_and_runs_the_command(builder, tmp_path) -> None:
    """An EXPORT stage's initramfs boots under QEMU and its init runs the image's command, with
    the ENV, WORKDIR and USER of the stage."""
    from tests.integration.test_export_support import boot, busybox_tree, kernel, qemu_command, require_init

    require_init()
    root = busybox_tree(tmp_path / "root", "arm64")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    subprocess.run(
        [
            "tar",
            "-C",
            str(root),
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "-czf",
            str(ctx / "busybox-arm64.tar.gz"),
            ".",
        ],
        check=True,
    )
    build_file = (
        syntax(FRONTEND_LOCAL)
        + "FROM busybox-arm64.tar.gz AS base\n"
        + 'ENV GREETING="hello from the frontend"\n'
        + "WORKDIR /srv\n"
        + "USER app\n"
        + 'CMD ["/bin/sh", "-c", "echo \\"SAYS $GREETING\\"; echo CWD=$(pwd) IDS=$(id -u):$(id -g)"]\n'
        + "FROM base AS initramfs\n"
        + "EXPORT --format=initramfs --hostname=frontend initramfs.cpio.gz\n"
    )
    out = tmp_path / "out"
    builder.build(ctx, build_file, "--target", "initramfs", "--output", f"type=local,dest={out}")
    initrd = out / "initramfs.cpio.gz"
    assert initrd.is_file()
    result = boot(qemu_command("arm64", kernel("arm64"), initrd))
    console = result.console
    assert "SAYS hello from the frontend" in console, console[-3000:]
    assert "CWD=/srv IDS=1000:1000" in console
    assert result.returncode == 0


def test_buildkit_itself_drops_user_xattrs_and_holes(builder, tmp_path) -> None:
    """The losses the diff tests accept are BuildKit's own layer export's: a RUN of its stock
    Dockerfile frontend writing them loses exactly those, and keeps security.capability."""
    name = f"{PREFIX}/stock-losses:1"
    builder.build(tmp_path, f"FROM {FRONTEND_LOCAL}\n{STOCK_RUN}", "--no-cache", "-t", name)
    saved = tmp_path / "saved.tar"
    builder.run("save", "-o", str(saved), name)
    assert_buildkit_losses(last_layer(saved))
