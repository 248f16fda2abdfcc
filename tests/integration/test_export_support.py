"""Shared plumbing of the export tests: the real components (Debian kernels, static busybox, the
init, cross compilers, QEMU with or without KVM), test images, and running dockerify as `nobody`."""

from __future__ import annotations

import functools
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, dockerify, is_root, require_tool
from tests.fixtures import require

CACHE = REPO / ".cache"
KERNELS = CACHE / "kernels"
INIT_DIR = REPO / "dockerify" / "exporters" / "init"
CAP_NET_RAW = bytes.fromhex("0100000200200000000000000000000000000000")
EPOCH = 1_700_000_000


# ---------------------------------------------------------------- components


@functools.cache
def _init_built() -> bool:
    if all((INIT_DIR / f"init-{a}").is_file() for a in ("amd64", "arm64", "arm")):
        return True
    proc = subprocess.run([str(REPO / "scripts" / "build-init.sh")], capture_output=True, text=True)
    return proc.returncode == 0 and all((INIT_DIR / f"init-{a}").is_file() for a in ("amd64", "arm64"))


def require_init() -> None:
    require(
        _init_built(),
        "the initramfs init is not built and scripts/build-init.sh failed (needs gcc, "
        "gcc-aarch64-linux-gnu, gcc-arm-linux-gnueabihf)",
    )


@functools.cache
def _kernels() -> bool:
    if not ((KERNELS / "vmlinuz-amd64").is_file() and (KERNELS / "vmlinuz-arm64").is_file()):
        subprocess.run([str(REPO / "scripts" / "get-kernels.sh")], capture_output=True)
    return (KERNELS / "vmlinuz-amd64").is_file() and (KERNELS / "vmlinuz-arm64").is_file()


def kernel(arch: str) -> Path:
    require(_kernels(), "Debian kernels are missing and scripts/get-kernels.sh could not fetch them")
    return KERNELS / f"vmlinuz-{arch}"


@functools.cache
def busybox(arch: str) -> Path:
    """A static busybox for `arch`: the host's for amd64, Debian's busybox-static deb for others
    (the fixtures' bookworm one when they have it, else the machine's apt's)."""
    if arch == "amd64":
        require(
            Path("/bin/busybox").is_file(), "busybox-static is not installed (apt-get install busybox-static)"
        )
        return Path("/bin/busybox")
    out = CACHE / "busybox" / arch
    # bookworm's deb ships bin/busybox, trixie's (merged /usr) usr/bin/busybox.
    found = [b for b in (out / "bin" / "busybox", out / "usr" / "bin" / "busybox") if b.is_file()]
    if found:
        return found[0]
    work = CACHE / "busybox"
    work.mkdir(parents=True, exist_ok=True)
    debs = sorted(work.glob(f"busybox-static_*_{arch}.deb"))
    if not debs:
        fixture_debs = sorted((REPO / ".fixtures" / "debs").glob(f"busybox-static_*_{arch}.deb"))
        if fixture_debs:
            shutil.copy(fixture_debs[-1], work)
        else:
            subprocess.run(
                ["apt-get", "download", "-q", f"busybox-static:{arch}"], cwd=work, capture_output=True
            )
        debs = sorted(work.glob(f"busybox-static_*_{arch}.deb"))
    require(debs, f"cannot download busybox-static:{arch} (dpkg --add-architecture {arch}; apt-get update)")
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(out)], check=True)
    found = [b for b in (out / "bin" / "busybox", out / "usr" / "bin" / "busybox") if b.is_file()]
    assert found, f"{debs[-1]} has no bin/busybox nor usr/bin/busybox"
    return found[0]


CC = {"amd64": "gcc", "arm64": "aarch64-linux-gnu-gcc", "arm": "arm-linux-gnueabihf-gcc"}

HELLO_C = r"""
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
/* A FROM-scratch entrypoint: shows what the init gave it, leaves an orphan for PID 1 to reap. */
int main(int argc, char **argv) {
    char cwd[256];
    pid_t p = fork();
    if (p == 0) { if (fork() == 0) { usleep(100000); _exit(0); } _exit(0); }
    waitpid(p, NULL, 0);
    usleep(400000);
    int zombies = 0;
    DIR *d = opendir("/proc"); struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[300], buf[512]; FILE *f;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        if ((f = fopen(path, "r"))) { if (fgets(buf, sizeof buf, f)) { char *r = strrchr(buf, ')');
            if (r && r[2] == 'Z') zombies++; } fclose(f); }
    }
    printf("ARGV");
    for (int i = 0; i < argc; i++) printf(" [%s]", argv[i]);
    printf("\nGREETING=%s\n", getenv("GREETING") ? getenv("GREETING") : "(unset)");
    printf("HOME=%s\n", getenv("HOME") ? getenv("HOME") : "(unset)");
    printf("CWD=%s\n", getcwd(cwd, sizeof cwd) ? cwd : "?");
    printf("IDS=%d:%d\n", (int)getuid(), (int)getgid());
    printf("PID1=%s ZOMBIES=%d\n", getppid() == 1 ? "parent" : "other", zombies);
    fflush(stdout);
    return argc > 1 ? atoi(argv[argc - 1]) : 0;
}
"""


