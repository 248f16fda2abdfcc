"""Acceptance 6: sign and verify in cosign's format, on a registry and on a local layout;
`pull --verify-key` refuses an image whose signature is missing or does not verify; the
payload and tag layout match cosign's specification field for field."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.integration import test_registry_support as support
from tests.integration.test_registry_support import (
    blob_files,
    root_of,
    run_cli,
    unique,
)

pytestmark = pytest.mark.registry
# session fixtures shared by the registry tests
busybox_dirs = support.busybox_dirs
multi_image = support.multi_image
single_image = support.single_image
ENV = {**os.environ, "DOCKERIFY_KEY_PASSWORD": "correct horse"}


def keys(tmp_path: Path, name: str) -> tuple[Path, Path]:
    run_cli("keygen", "--output-key-prefix", str(tmp_path / name), env=ENV)
    return tmp_path / f"{name}.key", tmp_path / f"{name}.pub"


def get(url: str, accept: str = "") -> bytes:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def manifest(registry: str, repo: str, ref: str) -> bytes:
    return get(
        f"http://{registry}/v2/{repo}/manifests/{ref}",
        "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
    )


def put_manifest(registry: str, repo: str, ref: str, data: bytes) -> None:
    req = urllib.request.Request(
        f"http://{registry}/v2/{repo}/manifests/{ref}",
        data=data,
        method="PUT",
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    urllib.request.urlopen(req, timeout=30).close()


def refused(*args: str, dest: Path) -> str:
    r = run_cli(*args, env=ENV, check=False)
    assert r.returncode != 0, r.stdout
    assert not dest.exists()
    return r.stderr


def test_keygen(tmp_path: Path) -> None:
    key, pub = keys(tmp_path, "k")
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.read_text().startswith("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
    assert pub.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    r = run_cli("keygen", "--output-key-prefix", str(tmp_path / "k"), env=ENV, check=False)
    assert r.returncode != 0 and "already exists" in r.stderr
    r = run_cli("keygen", "--output-key-prefix", str(tmp_path / "nopass"), env=os.environ.copy(), check=False)
    assert r.returncode != 0 and "DOCKERIFY_KEY_PASSWORD" in r.stderr


def test_sign_verify_registry(
    registry: str, multi_image: Path, single_image: Path, busybox_dirs: dict[str, Path], tmp_path: Path
) -> None:
    key, pub = keys(tmp_path, "good")
    _, other = keys(tmp_path, "other")
    repo = unique("signed")
    ref = f"{registry}/{repo}:v1"
    digest = run_cli("push", f"oci:{multi_image}:v1", ref).stdout.strip()
    index = json.loads(manifest(registry, repo, "v1"))
    signed = run_cli("sign", ref, "--key", str(key), "--recursive", env=ENV).stdout.split()
    assert signed == [digest] + [m["digest"] for m in index["manifests"]]

    # verify succeeds, recursively too, and pull --verify-key pulls
    out = json.loads(run_cli("verify", ref, "--key", str(pub), "--recursive", "--json").stdout)
    assert [v["digest"] for v in out] == signed
    assert out[0]["docker-reference"] == f"{registry}/{repo}"
    pulled = tmp_path / "pulled"
    assert run_cli("pull", ref, f"oci:{pulled}:v1", "--verify-key", str(pub)).stdout.strip() == digest
    assert blob_files(pulled) == blob_files(multi_image)
    wrong_pw = run_cli(
        "sign", ref, "--key", str(key), env={**os.environ, "DOCKERIFY_KEY_PASSWORD": "nope"}, check=False
    )
    assert wrong_pw.returncode != 0 and "wrong password" in wrong_pw.stderr

    # the wrong key
    r = run_cli("verify", ref, "--key", str(other), check=False)
    assert r.returncode != 0 and "does not verify" in r.stderr
    assert "does not verify" in refused(
        "pull", ref, f"oci:{tmp_path / 'w'}", "--verify-key", str(other), dest=tmp_path / "w"
    )

    # a missing signature
    unsigned = f"{registry}/{unique('unsigned')}:v1"
    run_cli("push", f"oci:{single_image}:v1", unsigned)
    r = run_cli("verify", unsigned, "--key", str(pub), check=False)
    assert r.returncode != 0 and "no signature" in r.stderr
    assert "no signature" in refused(
        "pull", unsigned, f"oci:{tmp_path / 'u'}", "--verify-key", str(pub), dest=tmp_path / "u"
    )

    # a changed manifest under the signed tag: no signature names it ...
    changed = tmp_path / "changed"
    run_cli(
        "build", str(busybox_dirs["amd64"]), "--label", "changed=yes", "--output", f"oci:{changed}:v1", "-q"
    )
    new_digest = run_cli("push", f"oci:{changed}:v1", ref).stdout.strip()
    r = run_cli("verify", ref, "--key", str(pub), check=False)
    assert r.returncode != 0 and "no signature" in r.stderr
    assert "no signature" in refused(
        "pull", ref, f"oci:{tmp_path / 'c'}", "--verify-key", str(pub), dest=tmp_path / "c"
    )
    # ... and a good signature copied over to the new digest's tag names the old digest
    old_sig = manifest(registry, repo, f"sha256-{digest[7:]}.sig")
    put_manifest(registry, repo, f"sha256-{new_digest[7:]}.sig", old_sig)
    r = run_cli("verify", ref, "--key", str(pub), check=False)
    assert r.returncode != 0 and f"a signature for {digest}, not for {new_digest}" in r.stderr
    assert "not for" in refused(
        "pull", ref, f"oci:{tmp_path / 'c2'}", "--verify-key", str(pub), dest=tmp_path / "c2"
    )
    # a pinned digest still verifies
    run_cli("verify", f"{registry}/{repo}@{digest}", "--key", str(pub))


def test_signature_matches_cosign_spec(registry: str, single_image: Path, tmp_path: Path) -> None:
    """Field by field against sigstore/cosign specs/SIGNATURE_SPEC.md: tag-based discovery
    (`sha256-<hex>.sig`), an OCI image manifest whose layer is the simple signing payload
    (mediaType application/vnd.dev.cosign.simplesigning.v1+json) with the base64 signature in
    the `dev.cosignproject.cosign/signature` annotation, ECDSA P-256 over SHA-256 of the payload."""
    key, pub = keys(tmp_path, "spec")
    repo = unique("spec")
    ref = f"{registry}/{repo}:v1"
    digest = run_cli("push", f"oci:{single_image}:v1", ref).stdout.strip()
    run_cli("sign", ref, "--key", str(key), env=ENV)
    tag = "sha256-" + digest.split(":", 1)[1] + ".sig"
    tags = json.loads(get(f"http://{registry}/v2/{repo}/tags/list"))["tags"]
    assert sorted(tags) == sorted(["v1", tag])
    sig = json.loads(manifest(registry, repo, tag))
    assert sig["schemaVersion"] == 2
    assert sig["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert sig["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert len(sig["layers"]) == 1
    layer = sig["layers"][0]
    assert set(layer) == {"mediaType", "size", "digest", "annotations"}
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert set(layer["annotations"]) == {"dev.cosignproject.cosign/signature"}
    payload = get(f"http://{registry}/v2/{repo}/blobs/{layer['digest']}")
    assert len(payload) == layer["size"]
    expected = (
        (
            '{"critical":{"identity":{"docker-reference":"REPO"},"image":{"docker-manifest-digest":"DIGEST"},'
            '"type":"cosign container image signature"},"optional":null}'
        )
        .replace("REPO", f"{registry}/{repo}")
        .replace("DIGEST", digest)
    )
    assert payload == expected.encode()
    doc = json.loads(payload)
    assert set(doc) == {"critical", "optional"}
    assert set(doc["critical"]) == {"identity", "image", "type"}
    # an independent judge: openssl checks the ECDSA-P256-SHA256 DER signature with our public key
    if shutil.which("openssl"):
        (tmp_path / "payload").write_bytes(payload)
        (tmp_path / "sig.der").write_bytes(
            base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
        )
        ok = subprocess.run(
            [
                "openssl",
                "dgst",
                "-sha256",
                "-verify",
                str(pub),
                "-signature",
                str(tmp_path / "sig.der"),
                str(tmp_path / "payload"),
            ],
            capture_output=True,
            text=True,
        )
        assert ok.returncode == 0 and "Verified OK" in ok.stdout, ok.stdout + ok.stderr
    config = json.loads(get(f"http://{registry}/v2/{repo}/blobs/{sig['config']['digest']}"))
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer["digest"]]}
    # signing again with another key appends a second signature layer
    key2, pub2 = keys(tmp_path, "second")
    run_cli("sign", ref, "--key", str(key2), env=ENV)
    assert len(json.loads(manifest(registry, repo, tag))["layers"]) == 2
    for p in (pub, pub2):
        run_cli("verify", ref, "--key", str(p))


def test_sign_verify_local_layout(registry: str, single_image: Path, tmp_path: Path) -> None:
    key, pub = keys(tmp_path, "local")
    layout = tmp_path / "layout"
    shutil.copytree(single_image, layout)
    digest = root_of(layout, "v1")["digest"]
    r = run_cli("verify", f"oci:{layout}:v1", "--key", str(pub), check=False)
    assert r.returncode != 0 and "no signature" in r.stderr
    assert run_cli("sign", f"oci:{layout}:v1", "--key", str(key), env=ENV).stdout.strip() == digest
    tags = [
        d["annotations"]["org.opencontainers.image.ref.name"]
        for d in json.loads((layout / "index.json").read_text())["manifests"]
    ]
    assert f"sha256-{digest[7:]}.sig" in tags
    run_cli("verify", f"oci:{layout}:v1", "--key", str(pub))
    run_cli("verify", f"oci:{layout}", "--key", str(pub))  # the signature tag is not an image
    # an oci-archive of the layout verifies too
    archive = tmp_path / "signed.tar"
    subprocess.run(["tar", "-cf", str(archive), "-C", str(layout), "."], check=True)
    run_cli("verify", f"oci-archive:{archive}", "--key", str(pub))
    # pushing the layout takes its signature along; the registry copy verifies
    ref = f"{registry}/{unique('local-signed')}:v1"
    run_cli("push", f"oci:{layout}:v1", ref)
    run_cli("verify", ref, "--key", str(pub))
    # a docker-archive cannot carry signatures: refused with an explanation
    r = run_cli("verify", f"docker-archive:{archive}", "--key", str(pub), check=False)
    assert r.returncode != 0 and "cannot hold signatures" in r.stderr
