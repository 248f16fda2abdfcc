#!/usr/bin/env python3
"""Generate dockerify's test fixtures: Pi-style disk images and rootfs tarballs.

Run as root on Debian bookworm or trixie (amd64).  Nothing is downloaded except
Debian packages through apt (busybox-static, hello and libc6 for four architectures,
always bookworm's: on another release through a private apt state);
everything else is built locally with userspace tools (mke2fs -d, mkfs.vfat +
mtools, sfdisk, tar), so no loop mounts are needed.

The output directory (default: <repo>/.fixtures, or $DOCKERIFY_FIXTURES, or
--out) receives the images, the staging trees they were built from
(staging/<name>/{root,boot}), the partition images (parts/) and fixtures.json,
which describes every fixture.  A stamp file holds a hash of this script and of
scripts/fixture_src/; generation is skipped while it matches.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

SCRIPT = Path(__file__).resolve()
REPO = SCRIPT.parent.parent
SRC_DIR = SCRIPT.parent / "fixture_src"
DEFAULT_OUT = REPO / ".fixtures"

MANIFEST = "fixtures.json"
STAMP = ".stamp"
MARKER = ".dockerify-fixtures"  # marks an output directory this script may clear
SCHEMA_VERSION = 1

EPOCH = 1_700_000_000  # mtime of every staged file (2023-11-14T22:13:20Z)
OLD_MTIME = 946_684_800  # the one file with a distinct, fixed date (2000-01-01)
SECTOR = 512
MiB = 1 << 20
PART_START = 4 * MiB  # first partition at sector 8192, as Raspberry Pi OS does
BOOT_SIZE = 64 * MiB
MANY_FILES = 10_000
SPARSE_OFFSET = 64 * MiB
UUID_NS = uuid.UUID("6f1c2a7e-4b1d-5c3e-9a8f-0d6b7e2c1f10")  # namespace for fixture ids

# GPT partition type GUIDs.
GPT_ESP = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
GPT_BASIC_DATA = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"
GPT_LINUX = "0fc63daf-8483-4772-8e79-3d69d8477de4"
GPT_ROOT_X86_64 = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"

# CAP_NET_RAW (13) in "permitted", effective flag set: a VFS_CAP_REVISION_2 value,
# byte-for-byte what `setcap cap_net_raw+ep` writes.
CAP_NET_RAW_EP = struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0)

BUSYBOX_APPLETS = ("sh", "ls", "uname", "cat", "echo", "id", "env", "sleep", "mount", "poweroff")
LD_SO_PRELOAD = "/usr/lib/arm-linux-gnueabihf/libarmmem-${PLATFORM}.so\n"

REQUIRED_TOOLS = {
    "apt-get": "apt",
    "dpkg-deb": "dpkg",
    "mke2fs": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "dumpe2fs": "e2fsprogs",
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "sfdisk": "fdisk",
    "tar": "tar",
    "gzip": "gzip",
    "xz": "xz-utils",
    "zstd": "zstd",
    "bzip2": "bzip2",
    "readelf": "binutils",
    "arm-linux-gnueabihf-gcc": "gcc-arm-linux-gnueabihf",
}


# --------------------------------------------------------------------------- specs


# Debian architecture -> OCI platform its binaries make a tree detect as.
PLATFORMS = {"amd64": "linux/amd64", "arm64": "linux/arm64", "armhf": "linux/arm/v7", "armel": "linux/arm/v5"}


@dataclass(frozen=True)
class OsRelease:
    os_id: str = "debian"
    name: str = "Debian GNU/Linux"
    version_id: str = "12"
    codename: str = "bookworm"
    home_url: str = "https://www.debian.org/"

    def fields(self) -> dict[str, str]:
        return {
            "PRETTY_NAME": f"{self.name} {self.version_id} ({self.codename})",
            "NAME": self.name,
            "VERSION_ID": self.version_id,
            "VERSION": f"{self.version_id} ({self.codename})",
            "VERSION_CODENAME": self.codename,
            "ID": self.os_id,
            "HOME_URL": self.home_url,
        }

    def render(self) -> str:
        unquoted = ("VERSION_CODENAME", "ID")  # as Debian writes them
        return "".join(
            f"{key}={value}\n" if key in unquoted else f'{key}="{value}"\n'
            for key, value in self.fields().items()
        )


BULLSEYE = OsRelease(version_id="11", codename="bullseye")
OPENLINUX = OsRelease("openlinux", "OpenLinux", "1.0.0", "one", "https://openlinux.example/")


@dataclass(frozen=True)
class Tree:
    """What goes into one root staging tree."""

    arch: str
    os_release: OsRelease = OsRelease()
    hostname: str = "debian"
    pi: bool = False  # Raspberry Pi OS quirks: /etc/ld.so.preload
    specials: bool = True  # /srv/special/*
    many_files: bool = True  # /srv/many with MANY_FILES entries
    hello: bool = True  # dynamic /usr/bin/hello + libc
    hello_v6: bool = False  # freestanding ARMv6 /usr/bin/hello-v6
    # Raspberry-Pi-OS-style ARMv6 core (loader, libc, busybox, systemd as compiled ARMv6 stand-ins)
    # plus libarmmem-v7l.so & co. and a hwcap-directory library built for newer CPUs.
    rpi_v6_core: bool = False
    dpkg: bool = False  # /var/lib/dpkg: a real dpkg database of the packages staged (for SBOMs)


@dataclass(frozen=True)
class Disk:
    name: str
    tree: Tree
    platform: str
    table: str  # "dos" | "gpt"
    mbr_id: int = 0  # dos label-id
    root_fs: str = "ext4"
    root_size: int = 100 * MiB
    ext_features: tuple[str, ...] = ()
    boot_mountpoint: str = "/boot/firmware"
    fat_volume_id: int = 0x5DF2A7C1
    arm_64bit: bool = False
    kernel_name: str = "kernel8.img"
    gpt_types: tuple[str, str] = (GPT_BASIC_DATA, GPT_LINUX)


@dataclass
class Partition:
    number: int
    start: int
    size: int
    type: str
    partuuid: str
    name: str | None
    fs: dict
    image: Path

    def to_json(self, out: Path) -> dict:
        return {
            "number": self.number,
            "start": self.start,
            "size": self.size,
            "start_sector": self.start // SECTOR,
            "size_sectors": self.size // SECTOR,
            "type": self.type,
            "partuuid": self.partuuid,
            "name": self.name,
            "fs": self.fs,
            "image": rel(self.image, out),
        }


@dataclass
class Context:
    out: Path
    work: Path  # scratch space, deleted at the end
    pkgs: dict[tuple[str, str], Path] = field(default_factory=dict)  # (package, arch) -> extracted dir
    debs: dict[tuple[str, str], Path] = field(default_factory=dict)  # (package, arch) -> .deb file
    hello_v6: Path | None = None
    v6_core: dict[str, Path] = field(default_factory=dict)  # role -> compiled ARM stand-in
    manifest: dict = field(default_factory=dict)


def det_uuid(*parts: str) -> str:
    return str(uuid.uuid5(UUID_NS, "/".join(parts)))


def rel(path: Path, out: Path) -> str:
    return path.relative_to(out).as_posix()


def pi_arm64(name: str, mbr_id: int, **kw) -> Disk:
    many = kw.pop("many_files", True)
    tree = Tree("arm64", hostname="raspberrypi", pi=True, many_files=many, dpkg=many)
    return Disk(name, tree, "linux/arm64", "dos", mbr_id, arm_64bit=True, **kw)


DISKS = (
    pi_arm64("pi-arm64.img", 0x6C1F2A10),
    pi_arm64("pi-arm64-ext2.img", 0x6C1F2A12, root_fs="ext2", root_size=64 * MiB, many_files=False),
    pi_arm64("pi-arm64-ext3.img", 0x6C1F2A13, root_fs="ext3", root_size=64 * MiB, many_files=False),
    pi_arm64(
        "pi-arm64-inline.img",
        0x6C1F2A14,
        root_size=64 * MiB,
        ext_features=("inline_data",),
        many_files=False,
    ),
    Disk(
        "pi-armv6.img",
        Tree("armhf", BULLSEYE, "raspberrypi", pi=True, hello=False, hello_v6=True, rpi_v6_core=True),
        "linux/arm/v6",
        "dos",
        0x5E3DA8C2,
        boot_mountpoint="/boot",
        fat_volume_id=0x2B7E11A0,
        kernel_name="kernel.img",
    ),
    Disk(
        "debian-armhf.img",
        Tree("armhf"),
        "linux/arm/v7",
        "gpt",
        fat_volume_id=0x4A1B9C03,
        kernel_name="kernel7.img",
    ),
    Disk(
        "amd64-gpt.img",
        Tree("amd64"),
        "linux/amd64",
        "gpt",
        fat_volume_id=0x7C3E5D21,
        kernel_name="vmlinuz",
        gpt_types=(GPT_ESP, GPT_ROOT_X86_64),
    ),
)

DISK_COMPRESSIONS = (("xz", ".xz"), ("gzip", ".gz"), ("zstd", ".zst"), ("zip", ".zip"))
TAR_COMPRESSIONS = ((None, ""), ("gzip", ".gz"), ("xz", ".xz"), ("zstd", ".zst"), ("bzip2", ".bz2"))


# --------------------------------------------------------------------------- helpers


T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[make_fixtures {time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH), "LC_ALL": "C", **kw.pop("env", {})}
    proc = subprocess.run(cmd, env=env, capture_output=True, **kw)
    if proc.returncode != 0:
        out = (proc.stdout or b"") + (proc.stderr or b"")
        text = out.decode(errors="replace") if isinstance(out, bytes) else out
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{text}")
    return proc


def source_hash() -> str:
    """Hash of everything that determines the fixtures: this script and fixture_src/."""
    h = hashlib.sha256()
    files = [SCRIPT] + (sorted(p for p in SRC_DIR.rglob("*") if p.is_file()) if SRC_DIR.is_dir() else [])
    for path in files:
        h.update(path.relative_to(SCRIPT.parent).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def seeded_bytes(seed: str, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def write(path: Path, data: str | bytes, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)
    return path


def symlink(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def walk_bottom_up(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        base = Path(dirpath)
        for name in filenames + dirnames:
            yield base / name
    yield root


def fix_mtimes(root: Path, overrides: dict[Path, int] | None = None) -> None:
    """Give every entry a fixed mtime; children first so directories keep theirs."""
    overrides = overrides or {}
    for path in walk_bottom_up(root):
        t = overrides.get(path, EPOCH)
        os.utime(path, (t, t), follow_symlinks=False)


# --------------------------------------------------------------------------- packages


def check_environment() -> None:
    if os.geteuid() != 0:
        sys.exit("make_fixtures.py must run as root (owners, devices and xattrs are staged as-is)")
    missing = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if not shutil.which(tool)})
    if missing:
        sys.exit(f"missing tools; install with: apt-get install -y {' '.join(missing)}")


def cached_deb(cache: Path, pkg: str, arch: str) -> Path | None:
    debs = sorted(cache.glob(f"{pkg}_*_{arch}.deb"), key=lambda p: p.stat().st_mtime)
    return debs[-1] if debs else None


def enable_foreign_arches(arches: set[str]) -> None:
    native = run(["dpkg", "--print-architecture"], text=True).stdout.strip()
    foreign = set(run(["dpkg", "--print-foreign-architectures"], text=True).stdout.split())
    for arch in sorted(arches - foreign - {native}):
        log(f"dpkg --add-architecture {arch}")
        run(["dpkg", "--add-architecture", arch])
    log("apt-get update")
    # A partial failure (one mirror index out of sync) is not fatal: the download decides.
    subprocess.run(["apt-get", "update", "-qq"], capture_output=True)


#: The release the fixtures model (their os-release, package paths, library versions and the
#: tests' expectations are bookworm's), whatever the machine generating them runs.
FIXTURE_SUITE = "bookworm"
FIXTURE_ARCHES = ("amd64", "arm64", "armhf", "armel")


def machine_codename() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return ""
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return fields.get("VERSION_CODENAME", "").strip('"')


def archive_uri() -> str:
    """The Debian archive the machine's apt sources name (deb822 first, then one-line lists)."""
    lists = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for f in lists:
        for line in f.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    for f in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        if f.is_file():
            for line in f.read_text().splitlines():
                words = [w for w in line.split() if not w.startswith("[") and not w.endswith("]")]
                if len(words) >= 3 and words[0] == "deb" and "security" not in words[1]:
                    return words[1]
    return "http://deb.debian.org/debian"


