"""Two versions of a Debian-style card as directory trees, with a dpkg database in dpkg's own
formats (status, info/*.list, info/*.conffiles, diversions), for the chunked-image tests and
bench/bench_chunked.py.

Version 2 removes a package, adds one and upgrades two (one of them a library whose source
package also builds a second binary package); every other package's files are byte for byte the
same, with the same mtimes, as an apt upgrade leaves them. File contents are pseudo-random
(incompressible), so compressed sizes track file sizes."""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path

V1_TIME = 1_700_000_000
V2_TIME = 1_702_000_000


@dataclass(frozen=True)
class Pkg:
    name: str
    source: str
    version: str
    size: int  # bytes of content, spread over a few files
    conffile: bool = False


def _packages(version: int) -> list[Pkg]:
    base = [
        Pkg("linux-image-rpi", "linux", "6.1.0-1", 6 << 20),
        Pkg("raspi-firmware", "raspi-firmware", "1.2023", 5 << 20),
        Pkg("libc6", "glibc", "2.36-9", 900 << 10),
        Pkg("libc-bin", "glibc", "2.36-9", 300 << 10, conffile=True),
        Pkg("coreutils", "coreutils", "9.1-1", 700 << 10),
        Pkg("bash", "bash", "5.2.15-2", 600 << 10, conffile=True),
        Pkg("systemd", "systemd", "252.17-1", 1500 << 10, conffile=True),
        Pkg("libsystemd0", "systemd", "252.17-1", 400 << 10),
        Pkg("openssh-server", "openssh", "9.2p1-2", 500 << 10, conffile=True),
        Pkg("python3.11-minimal", "python3.11", "3.11.2-6", 2 << 20),
        Pkg("perl-base", "perl", "5.36.0-7", 1800 << 10),
        Pkg("tar", "tar", "1.34-1", 250 << 10),
        Pkg("gzip", "gzip", "1.12-1", 120 << 10),
        Pkg("sed", "sed", "4.9-1", 150 << 10),
        Pkg("grep", "grep", "3.8-5", 200 << 10),
        Pkg("util-linux", "util-linux", "2.38.1-5", 900 << 10),
        Pkg("mount", "util-linux", "2.38.1-5", 150 << 10),
        Pkg("apt", "apt", "2.6.1", 800 << 10, conffile=True),
        Pkg("dpkg", "dpkg", "1.21.22", 700 << 10, conffile=True),
        Pkg("nano", "nano", "7.2-1", 300 << 10),
        Pkg("wpasupplicant", "wpa", "2.10-12", 600 << 10),
        Pkg("dash", "dash", "0.5.12-2", 100 << 10),
        Pkg("vim-tiny", "vim", "9.0.1378-2", 700 << 10),
        Pkg("curl", "curl", "7.88.1-10", 250 << 10),
        Pkg("libcurl4", "curl", "7.88.1-10", 400 << 10),
        Pkg("zlib1g", "zlib", "1.2.13", 120 << 10),
        Pkg("htop", "htop", "3.2.2-2", 200 << 10),
    ]
    if version == 1:
        return [*base, Pkg("wireless-tools", "wireless-tools", "30~pre9-14", 150 << 10)]
    upgraded = {
        "openssh-server": Pkg("openssh-server", "openssh", "9.2p1-2+deb12u1", 510 << 10, conffile=True),
        "curl": Pkg("curl", "curl", "7.88.1-10+deb12u5", 250 << 10),
        "libcurl4": Pkg("libcurl4", "curl", "7.88.1-10+deb12u5", 400 << 10),
    }
    return [upgraded.get(p.name, p) for p in base] + [Pkg("rfkill", "util-linux-extra", "2.38.1-5", 80 << 10)]


def _content(pkg: Pkg, index: int, size: int) -> bytes:
    seed = hashlib.sha256(f"{pkg.name} {pkg.version} {index}".encode()).digest()
    return random.Random(seed).randbytes(size)


