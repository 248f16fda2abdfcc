"""The newc cpio writer, checked field by field and against GNU cpio as an independent reader."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess

import pytest

from dockerify.entry import Entry, FileType, bytes_reader
from dockerify.errors import DockerifyError
from dockerify.exporters.common import Warnings, command_line, compression_for, run_config
from dockerify.exporters.cpio import HEADER_SIZE, CpioWriter, FileTooLarge
from dockerify.exporters.initramfs import User, environment, init_config, resolve_user
from tests.fixtures import require


def reg(path: bytes, data: bytes, **kw) -> Entry:
    return Entry(path=path, type=FileType.REG, size=len(data), reader=bytes_reader(data), **kw)


def parse(archive: bytes) -> list[dict]:
    """A minimal newc reader, independent of the writer's code."""
    out = []
    pos = 0
    names = (
        "ino",
        "mode",
        "uid",
        "gid",
        "nlink",
        "mtime",
        "size",
        "maj",
        "min",
        "rmaj",
        "rmin",
        "namesize",
        "check",
    )
    while True:
        assert archive[pos : pos + 6] == b"070701", pos
        fields = dict(
            zip(names, (int(archive[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)), strict=True)
        )
        name_start = pos + HEADER_SIZE
        name = archive[name_start : name_start + fields["namesize"] - 1]
        assert archive[name_start + fields["namesize"] - 1] == 0
        data_start = name_start + fields["namesize"]
        data_start += -data_start % 4
        data = archive[data_start : data_start + fields["size"]]
        pos = data_start + fields["size"]
        pos += -pos % 4
        fields["name"], fields["data"] = name, data
        if name == b"TRAILER!!!":
            break
        out.append(fields)
    assert len(archive) % 512 == 0
    assert archive[pos:] == bytes(len(archive) - pos)
    return out


def sample() -> list[Entry]:
    return [
        Entry(path=b".", type=FileType.DIR, mode=0o755, mtime=100),
        Entry(path=b"bin", type=FileType.DIR, mode=0o755, mtime=100),
        reg(b"bin/a", b"hello", mode=0o4755, uid=0, gid=0, mtime=123),
        Entry(path=b"bin/b", type=FileType.HARDLINK, linkname=b"bin/a", mode=0o4755, mtime=123),
        Entry(path=b"bin/c", type=FileType.HARDLINK, linkname=b"bin/a", mode=0o4755, mtime=123),
        Entry(path=b"bin/sh", type=FileType.SYMLINK, linkname=b"a", mode=0o777, mtime=5),
        Entry(path=b"null", type=FileType.CHAR, mode=0o666, devmajor=1, devminor=3),
        Entry(path=b"sda", type=FileType.BLOCK, mode=0o660, gid=6, devmajor=8, devminor=0),
        Entry(path=b"fifo", type=FileType.FIFO, mode=0o600, uid=1000, gid=1000),
        reg(b"odd-\xff-name", b"x" * 1001, mode=0o600, uid=70000, gid=70001, mtime=2**32 - 1),
        Entry(
            path=b"sparse",
            type=FileType.REG,
            size=10000,
            sparse=((4096, 4),),
            reader=lambda: iter([(4096, b"DATA")]),
        ),
        reg(b"caps", b"ping", xattrs={"security.capability": b"\x01\x00\x00\x02" + bytes(16)}),
    ]


def write(entries: list[Entry]) -> tuple[bytes, Warnings, CpioWriter]:
    f = io.BytesIO()
    warnings = Warnings("test")
    w = CpioWriter(f, warnings)
    for e in entries:
        w.add(e)
    size = w.finish()
    data = f.getvalue()
    assert size == len(data)
    return data, warnings, w


def test_fields_and_layout() -> None:
    data, warnings, w = write(sample())
    members = {m["name"]: m for m in parse(data)}
    assert list(members)[:2] == [b".", b"bin"]
    a, b, c = members[b"bin/a"], members[b"bin/b"], members[b"bin/c"]
    # One inode, three names, the link count patched in every header; data with the first name.
    assert a["ino"] == b["ino"] == c["ino"]
    assert a["nlink"] == b["nlink"] == c["nlink"] == 3
    assert (a["data"], b["size"], c["size"]) == (b"hello", 0, 0)
    assert a["mode"] == stat.S_IFREG | 0o4755 and a["mtime"] == 123
    assert members[b"bin/sh"]["data"] == b"a" and stat.S_ISLNK(members[b"bin/sh"]["mode"])
    null = members[b"null"]
    assert stat.S_ISCHR(null["mode"]) and (null["rmaj"], null["rmin"]) == (1, 3)
    assert stat.S_ISBLK(members[b"sda"]["mode"]) and members[b"sda"]["gid"] == 6
    assert stat.S_ISFIFO(members[b"fifo"]["mode"]) and members[b"fifo"]["uid"] == 1000
    odd = members[b"odd-\xff-name"]
    assert (odd["uid"], odd["gid"], odd["mtime"], len(odd["data"])) == (70000, 70001, 2**32 - 1, 1001)
    assert members[b"sparse"]["data"] == bytes(4096) + b"DATA" + bytes(10000 - 4100)
    inos = [m["ino"] for m in members.values() if m["name"] not in (b"bin/b", b"bin/c")]
    assert len(set(inos)) == len(inos)
    assert w.stats.unpacked == 5 + 1 + 1001 + 10000 + 4
    # Dropped xattrs and expanded holes are named, not silent.
    report = "\n".join(warnings.report())
    assert "/caps (security.capability)" in report and "/sparse" in report


def test_reproducible() -> None:
    assert write(sample())[0] == write(sample())[0]


def test_gnu_cpio_reads_it(tmp_path) -> None:
    require(shutil.which("cpio"), "GNU cpio is not installed (apt-get install cpio)")
    data, _, _ = write(sample())
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=data, capture_output=True, check=True).stdout
    names = [line.split()[-1] for line in listing.decode(errors="replace").splitlines()]
    assert "bin/a" in names and "sparse" in names
    if os.geteuid() != 0:
        return
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(
        ["cpio", "-idm", "--quiet", "--no-absolute-filenames"],
        input=data,
        cwd=out,
        check=True,
        capture_output=True,
    )
    a, b = (out / "bin/a").stat(), (out / "bin/b").stat()
    assert a.st_ino == b.st_ino and a.st_nlink == 3 and (out / "bin/c").read_bytes() == b"hello"
    assert stat.S_IMODE(a.st_mode) == 0o4755
    assert os.major((out / "null").stat().st_rdev) == 1
    assert (out / "sparse").read_bytes()[4096:4100] == b"DATA"
    assert (
        os.lstat(out / "odd-\xff-name".encode("latin-1").decode("utf-8", "surrogateescape")).st_uid == 70000
    )