def private_apt(cache: Path) -> list[str]:
    """apt-get with a private state of its own naming only FIXTURE_SUITE, for a machine on another
    release (Debian 13): the machine's own sources, dpkg database and architectures are untouched."""
    state = cache / f"apt-{FIXTURE_SUITE}"
    for sub in ("lists/partial", "cache/archives/partial"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    write(state / "sources.list", f"deb [signed-by={keyring}] {archive_uri()} {FIXTURE_SUITE} main\n")
    apt = ["apt-get", "-q", "-o", f"Dir::Etc::SourceList={state / 'sources.list'}"]
    apt += ["-o", "Dir::Etc::SourceParts=/dev/null", "-o", f"Dir::State::Lists={state / 'lists'}"]
    apt += ["-o", f"Dir::Cache={state / 'cache'}", "-o", "Dir::State::status=/dev/null"]
    apt += ["-o", "APT::Sandbox::User=root", "-o", "APT::Architecture=amd64"]
    for arch in FIXTURE_ARCHES:
        apt += ["-o", f"APT::Architectures::={arch}"]
    if not any((state / "lists").glob(f"*{FIXTURE_SUITE}*Packages*")):
        log(f"apt-get update ({FIXTURE_SUITE}, private state in {state})")
        run([*apt, "update"])
    return apt


def fetch_debs(cache: Path, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], Path]:
    cache.mkdir(parents=True, exist_ok=True)
    missing = [(p, a) for p, a in wanted if not cached_deb(cache, p, a)]
    if missing:
        specs = [f"{p}:{a}" for p, a in missing]
        log(f"apt-get download {' '.join(specs)}")
        if machine_codename() not in ("", FIXTURE_SUITE):
            apt = private_apt(cache)
            try:
                run([*apt, "download", *specs], cwd=cache)
            except RuntimeError:  # lists of an earlier run that the archive has moved past
                run([*apt, "update"])
                run([*apt, "download", *specs], cwd=cache)
            return {(p, a): cached_deb(cache, p, a) for p, a in wanted}  # type: ignore[misc]
        try:
            run(["apt-get", "download", *specs], cwd=cache)
        except RuntimeError:
            enable_foreign_arches({a for _, a in missing})
            run(["apt-get", "download", *specs], cwd=cache)
    return {(p, a): cached_deb(cache, p, a) for p, a in wanted}  # type: ignore[misc]


