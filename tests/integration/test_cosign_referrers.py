"""Issue 11, acceptance 2: signatures stored the OCI 1.1 way. cosign's
`--registry-referrers-mode=oci-1-1` signatures verify with dockerify; dockerify's `--referrers`
signatures verify with `cosign verify --experimental-oci11`, and `oras discover` lists them.
Debian's docker-registry 2.8 has no referrers API, so both tools keep the fallback tag
`sha256-<hex>` (an index of the referrers) up to date, and that is where the others find them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration import test_cosign_support as cs
from tests.integration import test_registry_support as support
from tests.integration.test_cosign_support import (
    SIGN_FLAGS,
    VERIFY_FLAGS,
    KeyPair,
    cosign,
    dockerify,
    get,
    manifest,
    oras,
    sig_tag,
    tags,
)
from tests.integration.test_registry_support import unique

pytestmark = pytest.mark.registry
busybox_dirs = support.busybox_dirs
multi_image = support.multi_image
single_image = support.single_image
cosign_bin = cs.cosign_bin
oras_bin = cs.oras_bin
key_pairs = cs.key_pairs
other_keys = cs.other_keys
SIG_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
EXPERIMENTAL = {"COSIGN_EXPERIMENTAL": "1"}


def push(registry: str, layout: Path, name: str) -> tuple[str, str, str]:
    repo = unique(f"cosign-ref-{name}")
    ref = f"{registry}/{repo}:v1"
    return repo, ref, dockerify("push", f"oci:{layout}:v1", ref, "-q").stdout.strip()


def fallback(registry: str, repo: str, digest: str) -> dict:
    index = manifest(registry, repo, digest.replace(":", "-"))
    assert index is not None, "no fallback referrers index"
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    return index


def test_registry_has_no_referrers_api(registry: str, single_image: Path) -> None:
    """The premise of the fallback tag: docker-registry 2.8 answers the referrers API with 404."""
    repo, _, digest = push(registry, single_image, "api")
    status, _, _ = get(f"http://{registry}/v2/{repo}/referrers/{digest}")
    assert status == 404


def test_cosign_oci11_signature_verifies_with_dockerify(
    registry: str, key_pairs: dict[str, KeyPair], other_keys: KeyPair, multi_image: Path
) -> None:
    keys = key_pairs["cosign"]
    repo, ref, digest = push(registry, multi_image, "cosign")
    cosign(
        "sign",
        "--key",
        str(keys.key),
        *SIGN_FLAGS,
        "--registry-referrers-mode=oci-1-1",
        ref,
        env=EXPERIMENTAL,
    )
    # cosign wrote no .sig tag: the signature is a referrer, listed in the fallback index
    assert sig_tag(digest) not in tags(registry, repo)
    entries = fallback(registry, repo, digest)["manifests"]
    assert [e["artifactType"] for e in entries] == [SIG_ARTIFACT]
    referrer = manifest(registry, repo, entries[0]["digest"])
    assert referrer is not None and referrer["subject"]["digest"] == digest
    out = json.loads(dockerify("verify", ref, "--key", str(keys.pub), "--json").stdout)
    assert out == [{"digest": digest, "docker-reference": f"{registry}/{repo}", "signatures": 1}]
    r = dockerify("verify", ref, "--key", str(other_keys.pub), check=False)
    assert r.returncode != 0 and "does not verify" in r.stderr


def test_dockerify_referrers_verify_with_cosign_and_show_in_oras(
    registry: str, key_pairs: dict[str, KeyPair], other_keys: KeyPair, single_image: Path
) -> None:
    keys = key_pairs["dockerify-cosign"]
    repo, ref, digest = push(registry, single_image, "dockerify")
    dockerify("sign", ref, "--key", str(keys.key), "--referrers", "-q")
    assert sig_tag(digest) not in tags(registry, repo)
    entries = fallback(registry, repo, digest)["manifests"]
    assert len(entries) == 1 and entries[0]["artifactType"] == SIG_ARTIFACT
    referrer = manifest(registry, repo, entries[0]["digest"])
    assert referrer is not None
    assert referrer["subject"]["digest"] == digest and referrer["config"]["mediaType"] == SIG_ARTIFACT
    # cosign finds and verifies it through the referrers fallback ...
    out = cosign(
        "verify", "--experimental-oci11", "--key", str(keys.pub), *VERIFY_FLAGS, ref, env=EXPERIMENTAL
    )
    assert json.loads(out.stdout)[0]["critical"]["image"]["docker-manifest-digest"] == digest
    r = cosign(
        "verify",
        "--experimental-oci11",
        "--key",
        str(other_keys.pub),
        *VERIFY_FLAGS,
        ref,
        env=EXPERIMENTAL,
        check=False,
    )
    assert r.returncode != 0
    # ... dockerify too, and signing again adds no second referrer
    dockerify("verify", ref, "--key", str(keys.pub))
    r = dockerify("sign", ref, "--key", str(keys.key), "--referrers")
    assert "already signed with this key" in r.stderr
    assert fallback(registry, repo, digest)["manifests"] == entries
    # oras lists dockerify's referrer
    listed = json.loads(oras("discover", "--plain-http", "--format", "json", ref).stdout)
    found = listed.get("referrers", listed.get("manifests", []))
    assert [(m["digest"], m["artifactType"]) for m in found] == [(entries[0]["digest"], SIG_ARTIFACT)]


def test_recursive_referrers_on_an_index(
    registry: str, key_pairs: dict[str, KeyPair], multi_image: Path
) -> None:
    keys = key_pairs["cosign"]
    repo, ref, digest = push(registry, multi_image, "recursive")
    dockerify("sign", ref, "--key", str(keys.key), "--referrers", "--recursive", "-q")
    index = manifest(registry, repo, "v1")
    assert index is not None
    for d in [digest, *(m["digest"] for m in index["manifests"])]:
        assert len(fallback(registry, repo, d)["manifests"]) == 1
        cosign(
            "verify",
            "--experimental-oci11",
            "--key",
            str(keys.pub),
            *VERIFY_FLAGS,
            f"{registry}/{repo}@{d}",
            env=EXPERIMENTAL,
        )
    got = json.loads(dockerify("verify", ref, "--key", str(keys.pub), "--recursive", "--json").stdout)
    assert len(got) == 1 + len(index["manifests"])