def _files(pkg: Pkg, scale: int = 1) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    parts = 4
    for i in range(parts):
        out[f"/usr/lib/{pkg.name}/part{i}.so"] = _content(pkg, i, pkg.size * scale // parts)
    out[f"/usr/bin/{pkg.name}"] = _content(pkg, 99, 2048)
    out[f"/usr/share/doc/{pkg.name}/copyright"] = f"{pkg.name} {pkg.source}\n".encode()
    if pkg.conffile:
        out[f"/etc/{pkg.name}.conf"] = f"# {pkg.name} configuration\n".encode()
    return out


def _dirs_of(paths: list[str]) -> list[str]:
    dirs = {"/."}
    for p in paths:
        parts = p.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/" + "/".join(parts[:i]))
    return sorted(dirs)


def make_card(root: Path, version: int, scale: int = 1) -> list[Pkg]:
    """Write version 1 or 2 of the card under `root` (which must not exist); its packages.
    `scale` multiplies the package sizes (about 27 MiB at 1)."""
    pkgs = _packages(version)
    root.mkdir(parents=True)
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    status = []
    times: dict[Path, int] = {}
    for pkg in pkgs:
        mtime = V1_TIME if pkg in _packages(1) else V2_TIME
        files = _files(pkg, scale)
        for path, data in files.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            target.chmod(0o755 if "/bin/" in path or path.endswith(".so") else 0o644)
            times[target] = mtime
        listed = _dirs_of(list(files)) + sorted(files)
        (info / f"{pkg.name}.list").write_text("".join(p + "\n" for p in listed))
        conf = [p for p in files if p.startswith("/etc/")]
        if conf:
            (info / f"{pkg.name}.conffiles").write_text("".join(p + "\n" for p in conf))
        source = f"Source: {pkg.source}\n" if pkg.source != pkg.name else ""
        status.append(
            f"Package: {pkg.name}\nStatus: install ok installed\nPriority: optional\nSection: misc\n"
            f"Installed-Size: {pkg.size // 1024}\nMaintainer: Test <test@example.org>\n"
            f"Architecture: arm64\n{source}Version: {pkg.version}\nDescription: {pkg.name} for tests\n"
        )
    (root / "var/lib/dpkg/status").write_text("\n".join(status))
    # dash diverts bash's /usr/bin/sh-like tool: the diverted file lives on as .distrib.
    sh = root / "usr/bin/sh"
    sh.write_bytes(b"#!/bin/dash-stand-in\n")
    os.rename(root / "usr/bin/bash", root / "usr/bin/bash.distrib")
    (root / "usr/bin/bash").write_bytes(b"dash's replacement for bash, for the diversion\n")
    with open(info / "dash.list", "a") as f:
        f.write("/usr/bin/bash\n/usr/bin/sh\n")
    (root / "var/lib/dpkg/diversions").write_text("/usr/bin/bash\n/usr/bin/bash.distrib\ndash\n")
    for p in ("usr/bin/sh", "usr/bin/bash", "usr/bin/bash.distrib"):
        times[root / p] = V1_TIME
    # A hard link across packages: coreutils' binary is also perl-base's helper.
    os.link(root / "usr/bin/coreutils", root / "usr/bin/perl-base-helper")
    with open(info / "perl-base.list", "a") as f:
        f.write("/usr/bin/perl-base-helper\n")
    # Files no package owns: local configuration, a user's home.
    (root / "etc/hostname").write_text(f"card-v{version}\n")
    (root / "home/pi").mkdir(parents=True)
    (root / "home/pi/notes.txt").write_text("local file\n")
    (root / "usr/bin/rfkill-local").write_text("unowned\n")
    for path, mtime in times.items():
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    stamp = V1_TIME if version == 1 else V2_TIME
    for dirpath, _dirs, filenames in os.walk(root, topdown=False):
        for name in filenames:
            p = Path(dirpath) / name
            if p not in times:
                os.utime(p, (stamp, stamp), follow_symlinks=False)
        os.utime(dirpath, (stamp, stamp))
    return pkgs