#: Real Debian armhf packages of the platform-detection tree: dash is /bin/sh, libgcrypt20 is
#: tagged ARMv8 (its ARMv8 code is chosen at run time) in an otherwise ARMv7 tree.
PLATFORM_PACKAGES = (("dash", "armhf"), ("libgcrypt20", "armhf"), ("libgpg-error0", "armhf"))


def extract_packages(ctx: Context) -> None:
    arches = sorted({d.tree.arch for d in DISKS} | {"amd64", "arm64"})
    wanted = [(pkg, a) for a in arches for pkg in ("busybox-static", "hello", "libc6")]
    wanted += list(PLATFORM_PACKAGES)
    wanted.append(("netbase", "all"))  # small, with a machine-readable (DEP-5) copyright file
    for (pkg, arch), deb in fetch_debs(ctx.out / "debs", wanted).items():
        dest = ctx.work / "pkgs" / f"{pkg}_{arch}"
        dest.mkdir(parents=True)
        run(["dpkg-deb", "-x", str(deb), str(dest)])
        ctx.pkgs[(pkg, arch)] = dest
        ctx.debs[(pkg, arch)] = deb


DPKG_PACKAGES = ("busybox-static", "hello", "libc6", "netbase")


def install_dpkg_db(ctx: Context, root: Path, arch: str) -> None:
    """/var/lib/dpkg as dpkg leaves it for the staged packages: `status` with each package's
    control fields and `Status: install ok installed`, `info/PKG[:ARCH].list` with every path
    the package ships, and each package's /usr/share/doc/PKG/copyright. Only some of the listed
    files are staged; dpkg-query reads the database all the same."""
    admin = root / "var/lib/dpkg"
    (admin / "info").mkdir(parents=True)
    (admin / "updates").mkdir()
    stanzas = []
    for pkg in DPKG_PACKAGES:
        key = (pkg, "all") if (pkg, "all") in ctx.debs else (pkg, arch)
        control = run(["dpkg-deb", "-f", str(ctx.debs[key])], text=True).stdout.rstrip("\n").split("\n")
        stanzas.append("\n".join([control[0], "Status: install ok installed", *control[1:]]) + "\n")
        multi_same = "Multi-Arch: same" in control
        listed = ["/."]
        extracted = ctx.pkgs[key]
        for path in sorted(extracted.rglob("*")):
            listed.append("/" + path.relative_to(extracted).as_posix())
        name = f"{pkg}:{arch}" if multi_same else pkg
        write(admin / "info" / f"{name}.list", "\n".join(listed) + "\n")
        doc = f"usr/share/doc/{pkg}/copyright"
        write(root / doc, (extracted / doc).read_bytes())
    write(admin / "status", "\n".join(stanzas))
    write(admin / "arch", f"{arch}\n")


def build_hello_v6(ctx: Context) -> None:
    """Compile the freestanding ARMv6 hello and check its ELF build attributes."""
    out = ctx.work / "hello-v6"
    cflags = ["-march=armv6", "-marm", "-mfloat-abi=hard", "-mfpu=vfp", "-O2", "-s"]
    cflags += ["-nostdlib", "-static", "-ffreestanding", "-fno-stack-protector"]
    cflags += ["-fno-asynchronous-unwind-tables", "-Wl,--build-id=none"]
    run(["arm-linux-gnueabihf-gcc", *cflags, "-o", str(out), str(SRC_DIR / "hello_v6.c")])
    attrs = run(["readelf", "-A", str(out)], text=True).stdout
    cpu_arch = [line.split(":", 1)[1].strip() for line in attrs.splitlines() if "Tag_CPU_arch:" in line]
    if cpu_arch != ["v6"]:
        raise RuntimeError(f"hello-v6 has Tag_CPU_arch {cpu_arch}, expected v6")
    ctx.hello_v6 = out


def _cpu_arch(path: Path) -> str:
    attrs = run(["readelf", "-A", str(path)], text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in attrs.splitlines() if "Tag_CPU_arch:" in line), "")


def build_v6_core(ctx: Context) -> None:
    """ARM stand-ins for a Raspberry-Pi-OS-style tree: its core built for ARMv6 (what Raspberry Pi
    OS builds for), and the libraries it selects at run time built for ARMv7 and ARMv8."""
    out = ctx.work / "v6-core"
    out.mkdir()
    base = ["-marm", "-mfloat-abi=hard", "-O2", "-s", "-nostdlib", "-ffreestanding", "-fno-stack-protector"]
    base += ["-fno-asynchronous-unwind-tables", "-Wl,--build-id=none"]
    march = {
        "v6": ["-march=armv6", "-mfpu=vfp"],
        "v7": ["-march=armv7-a", "-mfpu=neon-vfpv4"],
        "v8": ["-march=armv8-a", "-mfpu=neon-fp-armv8"],
    }
    libs = {"loader": "v6", "libc": "v6", "armmem-v6l": "v6", "armmem-v7l": "v7", "armmem-v8l": "v8"}
    libs |= {"stub": "v6", "stub-neon": "v7"}
    for role, variant in libs.items():
        lib = out / f"{role}.so"
        soname = {"loader": "ld-linux-armhf.so.3", "libc": "libc.so.6"}.get(role, f"lib{role}.so")
        flags = [*base, *march[variant], "-shared", "-fPIC", f"-Wl,-soname,{soname}"]
        run(["arm-linux-gnueabihf-gcc", *flags, "-o", str(lib), str(SRC_DIR / "stub_lib.c")])
        ctx.v6_core[role] = lib
    # Dynamic executables: they name /lib/ld-linux-armhf.so.3 as their interpreter (PT_INTERP).
    for role in ("busybox", "systemd"):
        exe = out / role
        flags = [*base, *march["v6"], "-Wl,--dynamic-linker=/lib/ld-linux-armhf.so.3"]
        run(
            [
                "arm-linux-gnueabihf-gcc",
                *flags,
                "-o",
                str(exe),
                str(SRC_DIR / "hello_v6.c"),
                str(ctx.v6_core["libc"]),
            ]
        )
        ctx.v6_core[role] = exe
    for role, path in ctx.v6_core.items():
        want = libs.get(role, "v6")
        if _cpu_arch(path) != want:
            raise RuntimeError(f"v6-core {role} has Tag_CPU_arch {_cpu_arch(path)}, expected {want}")


