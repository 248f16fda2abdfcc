"""Issue 3 acceptance, part 2: `dockerify export --format sdcard` (points 1, 2, 3 and 7).

Judges: sfdisk, e2fsck, fsck.vfat, dumpe2fs, mtools, blkid, a read-only loop mount of the card's
root partition (the kernel's view), umoci's unpacking of the original image, and `dockerify build`
+ `dockerify diff` of the card against the image."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests import oracle
from tests.conftest import REPO, dockerify, require_tool
from tests.fixtures import DISKS, FIXTURES_DIR, entry, staging
from tests.integration.test_export_support import as_nobody, build_image, nobody_work, open_up

__all__ = ["nobody_work"]

MiB = 1 << 20
PRELOAD = b"etc/ld.so.preload"


def tools() -> None:
    require_tool("sfdisk", "e2fsck", "dumpe2fs", "fsck.vfat", "mcopy", "minfo", "umoci", "fakeroot", "mke2fs")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """Each disk fixture built once into an OCI layout."""
    tools()
    out: dict[str, Path] = {}
    for name in DISKS:
        entry(name)
        layout = tmp_path_factory.mktemp("img") / "layout"
        dockerify("build", "-q", str(FIXTURES_DIR / name), "--output", f"oci:{layout}:t")
        out[name] = layout
    return out


def export_card(layout: Path, card: Path, *extra: str) -> dict:
    proc = dockerify("export", f"oci:{layout}:t", "--format", "sdcard", "-o", str(card), "--json", *extra)
    return json.loads(proc.stdout)


def table(card: Path) -> dict:
    return json.loads(subprocess.run(["sfdisk", "-J", str(card)], capture_output=True, check=True).stdout)[
        "partitiontable"
    ]


def extract(card: Path, part: dict, dest: Path) -> Path:
    """A partition's bytes as a file of its own (sparse), for the fsck tools."""
    subprocess.run(
        [
            "dd",
            f"if={card}",
            f"of={dest}",
            "bs=512",
            f"skip={part['start']}",
            f"count={part['size']}",
            "conv=sparse",
            "status=none",
        ],
        check=True,
    )
    return dest


def dumpe2fs(fs: Path) -> dict[str, str]:
    out = subprocess.run(["dumpe2fs", "-h", str(fs)], capture_output=True, text=True, check=True).stdout
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()) if v}


