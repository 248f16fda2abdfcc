"""Issue 12 point 3: OCI's layer-stacking rules (whiteouts, opaque directories, a file replaced
by a directory and back, hard links into lower layers). The layers are written with Python's
tarfile and stacked by umoci (`umoci raw add-layer`); `umoci unpack` is the judge of the tree.
dockerify's flatten (through diff), its rootfs-tar and rootfs-dir exports, and GNU tar
extracting that export must all give umoci's tree, with every parent before its children."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import dockerify, require_tool
from tests.integration.test_registry_support import unique

MTIME = 1_700_000_000

# (path, kind, extra): kind is dir, file (extra = content), link (extra = target)
LAYERS: list[list[tuple[str, str, str]]] = [
    [
        (".", "dir", ""),
        ("a", "dir", ""),
        ("a/keep", "file", "keep v1"),
        ("a/x", "file", "x"),
        ("b", "dir", ""),
        ("b/old", "file", "old"),
        ("c", "dir", ""),
        ("c/y", "file", "y"),
        ("d", "file", "d was a file"),
        ("e", "dir", ""),
        ("e/z", "file", "z"),
        ("f", "dir", ""),
        ("f/g", "dir", ""),
        ("f/g/deep", "file", "deep"),
        ("h", "dir", ""),
        ("h/gone", "file", "gone content"),
        ("h/target", "file", "target content"),
        ("h/victim", "file", "victim v1"),
        ("r", "file", "r is a file"),
    ],
    [
        ("0link", "link", "h/target"),  # sorts before its target, which is in the layer below
        ("a", "dir", ""),
        ("a/.wh.x", "file", ""),
        ("b", "dir", ""),
        ("b/.wh..wh..opq", "file", ""),
        ("b/new", "file", "new"),
        ("c", "file", "c is a file now"),
        ("d", "dir", ""),
        ("d/k", "file", "k"),
        ("f", "dir", ""),
        ("f/.wh.g", "file", ""),
        ("keep-gone", "link", "h/gone"),  # the path goes in the next layer, the file stays
        ("keep-victim", "link", "h/victim"),  # the path gets another file in the next layer
        ("r", "dir", ""),
        ("r/inner", "file", "inner"),
    ],
    [
        (".wh.e", "file", ""),
        ("a", "dir", ""),
        ("a/keep", "file", "keep v3"),
        ("a/keep-link", "link", "a/keep"),
        ("c", "dir", ""),
        ("c/w", "file", "w"),
        ("f", "dir", ""),
        ("f/g", "dir", ""),
        ("f/g/new", "file", "new deep"),
        ("h", "dir", ""),
        ("h/.wh.gone", "file", ""),
        ("h/second-link", "link", "h/target"),
        ("h/victim", "file", "victim v3"),
        ("r", "file", "r is a file again"),
    ],
]


def layer_tar(members: list[tuple[str, str, str]], path: Path) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, extra in members:
            info = tarfile.TarInfo(name)
            info.mtime = MTIME
            info.uid = info.gid = 0
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "link":
                info.type, info.mode, info.linkname = tarfile.LNKTYPE, 0o644, extra
                tar.addfile(info)
            else:
                data = extra.encode()
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return path


def shuffled(members: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The same layer with /r's entries first: out of path order, as some tools write layers."""
    return [m for m in members if m[0].startswith("r")] + [m for m in members if not m[0].startswith("r")]


@pytest.fixture(scope="module", params=["sorted", "unsorted"])
def stacked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(umoci's layout holding the three-layer image as :t, umoci's unpacked rootfs). Layers in
    path order take flatten's merge; the unsorted ones its directories-first fallback."""
    require_tool("umoci")
    base = tmp_path_factory.mktemp("stacked")
    layout = base / "layout"
    subprocess.run(["umoci", "init", "--layout", str(layout)], check=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:t"], check=True)
    for i, members in enumerate(LAYERS):
        tar = layer_tar(members if request.param == "sorted" else shuffled(members), base / f"layer{i}.tar")
        subprocess.run(
            ["umoci", "raw", "add-layer", "--image", f"{layout}:t", str(tar)], check=True, capture_output=True
        )
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:t", str(base / "bundle")], check=True, capture_output=True
    )
    return layout, base / "bundle" / "rootfs"


def clean(a: str, b: str) -> None:
    proc = dockerify("diff", a, b, check=False)
    assert proc.returncode == 0 and "no differences" in proc.stderr, proc.stdout + proc.stderr


def test_umoci_judges_the_stack_as_oci_says(stacked: tuple[Path, Path]) -> None:
    _, rootfs = stacked
    assert not (rootfs / "a/x").exists() and (rootfs / "a/keep").read_text() == "keep v3"
    assert sorted(p.name for p in (rootfs / "b").iterdir()) == ["new"]
    assert sorted(p.name for p in (rootfs / "c").iterdir()) == ["w"]
    assert (rootfs / "d/k").is_file() and not (rootfs / "e").exists()
    assert sorted(p.name for p in (rootfs / "f/g").iterdir()) == ["new"]
    assert (rootfs / "r").read_text() == "r is a file again"
    assert (rootfs / "0link").stat().st_ino == (rootfs / "h/target").stat().st_ino
    assert (rootfs / "keep-gone").read_text() == "gone content" and not (rootfs / "h/gone").exists()
    assert (rootfs / "keep-victim").read_text() == "victim v1"
    assert (rootfs / "h/victim").read_text() == "victim v3"


def test_flatten_gives_umocis_tree(stacked: tuple[Path, Path]) -> None:
    layout, rootfs = stacked
    clean(f"oci:{layout}:t", str(rootfs))


def test_exports_give_umocis_tree_parents_first(stacked: tuple[Path, Path], tmp_path: Path) -> None:
    layout, rootfs = stacked
    tar = tmp_path / "root.tar"
    dockerify("export", "-q", f"oci:{layout}:t", "--format", "rootfs-tar", "-o", str(tar))
    clean(str(tar), str(rootfs))
    seen = {"."}
    with tarfile.open(tar) as t:
        for member in t.getmembers():
            name = member.name.removeprefix("./").rstrip("/") or "."
            parent = name.rpartition("/")[0] or "."
            assert name == "." or parent in seen, f"{name} before its parent"
            if member.islnk():
                assert member.linkname.removeprefix("./") in seen, f"{name} before its link target"
            seen.add(name)
    # GNU tar extracts the export into umoci's tree, hard links included. /0link is given right
    # after its target h/target (a hard link cannot come first), so it leaves h/ and comes back
    # to h/second-link: GNU tar must then set directory times at the end, not on leaving one.
    extracted = tmp_path / "gnu"
    extracted.mkdir()
    subprocess.run(
        ["tar", "-xpf", str(tar), "-C", str(extracted), "--numeric-owner", "--delay-directory-restore"],
        check=True,
    )
    clean(str(extracted), str(rootfs))
    assert (extracted / "0link").stat().st_ino == (extracted / "h/target").stat().st_ino
    directory = tmp_path / "dir"
    dockerify("export", "-q", f"oci:{layout}:t", "--format", "rootfs-dir", "-o", str(directory))
    clean(str(directory), str(rootfs))


def test_push_and_pull_keep_the_stack(stacked: tuple[Path, Path], registry: str, tmp_path: Path) -> None:
    layout, rootfs = stacked
    ref = f"{registry}/{unique('stacked')}:t"
    dockerify("push", "-q", f"oci:{layout}:t", ref)
    dockerify("pull", "-q", ref, f"oci:{tmp_path / 'pulled'}:t")
    clean(f"oci:{tmp_path / 'pulled'}:t", str(rootfs))
