"""Signing keys: the key files cosign and dockerify write, and the signature algorithms cosign uses.

Private key files read:
- cosign's own `ENCRYPTED SIGSTORE PRIVATE KEY` (and the older `ENCRYPTED COSIGN PRIVATE KEY`):
  the PEM body is JSON from go-securesystemslib's `encrypted` package,
  {"kdf":{"name":"scrypt","params":{"N":..,"r":8,"p":1},"salt":B64},
   "cipher":{"name":"nacl/secretbox","nonce":B64},"ciphertext":B64},
  where the secretbox key is scrypt(password, salt, N, r, p, 32 bytes) and the plaintext is the
  PKCS#8 DER of the private key. Only the three scrypt parameter sets that package writes are
  accepted (as it does), so a hostile file cannot make us spend gigabytes on the KDF.
- PKCS#8 PEM (`ENCRYPTED PRIVATE KEY`, `PRIVATE KEY`) and the traditional `EC PRIVATE KEY` /
  `RSA PRIVATE KEY`, which `cosign import-key-pair` also takes.

Algorithms, as cosign 2.5 signs and verifies with a key file (sigstore's LoadPrivateKey and
LoadVerifier with the default SHA-256): ECDSA P-256/P-384/P-521 over SHA-256 (ASN.1 DER; a raw
r||s signature verifies too, as sigstore's verifier accepts it), RSA PKCS#1 v1.5 over SHA-256
(2048 to 4096 bits), and pure Ed25519. Verification also accepts the curve's own hash for
P-384 (SHA-384) and P-521 (SHA-512), which later cosign versions pick for those curves.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from dockerify.errors import DockerifyError, NotFound
from dockerify.trust.keynames import Algorithm as Algorithm  # re-exported: callers name keys.Algorithm
from dockerify.trust.keynames import KeyFormat as KeyFormat

SIGSTORE_PEM = "ENCRYPTED SIGSTORE PRIVATE KEY"
COSIGN_PEM = "ENCRYPTED COSIGN PRIVATE KEY"
# go-securesystemslib's Legacy, Standard (what it writes) and OWASP scrypt settings.
_SCRYPT_PARAMS = ({"N": 32768, "r": 8, "p": 1}, {"N": 65536, "r": 8, "p": 1}, {"N": 131072, "r": 8, "p": 1})
_SCRYPT_WRITE = _SCRYPT_PARAMS[1]
_SALT_SIZE = 32
_RSA_BITS = (2048, 4096)  # sigstore's goodkey bounds
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)

PrivateKeyTypes = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKeyTypes = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


def generate_key(algorithm: Algorithm) -> PrivateKeyTypes:
    """A new private key of `algorithm`."""
    curves: dict[Algorithm, ec.EllipticCurve] = {
        Algorithm.ECDSA_P256: ec.SECP256R1(),
        Algorithm.ECDSA_P384: ec.SECP384R1(),
        Algorithm.ECDSA_P521: ec.SECP521R1(),
    }
    if algorithm in curves:
        return ec.generate_private_key(curves[algorithm])
    if algorithm is Algorithm.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(65537, int(algorithm.value.split("-")[3]))


_CURVE_HASHES: dict[str, tuple[type[hashes.HashAlgorithm], ...]] = {
    "secp256r1": (hashes.SHA256,),
    "secp384r1": (hashes.SHA256, hashes.SHA384),
    "secp521r1": (hashes.SHA256, hashes.SHA512),
}


def describe(key: PrivateKeyTypes | PublicKeyTypes) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA {key.key_size}-bit"
    return "Ed25519"


def _check_supported(key: object, path: str | Path, what: str) -> None:
    """Refuse keys cosign does not sign or verify with, naming what the key is."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVE_HASHES:
            raise DockerifyError(
                f"{path}: an ECDSA {key.curve.name} {what}, which cosign does not use",
                hint="use P-256, P-384 or P-521, RSA or Ed25519",
            )
        return
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if not _RSA_BITS[0] <= key.key_size <= _RSA_BITS[1]:
            raise DockerifyError(f"{path}: an RSA {key.key_size}-bit {what}; cosign takes 2048 to 4096 bits")
        return
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return
    raise DockerifyError(
        f"{path}: a {type(key).__name__.removeprefix('_').replace('PrivateKey', '').replace('PublicKey', '')}"
        f" {what}, which cosign does not use",
        hint="use ECDSA (P-256, P-384, P-521), RSA or Ed25519",
    )


