"""Registry credentials and the two auth schemes registries use (Basic and Bearer tokens).

Credentials come from DOCKERIFY_REGISTRY_USER / DOCKERIFY_REGISTRY_PASSWORD, else from the
files `docker login`, `podman login` and `skopeo login` write (see authfiles.py for which, in
what order): inline `auths` entries (base64 user:password, or an identity token), or the
credential helper named by `credHelpers` / `credsStore` (see helpers.py). Secrets never leave
this module in a printable form: `Credentials` hides them from repr/str, and nothing here logs
a header or a token.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from oras.auth.base import AuthBackend

from dockerify.errors import DockerifyError
from dockerify.registry.authfiles import (
    auth_files,
    docker_key,
    helper_for,
    matching_entries,
    normalize_registry,
    read_config,
)
from dockerify.registry.helpers import Helper
from dockerify.registry.reference import DOCKER_HUB, is_loopback

log = logging.getLogger("dockerify")

ENV_USER = "DOCKERIFY_REGISTRY_USER"
ENV_PASSWORD = "DOCKERIFY_REGISTRY_PASSWORD"
_LOGIN_HINT = f"run `dockerify login HOST` (or `docker login HOST`), or set {ENV_USER} and {ENV_PASSWORD}"
# The client id Docker sends with OAuth2 token requests; registries may key refresh tokens on it.
CLIENT_ID = "dockerify"


class AuthError(DockerifyError):
    """The registry refused our credentials, or asked for some we do not have."""


class Credentials:
    """A user name and a secret (a password, or an OAuth2 identity token); the secret is never
    part of repr() or str()."""

    __slots__ = ("username", "_secret", "source", "identity_token")

    def __init__(self, username: str, secret: str, source: str, identity_token: bool = False) -> None:
        self.username = username
        self._secret = secret
        self.source = source  # where they came from, for messages ("environment", a file, a helper)
        self.identity_token = identity_token  # the secret is a refresh token for the token service

    def basic(self) -> str:
        """The value of an `Authorization: Basic ...` header."""
        raw = f"{self.username}:{self._secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def secret(self) -> str:
        """The secret itself, for a credential helper's stdin or a token request's body only."""
        return self._secret

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, secret=<hidden>, source={self.source!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # no pickling a secret into a log or a cache by accident
        raise TypeError("Credentials cannot be pickled")


# ---------------------------------------------------------------- where credentials come from


def _from_entry(entry: dict[str, Any], key: str, where: str) -> Credentials | None:
    user, secret = "", None
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise DockerifyError(
                f"{where}: auths.{key}.auth is not base64 of user:password", hint=_LOGIN_HINT
            ) from None
        user, sep, secret = decoded.partition(":")
        if not sep:
            raise DockerifyError(f"{where}: auths.{key}.auth holds no user:password pair", hint=_LOGIN_HINT)
    elif isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        user, secret = entry["username"], entry["password"]
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:  # Docker prefers the identity token to a password
        return Credentials(user or entry.get("username") or "", token, where, identity_token=True)
    if secret is not None and (user or secret):
        return Credentials(user, secret, where)
    return None


def _from_helper(helper: Helper, urls: list[str]) -> Credentials | None:
    for url in urls:
        found = helper.get(url)
        if found is not None:
            return Credentials(
                found.username, found.secret, f"{helper.program}, {helper.why}", found.identity_token
            )
    return None


def find_credentials(
    registry: str,
    env: Mapping[str, str] | None = None,
    *,
    authfile: str | None = None,
    repository: str | None = None,
) -> Credentials | None:
    """Credentials for `registry` (host[:port], or any key form Docker and Podman write): the
    environment first, then the auth files in containers-auth.json(5)'s order. `repository`
    lets namespaced keys (`quay.io/team`) apply; `authfile` is skopeo's --authfile."""
    env = dict(os.environ) if env is None else env
    user, secret = env.get(ENV_USER), env.get(ENV_PASSWORD)
    if user and secret is not None:
        return Credentials(user, secret, "environment")
    registry = normalize_registry(registry)
    for f in auth_files(env, authfile):
        config = read_config(f.path, f.legacy, missing_ok=not (f.explicit and authfile))
        if config is None:
            continue
        entries = matching_entries(config, registry, repository)
        choice = helper_for(config, registry)
        if choice is not None:
            helper = Helper(choice.name, registry, f"{choice.why} in {f.path}", env)
            urls = [docker_key(registry)] + [k for k, _ in entries]
            if registry == DOCKER_HUB:
                urls.append(DOCKER_HUB)
            found = _from_helper(helper, list(dict.fromkeys(urls)))
            if found is not None:
                return found
            if choice.why == "credHelpers":
                continue  # the helper alone speaks for this registry (containers-auth.json(5))
        for key, entry in entries:
            found = _from_entry(entry, key, str(f.path))
            if found is not None:
                return found
    return None


