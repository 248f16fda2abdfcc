"""Issue 11, acceptance 1 and 3: the real cosign 2.5.0 and dockerify sign and verify each other's
images with either tool's keys, on a single image and recursively on a multi-platform index;
the wrong key and a moved tag fail in both tools; signing twice leaves one layer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration import test_cosign_support as cs
from tests.integration import test_registry_support as support
from tests.integration.test_cosign_support import (
    ORIGINS,
    SIGN_FLAGS,
    VERIFY_FLAGS,
    KeyPair,
    cosign,
    dockerify,
    manifest,
    sig_tag,
)
from tests.integration.test_registry_support import unique

pytestmark = pytest.mark.registry
busybox_dirs = support.busybox_dirs
multi_image = support.multi_image
single_image = support.single_image
cosign_bin = cs.cosign_bin
key_pairs = cs.key_pairs
other_keys = cs.other_keys


@pytest.fixture(scope="session")
def changed_image(busybox_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image no test signs: what a moved tag points at."""
    out = tmp_path_factory.mktemp("images") / "changed"
    dockerify("build", str(busybox_dirs["amd64"]), "--label", "moved=yes", "--output", f"oci:{out}:v1", "-q")
    return out


def push(registry: str, layout: Path, name: str) -> tuple[str, str, str]:
    repo = unique(f"cosign-{name}")
    ref = f"{registry}/{repo}:v1"
    digest = dockerify("push", f"oci:{layout}:v1", ref, "-q").stdout.strip()
    return repo, ref, digest


def sign(signer: str, keys: KeyPair, ref: str, recursive: bool) -> None:
    if signer == "cosign":
        cosign("sign", "--key", str(keys.key), *SIGN_FLAGS, *(["--recursive"] if recursive else []), ref)
    else:
        dockerify("sign", ref, "--key", str(keys.key), *(["--recursive"] if recursive else []), "-q")


def verify(verifier: str, pub: Path, ref: str, check: bool = True):  # type: ignore[no-untyped-def]
    if verifier == "cosign":
        return cosign("verify", "--key", str(pub), *VERIFY_FLAGS, ref, check=check)
    return dockerify("verify", ref, "--key", str(pub), check=check)


def platform_digests(registry: str, repo: str) -> list[str]:
    index = manifest(registry, repo, "v1")
    assert index is not None and "manifests" in index
    return [m["digest"] for m in index["manifests"]]


@pytest.mark.parametrize("image", ["single", "multi"])
@pytest.mark.parametrize("signer", ["cosign", "dockerify"])
@pytest.mark.parametrize("origin", ORIGINS)
def test_sign_verify_matrix(
    registry: str,
    key_pairs: dict[str, KeyPair],
    single_image: Path,
    multi_image: Path,
    origin: str,
    signer: str,
    image: str,
) -> None:
    keys = key_pairs[origin]
    repo, ref, digest = push(
        registry, single_image if image == "single" else multi_image, f"{origin}-{signer}"
    )
    recursive = image == "multi"
    if signer == "cosign" and not keys.cosign_can_sign:
        # cosign signs only with its own key format; it names the PEM type it refuses
        r = cosign("sign", "--key", str(keys.key), *SIGN_FLAGS, ref, check=False)
        assert r.returncode != 0 and "unsupported pem type: ENCRYPTED PRIVATE KEY" in r.stderr
        return
    sign(signer, keys, ref, recursive)
    # both tools verify the image ...
    out = verify("cosign", keys.pub, ref).stdout
    assert json.loads(out)[0]["critical"]["image"]["docker-manifest-digest"] == digest
    verified = json.loads(dockerify("verify", ref, "--key", str(keys.pub), "--json").stdout)
    assert [v["digest"] for v in verified] == [digest]
    if recursive:
        # ... and, recursively, each platform manifest of the index
        platforms = platform_digests(registry, repo)
        got = json.loads(dockerify("verify", ref, "--key", str(keys.pub), "--recursive", "--json").stdout)
        assert [v["digest"] for v in got] == [digest, *platforms]
        for d in platforms:
            verify("cosign", keys.pub, f"{registry}/{repo}@{d}")
    # exactly one signature layer for each signed digest
    for d in [digest, *(platform_digests(registry, repo) if recursive else [])]:
        sig = manifest(registry, repo, sig_tag(d))
        assert sig is not None and len(sig["layers"]) == 1


