"""Key files in cosign's and PKCS#8 formats, and the signature algorithms cosign uses.

tests/data/cosign-generated.{key,pub} were written by `cosign generate-key-pair` 2.5.0 (password
"dockerify-test"), and cosign-signed-payload.sig by `cosign sign-blob --key` over
cosign-signed-payload.json with that key."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from dockerify.errors import DockerifyError
from dockerify.trust import keys
from dockerify.trust.keys import (
    Algorithm,
    KeyFormat,
    PrivateKey,
    WrongPassword,
    decrypt_cosign,
    encrypt_cosign,
    keygen,
    load_private_key,
    load_public_key,
)

DATA = Path(__file__).resolve().parent.parent / "data"
PASSWORD = b"dockerify-test"


def pem_body(path: Path) -> tuple[str, bytes]:
    text = path.read_text()
    m = re.match(r"-----BEGIN ([A-Z ]+)-----\n(.*)-----END \1-----\n$", text, re.S)
    assert m, text
    return m.group(1), base64.b64decode("".join(m.group(2).split()))


def test_reads_the_key_cosign_generated() -> None:
    key = load_private_key(DATA / "cosign-generated.key", lambda: PASSWORD)
    assert key.kind == "ECDSA secp256r1"
    pub = load_public_key(DATA / "cosign-generated.pub")
    assert key.public().pem() == pub.pem()
    payload = (DATA / "cosign-signed-payload.json").read_bytes()
    # cosign's own signature verifies, and ours verifies the way cosign's does (ECDSA over SHA-256)
    assert pub.verify_b64(payload, (DATA / "cosign-signed-payload.sig").read_text().strip())
    ours = key.sign(payload)
    assert isinstance(pub.key, ec.EllipticCurvePublicKey)
    pub.key.verify(ours, payload, ec.ECDSA(hashes.SHA256()))
    assert not pub.verify(payload + b"x", ours)
    with pytest.raises(WrongPassword, match="cosign-generated.key: cannot decrypt the private key"):
        load_private_key(DATA / "cosign-generated.key", lambda: b"wrong")


def test_writes_cosigns_envelope_field_for_field(tmp_path: Path) -> None:
    key_path, pub_path = keygen(tmp_path / "k", b"pw")  # cosign format is the default
    label, body = pem_body(key_path)
    assert label == "ENCRYPTED SIGSTORE PRIVATE KEY"
    assert all(len(line) <= 64 for line in key_path.read_text().splitlines())
    doc = json.loads(body)
    # go-securesystemslib's encrypted.Encrypt: field order, Standard scrypt parameters, sizes
    assert list(doc) == ["kdf", "cipher", "ciphertext"]
    assert doc["kdf"]["name"] == "scrypt" and doc["kdf"]["params"] == {"N": 65536, "r": 8, "p": 1}
    assert len(base64.b64decode(doc["kdf"]["salt"])) == 32
    assert doc["cipher"]["name"] == "nacl/secretbox"
    assert len(base64.b64decode(doc["cipher"]["nonce"])) == 24
    # the plaintext is the PKCS#8 DER of the key
    der = decrypt_cosign(body, b"pw", key_path)
    inner = serialization.load_der_private_key(der, None)
    assert isinstance(inner, ec.EllipticCurvePrivateKey)
    assert load_public_key(pub_path).pem() == PrivateKey(inner, "x").public().pem()
    # secretbox is authenticated: a flipped ciphertext byte reads as a wrong password
    sealed = bytearray(base64.b64decode(doc["ciphertext"]))
    sealed[5] ^= 1
    doc["ciphertext"] = base64.b64encode(bytes(sealed)).decode()
    with pytest.raises(WrongPassword):
        decrypt_cosign(json.dumps(doc).encode(), b"pw", key_path)


def test_envelope_roundtrip_and_scrypt_parameters_refused(tmp_path: Path) -> None:
    env = encrypt_cosign(b"reallyimportant", b"supersecret")
    assert decrypt_cosign(env, b"supersecret", "x") == b"reallyimportant"
    with pytest.raises(WrongPassword):
        decrypt_cosign(env, b"supersecreT", "x")
    doc = json.loads(env)
    doc["kdf"]["params"] = {"N": 1 << 24, "r": 8, "p": 1}  # would take 16 GiB to derive
    with pytest.raises(DockerifyError, match="unsupported scrypt parameters"):
        decrypt_cosign(json.dumps(doc).encode(), b"supersecret", "x")
    doc["kdf"]["name"] = "argon2"
    with pytest.raises(DockerifyError, match="'argon2'"):
        decrypt_cosign(json.dumps(doc).encode(), b"supersecret", "x")


@pytest.mark.parametrize(
    ("algorithm", "fmt"),
    [(a, KeyFormat.COSIGN) for a in Algorithm]
    + [(a, KeyFormat.PKCS8) for a in (Algorithm.ECDSA_P256, Algorithm.RSA_2048, Algorithm.ED25519)],
)
def test_every_algorithm_signs_and_verifies(tmp_path: Path, algorithm: Algorithm, fmt: KeyFormat) -> None:
    key_path, pub_path = keygen(tmp_path / "k", b"pw", fmt=fmt, algorithm=algorithm)
    key = load_private_key(key_path, lambda: b"pw")
    pub = load_public_key(pub_path)
    payload = b'{"critical":{}}'
    sig = key.sign(payload)
    assert pub.verify(payload, sig)
    assert not pub.verify(payload + b" ", sig)
    # the algorithm cosign 2.5 uses with such a key (sigstore's LoadSignerVerifier, SHA-256)
    k = pub.key
    if isinstance(k, ec.EllipticCurvePublicKey):
        k.verify(sig, payload, ec.ECDSA(hashes.SHA256()))
    elif isinstance(k, rsa.RSAPublicKey):
        from cryptography.hazmat.primitives.asymmetric import padding

        k.verify(sig, payload, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(k, ed25519.Ed25519PublicKey)
        k.verify(sig, payload)


@pytest.mark.parametrize(
    ("curve", "algorithm"),
    [(ec.SECP384R1(), hashes.SHA384()), (ec.SECP521R1(), hashes.SHA512())],
)
def test_ecdsa_curve_hashes_and_raw_signatures(
    curve: ec.EllipticCurve, algorithm: hashes.HashAlgorithm, tmp_path: Path
) -> None:
    """Later cosign versions pick SHA-384 for P-384 and SHA-512 for P-521; sigstore also takes
    the raw r||s form of an ECDSA signature."""
    raw = ec.generate_private_key(curve)
    (tmp_path / "k.pub").write_bytes(
        raw.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    pub = load_public_key(tmp_path / "k.pub")
    payload = b"payload"
    assert pub.verify(payload, raw.sign(payload, ec.ECDSA(algorithm)))
    r, s = decode_dss_signature(raw.sign(payload, ec.ECDSA(hashes.SHA256())))
    size = (curve.key_size + 7) // 8
    assert pub.verify(payload, r.to_bytes(size, "big") + s.to_bytes(size, "big"))
    assert not pub.verify(payload, raw.sign(payload, ec.ECDSA(hashes.SHA224())))


def _pem(key: object, private: bool) -> bytes:
    if private:
        return key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def refused_private(tmp_path: Path) -> dict[str, tuple[bytes, str]]:
    """Private key files dockerify refuses, and the words naming the format in the message."""
    good = (DATA / "cosign-generated.key").read_text()
    label, body = pem_body(DATA / "cosign-generated.key")
    env = json.loads(body)
    env["kdf"]["params"]["N"] = 1 << 20
    bad_params = keys._pem(label, json.dumps(env).encode())
    ssh = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "ssh")], capture_output=True
    )
    files = {
        "empty": (b"", "an empty file"),
        "garbage": (b"hello world\n", "not PEM"),
        "der": (
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            "DER (binary), not PEM",
        ),
        "public": (
            (DATA / "cosign-generated.pub").read_bytes(),
            "a public key; signing takes the private key",
        ),
        "pgp": (b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nxx\n-----END PGP PRIVATE KEY BLOCK-----\n", "PGP"),
        "secp256k1": (_pem(ec.generate_private_key(ec.SECP256K1()), True), "ECDSA secp256k1 private key"),
        "rsa1024": (_pem(rsa.generate_private_key(65537, 1024), True), "RSA 1024-bit private key"),
        "dsa": (_pem(dsa.generate_private_key(2048), True), "DSA private key"),
        "cosign-bad-json": (
            keys._pem("ENCRYPTED SIGSTORE PRIVATE KEY", b"{not json"),
            "cosign encrypted key whose body is not the JSON",
        ),
        "cosign-scrypt": (bad_params, "cosign encrypted key with unsupported scrypt parameters"),
        "cosign-truncated": (good.encode()[: len(good) // 2], "not PEM"),
    }
    if ssh.returncode == 0:
        files["openssh"] = ((tmp_path / "ssh").read_bytes(), "an OpenSSH private key")
    return files


def test_refused_private_key_formats_name_the_file_and_format(tmp_path: Path) -> None:
    for name, (data, words) in refused_private(tmp_path).items():
        path = tmp_path / f"{name}.key"
        path.write_bytes(data)
        with pytest.raises(DockerifyError) as e:
            load_private_key(path, lambda: PASSWORD)
        assert str(path) in e.value.message and words in e.value.message, (name, e.value.message)
        assert "\n" not in e.value.message


def test_refused_public_key_formats(tmp_path: Path) -> None:
    ssh_pub = b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGk4 user@host\n"
    cases = {
        "private": (
            (DATA / "cosign-generated.key").read_bytes(),
            "a private key; verification takes the public key",
        ),
        "ssh": (ssh_pub, "an OpenSSH public key"),
        "secp256k1": (
            _pem(ec.generate_private_key(ec.SECP256K1()).public_key(), False),
            "secp256k1 public key",
        ),
        "cert": (b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "a PEM certificate"),
        "pkcs1": (
            rsa.generate_private_key(65537, 2048)
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
            "PKCS#1 'RSA PUBLIC KEY'",
        ),
        "empty": (b"", "an empty file"),
    }
    for name, (data, words) in cases.items():
        path = tmp_path / f"{name}.pub"
        path.write_bytes(data)
        with pytest.raises(DockerifyError) as e:
            load_public_key(path)
        assert str(path) in e.value.message and words in e.value.message, (name, e.value.message)


def test_pkcs8_and_traditional_pem_still_read(tmp_path: Path) -> None:
    raw = ec.generate_private_key(ec.SECP256R1())
    for name, fmt, enc in (
        ("pkcs8-enc", serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")),
        ("pkcs8", serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        ("sec1", serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()),
    ):
        (tmp_path / name).write_bytes(raw.private_bytes(serialization.Encoding.PEM, fmt, enc))
        asked: list[bool] = []

        def password(asked: list[bool] = asked) -> bytes:
            asked.append(True)
            return b"pw"

        key = load_private_key(tmp_path / name, password)
        assert key.public().pem() == _pem(raw.public_key(), False)
        assert bool(asked) == (name == "pkcs8-enc")  # no password asked for a plain key
