"""`dockerify login` / `logout`: check a login against the registry, then keep it where
`docker login` would (or where --authfile says, as `skopeo login` does).

Without a credential helper the login goes into the file's `auths` as base64 user:password.
A Docker config.json that holds no logins yet gets Docker's default store on Linux (`pass`, else
`secretservice`) when that helper is installed, as `docker login` does.
With one (`credHelpers` for the registry, else `credsStore`), the helper stores it and the file
gets the empty `auths` entry Docker writes beside it, which `docker logout` looks for.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockerify.errors import DockerifyError
from dockerify.registry.auth import Credentials
from dockerify.registry.authfiles import (
    docker_key,
    explicit_file,
    helper_for,
    holds_logins,
    key_variants,
    login_file,
    normalize_registry,
    read_config,
    write_config,
)
from dockerify.registry.client import RegistryClient, RegistryError
from dockerify.registry.helpers import TOKEN_USERNAME, Helper, HelperError, default_store
from dockerify.registry.reference import Reference

log = logging.getLogger("dockerify")


@dataclass(frozen=True)
class LoginResult:
    registry: str  # normalised (docker.io for Docker Hub)
    path: Path  # the file written
    helper: str | None  # docker-credential-NAME that keeps the secret, if any
    identity_token: bool  # an OAuth2 refresh token was kept instead of the password


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def check_login(registry: str, creds: Credentials, options: Any = None) -> str | None:
    """Ask the registry to accept `creds` (GET /v2/ through its challenge), as `docker login`
    does; the identity token its token service handed out instead of the password, if any."""
    # a repository is needed to build a client; /v2/ itself names none
    client = RegistryClient(Reference(registry, "library/dockerify-login"), options, credentials=creds)
    client.auth.want_identity_token = True
    r = client.request("GET", f"{client.base()}/v2/")
    r.close()
    if r.status_code != 200:
        raise RegistryError(f"{registry}: GET /v2/ answered HTTP {r.status_code} after logging in")
    return client.auth.identity_token


def login(
    registry: str,
    username: str,
    password: str,
    *,
    authfile: str | None = None,
    options: Any = None,
    env: Mapping[str, str] | None = None,
    verify: bool = True,
) -> LoginResult:
    env = dict(os.environ) if env is None else env
    registry = normalize_registry(registry)
    if not username:
        raise DockerifyError(f"{registry}: a user name is needed", hint="pass --username")
    if not password:
        raise DockerifyError(f"{registry}: the password is empty")
    path = login_file(env, authfile)
    config = read_config(path) or {}
    detected = None
    if explicit_file(env, authfile) is None and not holds_logins(config):
        # what `docker login` does with a fresh config.json: use the platform's default store
        # when its helper is installed, and say so in the file
        detected = default_store(env)
        if detected is not None:
            config["credsStore"] = detected
    choice = helper_for(config, registry)
    helper = Helper(choice.name, registry, f"{choice.why} in {path}", env) if choice else None
    if helper is not None:
        helper.require()
    identity_token = None
    if verify:
        source = str(helper) if helper else str(path)
        creds = Credentials(username, password, f"dockerify login, for {source}")
        identity_token = check_login(registry, creds, options)
    key = docker_key(registry)
    auths = config.get("auths")
    if not isinstance(auths, dict):
        auths = config["auths"] = {}
    if helper is not None:
        try:
            if identity_token:  # Docker's convention for a token in a helper
                helper.store(key, TOKEN_USERNAME, identity_token)
            else:
                helper.store(key, username, password)
            if detected is not None:
                log.info("%s: logins now go to %s, as docker's do (credsStore)", path, helper)
        except HelperError as e:
            if detected is None:
                raise
            # a store nobody configured (say, `pass` never initialised): plain, as without one
            log.warning("%s; keeping the login in %s instead", e.message, path)
            del config["credsStore"]
            helper = None
    entry: dict[str, Any] = {}  # the placeholder Docker writes beside a helper's login
    if helper is None and identity_token:
        entry = {"auth": _b64(f"{username}:"), "identitytoken": identity_token}
    elif helper is None:
        entry = {"auth": _b64(f"{username}:{password}")}
    # one entry per registry: older spellings of the key would shadow or outlive this login
    for variant in key_variants(registry):
        auths.pop(variant, None)
    auths[key] = entry
    write_config(path, config)
    return LoginResult(registry, path, str(helper) if helper else None, identity_token is not None)


def logout(registry: str, *, authfile: str | None = None, env: Mapping[str, str] | None = None) -> bool:
    """Forget the login for `registry`; False when there was none."""
    env = dict(os.environ) if env is None else env
    registry = normalize_registry(registry)
    path = login_file(env, authfile)
    config = read_config(path)
    if config is None:
        return False
    choice = helper_for(config, registry)
    helper = Helper(choice.name, registry, f"{choice.why} in {path}", env) if choice else None
    auths = config.get("auths") if isinstance(config.get("auths"), dict) else {}
    assert isinstance(auths, dict)
    present = [k for k in key_variants(registry) if k in auths]
    found = bool(present)
    if helper is not None:
        # ask before erasing: some helpers (pass) fail on erasing what they do not have
        for key in present or [docker_key(registry)]:
            if helper.get(key) is not None:
                found = helper.erase(key) or found
    for key in present:
        del auths[key]
    if present:
        write_config(path, config)
    return found
