"""Registries: push and pull images and artifacts, sign and verify them (cosign's format).

Built on oras-py for the distribution protocol and cryptography for keys and signatures."""

import importlib
from typing import Any

# Imported on first use: the CLI loads this package for its subcommands, and a plain
# `dockerify build` must not need the registry client's dependencies (oras, requests).
_EXPORTS = {
    "AuthError": ("dockerify.registry.auth", "AuthError"),
    "Credentials": ("dockerify.registry.auth", "Credentials"),
    "Options": ("dockerify.registry.client", "Options"),
    "Reference": ("dockerify.registry.reference", "Reference"),
    "RegistryClient": ("dockerify.registry.client", "RegistryClient"),
    "RegistryError": ("dockerify.registry.client", "RegistryError"),
    "SDCARD_ARTIFACT_TYPE": ("dockerify.registry.artifact", "SDCARD_ARTIFACT_TYPE"),
    "VerificationError": ("dockerify.registry.signing", "VerificationError"),
    "Verified": ("dockerify.registry.signing", "Verified"),
    "fetch_into": ("dockerify.registry.pull", "fetch_into"),
    "find_credentials": ("dockerify.registry.auth", "find_credentials"),
    "is_loopback": ("dockerify.registry.reference", "is_loopback"),
    "keygen": ("dockerify.registry.signing", "keygen"),
    "login": ("dockerify.registry.login", "login"),
    "logout": ("dockerify.registry.login", "logout"),
    "open_verified_layout": ("dockerify.registry.verified", "open_verified_layout"),
    "parse_reference": ("dockerify.registry.reference", "parse_reference"),
    "pull": ("dockerify.registry.pushpull", "pull"),
    "pull_artifact": ("dockerify.registry.artifact", "pull_artifact"),
    "pull_to_layout": ("dockerify.registry.pull", "pull_to_layout"),
    "push": ("dockerify.registry.pushpull", "push_source"),
    "push_artifact": ("dockerify.registry.artifact", "push_artifact"),
    "push_layout": ("dockerify.registry.push", "push_layout"),
    "sign": ("dockerify.registry.signing", "sign"),
    "signature_tag": ("dockerify.registry.signing", "signature_tag"),
    "simple_signing_payload": ("dockerify.registry.signing", "simple_signing_payload"),
    "verify": ("dockerify.registry.signing", "verify"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'dockerify.registry' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), attr)


__all__ = [
    "SDCARD_ARTIFACT_TYPE",
    "AuthError",
    "Credentials",
    "Options",
    "Reference",
    "RegistryClient",
    "RegistryError",
    "VerificationError",
    "Verified",
    "fetch_into",
    "find_credentials",
    "is_loopback",
    "keygen",
    "login",
    "logout",
    "open_verified_layout",
    "parse_reference",
    "pull",
    "pull_artifact",
    "pull_to_layout",
    "push",
    "push_artifact",
    "push_layout",
    "sign",
    "signature_tag",
    "simple_signing_payload",
    "verify",
]
