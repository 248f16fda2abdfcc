"""Issue 2 acceptance: disk images and tarballs become faithful, correctly labelled OCI images.
Judged by the kernel (loop mounts), GNU tar, mtools, skopeo, umoci and the Docker daemon."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from tests import oracle
from tests.conftest import dockerify, require_tool
from tests.fixtures import DISKS, FIXTURES_DIR, entry, load_manifest

COMPRESSED = ["pi-arm64.img.xz", "pi-arm64.img.gz", "pi-arm64.img.zst", "pi-arm64.zip"]
TARBALLS = [
    "rootfs-amd64.tar",
    "rootfs-amd64.tar.gz",
    "rootfs-amd64.tar.xz",
    "rootfs-amd64.tar.zst",
    "rootfs-amd64.tar.bz2",
    "rootfs-arm64.tar.gz",
    "openlinux-1.0.0-aarch64-rootfs.tar.gz",
]
PRELOAD = b"etc/ld.so.preload"


def _build(source: Path | str, out: Path, *extra: str, env: dict[str, str] | None = None) -> str:
    proc = dockerify("build", "-q", str(source), "--output", f"oci:{out}:t", *extra, env=env)
    return proc.stdout.strip()


def _config(layout: Path) -> dict:
    raw = subprocess.run(
        ["skopeo", "inspect", "--config", f"oci:{layout}:t"], capture_output=True, check=True
    ).stdout
    return json.loads(raw)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """Every fixture built once, shared by the checks below."""
    require_tool("skopeo", "umoci")
    load_manifest()
    out = {}
    for name in DISKS + COMPRESSED + TARBALLS:
        layout = tmp_path_factory.mktemp("img") / "layout"
        _build(FIXTURES_DIR / name, layout)
        out[name] = layout
    return out


@pytest.mark.parametrize("name", DISKS + COMPRESSED + TARBALLS)
def test_diff_clean_and_platform(built, name) -> None:
    layout = built[name]
    proc = dockerify("diff", str(FIXTURES_DIR / name), f"oci:{layout}:t", check=False)
    assert proc.returncode == 0, proc.stdout[:2000]
    cfg = _config(layout)
    want = entry(name)["platform"].split("/")
    assert [cfg["os"], cfg["architecture"], *([cfg["variant"]] if cfg.get("variant") else [])] == want


@pytest.mark.parametrize("name", DISKS)
def test_disk_oracle_kernel_and_mtools_agree(built, name, tmp_path, root_user) -> None:
    """The kernel's view of the ext root plus mtools' view of the FAT boot partition equals
    what umoci unpacks from the image, attribute by attribute, xattrs included."""
    fx = entry(name)
    image = FIXTURES_DIR / name
    parts = {p["number"]: p for p in fx["partitions"]}
    root_part, boot_part = parts[fx["root_partition"]], parts[fx["boot_partition"]]
    rootfs = oracle.umoci_unpack(built[name], "t", tmp_path / "bundle")
    mount_rel = fx["boot_mountpoint"].strip("/").encode()
    unpacked = oracle.snapshot(rootfs)
    with oracle.loop_mount(image, root_part["start"], root_part["size"]) as mnt:
        kernel = oracle.snapshot(mnt)
        preload = (mnt / "etc/ld.so.preload").read_bytes() if (mnt / "etc/ld.so.preload").exists() else None
    boot_unpacked = {k: v for k, v in unpacked.items() if k.startswith(mount_rel + b"/")}
    tree_unpacked = {k: v for k, v in unpacked.items() if k not in boot_unpacked}
    if preload is not None:
        # The Pi fixup: the image carries a neutralised file and the original in a label.
        labels = _config(built[name])["config"]["Labels"]
        assert base64.b64decode(labels["io.dockerify.pi-fixups.ld-so-preload"]) == preload
        assert b"#dockerify-disabled: " in (rootfs / "etc/ld.so.preload").read_bytes()
        kernel.pop(PRELOAD)
        tree_unpacked.pop(PRELOAD)
    assert oracle.differences(kernel, tree_unpacked) == []
    fat = oracle.mtools_copy(image, boot_part["start"], tmp_path / "fat")
    assert oracle.file_contents(fat) == oracle.file_contents(rootfs / mount_rel.decode())
    assert len(boot_unpacked) > 3


@pytest.mark.parametrize("name", ["rootfs-amd64.tar.gz", "rootfs-arm64.tar.gz"])
def test_tarball_oracle_gnu_tar_agrees(built, name, tmp_path, root_user) -> None:
    unpack = tmp_path / "gnutar"
    unpack.mkdir()
    subprocess.run(
        [
            "tar",
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "-xpzf",
            str(FIXTURES_DIR / name),
            "-C",
            str(unpack),
        ],
        check=True,
    )
    rootfs = oracle.umoci_unpack(built[name], "t", tmp_path / "bundle")
    assert oracle.differences(oracle.snapshot(unpack), oracle.snapshot(rootfs)) == []


def test_special_files_survive(built, tmp_path, root_user) -> None:
    """The specials the fixtures promise, checked directly on the unpacked image."""
    rootfs = oracle.umoci_unpack(built["pi-arm64.img"], "t", tmp_path / "b")
    special = rootfs / "srv/special"
    assert stat.S_IMODE(os.lstat(special / "setuid").st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(special / "setgid").st_mode) == 0o2755
    assert stat.S_IMODE(os.lstat(special / "sticky").st_mode) == 0o1777
    # cap_net_raw+ep as setcap writes it: revision 2, permitted bit 13, effective flag.
    cap = os.getxattr(special / "cap-net-raw", "security.capability", follow_symlinks=False)
    assert cap[:4] == b"\x01\x00\x00\x02" and int.from_bytes(cap[4:8], "little") == 1 << 13
    assert os.getxattr(special / "xattr-user", "user.dockerify", follow_symlinks=False) == b"hello"
    assert os.lstat(special / "hardlink-1").st_ino == os.lstat(special / "hardlink-3").st_ino
    assert os.lstat(special / "owned-100000").st_uid == 100000
    assert os.lstat(special / "char-null").st_rdev == os.makedev(1, 3)
    assert os.lstat(special / "block-loop0").st_rdev == os.makedev(7, 0)
    assert os.path.exists(os.fsencode(special) + b"/latin1-\xe9.txt")
    kinds = {stat.S_IFMT(os.lstat(p).st_mode) for p in special.iterdir()}
    assert {stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFLNK, stat.S_IFREG, stat.S_IFDIR} <= kinds
    assert len(os.listdir(rootfs / "srv/many")) == 10_000


def _daemon_platform(name: str) -> tuple[str, str, str | None]:
    out = subprocess.run(["docker", "image", "inspect", name], capture_output=True, check=True).stdout
    info = json.loads(out)[0]
    return info["Os"], info["Architecture"], info.get("Variant")


def test_outputs_accepted_by_skopeo_umoci_and_docker(tmp_path, docker_daemon) -> None:
    require_tool("skopeo", "umoci")
    src = FIXTURES_DIR / "debian-armhf.img"
    entry("debian-armhf.img")
    archive = tmp_path / "img.oci.tar"
    dockerify("build", "-q", str(src), "--output", f"oci-archive:{archive}:v1")
    subprocess.run(["skopeo", "inspect", f"oci-archive:{archive}:v1"], check=True, capture_output=True)
    darchive = tmp_path / "img.docker.tar"
    dockerify(
        "build",
        "-q",
        str(src),
        "-t",
        "dockerify-test/armhf:archive",
        "--output",
        f"docker-archive:{darchive}",
    )
    subprocess.run(["skopeo", "inspect", f"docker-archive:{darchive}"], check=True, capture_output=True)
    subprocess.run(["docker", "load", "-i", str(darchive)], check=True, capture_output=True)
    assert _daemon_platform("dockerify-test/armhf:archive") == ("linux", "arm", "v7")
    dockerify("build", "-q", str(src), "--output", "docker-daemon:dockerify-test/armhf:daemon")
    assert _daemon_platform("dockerify-test/armhf:daemon") == ("linux", "arm", "v7")


def test_docker_can_save_what_it_loaded(tmp_path, docker_daemon) -> None:
    """pi-arm64 holds a sparse file: Docker's layer store must still reassemble the layer it
    stored, or `docker save` and `docker push` fail verification."""
    entry("pi-arm64.img")
    dockerify(
        "build", "-q", str(FIXTURES_DIR / "pi-arm64.img"), "--output", "docker-daemon:dockerify-test/pi:save"
    )
    saved = tmp_path / "saved.tar"
    subprocess.run(
        ["docker", "save", "dockerify-test/pi:save", "-o", str(saved)], check=True, capture_output=True
    )
    assert _daemon_platform("dockerify-test/pi:save")[:2] == ("linux", "arm64")


@pytest.mark.parametrize(
    ("name", "platform", "machine"),
    [
        ("pi-arm64.img", "linux/arm64", "aarch64"),
        ("debian-armhf.img", "linux/arm/v7", "armv7l"),
        ("amd64-gpt.img", "linux/amd64", "x86_64"),
    ],
)
def test_docker_run_uname(name, platform, machine, docker_daemon, binfmt) -> None:
    entry(name)
    tag = f"dockerify-test/{name.split('.')[0]}:run"
    dockerify("build", "-q", str(FIXTURES_DIR / name), "--output", f"docker-daemon:{tag}")
    run = subprocess.run(
        ["docker", "run", "--rm", "--platform", platform, tag, "uname", "-m"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == machine
    # The dynamically linked binary runs too, with no libarmmem preload error (the Pi fixup).
    hello = subprocess.run(
        ["docker", "run", "--rm", "--platform", platform, tag, "/usr/bin/hello"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert hello.returncode == 0 and "Hello" in hello.stdout, hello.stderr
    assert "ld.so" not in hello.stderr


def test_multi_platform_index(tmp_path) -> None:
    require_tool("skopeo")
    entry("pi-arm64.img")
    layout = tmp_path / "multi"
    dockerify(
        "build",
        "-q",
        f"linux/arm64={FIXTURES_DIR / 'pi-arm64.img'}",
        f"linux/arm/v7={FIXTURES_DIR / 'debian-armhf.img'}",
        "--output",
        f"oci:{layout}:multi",
    )
    raw = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--raw", f"oci:{layout}:multi"], capture_output=True, check=True
        ).stdout
    )
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = sorted(
        (m["platform"]["architecture"], m["platform"].get("variant", "")) for m in raw["manifests"]
    )
    assert platforms == [("arm", "v7"), ("arm64", "")]


def test_reproducible_across_directories_and_time(tmp_path) -> None:
    entry("pi-arm64.img")
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    copy = second_dir / "renamed.img"
    shutil.copy(FIXTURES_DIR / "pi-arm64.img", copy)
    one = dockerify(
        "build",
        "-q",
        str(FIXTURES_DIR / "pi-arm64.img"),
        "--output",
        f"oci:{first_dir / 'l'}:t",
        cwd=first_dir,
    )
    os.utime(copy, (1, 1))  # the input file's own times must not matter
    two = dockerify("build", "-q", str(copy), "--output", f"oci:{second_dir / 'l'}:t", cwd=second_dir)
    assert one.stdout == two.stdout
    epoch = 1_600_000_000
    clamped = dockerify(
        "build", "-q", str(copy), "--output", f"oci:{tmp_path / 'c'}:t", env={"SOURCE_DATE_EPOCH": str(epoch)}
    )
    assert clamped.stdout != one.stdout
    rootfs = oracle.umoci_unpack(tmp_path / "c", "t", tmp_path / "cb") if os.geteuid() == 0 else None
    if rootfs is not None:
        assert max(os.lstat(p).st_mtime for p in rootfs.rglob("*")) <= epoch
    assert _config(tmp_path / "c")["created"].startswith("2020-09-13")


def test_unprivileged_build_keeps_root_ownership_devices_xattrs(tmp_path, root_user, request) -> None:
    """dockerify as `nobody`: no root, no mounts, yet ownership, devices and xattrs come through."""
    require_tool("setpriv", "umoci")
    entry("pi-arm64.img")
    import crc32c
    import zstandard

    # pytest's own temp root is private to root; nobody needs a path it can traverse.
    work = Path(tempfile.mkdtemp(prefix="dockerify-nobody-"))
    os.chmod(work, 0o755)
    request.addfinalizer(lambda: shutil.rmtree(work, ignore_errors=True))
    shutil.copytree(Path(__file__).resolve().parents[2] / "dockerify", work / "lib" / "dockerify")
    shutil.copytree(Path(zstandard.__file__).parent, work / "lib" / "zstandard")
    crc32c_dir = Path(crc32c.__file__).parent
    shutil.copytree(crc32c_dir, work / "lib" / "crc32c")
    for dist_info in crc32c_dir.parent.glob("crc32c-*.dist-info"):  # crc32c reads its own version
        shutil.copytree(dist_info, work / "lib" / dist_info.name)
    shutil.copy(FIXTURES_DIR / "pi-arm64.img", work / "pi.img")
    out = work / "out"
    out.mkdir()
    for p in [work, *work.rglob("*")]:
        os.chmod(p, os.lstat(p).st_mode | 0o755 if p.is_dir() else os.lstat(p).st_mode | 0o644)
    os.chown(out, 65534, 65534)
    proc = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-m",
            "dockerify",
            "build",
            "-q",
            str(work / "pi.img"),
            "--output",
            f"oci:{out / 'l'}:t",
        ],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(work / "lib"), "HOME": str(out), "TMPDIR": str(out)},
    )
    assert proc.returncode == 0, proc.stderr
    assert os.stat(out / "l" / "index.json").st_uid == 65534
    rootfs = oracle.umoci_unpack(out / "l", "t", tmp_path / "bundle")
    special = rootfs / "srv/special"
    assert os.lstat(rootfs / "bin/busybox").st_uid == 0
    assert any(stat.S_ISCHR(os.lstat(p).st_mode) for p in special.iterdir())
    assert any("security.capability" in os.listxattr(p, follow_symlinks=False) for p in special.iterdir())


def test_sdk_build(tmp_path) -> None:
    """The Python SDK does what the CLI does."""
    import dockerify as sdk

    entry("rootfs-amd64.tar.gz")
    result = sdk.build(
        [(None, str(FIXTURES_DIR / "rootfs-amd64.tar.gz"))],
        sdk.parse_ref(f"oci:{tmp_path / 'l'}:x"),
        "x",
        sdk.BuildOptions(quiet=True, image=sdk.ImageOptions(env=("A=1",), workdir="/srv")),
    )
    assert result.manifests[0][0] == "linux/amd64"
    with sdk.open_image(f"oci:{tmp_path / 'l'}:x", None) as image:
        assert image.config["config"]["WorkingDir"] == "/srv"
        assert "A=1" in image.config["config"]["Env"]


def test_image_config_options(tmp_path) -> None:
    require_tool("skopeo")
    entry("rootfs-amd64.tar.gz")
    layout = tmp_path / "l"
    dockerify(
        "build",
        "-q",
        str(FIXTURES_DIR / "rootfs-amd64.tar.gz"),
        "--output",
        f"oci:{layout}:t",
        "--env",
        "FOO=bar",
        "--label",
        "a.b=c",
        "--cmd",
        '["echo","hi"]',
        "--entrypoint",
        "/bin/sh -c",
        "--workdir",
        "/srv",
        "--user",
        "1000:1000",
        "--expose",
        "8080",
    )
    cfg = _config(layout)["config"]
    assert cfg["Cmd"] == ["echo", "hi"] and cfg["Entrypoint"] == ["/bin/sh", "-c"]
    assert cfg["WorkingDir"] == "/srv" and cfg["User"] == "1000:1000"
    assert "FOO=bar" in cfg["Env"] and any(e.startswith("PATH=") for e in cfg["Env"])
    assert cfg["Labels"]["a.b"] == "c" and cfg["ExposedPorts"] == {"8080/tcp": {}}
    assert cfg["Labels"]["org.opencontainers.image.version"]
    default = tmp_path / "d"
    dockerify("build", "-q", str(FIXTURES_DIR / "rootfs-amd64.tar.gz"), "--output", f"oci:{default}:t")
    assert _config(default)["config"]["Cmd"] in (["/bin/sh"], ["/bin/bash"])


def test_platform_override_and_contradiction(tmp_path) -> None:
    entry("pi-arm64.img")
    src = str(FIXTURES_DIR / "pi-arm64.img")
    bad = dockerify(
        "build", "-q", src, "--platform", "linux/amd64", "--output", f"oci:{tmp_path / 'x'}", check=False
    )
    assert bad.returncode != 0 and "contradicts" in bad.stderr
    assert not (tmp_path / "x").exists()
    dockerify(
        "build", "-q", src, "--platform", "linux/amd64", "--force", "--output", f"oci:{tmp_path / 'y'}:t"
    )
    assert _config(tmp_path / "y")["architecture"] == "amd64"


def test_tar_members_are_reproducible_pax(tmp_path) -> None:
    """Layer tars carry numeric owners and no atime/ctime records."""
    entry("rootfs-amd64.tar.gz")
    layout = tmp_path / "l"
    dockerify("build", "-q", str(FIXTURES_DIR / "rootfs-amd64.tar.gz"), "--output", f"oci:{layout}:t")
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text())
    layer = layout / "blobs/sha256" / manifest["layers"][0]["digest"][7:]
    with tarfile.open(layer, "r:gz") as tar:
        for member in tar:
            assert member.uname == "" and member.gname == ""
            assert "atime" not in member.pax_headers and "ctime" not in member.pax_headers