def install_rpi_v6_core(ctx: Context, root: Path) -> None:
    lib, usrlib = root / "lib/arm-linux-gnueabihf", root / "usr/lib/arm-linux-gnueabihf"
    copies = {
        lib / "ld-linux-armhf.so.3": "loader",
        lib / "libc.so.6": "libc",
        root / "bin/busybox": "busybox",
        root / "lib/systemd/systemd": "systemd",
        usrlib / "libarmmem-v6l.so": "armmem-v6l",
        usrlib / "libarmmem-v7l.so": "armmem-v7l",
        usrlib / "libarmmem-v8l.so": "armmem-v8l",
        usrlib / "libstub.so.1": "stub",
        usrlib / "neon/vfp/libstub.so.1": "stub-neon",
    }
    for dest, role in copies.items():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ctx.v6_core[role], dest)
        dest.chmod(0o755)
    symlink(root / "lib/ld-linux-armhf.so.3", "arm-linux-gnueabihf/ld-linux-armhf.so.3")
    symlink(root / "sbin/init", "/lib/systemd/systemd")
    for applet in BUSYBOX_APPLETS:
        symlink(root / "bin" / applet, "busybox")


# --------------------------------------------------------------------------- root trees


BASE_DIRS = {
    "bin": 0o755,
    "sbin": 0o755,
    "dev": 0o755,
    "etc": 0o755,
    "home": 0o755,
    "lib": 0o755,
    "mnt": 0o755,
    "proc": 0o555,
    "root": 0o700,
    "run": 0o755,
    "srv": 0o755,
    "sys": 0o555,
    "tmp": 0o1777,
    "usr/bin": 0o755,
    "usr/lib": 0o755,
    "usr/sbin": 0o755,
    "var/tmp": 0o1777,
    "var/log": 0o755,
}


def make_base_dirs(root: Path) -> None:
    root.mkdir(parents=True)
    root.chmod(0o755)
    for name, mode in BASE_DIRS.items():
        path = root / name
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)
    home = root / "home/pi"
    home.mkdir()
    os.chown(home, 1000, 1000)


def install_busybox(ctx: Context, root: Path, arch: str) -> None:
    shutil.copy2(ctx.pkgs[("busybox-static", arch)] / "bin/busybox", root / "bin/busybox")
    for applet in BUSYBOX_APPLETS:
        symlink(root / "bin" / applet, "busybox")


def install_hello(ctx: Context, root: Path, arch: str) -> None:
    """The dynamic /usr/bin/hello plus the two libc6 files it needs, at their package paths."""
    shutil.copy2(ctx.pkgs[("hello", arch)] / "usr/bin/hello", root / "usr/bin/hello")
    libc = ctx.pkgs[("libc6", arch)]
    for src in sorted(libc.rglob("*")):
        if src.name.startswith("ld-linux") or src.name == "libc.so.6":
            dest = root / src.relative_to(libc)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest, follow_symlinks=False)


def deb_list(deb: Path) -> str:
    """The package's info/*.list as dpkg writes it: every path of the archive, "/." for the root."""
    data = run(["dpkg-deb", "--fsys-tarfile", str(deb)]).stdout
    listing = run(["tar", "-t"], input=data).stdout.decode()
    paths = [name.removeprefix(".").rstrip("/") or "/." for name in listing.splitlines()]
    return "".join(p + "\n" for p in paths)


def write_dpkg_db(ctx: Context, root: Path, packages: list[tuple[str, str]]) -> None:
    """A dpkg database for the packages the tree holds files of: the real control fields and
    file lists of the real .debs, as dpkg would have left them (files of libc6 the fixture does
    not copy are listed but absent, which dpkg --verify would report and the chunker ignores)."""
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True, exist_ok=True)
    status = []
    for pkg, arch in sorted(packages):
        deb = ctx.debs[(pkg, arch)]
        control = run(["dpkg-deb", "-f", str(deb)], text=True).stdout.rstrip("\n").split("\n")
        control.insert(1, "Status: install ok installed")
        status.append("\n".join(control) + "\n")
        multi = any(line == "Multi-Arch: same" for line in control)
        write(info / (f"{pkg}:{arch}.list" if multi else f"{pkg}.list"), deb_list(deb))
    write(root / "var/lib/dpkg/status", "\n".join(status))
    write(root / "var/lib/dpkg/diversions", "")


def write_etc(root: Path, tree: Tree, fstab: str) -> None:
    etc = root / "etc"
    write(etc / "os-release", tree.os_release.render())
    write(etc / "hostname", f"{tree.hostname}\n")
    write(etc / "hosts", f"127.0.0.1\tlocalhost\n127.0.1.1\t{tree.hostname}\n")
    write(
        etc / "passwd",
        "root:x:0:0:root:/root:/bin/sh\npi:x:1000:1000:,,,:/home/pi:/bin/sh\n",
    )
    write(etc / "group", "root:x:0:\npi:x:1000:\n")
    write(etc / "shadow", "root:*:19000:0:99999:7:::\npi:*:19000:0:99999:7:::\n", 0o640)
    write(etc / "fstab", fstab)
    if tree.pi:
        write(etc / "ld.so.preload", LD_SO_PRELOAD)


LONG_TARGET_NAME = "a-rather-long-target-file-name-to-force-a-slow-symlink-in-ext4.txt"


