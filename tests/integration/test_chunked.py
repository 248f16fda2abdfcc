"""Issue 12: chunked images. `build --chunked` splits a card by dpkg package; the flattened tree,
Docker and every exporter see the same tree as the one-layer build; an updated card moves only
the layers of what changed (bytes counted by a proxy between dockerify and the registry)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.cardgen import make_card
from tests.conftest import dockerify
from tests.fixtures import FIXTURES_DIR, entry
from tests.integration.test_registry_support import proxy, unique

LAYOUT_LABEL = "io.dockerify.disk-layout"


def manifest(layout: Path, tag: str = "t") -> dict:
    index = json.loads((layout / "index.json").read_text())
    desc = next(
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    )
    return json.loads((layout / "blobs/sha256" / desc["digest"][7:]).read_text())


def config(layout: Path, tag: str = "t") -> dict:
    return json.loads((layout / "blobs/sha256" / manifest(layout, tag)["config"]["digest"][7:]).read_text())


def build_both(source: Path, tmp_path: Path, *extra: str) -> tuple[Path, Path]:
    one, chunked = tmp_path / "one", tmp_path / "chunked"
    dockerify("build", "-q", str(source), *extra, "-o", f"oci:{one}:t")
    dockerify("build", "-q", "--chunked", str(source), *extra, "-o", f"oci:{chunked}:t")
    return one, chunked


def assert_no_differences(a: str, b: str) -> None:
    proc = dockerify("diff", a, b, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no differences" in proc.stderr


@pytest.mark.parametrize("name", ["pi-arm64.img", "pi-armv6.img", "rootfs-arm64.tar.gz"])
def test_chunked_and_one_layer_builds_are_the_same_tree(name: str, tmp_path: Path) -> None:
    entry(name)
    source = FIXTURES_DIR / name
    one, chunked = build_both(source, tmp_path)
    layers = manifest(chunked)["layers"]
    assert len(layers) > 2 and len(manifest(one)["layers"]) == 1
    assert_no_differences(f"oci:{chunked}:t", f"oci:{one}:t")
    assert_no_differences(f"oci:{chunked}:t", str(source))
    # Same config apart from the layers: the disk layout label and the rest are kept.
    a, b = config(one), config(chunked)
    assert a["config"] == b["config"] and a.get("architecture") == b.get("architecture")
    if name.endswith(".img"):
        assert LAYOUT_LABEL in b["config"]["Labels"]
    assert len(b["rootfs"]["diff_ids"]) == len(layers) == len(b["history"])
    # Reproducible: built again elsewhere, the same digests.
    again = tmp_path / "again"
    dockerify("build", "-q", "--chunked", str(source), "-o", f"oci:{again}:t")
    assert manifest(again) == manifest(chunked)


def test_pi_layers_name_their_packages(tmp_path: Path) -> None:
    entry("pi-arm64.img")
    _, chunked = build_both(FIXTURES_DIR / "pi-arm64.img", tmp_path)
    notes = [layer.get("annotations", {}) for layer in manifest(chunked)["layers"]]
    kinds = [n["io.dockerify.layer.kind"] for n in notes]
    assert kinds[0] == "directories" and kinds[-1] == "unowned"
    packages = {p for n in notes for p in n.get("io.dockerify.layer.packages", "").split(",") if p}
    # the fixture's real dpkg database: busybox-static, hello and libc6 (source glibc)
    assert {"busybox", "hello", "glibc"} <= packages
    text = dockerify("inspect", f"oci:{chunked}:t").stdout
    assert "layer 1:" in text and "glibc" in text


def test_chunked_pi_image_loads_and_runs_in_docker(tmp_path: Path, docker_daemon, binfmt) -> None:
    entry("pi-arm64.img")
    tag = f"dockerify-test/{unique('chunked')}:run"
    dockerify("build", "-q", "--chunked", str(FIXTURES_DIR / "pi-arm64.img"), "-o", f"docker-daemon:{tag}")
    try:
        shown = subprocess.run(
            ["docker", "image", "inspect", tag, "--format", "{{len .RootFS.Layers}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert int(shown) > 2
        for cmd, want in ((["uname", "-m"], "aarch64"), (["/usr/bin/hello"], "Hello, world!")):
            run = subprocess.run(
                ["docker", "run", "--rm", "--platform", "linux/arm64", tag, *cmd],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert run.returncode == 0, run.stderr
            assert run.stdout.strip() == want
        # a hard-linked busybox applet and a file of every package layer are reachable
        ls = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "--platform",
                "linux/arm64",
                tag,
                "/bin/busybox",
                "ls",
                "/var/lib/dpkg/info",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "hello.list" in ls.stdout, ls.stderr
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def test_chunked_image_pulled_from_a_registry_into_docker(
    tmp_path: Path, registry: str, docker_daemon, binfmt
) -> None:
    """A many-layer image pulled into docker-daemon: goes through a full load (the one-pass
    import registers every layer as a base layer, which only fits one-layer images)."""
    entry("pi-arm64.img")
    name = unique("chunked-pull")
    layout = tmp_path / "layout"
    dockerify("build", "-q", "--chunked", str(FIXTURES_DIR / "pi-arm64.img"), "-o", f"oci:{layout}:t")
    dockerify("push", "-q", f"oci:{layout}:t", f"{registry}/dockerify-test/{name}:v1")
    tag = f"dockerify-test/{name}:pulled"
    dockerify("pull", "-q", f"{registry}/dockerify-test/{name}:v1", f"docker-daemon:{tag}")
    try:
        run = subprocess.run(
            ["docker", "run", "--rm", "--platform", "linux/arm64", tag, "/usr/bin/hello"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "Hello, world!"
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def test_every_exporter_gives_the_same_tree_from_both(tmp_path: Path) -> None:
    entry("pi-arm64.img")
    one, chunked = build_both(FIXTURES_DIR / "pi-arm64.img", tmp_path)
    out: dict[str, dict[str, Path]] = {}
    for label, layout in (("one", one), ("chunked", chunked)):
        out[label] = {}
        for fmt, name in (("rootfs-tar", "root.tar"), ("initramfs", "initrd.gz"), ("sdcard", "card.img")):
            path = tmp_path / f"{label}-{name}"
            dockerify("export", "-q", f"oci:{layout}:t", "--format", fmt, "-o", str(path))
            out[label][fmt] = path
    # The tarball and the initramfs are byte for byte the same (same entries, same order) ...
    assert out["one"]["rootfs-tar"].read_bytes() == out["chunked"]["rootfs-tar"].read_bytes()
    assert out["one"]["initramfs"].read_bytes() == out["chunked"]["initramfs"].read_bytes()
    # ... and the cards hold the same trees, the source's.
    assert_no_differences(str(out["one"]["sdcard"]), str(out["chunked"]["sdcard"]))
    assert_no_differences(str(out["chunked"]["sdcard"]), str(FIXTURES_DIR / "pi-arm64.img"))
    assert_no_differences(str(out["chunked"]["rootfs-tar"]), str(FIXTURES_DIR / "pi-arm64.img"))


def test_tree_without_dpkg_database_splits_by_directory(tmp_path: Path) -> None:
    entry("rootfs-amd64.tar")
    _, chunked = build_both(FIXTURES_DIR / "rootfs-amd64.tar", tmp_path)
    kinds = {layer["annotations"]["io.dockerify.layer.kind"] for layer in manifest(chunked)["layers"]}
    assert "tree" in kinds or "bucket" in kinds


@pytest.fixture(scope="module")
def cards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("cards")
    out: dict[str, Path] = {}
    for version in (1, 2):
        tree = base / f"tree-v{version}"
        make_card(tree, version)
        for mode in ("chunked", "one"):
            layout = base / f"{mode}-v{version}"
            flags = ["--chunked"] if mode == "chunked" else []
            dockerify("build", "-q", "--platform", "linux/arm64", *flags, str(tree), "-o", f"oci:{layout}:t")
            out[f"{mode}-v{version}"] = layout
        out[f"tree-v{version}"] = tree
    return out


def image_size(layout: Path) -> int:
    m = manifest(layout)
    return m["config"]["size"] + sum(layer["size"] for layer in m["layers"])


def test_unchanged_packages_give_identical_layers(cards: dict[str, Path]) -> None:
    def by_packages(layout: Path) -> dict[str, str]:
        return {
            layer["annotations"].get(
                "io.dockerify.layer.packages", layer["annotations"]["io.dockerify.layer.kind"]
            ): layer["digest"]
            for layer in manifest(layout)["layers"]
        }

    v1, v2 = by_packages(cards["chunked-v1"]), by_packages(cards["chunked-v2"])
    changed = {"openssh", "curl", "wireless-tools", "util-linux-extra", "directories", "conffiles", "unowned"}
    for packages, digest in v2.items():
        if packages in v1 and not set(packages.split(",")) & changed:
            assert v1[packages] == digest, packages
    assert v1["linux"] == v2["linux"] and v1["glibc,zlib"] == v2["glibc,zlib"]
    assert v1["curl"] != v2["curl"]
    names1, names2 = set(",".join(v1).split(",")), set(",".join(v2).split(","))
    assert "util-linux-extra" in names2 - names1 and "wireless-tools" in names1 - names2
    for version in (1, 2):
        assert_no_differences(f"oci:{cards[f'chunked-v{version}']}:t", str(cards[f"tree-v{version}"]))


def _moved(kind: str, args: list[str], p) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    before = p.uploaded if kind == "push" else p.downloaded
    result = json.loads(dockerify(kind, *args, "--json").stdout)
    after = p.uploaded if kind == "push" else p.downloaded
    return after - before, result


def test_version_2_push_and_pull_move_a_quarter_at_most(
    registry: str, cards: dict[str, Path], tmp_path: Path
) -> None:
    port = int(registry.rsplit(":", 1)[1])
    with proxy(port) as p:
        repo = f"{p.host}/{unique('chunked-card')}"
        v2_size = image_size(cards["chunked-v2"])
        moved_v1, r1 = _moved("push", [f"oci:{cards['chunked-v1']}:t", f"{repo}:v1"], p)
        assert moved_v1 >= image_size(cards["chunked-v1"]) and r1["blobs_skipped"] == 0
        moved_v2, r2 = _moved("push", [f"oci:{cards['chunked-v2']}:t", f"{repo}:v2"], p)
        assert r2["bytes_moved"] <= moved_v2 <= 0.25 * v2_size, (moved_v2, v2_size)
        assert r2["blobs_skipped"] > 10

        dest = tmp_path / "device"
        pulled_v1, _ = _moved("pull", [f"{repo}:v1", f"oci:{dest}:v1"], p)
        assert pulled_v1 >= image_size(cards["chunked-v1"])
        pulled_v2, r3 = _moved("pull", [f"{repo}:v2", f"oci:{dest}:v2"], p)
        assert r3["bytes_moved"] <= pulled_v2 <= 0.25 * v2_size, (pulled_v2, v2_size)
        assert_no_differences(f"oci:{dest}:v2", str(cards["tree-v2"]))

        # Against one layer, the same update moves everything again.
        one = f"{p.host}/{unique('onelayer-card')}"
        _moved("push", [f"oci:{cards['one-v1']}:t", f"{one}:v1"], p)
        moved_one, _ = _moved("push", [f"oci:{cards['one-v2']}:t", f"{one}:v2"], p)
        assert moved_one >= 0.95 * image_size(cards["one-v2"])


def test_push_mounts_from_another_repository(registry: str, cards: dict[str, Path]) -> None:
    first = f"{registry}/{unique('chunked-mount-a')}"
    second = f"{registry}/{unique('chunked-mount-b')}"
    dockerify("push", "-q", f"oci:{cards['chunked-v1']}:t", f"{first}:v1")
    repo = first.split("/", 1)[1]
    proc = dockerify("push", f"oci:{cards['chunked-v2']}:t", f"{second}:v2", "--mount-from", repo, "--json")
    result = json.loads(proc.stdout)
    assert result["blobs_mounted"] > 10
    assert result["bytes_moved"] <= 0.25 * image_size(cards["chunked-v2"])
    assert "mounted" in proc.stderr and "pushed" in proc.stderr
    dest = cards["chunked-v2"].parent / "mounted-pull"
    pulled = json.loads(dockerify("pull", f"{second}:v2", f"oci:{dest}:v2", "--json").stdout)
    assert pulled["digest"] == result["digest"]
    assert_no_differences(f"oci:{dest}:v2", str(cards["tree-v2"]))


def test_layer_count_is_bounded(cards: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "six"
    dockerify(
        "build", "-q", "--platform", "linux/arm64", "--chunked=6", str(cards["tree-v2"]), "-o", f"oci:{out}:t"
    )
    assert 3 <= len(manifest(out)["layers"]) <= 6
    assert_no_differences(f"oci:{out}:t", str(cards["tree-v2"]))
    bad = dockerify(
        "build", "--chunked=500", str(cards["tree-v2"]), "-o", f"oci:{tmp_path / 'x'}", check=False
    )
    assert bad.returncode == 2 and "--chunked takes" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "x").exists()
