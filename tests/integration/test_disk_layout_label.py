"""Issue 8, point 4: a malformed `io.dockerify.disk-layout` label is refused by `export --format
sdcard` (and its `undockerify` front) with one line naming the label and the field, exit status 1,
no traceback or "internal error", and no card written, instead of a TypeError.

The images are real builds (a small tree, the label given with --label); the CLI runs in a fresh
process as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import dockerify, require_tool

LABEL = "io.dockerify.disk-layout"
GOOD_PART = {
    "number": 1,
    "start": 4194304,
    "size": 67108864,
    "type": "0c",
    "partuuid": "6c1f2a10-01",
    "name": "",
    "bootable": False,
    "fs": {
        "type": "fat32",
        "volume_id": "5DF2A7C1",
        "label": "BOOTFS",
        "cluster_size": 512,
        "size": 67108864,
    },
    "mountpoint": "/boot/firmware",
}


def _layout(**top: object) -> str:
    return json.dumps(
        {"table_type": "dos", "disk_id": "0x6c1f2a10", "size": 176160768, "partitions": [GOOD_PART], **top}
    )


CASES = [
    ('{"table_type": "dos", ', "not valid JSON"),
    ('"dos"', "the layout: expected a JSON object, got a string ('dos')"),
    (_layout(size=-1), "size: -1 is negative"),
    (_layout(partitions=[{**GOOD_PART, "start": "4M"}]), "partitions[0].start: expected an integer, got a string ('4M')"),
    (_layout(partitions=[{k: v for k, v in GOOD_PART.items() if k != "partuuid"}]), "partitions[0].partuuid: missing"),
    (_layout(partitions=[{**GOOD_PART, "fs": {**GOOD_PART["fs"], "size": -512}}]), "partitions[0].fs.size: -512 is negative"),
    (_layout(table_type=7), "table_type: expected a string, got an integer (7)"),
]  # fmt: skip


def _build(tmp_path: Path, label: str) -> str:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("pi\n")
    ref = f"oci:{tmp_path / 'img'}:v1"
    dockerify(
        "build", "-q", str(tree), "--platform", "linux/arm64", "--label", f"{LABEL}={label}", "--output", ref
    )
    return ref


def _assert_refused(proc, ref: str, problem: str, prog: str = "dockerify") -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith(f"{prog}: error: {ref}: label {LABEL}: {problem}"), (
        proc.stderr
    )


@pytest.mark.parametrize(("label", "problem"), CASES, ids=[c[1][:32] for c in CASES])
def test_malformed_disk_layout_label_is_refused_before_writing(
    tmp_path: Path, label: str, problem: str
) -> None:
    require_tool("sfdisk", "mke2fs", "dumpe2fs", "mkfs.vfat", "mcopy", "mattrib")
    ref = _build(tmp_path, label)
    out = tmp_path / "out"
    out.mkdir()
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {"TMPDIR": str(tmpdir)}
    proc = dockerify("export", ref, "--format", "sdcard", "-o", str(out / "card.img"), check=False, env=env)
    _assert_refused(proc, ref, problem)
    assert os.listdir(out) == [] and os.listdir(tmpdir) == []


def test_undockerify_refuses_a_malformed_label_too(tmp_path: Path) -> None:
    require_tool("sfdisk", "mke2fs", "dumpe2fs", "mkfs.vfat", "mcopy", "mattrib")
    label, problem = CASES[2]
    ref = _build(tmp_path, label)
    out = tmp_path / "card.img"
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from dockerify.cli import undockerify_main; sys.exit(undockerify_main())", ref, "-o", str(out)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    _assert_refused(proc, ref, problem, prog="undockerify")
    assert not out.exists()