@functools.cache
def hello_binary(arch: str, build_dir: Path) -> Path:
    cc = CC[arch]
    require(shutil.which(cc), f"{cc} is not installed (the cross compiler for {arch})")
    src = build_dir / "hello.c"
    src.write_text(HELLO_C)
    out = build_dir / f"hello-{arch}"
    subprocess.run([cc, "-static", "-Os", "-o", str(out), str(src)], check=True)
    return out


@functools.cache
def kvm_works() -> bool:
    """/dev/kvm can exist yet be unable to run a guest (nested virtualisation): try it once."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK) or not shutil.which("qemu-system-x86_64"):
        return False
    probe = Path("/tmp") / f"kvm-probe-{os.getpid()}.cpio"
    probe.write_bytes(b"")  # an empty initramfs: the kernel gets far enough to say something
    try:
        proc = subprocess.run(
            [
                "qemu-system-x86_64",
                "-accel",
                "kvm",
                "-cpu",
                "max",
                "-m",
                "256M",
                "-display",
                "none",
                "-nodefaults",
                "-serial",
                "stdio",
                "-no-reboot",
                "-kernel",
                str(kernel("amd64")),
                "-initrd",
                str(probe),
                "-append",
                "console=ttyS0 panic=-1 loglevel=4",
            ],
            capture_output=True,
            timeout=15,
        )
        return b"Kernel panic" in proc.stdout or b"Run /init" in proc.stdout or b"VFS" in proc.stdout
    except subprocess.TimeoutExpired:
        return False
    finally:
        probe.unlink(missing_ok=True)


@dataclass
class Boot:
    console: str
    returncode: int
    seconds: float


def qemu_command(arch: str, kernel_path: Path, initrd: Path, append: str = "") -> list[str]:
    if arch == "amd64":
        require_tool("qemu-system-x86_64")
        accel = ["-accel", "kvm"] if kvm_works() else ["-accel", "tcg"]
        return [
            "qemu-system-x86_64",
            *accel,
            "-cpu",
            "max",
            "-m",
            "512M",
            "-display",
            "none",
            "-nodefaults",
            "-serial",
            "stdio",
            "-no-reboot",
            "-kernel",
            str(kernel_path),
            "-initrd",
            str(initrd),
            "-append",
            f"console=ttyS0 quiet panic=-1 {append}".strip(),
        ]
    require_tool("qemu-system-aarch64")
    return [
        "qemu-system-aarch64",
        "-M",
        "virt",
        "-cpu",
        "max,pauth-impdef=on",
        "-m",
        "512M",
        "-display",
        "none",
        "-nodefaults",
        "-serial",
        "stdio",
        "-no-reboot",
        "-kernel",
        str(kernel_path),
        "-initrd",
        str(initrd),
        "-append",
        f"console=ttyAMA0 quiet panic=-1 {append}".strip(),
    ]


def boot(cmd: list[str], timeout: int = 150) -> Boot:
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        raise AssertionError(
            f"QEMU did not exit by itself within {timeout} s; console:\n{out[-3000:]}"
        ) from None
    console = proc.stdout.decode(errors="replace").replace("\r\n", "\n")
    return Boot(console, proc.returncode, time.monotonic() - start)


# ---------------------------------------------------------------- images


def build_image(root: Path, layout: Path, platform: str, *extra: str) -> str:
    dockerify("build", "-q", str(root), "--output", f"oci:{layout}:t", "--platform", platform, *extra)
    return f"oci:{layout}:t"


def layer_digests(layout: Path) -> list[str]:
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(
        (layout / "blobs" / "sha256" / index["manifests"][0]["digest"].split(":")[1]).read_text()
    )
    return [layer["digest"] for layer in manifest["layers"]]


def make_special_tree(root: Path) -> Path:
    """Every kind of file and attribute the promise names (needs root for owners/devices/caps)."""
    root.mkdir()
    (root / "bin").mkdir()
    (root / "etc").mkdir()
    (root / "tmp").mkdir(mode=0o1777)
    os.chmod(root / "tmp", 0o1777)
    (root / "shared").mkdir()
    os.chmod(root / "shared", 0o2775)
    os.chown(root / "shared", 0, 50)
    (root / "private").mkdir()
    os.chmod(root / "private", 0o700)
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\necho tool\n")
    os.chmod(root / "bin" / "tool", 0o4755)
    (root / "bin" / "ping").write_bytes(b"\x7fELF ping")
    os.chmod(root / "bin" / "ping", 0o755)
    os.setxattr(root / "bin" / "ping", "security.capability", CAP_NET_RAW)
    os.setxattr(root / "bin" / "tool", "user.note", b"binary \x00\xff value")
    os.link(root / "bin" / "tool", root / "bin" / "tool-link1")
    os.link(root / "bin" / "tool", root / "private" / "tool-link2")
    os.symlink("tool", root / "bin" / "rel-link")
    os.symlink("/etc/passwd", root / "bin" / "abs-link")
    os.symlink("nowhere", root / "bin" / "dangling")
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\n")
    (root / "etc" / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    os.chmod(root / "etc" / "shadow", 0o000)
    owned = root / "home-file"
    owned.write_text("mine\n")
    os.chown(owned, 1000, 1000)
    with open(root / "sparse", "wb") as f:
        f.seek(1 << 20)
        f.write(b"middle")
        f.truncate(3 << 20)
    (root / "empty").write_bytes(b"")
    (root / "dev").mkdir()
    os.mknod(root / "dev" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(root / "dev" / "sda", stat.S_IFBLK | 0o660, os.makedev(8, 0))
    os.chown(root / "dev" / "sda", 0, 6)
    os.mkfifo(root / "fifo", 0o620)
    odd = os.fsencode(root) + b"/name-\xff\xfe-not-utf8"
    with open(odd, "wb") as f:
        f.write(b"odd")
    deep = root / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    (deep / ("f" * 120)).write_text("long path\n")
    old = root / "old"
    old.write_text("1999\n")
    os.utime(old, (915_148_800, 915_148_800))
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            p = os.path.join(dirpath, name)
            if not p.endswith("/old"):
                os.utime(p, (EPOCH, EPOCH), follow_symlinks=False)
    os.utime(root, (EPOCH, EPOCH))
    return root


@pytest.fixture(scope="module")
def special(tmp_path_factory) -> tuple[Path, str, Path]:
    require(is_root(), "building the special tree needs root (owners, devices, file capabilities)")
    base = tmp_path_factory.mktemp("special")
    root = make_special_tree(base / "root")
    layout = base / "layout"
    ref = build_image(root, layout, "linux/amd64", "--cmd", '["/bin/tool"]')
    return root, ref, layout


@pytest.fixture
def nobody_work() -> Iterator[Path]:
    """A directory `nobody` can reach (pytest's own tmp tree is private to root) holding a copy of
    dockerify and the libraries it needs at import time, for Debian's /usr/bin/python3 (the
    test interpreter may live where `nobody` cannot read); removed afterwards."""
    require(is_root() and shutil.which("setpriv"), "needs root and setpriv (util-linux) to run as nobody")
    require(Path("/usr/bin/python3").is_file(), "Debian's python3 is needed to run dockerify as nobody")
    import crc32c
    import zstandard

    work = Path(tempfile.mkdtemp(prefix="dockerify-nobody-"))
    os.chmod(work, 0o755)
    shutil.copytree(
        REPO / "dockerify",
        work / "lib" / "dockerify",
        ignore=shutil.ignore_patterns("__pycache__", "*.c", "registry"),
    )
    # Registry support needs libraries Debian's python lacks; exporting does not use it.
    (work / "lib" / "dockerify" / "registry").mkdir()
    (work / "lib" / "dockerify" / "registry" / "__init__.py").write_text("")
    shutil.copytree(
        Path(zstandard.__file__).parent,
        work / "lib" / "zstandard",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    # crc32c: the ext4 reader's checksums and the SD card's ctime pass (exporters/ext4times.py)
    for module in (crc32c,):
        src = Path(module.__file__).parent
        shutil.copytree(src, work / "lib" / src.name, ignore=shutil.ignore_patterns("__pycache__"))
        for info in src.parent.glob(f"{src.name}-*.dist-info"):  # it reads its own version
            shutil.copytree(info, work / "lib" / info.name)
    (work / "out").mkdir()
    os.chown(work / "out", 65534, 65534)
    try:
        yield work
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)


def open_up(work: Path) -> None:
    for p in [work, *work.rglob("*")]:
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            continue
        os.chmod(p, st.st_mode | (0o755 if stat.S_ISDIR(st.st_mode) else 0o644))


def as_nobody(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-m",
            "dockerify",
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=work / "out",
        env={
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONPATH": str(work / "lib"),
            "HOME": str(work / "out"),
            "TMPDIR": str(work / "out"),
            "LC_ALL": "C.UTF-8",
        },
    )


def busybox_tree(root: Path, arch: str) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "srv").mkdir()
    shutil.copy(busybox(arch), root / "bin" / "busybox")
    for applet in ("sh", "echo", "id", "pwd", "sleep", "ps", "grep"):
        os.symlink("busybox", root / "bin" / applet)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nvideo:x:44:app\n")
    return root


def scratch_tree(root: Path, arch: str, build_dir: Path) -> Path:
    root.mkdir(parents=True)
    shutil.copy(hello_binary(arch, build_dir), root / "hello")
    os.chmod(root / "hello", 0o755)
    return root
