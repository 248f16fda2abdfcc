"""Where registry logins are kept, and how their keys name registries (pure: no I/O but reading
and writing the files themselves).

Read order, as containers-auth.json(5) gives it: the explicit file (`--authfile`, else
`$REGISTRY_AUTH_FILE`) or else the primary `$XDG_RUNTIME_DIR/containers/auth.json`; then
`${XDG_CONFIG_HOME:-~/.config}/containers/auth.json`; then Docker's `config.json`
(`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`); then the legacy `~/.dockercfg`.
`dockerify login` writes the explicit file when there is one, else Docker's config.json, as
`docker login` does.

Keys name registries several ways: `127.0.0.1:5000`, `http://127.0.0.1:5000`,
`https://index.docker.io/v1/` (Docker's key for Docker Hub), `docker.io` (Podman's), and
`quay.io/team/repo` (a namespaced key, containers-auth.json(5)). `registry_of_key` reads all of
them; `docker_key` is the one Docker writes and hands to credential helpers.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dockerify.errors import DockerifyError
from dockerify.registry.reference import DOCKER_HUB, DOCKER_HUB_API, DOCKER_HUB_NAME

# Docker's key for Docker Hub, in config.json and towards credential helpers.
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
HUB_ALIASES = frozenset({DOCKER_HUB, DOCKER_HUB_NAME, DOCKER_HUB_API})


def normalize_registry(name: str) -> str:
    """What a user or a file wrote for a registry -> host[:port], `docker.io` for Docker Hub.

    `https://index.docker.io/v1/`, `registry-1.docker.io` and `docker.io` are one registry."""
    host = urlsplit(name).netloc if "://" in name else name.split("/", 1)[0]
    host = host.lower()
    return DOCKER_HUB if host in HUB_ALIASES else host


def registry_of_key(key: str) -> tuple[str, str]:
    """A key of `auths` -> (registry, namespace). Keys with a scheme are Docker's legacy URLs,
    whose path (`/v1/`) is no namespace; bare keys may carry one (`quay.io/team`)."""
    if "://" in key:
        return normalize_registry(key), ""
    host, _, namespace = key.partition("/")
    return normalize_registry(host), namespace.strip("/")


def docker_key(registry: str) -> str:
    """The key Docker writes for `registry` (normalised) and gives its credential helpers."""
    return DOCKER_HUB_KEY if registry == DOCKER_HUB else registry


def key_variants(registry: str) -> list[str]:
    """Keys other tools may have written for `registry`, Docker's first (`docker logout` tries
    the same list)."""
    if registry == DOCKER_HUB:
        return [DOCKER_HUB_KEY, DOCKER_HUB, DOCKER_HUB_NAME, DOCKER_HUB_API]
    return [registry, f"https://{registry}", f"http://{registry}"]


def namespace_matches(namespace: str, repository: str | None) -> bool:
    """A namespaced key applies to its repository and everything below it."""
    if not namespace:
        return True
    if repository is None:
        return False
    return repository == namespace or repository.startswith(namespace + "/")


@dataclass(frozen=True)
class AuthFile:
    path: Path
    legacy: bool = False  # ~/.dockercfg: the `auths` map is the whole file
    explicit: bool = False  # named by --authfile or REGISTRY_AUTH_FILE


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or os.path.expanduser("~"))


def docker_config_file(env: Mapping[str, str]) -> Path:
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]) / "config.json"
    return _home(env) / ".docker" / "config.json"


def explicit_file(env: Mapping[str, str], authfile: str | None = None) -> Path | None:
    if authfile:
        return Path(authfile)
    if env.get("REGISTRY_AUTH_FILE"):
        return Path(env["REGISTRY_AUTH_FILE"])
    return None


def auth_files(env: Mapping[str, str], authfile: str | None = None) -> list[AuthFile]:
    """The files to search for a registry's login, first match wins (containers-auth.json(5))."""
    files: list[AuthFile] = []
    explicit = explicit_file(env, authfile)
    if explicit is not None:
        files.append(AuthFile(explicit, explicit=True))
    elif env.get("XDG_RUNTIME_DIR"):
        files.append(AuthFile(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json"))
    config_home = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else _home(env) / ".config"
    files.append(AuthFile(config_home / "containers" / "auth.json"))
    files.append(AuthFile(docker_config_file(env)))
    files.append(AuthFile(_home(env) / ".dockercfg", legacy=True))
    unique: list[AuthFile] = []
    for f in files:
        if all(f.path != u.path for u in unique):
            unique.append(f)
    return unique


def login_file(env: Mapping[str, str], authfile: str | None = None) -> Path:
    """Where `dockerify login` writes: the explicit file, else Docker's config.json."""
    return explicit_file(env, authfile) or docker_config_file(env)


# ---------------------------------------------------------------- reading and writing


def read_config(path: Path, legacy: bool = False, missing_ok: bool = True) -> dict[str, Any] | None:
    """The file as a config.json-shaped dict; None when it does not exist."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        if missing_ok:
            return None
        raise DockerifyError(f"{path}: no such file", hint="check --authfile / REGISTRY_AUTH_FILE") from None
    except (OSError, ValueError) as e:
        # the text may hold secrets: name the problem, never quote the file
        raise DockerifyError(f"{path}: cannot read registry credentials: {type(e).__name__}") from None
    if not isinstance(data, dict):
        raise DockerifyError(f"{path}: registry credentials file is not a JSON object")
    if legacy:
        return {"auths": data}
    return data


def write_config(path: Path, config: dict[str, Any]) -> None:
    """Replace the file atomically, readable by its owner only (it may hold passwords)."""
    path = Path(os.path.realpath(path))  # a symlinked config.json stays a symlink, as with docker
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(config, f, indent="\t")
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@dataclass(frozen=True)
class HelperChoice:
    name: str  # the part after docker-credential-
    why: str  # "credHelpers" or "credsStore", for messages


def helper_for(config: Mapping[str, Any], registry: str) -> HelperChoice | None:
    """The credential helper that keeps `registry`'s login: a credHelpers entry for it wins over
    credsStore, as in Docker."""
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        for key, name in helpers.items():
            if isinstance(name, str) and name and registry_of_key(key)[0] == registry:
                return HelperChoice(name, "credHelpers")
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        return HelperChoice(store, "credsStore")
    return None


def holds_logins(config: Mapping[str, Any]) -> bool:
    """Docker's test for a config.json that already says where logins go."""
    return bool(config.get("credsStore") or config.get("credHelpers") or config.get("auths"))


def matching_entries(
    config: Mapping[str, Any], registry: str, repository: str | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """`auths` entries for `registry`, the most specific namespace first."""
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return []
    found = []
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        reg, namespace = registry_of_key(key)
        if reg == registry and namespace_matches(namespace, repository):
            found.append((len(namespace), key, entry))
    found.sort(key=lambda t: -t[0])
    return [(key, entry) for _, key, entry in found]