# ---------------------------------------------------------------- cosign's encrypted envelope


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encrypt_cosign(plaintext: bytes, password: bytes) -> bytes:
    """The JSON go-securesystemslib's encrypted.Encrypt writes, field for field."""
    from nacl.secret import SecretBox
    from nacl.utils import random as nacl_random

    salt = os.urandom(_SALT_SIZE)
    params = _SCRYPT_WRITE
    box_key = _scrypt(password, salt, params)
    nonce = nacl_random(SecretBox.NONCE_SIZE)
    sealed = SecretBox(box_key).encrypt(plaintext, nonce).ciphertext
    doc = {
        "kdf": {"name": "scrypt", "params": dict(params), "salt": _b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": _b64(nonce)},
        "ciphertext": _b64(sealed),
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _scrypt(password: bytes, salt: bytes, params: dict[str, int]) -> bytes:
    n, r, p = params["N"], params["r"], params["p"]
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=32, maxmem=256 * r * n + (1 << 20))


class WrongPassword(DockerifyError):
    """The password does not open the key."""


def decrypt_cosign(envelope: bytes, password: bytes, path: str | Path) -> bytes:
    """The PKCS#8 DER inside a cosign key's PEM body."""
    from nacl.exceptions import CryptoError
    from nacl.secret import SecretBox

    fmt = "cosign encrypted key"
    try:
        doc = json.loads(envelope)
        kdf, cipher = doc["kdf"], doc["cipher"]
        kdf_name, cipher_name = kdf["name"], cipher["name"]
        params = {k: int(kdf["params"][k]) for k in ("N", "r", "p")}
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(cipher["nonce"], validate=True)
        sealed = base64.b64decode(doc["ciphertext"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise DockerifyError(f"{path}: a {fmt} whose body is not the JSON cosign writes") from None
    if kdf_name != "scrypt" or cipher_name != "nacl/secretbox":
        raise DockerifyError(
            f"{path}: a {fmt} using {kdf_name!r} with {cipher_name!r}; cosign keys use scrypt and nacl/secretbox"
        )
    if params not in _SCRYPT_PARAMS:
        raise DockerifyError(
            f"{path}: a {fmt} with unsupported scrypt parameters {params}",
            hint="cosign writes N=32768, 65536 or 131072 with r=8, p=1",
        )
    if len(nonce) != SecretBox.NONCE_SIZE:
        raise DockerifyError(f"{path}: a {fmt} whose nonce is {len(nonce)} bytes, not 24")
    try:
        return SecretBox(_scrypt(password, salt, params)).decrypt(sealed, nonce)
    except CryptoError:
        raise WrongPassword(
            f"{path}: cannot decrypt the private key (wrong password?)",
            hint="check COSIGN_PASSWORD or DOCKERIFY_KEY_PASSWORD",
        ) from None


def _pem(label: str, body: bytes) -> bytes:
    text = base64.b64encode(body).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return ("\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"]) + "\n").encode()


# ---------------------------------------------------------------- keys


@dataclass(frozen=True)
class PublicKey:
    key: PublicKeyTypes
    name: str  # where it came from, for messages

    @property
    def kind(self) -> str:
        return describe(self.key)

    def pem(self) -> bytes:
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(self, payload: bytes, signature: bytes) -> bool:
        """True when `signature` over `payload` verifies as cosign would accept it."""
        key = self.key
        try:
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, payload)
                return True
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
                return True
        except (InvalidSignature, ValueError):
            return False
        for der in _ecdsa_encodings(key, signature):
            for algorithm in _CURVE_HASHES.get(key.curve.name, ()):
                try:
                    key.verify(der, payload, ec.ECDSA(algorithm()))
                    return True
                except (InvalidSignature, ValueError):
                    continue
        return False

    def verify_b64(self, payload: bytes, signature: str) -> bool:
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            return False
        return self.verify(payload, raw)