@pytest.mark.parametrize("image", ["single", "multi"])
def test_wrong_key_and_moved_tag_fail_in_both_tools(
    registry: str,
    key_pairs: dict[str, KeyPair],
    other_keys: KeyPair,
    single_image: Path,
    multi_image: Path,
    changed_image: Path,
    image: str,
) -> None:
    layout = single_image if image == "single" else multi_image
    repo, ref, digest = push(registry, layout, "wrong")
    keys = key_pairs["dockerify-cosign"]
    sign("dockerify", keys, ref, image == "multi")
    for verifier in ("cosign", "dockerify"):
        r = verify(verifier, other_keys.pub, ref, check=False)
        assert r.returncode != 0, (verifier, r.stdout)
        assert "no matching signatures" in r.stderr if verifier == "cosign" else "does not verify" in r.stderr
    # the tag moves to another image: the signature names the old digest, so nothing verifies
    moved = dockerify("push", f"oci:{changed_image}:v1", ref, "-q").stdout.strip()
    assert moved != digest
    for verifier in ("cosign", "dockerify"):
        r = verify(verifier, keys.pub, ref, check=False)
        assert r.returncode != 0, (verifier, r.stdout)
    # ... while the old digest still verifies in both
    for verifier in ("cosign", "dockerify"):
        verify(verifier, keys.pub, f"{registry}/{repo}@{digest}")


def test_signing_twice_leaves_one_layer(
    registry: str, key_pairs: dict[str, KeyPair], single_image: Path, multi_image: Path
) -> None:
    """Acceptance 3, checked in the registry: dockerify twice, then cosign with the same key and
    payload (its duplicate detection sees dockerify's layer), then dockerify again after cosign."""
    keys = key_pairs["cosign"]
    repo, ref, digest = push(registry, multi_image, "twice")
    for _ in range(2):
        dockerify("sign", ref, "--key", str(keys.key), "--recursive", "-q")
    all_digests = [digest, *platform_digests(registry, repo)]
    first = {d: manifest(registry, repo, sig_tag(d)) for d in all_digests}
    assert all(m is not None and len(m["layers"]) == 1 for m in first.values())
    r = dockerify("sign", ref, "--key", str(keys.key))
    assert "already signed with this key" in r.stderr
    cosign("sign", "--key", str(keys.key), *SIGN_FLAGS, ref)
    assert manifest(registry, repo, sig_tag(digest)) == first[digest]  # cosign added nothing either
    # a second key adds a second layer, and both verify
    other = key_pairs["dockerify-cosign"]
    dockerify("sign", ref, "--key", str(other.key), "-q")
    dockerify("sign", ref, "--key", str(other.key), "-q")
    after = manifest(registry, repo, sig_tag(digest))
    assert after is not None and len(after["layers"]) == 2
    for pair in (keys, other):
        verify("cosign", pair.pub, ref)
        verify("dockerify", pair.pub, ref)
    # cosign's own signature followed by dockerify's with the same key: still one layer
    repo2, ref2, digest2 = push(registry, single_image, "twice-cosign-first")
    cosign("sign", "--key", str(keys.key), *SIGN_FLAGS, ref2)
    dockerify("sign", ref2, "--key", str(keys.key), "-q")
    sig = manifest(registry, repo2, sig_tag(digest2))
    assert sig is not None and len(sig["layers"]) == 1


@pytest.mark.parametrize(
    "algorithm",
    [
        "ecdsa-sha2-256-nistp256",
        "ecdsa-sha2-384-nistp384",
        "ecdsa-sha2-512-nistp521",
        "rsa-sign-pkcs1-2048-sha256",
        "rsa-sign-pkcs1-4096-sha256",
        "ed25519",
    ],
)
def test_key_algorithms_both_ways(
    registry: str, single_image: Path, other_keys: KeyPair, tmp_path: Path, algorithm: str
) -> None:
    """ECDSA P-256/P-384/P-521, RSA and Ed25519 keys (in cosign's key format, which cosign reads
    for any of them): what either tool signs, both verify; the other key fails in both."""
    dockerify("keygen", "--algorithm", algorithm, "--output-key-prefix", str(tmp_path / "k"))
    keys = KeyPair("dockerify-cosign", tmp_path / "k.key", tmp_path / "k.pub")
    for signer in ("dockerify", "cosign"):
        _, ref, _ = push(registry, single_image, f"alg-{signer}")
        sign(signer, keys, ref, recursive=False)
        for verifier in ("cosign", "dockerify"):
            verify(verifier, keys.pub, ref)
            r = verify(verifier, other_keys.pub, ref, check=False)
            assert r.returncode != 0, (signer, verifier)