def make_specials(root: Path) -> dict[Path, int]:
    """Populate /srv/special with every awkward kind of entry; returns mtime overrides."""
    sp = root / "srv/special"
    sp.mkdir(parents=True)
    write(sp / "regular.txt", "regular file\n")
    write(sp / "setuid", "#!/bin/sh\necho setuid\n", 0o4755)
    write(sp / "setgid", "#!/bin/sh\necho setgid\n", 0o2755)
    (sp / "sticky").mkdir(mode=0o1777)
    (sp / "sticky").chmod(0o1777)
    (sp / "empty-dir").mkdir()
    os.setxattr(
        write(sp / "cap-net-raw", "#!/bin/sh\necho cap\n", 0o755), "security.capability", CAP_NET_RAW_EP
    )
    os.setxattr(write(sp / "xattr-user", "has a user xattr\n"), "user.dockerify", b"hello")
    write(sp / "hardlink-1", "three names, one inode\n")
    os.link(sp / "hardlink-1", sp / "hardlink-2")
    os.link(sp / "hardlink-1", sp / "hardlink-3")
    write(sp / LONG_TARGET_NAME, "target of a long symlink\n")
    symlink(sp / "symlink-relative", "regular.txt")
    symlink(sp / "symlink-absolute", "/etc/os-release")
    symlink(sp / "symlink-dangling", "does/not/exist")
    symlink(sp / "symlink-long", f"../special/./{LONG_TARGET_NAME}")
    os.mkfifo(sp / "fifo")
    os.mknod(sp / "char-null", stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(sp / "block-loop0", stat.S_IFBLK, os.makedev(7, 0))
    for name, mode in (("fifo", 0o644), ("char-null", 0o666), ("block-loop0", 0o660)):
        (sp / name).chmod(mode)  # mknod/mkfifo modes are filtered by the umask
    with open(sp / "sparse", "wb") as f:
        f.seek(SPARSE_OFFSET)
        f.write(b"x")
    write(sp / "café-ñ.txt", "utf-8 name\n")
    write(Path(os.fsdecode(bytes(sp) + b"/latin1-\xe9.txt")), "latin-1 name\n")
    os.chown(write(sp / "owned-1000", "uid 1000\n"), 1000, 1000)
    os.chown(write(sp / "owned-100000", "uid 100000\n"), 100000, 100000)
    old = write(sp / "old-mtime", "mtime 2000-01-01\n")
    return {old: OLD_MTIME}


# Role -> path (under /srv/special unless absolute) of the entries make_specials() creates.
SPECIAL_PATHS: dict[str, str | bytes] = {
    "regular": "regular.txt",
    "setuid": "setuid",
    "setgid": "setgid",
    "sticky": "sticky",
    "empty_dir": "empty-dir",
    "capability": "cap-net-raw",
    "user_xattr": "xattr-user",
    "hardlink_1": "hardlink-1",
    "hardlink_2": "hardlink-2",
    "hardlink_3": "hardlink-3",
    "symlink_relative": "symlink-relative",
    "symlink_absolute": "symlink-absolute",
    "symlink_dangling": "symlink-dangling",
    "symlink_long": "symlink-long",
    "fifo": "fifo",
    "char_device": "char-null",
    "block_device": "block-loop0",
    "sparse": "sparse",
    "utf8_name": "café-ñ.txt",
    "latin1_name": b"latin1-\xe9.txt",
    "owned_1000": "owned-1000",
    "owned_100000": "owned-100000",
    "old_mtime": "old-mtime",
    "many": "/srv/many",
}

FILE_TYPES = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
}