def _ecdsa_encodings(key: ec.EllipticCurvePublicKey, signature: bytes) -> list[bytes]:
    """The ASN.1 form, plus the raw r||s form read as ASN.1 (sigstore accepts both)."""
    out = [signature]
    size = (key.curve.key_size + 7) // 8
    if len(signature) == 2 * size:
        r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
        out.append(encode_dss_signature(r, s))
    return out


@dataclass(frozen=True)
class PrivateKey:
    key: PrivateKeyTypes
    name: str

    @property
    def kind(self) -> str:
        return describe(self.key)

    def public(self) -> PublicKey:
        return PublicKey(self.key.public_key(), self.name)

    def sign(self, payload: bytes) -> bytes:
        key = self.key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(payload)
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
        return key.sign(payload, ec.ECDSA(hashes.SHA256()))

    def sign_b64(self, payload: bytes) -> str:
        return _b64(self.sign(payload))

    def to_pem(self, password: bytes, fmt: KeyFormat) -> bytes:
        if fmt is KeyFormat.COSIGN:
            der = self.key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            return _pem(SIGSTORE_PEM, encrypt_cosign(der, password))
        if not password:
            raise DockerifyError(
                "an empty password would leave the PKCS#8 private key unencrypted",
                hint="set DOCKERIFY_KEY_PASSWORD, or write --format cosign",
            )
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password),
        )


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{path}: no such key file") from None
    except IsADirectoryError:
        raise DockerifyError(f"{path}: a directory, not a key file") from None


def _pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    out = []
    for m in _PEM_BLOCK.finditer(data):
        try:
            body = base64.b64decode(b"".join(m.group(2).split()), validate=True)
        except (binascii.Error, ValueError):
            body = b""
        out.append((m.group(1).decode(), body))
    return out


def _not_a_key(path: str | Path, data: bytes, wanted: str) -> DockerifyError:
    """The refusal for a file that is not the kind of key wanted, saying what it is instead."""
    head = data.lstrip()[:80]
    blocks = _pem_blocks(data)
    if blocks:
        what = f"a PEM {blocks[0][0]!r} block"
    elif head.startswith(b"ssh-") or head.startswith(b"ecdsa-sha2-"):
        what = "an OpenSSH public key"
    elif head.startswith(b"-----BEGIN PGP"):
        what = "an OpenPGP key"
    elif head[:1] == b"\x30":
        what = "DER (binary), not PEM"
    elif not head:
        what = "an empty file"
    else:
        what = "not PEM"
    return DockerifyError(
        f"{path}: {what}, not {wanted}",
        hint="pass a key from `dockerify keygen` or `cosign generate-key-pair`",
    )


