"""The names of key formats and algorithms, apart from the keys themselves: the command line
lists them in its help without loading cryptography (which the frontend image lacks)."""

from __future__ import annotations

import enum


class KeyFormat(enum.Enum):
    """How a private key file is written."""

    COSIGN = "cosign"  # ENCRYPTED SIGSTORE PRIVATE KEY: what `cosign sign --key` reads
    PKCS8 = "pkcs8"  # ENCRYPTED PRIVATE KEY: what openssl and most other tools read


class Algorithm(enum.Enum):
    """Key algorithms for `keygen`, named as sigstore's algorithm registry names them."""

    ECDSA_P256 = "ecdsa-sha2-256-nistp256"
    ECDSA_P384 = "ecdsa-sha2-384-nistp384"
    ECDSA_P521 = "ecdsa-sha2-512-nistp521"
    RSA_2048 = "rsa-sign-pkcs1-2048-sha256"
    RSA_3072 = "rsa-sign-pkcs1-3072-sha256"
    RSA_4096 = "rsa-sign-pkcs1-4096-sha256"
    ED25519 = "ed25519"
