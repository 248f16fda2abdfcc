"""Acceptance 2 of issue 8: one ImageStore contract, the same read/write/copy checks against
every store on the real components (an OCI layout, an oci-archive, a docker-archive, Debian's
dockerd 20.10, the loopback docker-registry), and `copy` between every pair of them.

What "the same image" means per transport: layout, oci-archive and the registry keep manifests
byte for byte, so a copy between two of them keeps every manifest digest (index and children).
A docker-archive and the daemon keep only the config and the layers; the daemon also stores
layers uncompressed. Through either of them the config digest and the layers' diff_ids are
compared (the config names the diff_ids, so an equal config digest means an equal filesystem);
through a docker-archive alone the compressed layer digests are compared too."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockerify.errors import CorruptInput, DockerifyError, NotFound
from dockerify.oci.copy import copy
from dockerify.oci.model import Descriptor, ImageConfig, Manifest, parse_document
from dockerify.oci.store import ImageStore
from dockerify.platform import Platform
from dockerify.stores import open_store
from tests.conftest import dockerify
from tests.integration import test_registry_support as support
from tests.integration.test_registry_support import root_of, unique

pytestmark = pytest.mark.registry
busybox_dirs = support.busybox_dirs
multi_image = support.multi_image
single_image = support.single_image

TRANSPORTS = ("oci", "oci-archive", "docker-archive", "docker-daemon", "registry")
KEEPS_MANIFESTS = {"oci", "oci-archive", "registry"}


@pytest.fixture(scope="module")
def new_ref(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], str]]:
    """A fresh reference of a transport; daemon images made here are removed at the end."""
    base = tmp_path_factory.mktemp("stores")
    daemon_names: list[str] = []

    def make(transport: str) -> str:
        n = uuid.uuid4().hex[:8]
        if transport == "oci":
            return f"oci:{base}/layout-{n}:v1"
        if transport == "oci-archive":
            return f"oci-archive:{base}/archive-{n}.tar:v1"
        if transport == "docker-archive":
            return f"docker-archive:{base}/docker-{n}.tar"
        if transport == "docker-daemon":
            request.getfixturevalue("docker_daemon")
            daemon_names.append(f"dockerify-store-test-{n}:v1")
            return f"docker-daemon:{daemon_names[-1]}"
        return f"{request.getfixturevalue('registry')}/{unique('store')}:v1"

    yield make
    for name in daemon_names:
        subprocess.run(["docker", "image", "rm", "-f", name], capture_output=True)


def _copy(src: str, dst: str, **kw: object) -> Descriptor:
    with open_store(src) as s, open_store(dst) as d:
        return copy(s, d, **kw).root  # type: ignore[arg-type]


def _manifest(store: ImageStore, root: Descriptor) -> tuple[bytes, Manifest]:
    data, media_type = store.read_manifest(root)
    doc = parse_document(data, media_type or root.media_type, store.where)
    assert isinstance(doc, Manifest)
    return data, doc


def _identity(ref: str) -> dict[str, object]:
    """What every store keeps of a one-platform image: the config's digest and bytes' diff_ids."""
    with open_store(ref) as store:
        root = store.resolve()
        data, manifest = _manifest(store, root)
        config_bytes = store.read_blob(manifest.config)
        config = ImageConfig.parse(config_bytes, ref)
        return {
            "manifest": root.digest,
            "config": manifest.config.digest,
            "diff_ids": config.diff_ids,
            "layers": [d.digest for d in manifest.layers],
            "platform": str(config.platform),
        }


@pytest.fixture(scope="module")
def seeded(single_image: Path, new_ref: Callable[[str], str]) -> dict[str, str]:
    """The one-platform build written by copy into a store of every transport (the write half
    of the contract): reference by transport."""
    out = {}
    for transport in TRANSPORTS:
        out[transport] = new_ref(transport)
        # A docker-archive's reference names no image: the name goes in as the tag.
        tag = "dockerify-store-test:v1" if transport == "docker-archive" else None
        _copy(f"oci:{single_image}:v1", out[transport], tag=tag)
    return out


def _source(single_image: Path) -> dict[str, object]:
    return _identity(f"oci:{single_image}:v1")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_store_reads_back_what_was_written(
    transport: str, seeded: dict[str, str], single_image: Path
) -> None:
    ref = seeded[transport]
    want = _source(single_image)
    got = _identity(ref)
    assert got["config"] == want["config"]
    assert got["diff_ids"] == want["diff_ids"]
    assert got["platform"] == "linux/amd64"
    if transport in KEEPS_MANIFESTS:
        assert got["manifest"] == want["manifest"]
        assert got["layers"] == want["layers"]
    with open_store(ref) as store:
        root = store.resolve()
        data, manifest = _manifest(store, root)
        assert hashlib.sha256(data).hexdigest() == root.hex and len(data) == root.size
        assert store.has_blob(manifest.config)
        tags = store.tags()
        assert tags and any(t.endswith("v1") for t in tags), tags


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_store_gives_each_blob_whole(transport: str, seeded: dict[str, str], tmp_path: Path) -> None:
    with open_store(seeded[transport]) as store:
        _, manifest = _manifest(store, store.resolve())
        for blob in [manifest.config, *manifest.layers]:
            dest = tmp_path / blob.hex
            store.fetch_blob(blob, dest)
            assert dest.stat().st_size == blob.size
            assert "sha256:" + hashlib.sha256(dest.read_bytes()).hexdigest() == blob.digest


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_store_refuses_a_blob_its_descriptor_does_not_give(
    transport: str, seeded: dict[str, str], tmp_path: Path
) -> None:
    """One read path (oci/blobcheck.py): a descriptor giving fewer bytes than the blob holds is
    refused in memory and streamed, one giving more is refused in memory (a registry's short
    stream is retried as a dropped connection, not read as damage)."""
    with open_store(seeded[transport]) as store:
        _, manifest = _manifest(store, store.resolve())
        config = manifest.config
        fewer = dataclasses.replace(config, size=config.size - 1)
        for lie in (fewer, dataclasses.replace(config, size=config.size + 1)):
            with pytest.raises(CorruptInput, match=config.digest):
                store.read_blob(lie)
        with pytest.raises(CorruptInput, match=config.digest):
            store.fetch_blob(fewer, tmp_path / "fewer")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_store_refuses_a_missing_image_by_name(transport: str, new_ref: Callable[[str], str]) -> None:
    ref = new_ref(transport)
    with pytest.raises(DockerifyError) as e, open_store(ref) as store:
        store.resolve()
    assert isinstance(e.value, NotFound) or "no such" in str(e.value), str(e.value)
    assert ref.split(":", 1)[-1].split(":")[0].rsplit("/", 1)[-1][:8] in str(e.value)


PAIRS = [(a, b) for a in TRANSPORTS for b in TRANSPORTS if a != b]


@pytest.mark.parametrize("src, dst", PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def test_copy_between_every_pair_keeps_the_image(
    src: str, dst: str, seeded: dict[str, str], single_image: Path, new_ref: Callable[[str], str]
) -> None:
    target = new_ref(dst)
    _copy(seeded[src], target)
    want, got = _identity(seeded[src]), _identity(target)
    # Config digest (and with it the diff_ids it lists) survive every transport.
    assert got["config"] == want["config"] == _source(single_image)["config"]
    assert got["diff_ids"] == want["diff_ids"]
    if src in KEEPS_MANIFESTS and dst in KEEPS_MANIFESTS:
        assert got["manifest"] == want["manifest"] == _source(single_image)["manifest"]
    if "docker-daemon" not in (src, dst):
        assert got["layers"] == want["layers"]  # compressed layers travel as they are


MULTI = ("oci", "oci-archive", "registry")
MULTI_PAIRS = [(a, b) for a in MULTI for b in MULTI]


@pytest.mark.parametrize("src, dst", MULTI_PAIRS, ids=[f"{a}-to-{b}" for a, b in MULTI_PAIRS])
def test_copy_of_an_index_keeps_every_manifest_digest(
    src: str, dst: str, multi_image: Path, new_ref: Callable[[str], str]
) -> None:
    first = new_ref(src)
    root = _copy(f"oci:{multi_image}:v1", first)
    assert root.digest == root_of(multi_image, "v1")["digest"]
    target = new_ref(dst)
    assert _copy(first, target).digest == root.digest
    with open_store(target) as store:
        data, _ = store.read_manifest(store.resolve())
        for child in json.loads(data)["manifests"]:
            blob = multi_image / "blobs" / "sha256" / child["digest"][7:]
            assert store.read_manifest(Descriptor.from_json(child))[0] == blob.read_bytes()


@pytest.mark.parametrize("dst", TRANSPORTS)
def test_copy_of_one_platform_of_an_index(dst: str, multi_image: Path, new_ref: Callable[[str], str]) -> None:
    target = new_ref(dst)
    root = _copy(f"oci:{multi_image}:v1", target, platforms=[Platform("linux", "arm64")])
    index = json.loads(
        (multi_image / "blobs" / "sha256" / root_of(multi_image, "v1")["digest"][7:]).read_text()
    )
    arm64 = next(m for m in index["manifests"] if m["platform"]["architecture"] == "arm64")
    got = _identity(target)
    assert got["platform"] == "linux/arm64"
    if dst in KEEPS_MANIFESTS:
        assert root.digest == got["manifest"] == arm64["digest"]


@pytest.mark.parametrize("dst", ["docker-archive", "docker-daemon"])
def test_an_index_into_a_one_platform_store_is_refused_before_writing(
    dst: str, multi_image: Path, new_ref: Callable[[str], str]
) -> None:
    target = new_ref(dst)
    with pytest.raises(DockerifyError, match="holds one platform, but .* has 2"):
        _copy(f"oci:{multi_image}:v1", target)
    if dst == "docker-archive":
        assert not Path(target.split(":", 1)[1]).exists()
    else:
        name = target.split(":", 1)[1]
        assert subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode != 0


def test_layouts_the_code_writes_parse_and_serialise_to_the_same_bytes(multi_image: Path) -> None:
    """Every manifest and index of a real multi-platform build, through the typed model."""
    index = json.loads((multi_image / "index.json").read_bytes())
    todo = [Descriptor.from_json(d) for d in index["manifests"]]
    checked = 0
    while todo:
        desc = todo.pop()
        data = (multi_image / "blobs" / "sha256" / desc.hex).read_bytes()
        doc = parse_document(data, desc.media_type, desc.digest)
        assert doc.to_bytes() == data
        checked += 1
        if isinstance(doc, Manifest):
            config = (multi_image / "blobs" / "sha256" / doc.config.hex).read_bytes()
            assert ImageConfig.parse(config, doc.config.digest).to_bytes() == config
        else:
            todo.extend(doc.manifests)
    assert checked == 3


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_push_pull_and_copy_give_the_same_digests(
    transport: str, seeded: dict[str, str], new_ref: Callable[[str], str]
) -> None:
    """`dockerify push` from every store and `copy` into the registry give one digest;
    `dockerify pull` into every store and `copy` out of the registry give one image."""
    pushed_ref, copied_ref = new_ref("registry"), new_ref("registry")
    pushed = dockerify("push", seeded[transport], pushed_ref, "-q").stdout.strip()
    copied = dockerify("copy", seeded[transport], copied_ref, "-q").stdout.strip()
    assert pushed == copied == _identity(copied_ref)["manifest"]

    pulled_ref, copy_ref = new_ref(transport), new_ref(transport)
    dockerify("pull", copied_ref, pulled_ref, "-q")
    assert dockerify("copy", copied_ref, copy_ref, "-q").stdout.strip() == pushed
    assert _identity(pulled_ref) == _identity(copy_ref)


def test_copy_command_json_and_refusals(multi_image: Path, tmp_path: Path) -> None:
    out = json.loads(
        dockerify("copy", f"oci:{multi_image}:v1", f"oci-archive:{tmp_path}/m.tar:v2", "--json", "-q").stdout
    )
    assert out["digest"] == root_of(multi_image, "v1")["digest"]
    assert len(out["manifests"]) == 2 and out["blobs_copied"] > 0
    # Copying again into the same archive finds every blob there.
    again = json.loads(
        dockerify("copy", f"oci:{multi_image}:v1", f"oci-archive:{tmp_path}/m.tar:v3", "--json", "-q").stdout
    )
    assert again["blobs_copied"] == 0 and again["digest"] == out["digest"]
    with open_store(f"oci-archive:{tmp_path}/m.tar") as store:
        assert sorted(store.tags()) == ["v2", "v3"]

    bad = dockerify("copy", f"oci:{multi_image}:v1", f"docker-archive:{tmp_path}/d.tar", check=False)
    assert bad.returncode == 1
    assert bad.stderr.startswith("dockerify: error: docker-archive:") and "holds one platform" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "d.tar").exists()
    missing = dockerify("copy", f"oci:{tmp_path}/nothing", f"oci:{tmp_path}/out", check=False)
    assert missing.returncode == 2 and "no such directory" in missing.stderr
    assert not (tmp_path / "out").exists()
    wrong = dockerify(
        "copy", f"oci:{multi_image}:v1", f"oci:{tmp_path}/p", "--platform", "linux/riscv64", check=False
    )
    assert wrong.returncode == 2 and "no image for platform linux/riscv64" in wrong.stderr
    assert "linux/amd64" in wrong.stderr and not (tmp_path / "p").exists()


@pytest.mark.parametrize("dst", ["oci", "oci-archive", "docker-archive"])
def test_a_failed_copy_leaves_nothing_behind(
    dst: str, single_image: Path, tmp_path: Path, new_ref: Callable[[str], str]
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(single_image, broken)
    with open_store(f"oci:{broken}:v1") as store:
        _, manifest = _manifest(store, store.resolve())
    (broken / "blobs" / "sha256" / manifest.layers[0].hex).unlink()
    target = new_ref(dst)
    proc = dockerify("copy", f"oci:{broken}:v1", target, check=False)
    assert proc.returncode == 2, proc.stderr
    assert f"blob {manifest.layers[0].digest} is missing" in proc.stderr and "Traceback" not in proc.stderr
    path = Path(target.split(":", 1)[1].rsplit(":v1", 1)[0])
    assert not path.exists()
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}")] == []


def _members(tar: Path) -> list[tuple[str, int, str]]:
    with tarfile.open(tar) as t:
        return sorted((m.name, m.size, m.linkname) for m in t.getmembers())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_inspect_and_export_read_every_store(
    transport: str, seeded: dict[str, str], single_image: Path, tmp_path: Path
) -> None:
    """inspect and export take every reference open_store takes, and see the same image."""
    want = _source(single_image)
    info = json.loads(dockerify("inspect", "--json", seeded[transport]).stdout)
    assert info["platforms"] == ["linux/amd64"] and not info["index"]
    if transport in KEEPS_MANIFESTS:
        assert info["digest"] == want["manifest"]
    expected, got = tmp_path / "expected.tar", tmp_path / "got.tar"
    dockerify("export", f"oci:{single_image}:v1", "--format", "rootfs-tar", "-o", str(expected))
    dockerify("export", seeded[transport], "--format", "rootfs-tar", "-o", str(got))
    assert _members(got) == _members(expected)