def load_private_key(path: str | Path, password: Any) -> PrivateKey:
    """The private key in `path`; `password()` is called only for an encrypted key."""
    data = _read(path)
    blocks = [(label, body) for label, body in _pem_blocks(data) if "PRIVATE KEY" in label]
    if not blocks:
        if any("PUBLIC KEY" in label for label, _ in _pem_blocks(data)):
            raise DockerifyError(
                f"{path}: a public key; signing takes the private key", hint="pass the .key file"
            )
        raise _not_a_key(path, data, "a private key")
    label, body = blocks[0]
    key: object
    if label in (SIGSTORE_PEM, COSIGN_PEM):
        der = decrypt_cosign(body, password(), path)
        try:
            key = serialization.load_der_private_key(der, None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise DockerifyError(
                f"{path}: a cosign encrypted key whose content is not a PKCS#8 key"
            ) from None
    elif label == "OPENSSH PRIVATE KEY":
        raise DockerifyError(
            f"{path}: an OpenSSH private key, which cosign does not sign with",
            hint="convert it (ssh-keygen -p -m PKCS8 -f FILE) or import it with `cosign import-key-pair`",
        )
    elif label in ("ENCRYPTED PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"):
        pem = data[data.index(f"-----BEGIN {label}-----".encode()) :]
        encrypted = label == "ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in pem
        try:
            key = serialization.load_pem_private_key(pem, password() if encrypted else None)
        except UnsupportedAlgorithm as e:
            raise DockerifyError(f"{path}: a {label} of an algorithm dockerify cannot use ({e})") from None
        except (ValueError, TypeError):
            if encrypted:
                raise WrongPassword(
                    f"{path}: cannot decrypt the private key (wrong password?)",
                    hint="check DOCKERIFY_KEY_PASSWORD or COSIGN_PASSWORD",
                ) from None
            raise DockerifyError(f"{path}: a PEM {label!r} block that does not parse") from None
    else:
        raise DockerifyError(
            f"{path}: a PEM {label!r} block, a private key format dockerify does not read",
            hint="use cosign's ENCRYPTED SIGSTORE PRIVATE KEY or PKCS#8 (ENCRYPTED PRIVATE KEY)",
        )
    _check_supported(key, path, "private key")
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
    return PrivateKey(key, str(path))


def load_public_key(path: str | Path) -> PublicKey:
    data = _read(path)
    blocks = _pem_blocks(data)
    labels = [label for label, _ in blocks]
    if any("PRIVATE KEY" in label for label in labels):
        raise DockerifyError(
            f"{path}: a private key; verification takes the public key", hint="pass the .pub file"
        )
    if "PUBLIC KEY" not in labels:
        if "CERTIFICATE" in labels:
            raise DockerifyError(
                f"{path}: a PEM certificate; dockerify verifies with a bare public key",
                hint="extract it: openssl x509 -pubkey -noout -in FILE",
            )
        if "RSA PUBLIC KEY" in labels:
            raise DockerifyError(
                f"{path}: a PKCS#1 'RSA PUBLIC KEY', not the PKIX 'PUBLIC KEY' cosign writes",
                hint="convert it: openssl rsa -RSAPublicKey_in -pubout -in FILE",
            )
        raise _not_a_key(path, data, "a PEM public key")
    body = dict(blocks)["PUBLIC KEY"]
    try:
        key = serialization.load_der_public_key(body)
    except UnsupportedAlgorithm as e:
        raise DockerifyError(f"{path}: a public key of an algorithm dockerify cannot use ({e})") from None
    except ValueError:
        raise DockerifyError(f"{path}: a PEM 'PUBLIC KEY' block that does not parse") from None
    _check_supported(key, path, "public key")
    assert isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey)
    return PublicKey(key, str(path))


# ---------------------------------------------------------------- writing key pairs


def write_new(path: Path, data: bytes, mode: int, force: bool) -> None:
    if path.exists() and not force:
        raise DockerifyError(f"{path}: already exists", hint="choose another --output-key-prefix, or --force")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def generate_keypair(
    password: bytes, fmt: KeyFormat = KeyFormat.COSIGN, algorithm: Algorithm = Algorithm.ECDSA_P256
) -> tuple[bytes, bytes]:
    """(private key PEM in `fmt`, encrypted with `password`; public key PEM)."""
    key = PrivateKey(generate_key(algorithm), "new key")
    return key.to_pem(password, fmt), key.public().pem()


def keygen(
    prefix: str | Path,
    password: bytes,
    force: bool = False,
    fmt: KeyFormat = KeyFormat.COSIGN,
    algorithm: Algorithm = Algorithm.ECDSA_P256,
) -> tuple[Path, Path]:
    """Write PREFIX.key (mode 0600) and PREFIX.pub; return their paths."""
    prefix = Path(prefix)
    key_path, pub_path = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    if not key_path.parent.is_dir():
        raise NotFound(f"{key_path.parent}: no such directory")
    private, public = generate_keypair(password, fmt, algorithm)
    write_new(key_path, private, 0o600, force)
    write_new(pub_path, public, 0o644, force)
    return key_path, pub_path