def test_refuses_4gib_files() -> None:
    huge = Entry(path=b"big", type=FileType.REG, size=4 << 30, sparse=(), reader=lambda: iter(()))
    with pytest.raises(FileTooLarge, match="4 GiB"):
        write([huge])
    # Refused before anything of the file is written.
    f = io.BytesIO()
    with pytest.raises(FileTooLarge):
        CpioWriter(f, Warnings("t")).add(huge)
    assert f.getvalue() == b""


def test_hardlink_without_target() -> None:
    with pytest.raises(DockerifyError, match="hard link"):
        write([Entry(path=b"x", type=FileType.HARDLINK, linkname=b"missing")])


# ---------------------------------------------------------------- image settings


class _Img:
    def __init__(self, config: dict) -> None:
        self.config = {"created": "2023-11-14T22:13:20Z", "config": config}


def test_command_line_oci_rules() -> None:
    rc = run_config(_Img({"Entrypoint": ["/ep", "x"], "Cmd": ["c1", "c2"]}))  # type: ignore[arg-type]
    assert rc.created == 1_700_000_000
    assert command_line(rc, None, None) == ["/ep", "x", "c1", "c2"]
    assert command_line(rc, None, ("o",)) == ["/ep", "x", "o"]
    assert command_line(rc, ("/other",), None) == ["/other"]  # --entrypoint clears Cmd
    assert command_line(rc, ("/other",), ("a",)) == ["/other", "a"]
    assert command_line(rc, (), None) == []
    only_cmd = run_config(_Img({"Cmd": ["/bin/sh"]}))  # type: ignore[arg-type]
    assert command_line(only_cmd, None, None) == ["/bin/sh"]


PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:App:/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1001:\nvideo:x:44:app,other\naudio:x:29:other\n"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", User(0, 0, (), "/root")),
        ("app", User(1000, 1001, (44,), "/home/app")),
        ("1000", User(1000, 1001, (44,), "/home/app")),
        ("app:audio", User(1000, 29, (), "/home/app")),
        ("app:7", User(1000, 7, (), "/home/app")),
        ("4242", User(4242, 0, (), "/")),
        ("4242:4343", User(4242, 4343, (), "/")),
    ],
)
def test_resolve_user(spec: str, expected: User) -> None:
    assert resolve_user(spec, PASSWD, GROUP) == expected


def test_resolve_user_errors() -> None:
    with pytest.raises(DockerifyError, match="not in the image's /etc/passwd"):
        resolve_user("nobody", PASSWD, GROUP)
    with pytest.raises(DockerifyError, match="/etc/group"):
        resolve_user("app:nogroup", PASSWD, GROUP)
    assert resolve_user("5", None, None) == User(5, 0, (), "/")  # FROM scratch: numeric is fine


def test_environment_and_config() -> None:
    rc = run_config(_Img({"Env": ["A=1", "B=2"]}))  # type: ignore[arg-type]
    env = environment(rc, ("B=3",), User(1, 2, (), "/home/x"))
    assert env[0].startswith("PATH=") and "A=1" in env and "B=3" in env and "HOME=/home/x" in env
    from dockerify.exporters.initramfs import InitramfsOptions

    conf = init_config(["/bin/x", "a b"], env, "/w", User(1, 2, (3, 4), "/"), InitramfsOptions())
    items = conf.split(b"\0")
    assert items[:2] == [b"dockerify-init", b"1"]
    assert b"a b" in items and b"/w" in items and b"3,4" in items


def test_compression_by_name() -> None:
    assert compression_for("x.tar.gz", None) == "gzip"
    assert compression_for("x.img.zst", None) == "zstd"
    assert compression_for("x.img.xz", None) == "xz"
    assert compression_for("x.img", None) == "none"
    assert compression_for("x.img", "xz") == "xz"