def fat_serial(card: Path, offset: int) -> tuple[str, str]:
    out = subprocess.run(
        ["minfo", "-i", f"{card}@@{offset}", "::"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    ).stdout
    serial = re.search(r"serial number: ([0-9A-F]+)", out)
    label = re.search(r'disk label="([^"]*)"', out)
    assert serial and label, out
    return serial.group(1), label.group(1).strip()


def check_filesystems(card: Path, tmp: Path) -> tuple[dict, dict]:
    t = table(card)
    boot, root = t["partitions"][0], t["partitions"][1]
    assert boot["start"] == 8192  # FAT boot at 4 MiB
    assert root["start"] == boot["start"] + boot["size"]  # root right after it
    p1 = extract(card, boot, tmp / "p1")
    p2 = extract(card, root, tmp / "p2")
    fsck = subprocess.run(["fsck.vfat", "-n", str(p1)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    e2 = subprocess.run(["e2fsck", "-fn", str(p2)], capture_output=True, text=True)
    assert e2.returncode == 0, e2.stdout + e2.stderr
    return t, dumpe2fs(p2)


def reference_tree(layout: Path, tmp: Path) -> Path:
    """The image as umoci unpacks it (an independent reader of the layers)."""
    return oracle.umoci_unpack(layout, "t", tmp / "bundle")


def compare_card_with_image(card: Path, layout: Path, name: str, tmp: Path) -> None:
    """The kernel's view of the card's root, and mtools' view of its boot partition, against umoci's
    view of the image: every attribute, xattrs included. /etc/ld.so.preload is the one file the
    builder changed (libarmmem neutralised for emulation): the card must hold the original."""
    fx = entry(name)
    mount = fx["boot_mountpoint"].strip("/").encode()
    rootfs = reference_tree(layout, tmp)
    want = oracle.snapshot(rootfs)
    boot_prefix = mount + b"/"
    want_root = {p: v for p, v in want.items() if not p.startswith(boot_prefix) and p != PRELOAD}
    t = table(card)
    root = t["partitions"][1]
    with oracle.loop_mount(card, root["start"] * 512, root["size"] * 512) as mnt:
        got = oracle.snapshot(mnt)
        preload = (mnt / PRELOAD.decode()).read_bytes() if (mnt / PRELOAD.decode()).exists() else None
    got_root = {p: v for p, v in got.items() if p != PRELOAD}
    # The mount point is empty on the root filesystem: its own metadata is compared, not its content.
    diffs = oracle.differences(want_root, got_root)
    assert not diffs, "\n".join(diffs)
    original = staging(name) / PRELOAD.decode()
    if original.exists():
        assert preload == original.read_bytes()
    boot = t["partitions"][0]
    copied = oracle.mtools_copy(card, boot["start"] * 512, tmp / "bootfiles")
    assert oracle.file_contents(copied) == oracle.file_contents(rootfs / mount.decode())


# ---------------------------------------------------------------- acceptance 1


@pytest.mark.parametrize("name", DISKS)
def test_round_trip(images, tmp_path, name, root_user) -> None:
    layout = images[name]
    fx = entry(name)
    card = tmp_path / "card.img"
    summary = export_card(layout, card)
    assert summary["warnings"] == []
    t, ext = check_filesystems(card, tmp_path)
    # The same ids as the source image.
    parts = fx["partitions"]
    assert t["label"] == fx["table"]
    if fx["table"] == "dos":
        assert t["id"].lower() == fx["disk_id"].lower()
        assert [p["type"].lower().lstrip("0") for p in t["partitions"]] == [
            p["type"].lstrip("0") for p in parts
        ]
    else:
        assert t["id"].lower() == fx["disk_id"].lower()
        assert [p["type"].lower() for p in t["partitions"]] == [p["type"].lower() for p in parts]
    # PARTUUIDs as sfdisk reads them from the table (dos: disk id + number; gpt: per partition).
    for got, want in zip(t["partitions"], parts, strict=True):
        if fx["table"] == "gpt":
            assert got["uuid"].lower() == want["partuuid"].lower()
    for got, want in zip(summary["partitions"], parts, strict=True):
        assert got["partuuid"].lower() == want["partuuid"].lower()
    assert ext["Filesystem UUID"] == parts[1]["fs"]["uuid"]
    assert ext["Filesystem volume name"] == parts[1]["fs"]["label"]
    serial, label = fat_serial(card, t["partitions"][0]["start"] * 512)
    assert serial == parts[0]["fs"]["volume_id"] and label == parts[0]["fs"]["label"]
    # The features the builder recorded, exactly.
    recorded = json.loads(_layout_label(layout))["partitions"][1]["fs"]["features"]
    assert sorted(ext["Filesystem features"].split()) == sorted(recorded)
    # Back to an image: no difference at all.
    back = tmp_path / "back"
    dockerify("build", "-q", str(card), "--output", f"oci:{back}:t")
    proc = dockerify("diff", f"oci:{layout}:t", f"oci:{back}:t", check=False)
    assert proc.returncode == 0, proc.stdout[:3000]
    compare_card_with_image(card, layout, name, tmp_path)


def _layout_label(layout: Path) -> str:
    index = json.loads((layout / "index.json").read_text())
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"].split(":")[1]).read_text())
    config = json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_text())
    return config["config"]["Labels"]["io.dockerify.disk-layout"]


# ---------------------------------------------------------------- acceptance 2


def test_changed_ids_are_rewritten_and_nothing_else(images, tmp_path) -> None:
    layout = images["pi-arm64.img"]
    fx = entry("pi-arm64.img")
    old_parts = fx["partitions"]
    card = tmp_path / "card.img"
    new_uuid = "0c2f7d2a-1b3e-4c5d-8e9f-a0b1c2d3e4f5"
    summary = export_card(
        layout,
        card,
        "--disk-id",
        "0x1234abcd",
        "--boot-id",
        "A1B2-C3D4",
        "--root-uuid",
        new_uuid,
    )
    assert sorted(summary["rewritten"]) == ["/boot/firmware/cmdline.txt", "/etc/fstab"]
    t, ext = check_filesystems(card, tmp_path)
    assert t["id"] == "0x1234abcd"
    assert ext["Filesystem UUID"] == new_uuid
    assert fat_serial(card, t["partitions"][0]["start"] * 512)[0] == "A1B2C3D4"
    back = tmp_path / "back"
    dockerify("build", "-q", str(card), "--output", f"oci:{back}:t")
    proc = dockerify("diff", f"oci:{layout}:t", f"oci:{back}:t", check=False)
    changed = sorted({line.split()[1] for line in proc.stdout.splitlines()})
    assert changed == ["/boot/firmware/cmdline.txt", "/etc/fstab"], proc.stdout
    # The new text is the old text with the ids replaced, byte for byte.
    boot_dir = staging("pi-arm64.img", "boot")
    root_dir = staging("pi-arm64.img")
    replacements = [
        (f"PARTUUID={old_parts[0]['partuuid']}", "PARTUUID=1234abcd-01"),
        (f"PARTUUID={old_parts[1]['partuuid']}", "PARTUUID=1234abcd-02"),
        (f"UUID={old_parts[0]['fs']['uuid']}", "UUID=A1B2-C3D4"),
        (f"UUID={old_parts[1]['fs']['uuid']}", f"UUID={new_uuid}"),
    ]
    copied = oracle.mtools_copy(card, t["partitions"][0]["start"] * 512, tmp_path / "bootfiles")
    cmdline = (copied / "cmdline.txt").read_text()
    with oracle.loop_mount(card, t["partitions"][1]["start"] * 512, t["partitions"][1]["size"] * 512) as mnt:
        fstab = (mnt / "etc" / "fstab").read_text()
    for text, original in (
        (cmdline, (boot_dir / "cmdline.txt").read_text()),
        (fstab, (root_dir / "etc/fstab").read_text()),
    ):
        expected = original
        for old, new in replacements:
            expected = re.sub(re.escape(old), new, expected, flags=re.I)
        assert text == expected
        assert text != original
    assert "root=PARTUUID=1234abcd-02" in cmdline


# ---------------------------------------------------------------- acceptance 3


def test_sizes_headroom_and_sparseness(images, tmp_path) -> None:
    layout = images["pi-arm64.img"]
    card = tmp_path / "card.img"
    summary = export_card(layout, card)
    root = summary["root"]
    needed = root["needed"]
    # Automatic: the content plus 20% plus 64 MiB, in whole MiB.
    assert root["size"] == -(-(needed + needed // 5 + 64 * MiB) // MiB) * MiB
    t, ext = check_filesystems(card, tmp_path)
    free = int(ext["Free blocks"]) * int(ext["Block size"])
    used = root["size"] - free
    assert free >= 64 * MiB and free >= used // 5, (free, used)
    # The boot partition keeps its recorded size.
    assert t["partitions"][0]["size"] * 512 == entry("pi-arm64.img")["partitions"][0]["size"]
    st = card.stat()
    assert st.st_blocks * 512 < st.st_size // 4, "the card is not sparse"

    # Too small a root: refused before anything is written, naming the size needed.
    small = tmp_path / "small.img"
    proc = dockerify(
        "export", f"oci:{layout}:t", "--format", "sdcard", "-o", str(small), "--root-size", "4M", check=False
    )
    assert proc.returncode != 0
    assert (
        f"needs at least {needed >> 20} MiB" in proc.stderr
        and "--root-size 4 MiB is too small" in proc.stderr
    )
    assert not small.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".small.img")]
    proc = dockerify(
        "export", f"oci:{layout}:t", "--format", "sdcard", "-o", str(small), "--boot-size", "8M", check=False
    )
    assert proc.returncode != 0 and "the boot partition needs at least" in proc.stderr
    assert not small.exists()

    # The given size is the size; --shrink gives the smallest that fits.
    given = export_card(layout, tmp_path / "given.img", "--root-size", f"{(needed >> 20) + 3}M")
    assert given["root"]["size"] == needed + 3 * MiB
    shrunk = export_card(layout, tmp_path / "shrunk.img", "--shrink")
    assert needed <= shrunk["root"]["size"] <= needed + needed // 5
    assert any("first-boot expansion hook" in w for w in shrunk["warnings"])
    check_filesystems(tmp_path / "shrunk.img", tmp_path)


def test_compressed_output(images, tmp_path) -> None:
    require_tool("zstd", "xz")
    layout = images["pi-arm64.img"]
    for name, tool in (("card.img.zst", ["zstd", "-dq"]), ("card.img.xz", ["xz", "-dk"])):
        out = tmp_path / name
        export_card(layout, out)
        magic = out.read_bytes()[:6]
        assert magic.startswith(b"\x28\xb5\x2f\xfd") or magic == b"\xfd7zXZ\x00"
        subprocess.run([*tool, str(out)], check=True)
        raw = tmp_path / "card.img"
        assert table(raw)["id"] == entry("pi-arm64.img")["disk_id"]
        check_filesystems(raw, tmp_path)
        raw.unlink()


def test_undockerify_front(images, tmp_path) -> None:
    layout = images["pi-arm64.img"]
    out = tmp_path / "u.img"
    # The console script's entry point, run from this source tree (an installed `undockerify`
    # may belong to another checkout).
    entry_point = "import sys; from dockerify.cli import undockerify_main; sys.exit(undockerify_main())"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            entry_point,
            "--label",
            "0x0badcafe",
            "-o",
            str(out),
            f"oci:{layout}:t",
            "80",
            "120",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    t = table(out)
    assert t["id"] == "0x0badcafe"
    assert [p["size"] * 512 for p in t["partitions"]] == [80 * MiB, 120 * MiB]


# ---------------------------------------------------------------- no privilege


def test_unprivileged_card_keeps_owners_devices_xattrs(images, nobody_work, tmp_path, root_user) -> None:
    layout = images["pi-arm64.img"]
    copy = nobody_work / "layout"
    shutil.copytree(layout, copy)
    open_up(nobody_work)
    card = nobody_work / "out" / "card.img"
    proc = as_nobody(nobody_work, "export", f"oci:{copy}:t", "--format", "sdcard", "-o", str(card))
    assert proc.returncode == 0, proc.stderr
    assert card.stat().st_uid == 65534
    compare_card_with_image(card, layout, "pi-arm64.img", tmp_path)
    t = table(card)
    root = t["partitions"][1]
    with oracle.loop_mount(card, root["start"] * 512, root["size"] * 512) as mnt:
        special = mnt / "srv" / "special"
        assert os.lstat(mnt / "bin").st_uid == 0
        kinds = {stat.S_IFMT(os.lstat(p).st_mode) for p in special.iterdir()}
        assert stat.S_IFCHR in kinds and stat.S_IFBLK in kinds
        assert os.getxattr(special / "cap-net-raw", "security.capability", follow_symlinks=False).hex() == (
            "0100000200200000000000000000000000000000"
        )


# ---------------------------------------------------------------- other images


def test_image_without_a_recorded_layout(tmp_path, root_user) -> None:
    tools()
    root = tmp_path / "root"
    (root / "boot" / "firmware").mkdir(parents=True)
    (root / "boot" / "firmware" / "config.txt").write_text("arm_64bit=1\n")
    (root / "etc").mkdir()
    (root / "etc" / "hostname").write_text("pi\n")
    for p in [*root.rglob("*"), root]:
        os.utime(p, (1_700_000_000, 1_700_000_000))  # FAT keeps even seconds
    ref = build_image(root, tmp_path / "img", "linux/arm64")
    card = tmp_path / "card.img"
    proc = dockerify("export", ref, "--format", "sdcard", "-o", str(card), "--json")
    summary = json.loads(proc.stdout)
    assert any("no disk layout recorded" in w for w in summary["warnings"])
    assert summary["boot"]["mountpoint"] == "/boot"  # no fstab: the convention the builder reads by
    check_filesystems(card, tmp_path)
    back = tmp_path / "back"
    dockerify("build", "-q", str(card), "--output", f"oci:{back}:t", "--platform", "linux/arm64")
    proc = dockerify("diff", ref, f"oci:{back}:t", check=False)
    # The one thing FAT could not keep was named in a warning.
    assert proc.stdout.splitlines() == ["M /boot/firmware/config.txt  mode: 0644 -> 0755"], proc.stdout
    assert any(
        "FAT keeps no permissions beyond read-only: /boot/firmware/config.txt (0644)" in w
        for w in summary["warnings"]
    )


# ---------------------------------------------------------------- issue 10, point 3


def test_card_is_bit_reproducible(images, tmp_path) -> None:
    """The same image and options, exported in two directories a few seconds apart (so the staging
    trees' ctimes differ), give the same bytes; both filesystems stay clean."""
    import hashlib
    import time

    layout = images["pi-arm64.img"]
    cards = []
    for name in ("first", "second"):
        where = tmp_path / name
        where.mkdir()
        card = where / "card.img"
        export_card(layout, card)
        cards.append(card)
        time.sleep(3)
    digests = [hashlib.sha256(c.read_bytes()).hexdigest() for c in cards]
    assert digests[0] == digests[1]
    check_filesystems(cards[0], tmp_path)