def credentials_loader(
    registry: str, authfile: str | None = None, repository: str | None = None
) -> Callable[[], Credentials | None]:
    """find_credentials, deferred until a registry asks for them: anonymous pulls never run a
    credential helper."""
    return lambda: find_credentials(registry, authfile=authfile, repository=repository)


# ---------------------------------------------------------------- challenges

_PARAM = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


@dataclass
class Challenge:
    scheme: str  # "basic" or "bearer" (lower case)
    params: dict[str, str] = field(default_factory=dict)


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a WWW-Authenticate header."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params = {}
    for m in _PARAM.finditer(rest):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value or "")
    return Challenge(scheme.lower(), params)


# ---------------------------------------------------------------- the authenticator


class Authenticator(AuthBackend):  # type: ignore[misc]  # oras ships no type information
    """Answers a registry's 401 challenges for one host, Basic or Bearer.

    Bearer tokens are requested for every scope seen so far (pull, then pull+push ...), so one
    token serves the whole operation. It plugs into oras-py's Registry as its auth backend."""

    def __init__(
        self,
        registry: str,
        session: requests.Session,
        verify: bool | str,
        credentials: Credentials | None | Callable[[], Credentials | None],
        insecure: bool = False,
    ) -> None:
        super().__init__()
        self.registry = registry
        self.session = session
        self._tls_verify = verify
        self._loader = credentials if callable(credentials) else None
        self._credentials = None if callable(credentials) else credentials
        self._loaded = not callable(credentials)
        self._load_lock = threading.Lock()
        self.insecure = insecure
        self._header: str | None = None  # the Authorization value in force
        self._scopes: list[str] = []
        self._lock = threading.Lock()
        self.token: str | None = None
        # `dockerify login` asks the token service for a refresh token, as `docker login` does,
        # and keeps that identity token instead of the password when one comes back
        self.want_identity_token = False
        self.identity_token: str | None = None

    @property
    def credentials(self) -> Credentials | None:
        with self._load_lock:
            if not self._loaded:
                assert self._loader is not None
                self._credentials = self._loader()
                self._loaded = True
            return self._credentials

    # oras-py's interface
    def get_auth_header(self) -> dict[str, str]:
        return {"Authorization": self._header} if self._header else {}

    def authenticate_request(
        self, original: requests.Response, headers: dict[str, str], refresh: bool = False
    ) -> tuple[dict[str, str], bool]:
        changed = self.handle(original, self._header)
        return {**(headers or {}), **self.get_auth_header()}, changed

    def load_configs(self, container: Any, configs: list[str] | None = None) -> None:
        """Credentials are found by find_credentials(); oras-py's loader (which runs helpers) is not used."""

    # ours
    def apply(self, headers: dict[str, str]) -> str | None:
        """Add the Authorization header in force; return it so a retry can tell if it changed."""
        with self._lock:
            if self._header:
                headers["Authorization"] = self._header
            return self._header

    def handle(self, response: requests.Response, used: str | None) -> bool:
        """Update our state from a 401; True when a retry can succeed where this request failed."""
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        with self._lock:
            if self._header is not None and self._header != used:
                return True  # another thread already refreshed it
            if challenge is None:
                raise AuthError(
                    f"{self.registry}: the registry refused the request (401) without a challenge"
                )
            if challenge.scheme == "basic":
                creds = self._need_credentials()
                if creds.identity_token:
                    raise AuthError(
                        f"{self.registry}: the login from {creds.source} is an identity token, "
                        "which a registry with Basic authentication does not take",
                        hint=_LOGIN_HINT.replace("HOST", self.registry),
                    )
                if used == creds.basic():
                    raise self._refused(creds)
                self._check_transport(response.url, creds)
                self._header = creds.basic()
                return True
            if challenge.scheme == "bearer":
                scope = challenge.params.get("scope", "")
                self._scopes.extend(s for s in scope.split(" ") if s and s not in self._scopes)
                self.token = self._fetch_token(challenge)
                self._header = f"Bearer {self.token}"
                return True
            raise AuthError(f"{self.registry}: unsupported authentication scheme {challenge.scheme!r}")

    def denied(self) -> AuthError:
        """The error for a request still refused after a fresh token."""
        who = f" for user {self.credentials.username!r}" if self.credentials else " without credentials"
        return AuthError(
            f"{self.registry}: access denied{who}",
            hint="check the repository name and that this account may pull/push it; "
            + _LOGIN_HINT.replace("HOST", self.registry),
        )

    def _need_credentials(self) -> Credentials:
        if self.credentials is None:
            raise AuthError(
                f"{self.registry}: the registry requires authentication and no credentials were found",
                hint=_LOGIN_HINT.replace("HOST", self.registry),
            )
        return self.credentials

    def _refused(self, creds: Credentials) -> AuthError:
        return AuthError(
            f"{self.registry}: authentication failed for user {creds.username!r} (credentials from {creds.source})",
            hint="check the user name and password: " + _LOGIN_HINT.replace("HOST", self.registry),
        )

    def _check_transport(self, url: str, creds: Credentials) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" and not is_loopback(parts.netloc) and not self.insecure:
            raise AuthError(
                f"{self.registry}: refusing to send credentials over plain HTTP to {parts.netloc}",
                hint="use HTTPS, or pass --insecure if you accept that risk",
            )

    def _fetch_token(self, challenge: Challenge) -> str:
        realm = challenge.params.get("realm", "")
        if not realm.startswith(("http://", "https://")):
            raise AuthError(f"{self.registry}: the bearer challenge names no usable token realm ({realm!r})")
        service = challenge.params.get("service", "")
        creds = self.credentials
        if creds is not None:
            self._check_transport(realm, creds)
        where = urlsplit(realm).netloc
        try:
            if creds is not None and creds.identity_token:
                # OAuth2 refresh_token grant, a form POST as Docker sends it
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": creds.secret(),
                    "client_id": CLIENT_ID,
                }
                if service:
                    form["service"] = service
                if self._scopes:
                    form["scope"] = " ".join(self._scopes)
                r = self.session.post(
                    realm,
                    data=form,
                    headers={"Accept": "application/json"},
                    verify=self._tls_verify,
                    timeout=60,
                )
            else:
                params: list[tuple[str, str]] = [("service", service)] if service else []
                params.extend(("scope", s) for s in self._scopes)
                if self.want_identity_token and creds is not None:
                    params += [("offline_token", "true"), ("client_id", CLIENT_ID)]
                headers = {"Accept": "application/json"}
                if creds is not None:
                    headers["Authorization"] = creds.basic()
                r = self.session.get(
                    realm, params=params, headers=headers, verify=self._tls_verify, timeout=60
                )
        except requests.exceptions.SSLError:
            raise AuthError(
                f"{self.registry}: TLS verification of the token service {where} failed",
                hint="pass --ca-cert with the CA that signed its certificate",
            ) from None
        except requests.RequestException as e:
            raise AuthError(
                f"{self.registry}: cannot reach the token service {where}: {type(e).__name__}"
            ) from None
        log.debug("token service %s answered %s", where, r.status_code)
        if r.status_code in (400, 401, 403) and creds is not None and creds.identity_token:
            raise AuthError(
                f"{self.registry}: the token service {where} refused the identity token "
                f"from {creds.source} (HTTP {r.status_code})",
                hint="log in again: " + _LOGIN_HINT.replace("HOST", self.registry),
            )
        if r.status_code in (401, 403):
            if creds is None:
                raise AuthError(
                    f"{self.registry}: the token service {where} requires credentials and none were found",
                    hint=_LOGIN_HINT.replace("HOST", self.registry),
                )
            raise self._refused(creds)
        if r.status_code != 200:
            raise AuthError(f"{self.registry}: the token service {where} answered HTTP {r.status_code}")
        try:
            body = r.json()
        except ValueError:
            raise AuthError(f"{self.registry}: the token service {where} sent no JSON") from None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError(f"{self.registry}: the token service {where} sent no token")
        refresh = body.get("refresh_token")
        if self.want_identity_token and isinstance(refresh, str) and refresh:
            self.identity_token = refresh
        return token