def describe(root: Path, name: str | bytes) -> dict:
    """What a staged entry is, as the manifest records it (read back from the tree itself)."""
    raw = os.fsencode(name)
    raw = raw if raw.startswith(b"/") else b"/srv/special/" + raw
    path = os.fsencode(root) + raw
    st = os.lstat(path)
    kind = FILE_TYPES[stat.S_IFMT(st.st_mode)]
    try:
        info: dict = {"path": raw.decode()}
    except UnicodeDecodeError:
        info = {"path_hex": raw.hex()}
    info |= {"type": kind, "mode": f"{stat.S_IMODE(st.st_mode):04o}", "uid": st.st_uid, "gid": st.st_gid}
    info["mtime"] = int(st.st_mtime)
    if kind == "file":
        info |= {"size": st.st_size, "nlink": st.st_nlink}
    elif kind == "symlink":
        info["target"] = os.fsdecode(os.readlink(path))
    elif kind in ("char", "block"):
        info |= {"major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev)}
    elif kind == "dir":
        info["entries"] = len(os.listdir(path))
    xattrs = {} if kind == "symlink" else {x: os.getxattr(path, x).hex() for x in os.listxattr(path)}
    if xattrs:
        info["xattrs_hex"] = xattrs
    return info


def describe_specials(root: Path) -> dict:
    return {role: describe(root, name) for role, name in SPECIAL_PATHS.items()}


def make_many(root: Path) -> None:
    """MANY_FILES entries f00000..; every tenth holds its own name, the rest are empty."""
    many = root / "srv/many"
    many.mkdir(parents=True)
    for i in range(MANY_FILES):
        name = f"f{i:05d}"
        with open(many / name, "wb") as f:
            if i % 10 == 0:
                f.write(name.encode() + b"\n")


def fstab_text(boot_uuid: str, root_uuid: str, boot_mountpoint: str, root_fs: str) -> str:
    return (
        "proc            /proc           proc    defaults          0       0\n"
        f"PARTUUID={boot_uuid}  {boot_mountpoint}  vfat    defaults          0       2\n"
        f"PARTUUID={root_uuid}  /               {root_fs}    defaults,noatime  0       1\n"
    )


def build_root(ctx: Context, root: Path, tree: Tree, fstab: str, boot_mountpoint: str = "/boot") -> None:
    make_base_dirs(root)
    (root / boot_mountpoint.lstrip("/")).mkdir(parents=True, exist_ok=True)
    if tree.rpi_v6_core:
        install_rpi_v6_core(ctx, root)
    else:
        install_busybox(ctx, root, tree.arch)
    if tree.hello:
        install_hello(ctx, root, tree.arch)
    if tree.hello_v6:
        assert ctx.hello_v6 is not None
        shutil.copy2(ctx.hello_v6, root / "usr/bin/hello-v6")
    write_etc(root, tree, fstab)
    if tree.dpkg:  # the fuller database (copyright files, netbase) the SBOM tests read
        install_dpkg_db(ctx, root, tree.arch)
        write(root / "var/lib/dpkg/diversions", "")
    else:
        installed = [] if tree.rpi_v6_core else [("busybox-static", tree.arch)]
        if tree.hello:
            installed += [("hello", tree.arch), ("libc6", tree.arch)]
        if installed:
            write_dpkg_db(ctx, root, installed)
    overrides = make_specials(root) if tree.specials else {}
    if tree.many_files:
        make_many(root)
    fix_mtimes(root, overrides)


# --------------------------------------------------------------------------- boot trees


def build_boot(boot: Path, disk: Disk, root_partuuid: str) -> None:
    boot.mkdir(parents=True)
    config = "# dockerify test fixture\n[all]\n"
    if disk.arm_64bit:
        config += "arm_64bit=1\n"
    config += "enable_uart=1\ndtparam=audio=on\ndtoverlay=vc4-kms-v3d\n"
    write(boot / "config.txt", config)
    write(
        boot / "cmdline.txt",
        f"console=serial0,115200 console=tty1 root=PARTUUID={root_partuuid} "
        f"rootfstype={disk.root_fs} fsck.repair=yes rootwait\n",
    )
    overlays = boot / "overlays"
    write(overlays / "README-long-file-name.txt", "Overlays for the dockerify test fixture.\n")
    for name in ("vc4-kms-v3d.dtbo", "disable-bt.dtbo"):
        write(overlays / name, b"\xd0\x0d\xfe\xed" + seeded_bytes(name, 1020))
    write(boot / "kernel8.img", seeded_bytes("kernel8.img", 8192))
    if disk.kernel_name != "kernel8.img":
        write(boot / disk.kernel_name, seeded_bytes(disk.kernel_name, 6144))
    write(boot / "start4.elf", seeded_bytes("start4.elf", 1_300_000))
    fix_mtimes(boot)


# --------------------------------------------------------------------------- filesystems


def make_fat(part: Path, boot: Path, size: int, volume_id: int) -> dict:
    """FAT32 with a fixed volume id; --invariant + patch keeps it byte-reproducible."""
    run(["mkfs.vfat", "-F", "32", "-n", "BOOTFS", "--invariant", "-C", str(part), str(size // 1024)])
    with open(part, "r+b") as f:
        backup_sector = struct.unpack("<H", f.read(52)[50:52])[0]
        for sector in (0, backup_sector):
            f.seek(sector * SECTOR + 0x43)  # BS_VolID in the FAT32 boot sector
            f.write(struct.pack("<I", volume_id))
    entries = sorted(str(p) for p in boot.iterdir())
    run(["mcopy", "-s", "-m", "-i", str(part), *entries, "::/"], env={"MTOOLS_SKIP_CHECK": "1"})
    vid = f"{volume_id:08X}"
    return {"type": "vfat", "fat": 32, "label": "BOOTFS", "volume_id": vid, "uuid": f"{vid[:4]}-{vid[4:]}"}


def make_ext(
    part: Path, root: Path, size: int, fs_type: str, fs_uuid: str, features: tuple[str, ...]
) -> dict:
    cmd = ["mke2fs", "-q", "-F", "-t", fs_type, "-L", "rootfs", "-U", fs_uuid, "-b", "4096", "-N", "16384"]
    if features:
        cmd += ["-O", ",".join(features)]
    cmd += ["-E", f"root_owner=0:0,hash_seed={fs_uuid}", "-d", str(root), str(part), f"{size // 1024}k"]
    run(cmd, env={"E2FSPROGS_FAKE_TIME": str(EPOCH)})
    pin_ctimes(part)
    return {"type": fs_type, "label": "rootfs", "uuid": fs_uuid, "features": list(features)}


def used_inodes(part: Path) -> list[int]:
    """Inode numbers from the first non-reserved one up that dumpe2fs does not list as free."""
    text = run(["dumpe2fs", str(part)], text=True).stdout
    header = dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line[0].isspace())
    first, count = int(header["First inode"]), int(header["Inode count"])
    free: set[int] = set()
    for line in text.splitlines():
        if line.strip().startswith("Free inodes:") and line[0].isspace():
            for span in filter(None, (s.strip() for s in line.split(":", 1)[1].split(","))):
                lo, _, hi = span.partition("-")
                free.update(range(int(lo), int(hi or lo) + 1))
    return [ino for ino in range(first, count + 1) if ino not in free]


def pin_ctimes(part: Path) -> None:
    """mke2fs -d copies each file's ctime (the time it was staged); pin them to EPOCH."""
    cmds = "".join(f"sif <{ino}> ctime @{EPOCH}\n" for ino in used_inodes(part))
    with tempfile.NamedTemporaryFile("w", suffix=".debugfs") as f:
        f.write(cmds)
        f.flush()
        run(["debugfs", "-w", "-f", f.name, str(part)], env={"E2FSPROGS_FAKE_TIME": str(EPOCH)})


def copy_range(
    src_fd: int, dst_fd: int, start: int, length: int, dst_offset: int, chunk: int = 64 * 1024
) -> None:
    """Copy src[start:start+length] to dst at dst_offset, skipping holes and all-zero chunks."""
    zero = bytes(chunk)
    pos, end = start, start + length
    while pos < end:
        try:
            pos = os.lseek(src_fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole remains
            break
        data_end = min(os.lseek(src_fd, pos, os.SEEK_HOLE), end)
        while pos < data_end:
            data = os.pread(src_fd, min(chunk, data_end - pos), pos)
            if data != zero[: len(data)]:
                os.pwrite(dst_fd, data, dst_offset + pos - start)
            pos += len(data)


def sfdisk_script(disk: Disk, parts: list[Partition], disk_id: str) -> str:
    lines = [f"label: {disk.table}", f"label-id: {disk_id}", "unit: sectors", "sector-size: 512", ""]
    for p in parts:
        line = f"start={p.start // SECTOR}, size={p.size // SECTOR}, type={p.type}"
        if disk.table == "gpt":
            line += f', uuid={p.partuuid}, name="{p.name}"'
        lines.append(line)
    return "\n".join(lines) + "\n"


def assemble_disk(image: Path, disk: Disk, parts: list[Partition], disk_id: str) -> int:
    end = parts[-1].start + parts[-1].size
    total = end + (MiB if disk.table == "gpt" else 0)  # room for the backup GPT
    image.unlink(missing_ok=True)
    with open(image, "wb") as f:
        f.truncate(total)
    run(
        ["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(image)],
        input=sfdisk_script(disk, parts, disk_id).encode(),
    )
    fd = os.open(image, os.O_WRONLY)
    try:
        for p in parts:
            src = os.open(p.image, os.O_RDONLY)
            try:
                copy_range(src, fd, 0, os.fstat(src).st_size, p.start)
            finally:
                os.close(src)
    finally:
        os.close(fd)
    os.utime(image, (EPOCH, EPOCH))
    return total


def build_disk(ctx: Context, disk: Disk) -> dict:
    stem = disk.name.removesuffix(".img")
    staging = ctx.out / "staging" / stem
    if disk.table == "dos":
        disk_id = f"0x{disk.mbr_id:08x}"
        partuuids = [f"{disk.mbr_id:08x}-{n:02d}" for n in (1, 2)]
        types = ["c", "83"]
        names: list[str | None] = [None, None]
    else:
        disk_id = det_uuid(stem, "disk")
        partuuids = [det_uuid(stem, "part", str(n)) for n in (1, 2)]
        types = list(disk.gpt_types)
        names = ["boot", "root"]
    ext_uuid = det_uuid(stem, "rootfs")

    fstab = fstab_text(partuuids[0], partuuids[1], disk.boot_mountpoint, disk.root_fs)
    build_root(ctx, staging / "root", disk.tree, fstab, disk.boot_mountpoint)
    build_boot(staging / "boot", disk, partuuids[1])

    parts_dir = ctx.out / "parts"
    parts_dir.mkdir(exist_ok=True)
    boot_img, root_img = parts_dir / f"{stem}.p1.vfat", parts_dir / f"{stem}.p2.{disk.root_fs}"
    fat = make_fat(boot_img, staging / "boot", BOOT_SIZE, disk.fat_volume_id)
    ext = make_ext(root_img, staging / "root", disk.root_size, disk.root_fs, ext_uuid, disk.ext_features)
    parts = [
        Partition(1, PART_START, BOOT_SIZE, types[0], partuuids[0], names[0], fat, boot_img),
        Partition(2, PART_START + BOOT_SIZE, disk.root_size, types[1], partuuids[1], names[1], ext, root_img),
    ]
    size = assemble_disk(ctx.out / disk.name, disk, parts, disk_id)
    log(f"built {disk.name}")
    return {
        "file": disk.name,
        "kind": "disk",
        "platform": disk.platform,
        "arch": disk.tree.arch,
        "os_release": disk.tree.os_release.fields(),
        "size": size,
        "compression": None,
        "table": disk.table,
        "disk_id": disk_id,
        "partitions": [p.to_json(ctx.out) for p in parts],
        "boot_partition": 1,
        "root_partition": 2,
        "boot_mountpoint": disk.boot_mountpoint,
        "staging": {"root": rel(staging / "root", ctx.out), "boot": rel(staging / "boot", ctx.out)},
        "variant": {
            "bookworm": disk.boot_mountpoint == "/boot/firmware",
            "pi": disk.tree.pi,
            "root_fs": disk.root_fs,
            "inline_data": "inline_data" in disk.ext_features,
            "many_files": disk.tree.many_files,
            "hello_v6": disk.tree.hello_v6,
        },
    }


# --------------------------------------------------------------------------- compression


COMPRESSORS = {
    "gzip": ["gzip", "-n", "-c"],
    "xz": ["xz", "-T2", "-c"],
    "zstd": ["zstd", "-q", "-T2", "-c"],
    "bzip2": ["bzip2", "-c"],
}


def write_zip(src: Path, dst: Path) -> None:
    """A one-member zip made with the stdlib: fixed timestamp, unix mode, deflate."""
    info = zipfile.ZipInfo(src.name, date_time=time.gmtime(EPOCH)[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    with zipfile.ZipFile(dst, "w") as zf, open(src, "rb") as f, zf.open(info, "w") as member:
        shutil.copyfileobj(f, member, MiB)


def compress(tool: str, src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    if tool == "zip":
        write_zip(src, dst)
    else:
        with open(dst, "wb") as f:
            subprocess.run([*COMPRESSORS[tool], str(src)], stdout=f, check=True)
    os.utime(dst, (EPOCH, EPOCH))


def compress_disk(ctx: Context, base: dict, tool: str, suffix: str) -> dict:
    source = base["file"]
    name = source + suffix if tool != "zip" else source.removesuffix(".img") + suffix
    compress(tool, ctx.out / source, ctx.out / name)
    entry = {
        **base,
        "file": name,
        "compression": tool,
        "source": source,
        "size": (ctx.out / name).stat().st_size,
        "uncompressed_size": base["size"],
    }
    if tool == "zip":
        entry["member"] = source
    log(f"built {name}")
    return entry


# --------------------------------------------------------------------------- tarballs


def tar_rootfs(root: Path, dst: Path) -> None:
    """GNU tar names sparse members ".../GNUSparseFile.<pid>/..."; a PID namespace pins pid 1."""
    pidns = ["unshare", "--pid", "--fork"] if shutil.which("unshare") else []
    if pidns and subprocess.run([*pidns, "true"], capture_output=True).returncode != 0:
        pidns = []  # no PID namespaces here: the tarball is still valid, just not byte-reproducible
    tar = ["tar", "--xattrs", "--xattrs-include=*", "--sparse", "--numeric-owner", "--format=pax"]
    tar += ["--sort=name", "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime"]
    run([*pidns, *tar, "-C", str(root), "-cf", str(dst), "."])
    os.utime(dst, (EPOCH, EPOCH))


def tarball_entry(ctx: Context, name: str, tree: Tree, compression: str | None, root: Path) -> dict:
    return {
        "file": name,
        "kind": "tarball",
        "platform": PLATFORMS[tree.arch],
        "arch": tree.arch,
        "os_release": tree.os_release.fields(),
        "size": (ctx.out / name).stat().st_size,
        "compression": compression,
        "format": "pax",
        "staging": {"root": rel(root, ctx.out)},
        "variant": {"many_files": tree.many_files, "xattrs": True, "numeric_owner": True},
    }


def build_rootfs_tarballs(
    ctx: Context, arch: str, compressions: tuple[tuple[str | None, str], ...]
) -> list[dict]:
    root = ctx.out / "staging" / f"rootfs-{arch}" / "root"
    tree = Tree(arch)
    build_root(ctx, root, tree, "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n")
    plain = ctx.work / f"rootfs-{arch}.tar"
    tar_rootfs(root, plain)
    entries = []
    for tool, suffix in compressions:
        name = f"rootfs-{arch}.tar{suffix}"
        if tool is None:
            shutil.copy2(plain, ctx.out / name)
        else:
            compress(tool, plain, ctx.out / name)
        entries.append(tarball_entry(ctx, name, tree, tool, root))
        log(f"built {name}")
    return entries


def build_openlinux(ctx: Context) -> list[dict]:
    """A minimal arm64 busybox rootfs, tarred the way the seed project shipped its rootfs."""
    root = ctx.out / "staging" / "openlinux" / "root"
    tree = Tree("arm64", OPENLINUX, "openlinux", specials=False, many_files=False, hello=False)
    build_root(ctx, root, tree, "# /etc/fstab: static file system information.\n")
    for path in walk_bottom_up(root):  # the tarball forces 0:0 owners; keep the tree comparable
        os.lchown(path, 0, 0)
    name = "openlinux-1.0.0-aarch64-rootfs.tar.gz"
    tar = ["tar", "--owner=0", "--group=0", "--numeric-owner", "--sort=name", "-I", "gzip -n"]
    run([*tar, "-C", str(root), "-cf", str(ctx.out / name), "."])
    os.utime(ctx.out / name, (EPOCH, EPOCH))
    entry = tarball_entry(ctx, name, tree, "gzip", root)
    entry["format"] = "gnu"
    entry["variant"] = {"many_files": False, "xattrs": False, "numeric_owner": True, "openlinux": True}
    log(f"built {name}")
    return [entry]


# --------------------------------------------------------------------------- platform trees


def _install_package(ctx: Context, root: Path, pkg: str, arch: str) -> None:
    shutil.copytree(ctx.pkgs[(pkg, arch)], root, symlinks=True, dirs_exist_ok=True)


def build_platform_tree(
    ctx: Context, name: str, packages: list[tuple[str, str]], links: dict[str, str], platform: str
) -> dict:
    """A rootfs directory of whole Debian packages, for platform detection on real files."""
    root = ctx.out / "trees" / name
    make_base_dirs(root)
    for pkg, arch in packages:
        _install_package(ctx, root, pkg, arch)
    for path, target in links.items():
        (root / path).unlink(missing_ok=True)
        symlink(root / path, target)
    write(root / "etc/os-release", OsRelease().render())
    fix_mtimes(root)
    log(f"built trees/{name}")
    return {
        "file": f"trees/{name}",
        "kind": "directory",
        "platform": platform,
        "arch": packages[0][1],
        "os_release": OsRelease().fields(),
        "staging": {"root": f"trees/{name}"},
        "packages": [f"{p}:{a}" for p, a in packages],
    }


def build_platform_trees(ctx: Context) -> list[dict]:
    armhf = build_platform_tree(
        ctx,
        "debian-armhf",
        [("libc6", "armhf"), ("dash", "armhf"), ("busybox-static", "armhf")]
        + [("libgpg-error0", "armhf"), ("libgcrypt20", "armhf")],
        {"sbin/init": "/bin/busybox"},
        "linux/arm/v7",
    )
    armhf["disagree"] = ["/usr/lib/arm-linux-gnueabihf/libgcrypt.so.20.4.1"]
    arm64 = build_platform_tree(
        ctx,
        "arm64-multiarch",
        [("libc6", "arm64"), ("busybox-static", "arm64"), ("libc6", "armhf")],
        {"bin/sh": "busybox", "sbin/init": "/bin/busybox"},
        "linux/arm64",
    )
    return [armhf, arm64]


# --------------------------------------------------------------------------- verification


def extract_partition(image: Path, start: int, size: int, dst: Path) -> None:
    src, fd = os.open(image, os.O_RDONLY), os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, size)
        copy_range(src, fd, start, size, 0)
    finally:
        os.close(src)
        os.close(fd)


def blkid(path: Path) -> dict[str, str]:
    text = run(["blkid", "-p", "-o", "export", str(path)], text=True).stdout
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def verify_disk(out: Path, entry: dict, tmp: Path) -> list[str]:
    """Check one disk image with independent tools: sfdisk, blkid, e2fsck, fsck.vfat."""
    image, problems = out / entry["file"], []
    table = json.loads(run(["sfdisk", "--json", str(image)], text=True).stdout)["partitiontable"]
    if table["label"] != entry["table"] or table["id"].lower() != entry["disk_id"].lower():
        problems.append(f"{image.name}: table {table['label']} {table['id']} != manifest")
    for want, got in zip(entry["partitions"], table["partitions"], strict=True):
        if (got["start"], got["size"]) != (want["start_sector"], want["size_sectors"]):
            problems.append(f"{image.name}: partition {want['number']} at {got['start']}+{got['size']}")
        part = tmp / f"{image.stem}.p{want['number']}"
        extract_partition(image, want["start"], want["size"], part)
        fs, probe = want["fs"], blkid(part)
        if probe.get("TYPE") != fs["type"] or probe.get("UUID", "").lower() != fs["uuid"].lower():
            problems.append(f"{image.name}: partition {want['number']} blkid {probe} != {fs}")
        fsck = ["fsck.vfat", "-n"] if fs["type"] == "vfat" else ["e2fsck", "-fn"]
        if subprocess.run([*fsck, str(part)], capture_output=True).returncode != 0:
            problems.append(f"{image.name}: {fsck[0]} reports errors on partition {want['number']}")
        part.unlink()
    return problems


def verify(out: Path) -> list[str]:
    manifest = json.loads((out / MANIFEST).read_text())
    problems = [f"missing {name}" for name in manifest["fixtures"] if not (out / name).exists()]
    with tempfile.TemporaryDirectory(prefix="dockerify-verify-") as tmp:
        for entry in manifest["fixtures"].values():
            if entry["kind"] == "disk" and entry["compression"] is None:
                problems += verify_disk(out, entry, Path(tmp))
    v6 = out / manifest["fixtures"]["pi-armv6.img"]["staging"]["root"] / "usr/bin/hello-v6"
    if "Tag_CPU_arch: v6" not in run(["readelf", "-A", str(v6)], text=True).stdout:
        problems.append(f"{v6}: Tag_CPU_arch is not v6")
    return problems


# --------------------------------------------------------------------------- driver


def prepare_out(out: Path) -> None:
    """Empty the output directory (keeping the .deb cache); refuse foreign directories."""
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        sys.exit(f"{out} is not empty and was not made by make_fixtures.py; refusing to clear it")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).touch()
    for entry in out.iterdir():
        if entry.name in (MARKER, "debs"):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def is_up_to_date(out: Path) -> bool:
    stamp = out / STAMP
    return stamp.exists() and (out / MANIFEST).exists() and stamp.read_text().strip() == source_hash()


def build_all(ctx: Context) -> list[dict]:
    """Build every fixture; independent jobs run in parallel (they are mostly subprocesses)."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        disks = [pool.submit(build_disk, ctx, disk) for disk in DISKS]
        jobs = [
            pool.submit(build_rootfs_tarballs, ctx, "amd64", TAR_COMPRESSIONS),
            pool.submit(build_rootfs_tarballs, ctx, "arm64", (("gzip", ".gz"),)),
            pool.submit(build_openlinux, ctx),
            pool.submit(build_platform_trees, ctx),
        ]
        base = disks[0].result()  # pi-arm64.img, the source of the compressed copies
        jobs += [pool.submit(lambda t, x: [compress_disk(ctx, base, t, x)], *c) for c in DISK_COMPRESSIONS]
        return [f.result() for f in disks] + [e for f in jobs for e in f.result()]


def generate(out: Path) -> None:
    os.umask(0o022)
    prepare_out(out)
    log("output directory cleared")
    with tempfile.TemporaryDirectory(prefix="dockerify-fixtures-") as tmp:
        ctx = Context(out=out, work=Path(tmp))
        ctx.manifest = {
            "schema": SCHEMA_VERSION,
            "source_hash": source_hash(),
            "source_date_epoch": EPOCH,
            "fixtures": {},
        }
        extract_packages(ctx)
        build_hello_v6(ctx)
        build_v6_core(ctx)
        log("packages ready, hello-v6 and the ARMv6 core built")
        entries = build_all(ctx)
    ctx.manifest["fixtures"] = {e["file"]: e for e in sorted(entries, key=lambda e: e["file"])}
    ctx.manifest["specials"] = describe_specials(
        out / ctx.manifest["fixtures"]["pi-arm64.img"]["staging"]["root"]
    )
    (out / MANIFEST).write_text(json.dumps(ctx.manifest, indent=2, ensure_ascii=False) + "\n")
    (out / STAMP).write_text(source_hash() + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Generate dockerify test fixtures (disk images, rootfs tarballs, fixtures.json). Run as root.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("DOCKERIFY_FIXTURES") or DEFAULT_OUT),
        help="output directory (default: $DOCKERIFY_FIXTURES or %(default)s)",
    )
    parser.add_argument("--force", action="store_true", help="regenerate even if the stamp is current")
    parser.add_argument("--check", action="store_true", help="exit 0 if fixtures are up to date, 1 otherwise")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="after generating (or finding them up to date), check the disk images with sfdisk/blkid/fsck",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out.resolve()
    if args.check:
        current = is_up_to_date(out)
        print(f"{out}: {'up to date' if current else 'missing or stale'}")
        return 0 if current else 1
    if not args.force and is_up_to_date(out):
        print(f"{out}: fixtures up to date (stamp matches); use --force to regenerate")
    else:
        check_environment()
        generate(out)
        log(f"done: {len(json.loads((out / MANIFEST).read_text())['fixtures'])} fixtures in {out}")
    if args.verify:
        problems = verify(out)
        for problem in problems:
            print(f"VERIFY FAILED: {problem}", file=sys.stderr)
        log(f"verify: {'FAILED' if problems else 'ok'}")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
