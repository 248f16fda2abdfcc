"""Registry credentials and the two auth schemes registries use (Basic and Bearer tokens).

Credentials come from DOCKERIFY_REGISTRY_USER / DOCKERIFY_REGISTRY_PASSWORD, or from the
config.json that `docker login` writes (`auths.<host>.auth`, base64 of user:password). Secrets
never leave this module in a printable form: `Credentials` hides them from repr/str, and nothing
here logs a header or a token.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from oras.auth.base import AuthBackend

from dockerify.errors import DockerifyError
from dockerify.registry.reference import DOCKER_HUB, DOCKER_HUB_API, DOCKER_HUB_NAME, is_loopback

log = logging.getLogger("dockerify")

ENV_USER = "DOCKERIFY_REGISTRY_USER"
ENV_PASSWORD = "DOCKERIFY_REGISTRY_PASSWORD"
_LOGIN_HINT = f"run `docker login HOST`, or set {ENV_USER} and {ENV_PASSWORD}"
_warned: set[str] = set()


class AuthError(DockerifyError):
    """The registry refused our credentials, or asked for some we do not have."""


class Credentials:
    """A user name and a secret; the secret is never part of repr() or str()."""

    __slots__ = ("username", "_secret", "source")

    def __init__(self, username: str, secret: str, source: str) -> None:
        self.username = username
        self._secret = secret
        self.source = source  # where they came from, for messages ("environment", a file name)

    def basic(self) -> str:
        """The value of an `Authorization: Basic ...` header."""
        raw = f"{self.username}:{self._secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, secret=<hidden>, source={self.source!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # no pickling a secret into a log or a cache by accident
        raise TypeError("Credentials cannot be pickled")


# ---------------------------------------------------------------- where credentials come from


def _config_files(env: dict[str, str]) -> list[Path]:
    files = []
    if env.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("DOCKER_CONFIG"):
        files.append(Path(env["DOCKER_CONFIG"]) / "config.json")
    elif env.get("HOME"):
        files.append(Path(env["HOME"]) / ".docker" / "config.json")
    return files


def _host_of_key(key: str) -> str:
    """`https://index.docker.io/v1/` -> `index.docker.io`; `127.0.0.1:5000` stays."""
    if "://" in key:
        return urlsplit(key).netloc
    return key.split("/", 1)[0]


def _aliases(registry: str) -> set[str]:
    if registry in (DOCKER_HUB, DOCKER_HUB_NAME, DOCKER_HUB_API):
        return {DOCKER_HUB, DOCKER_HUB_NAME, DOCKER_HUB_API}
    return {registry}


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning("%s", message)


def _from_entry(entry: dict[str, Any], registry: str, where: str) -> Credentials | None:
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise DockerifyError(
                f"{where}: auths.{registry}.auth is not base64 of user:password", hint=_LOGIN_HINT
            ) from None
        user, sep, secret = decoded.partition(":")
        if not sep:
            raise DockerifyError(
                f"{where}: auths.{registry}.auth holds no user:password pair", hint=_LOGIN_HINT
            )
        return Credentials(user, secret, where)
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return Credentials(entry["username"], entry["password"], where)
    if entry.get("identitytoken"):
        _warn_once(
            f"idtoken:{where}:{registry}",
            f"{where}: the entry for {registry} holds an identity token, which dockerify does not use",
        )
    return None


def find_credentials(registry: str, env: dict[str, str] | None = None) -> Credentials | None:
    """Credentials for `registry` (host[:port]): the environment first, then config.json."""
    env = dict(os.environ) if env is None else env
    user, secret = env.get(ENV_USER), env.get(ENV_PASSWORD)
    if user and secret is not None:
        return Credentials(user, secret, "environment")
    aliases = _aliases(registry)
    for path in _config_files(env):
        try:
            config = json.loads(path.read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as e:
            raise DockerifyError(f"{path}: cannot read registry credentials: {type(e).__name__}") from None
        if not isinstance(config, dict):
            continue
        auths = config.get("auths") or {}
        for key, entry in auths.items() if isinstance(auths, dict) else []:
            if _host_of_key(key) in aliases and isinstance(entry, dict):
                found = _from_entry(entry, registry, str(path))
                if found is not None:
                    return found
        helpers = config.get("credHelpers") or {}
        helper = next((helpers[a] for a in aliases if a in helpers), None) or config.get("credsStore")
        if helper:
            _warn_once(
                f"helper:{path}:{registry}",
                f"{path}: credentials for {registry} are kept by the credential helper "
                f"docker-credential-{helper}, which dockerify does not run; set {ENV_USER} and {ENV_PASSWORD}",
            )
    return None


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


class Authenticator(AuthBackend):
    """Answers a registry's 401 challenges for one host, Basic or Bearer.

    Bearer tokens are requested for every scope seen so far (pull, then pull+push ...), so one
    token serves the whole operation. It plugs into oras-py's Registry as its auth backend."""

    def __init__(
        self,
        registry: str,
        session: requests.Session,
        verify: bool | str,
        credentials: Credentials | None,
        insecure: bool = False,
    ) -> None:
        super().__init__()
        self.registry = registry
        self.session = session
        self._tls_verify = verify  # type: ignore[assignment]
        self.credentials = credentials
        self.insecure = insecure
        self._header: str | None = None  # the Authorization value in force
        self._scopes: list[str] = []
        self._lock = threading.Lock()
        self.token: str | None = None

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
        params: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            params.append(("service", challenge.params["service"]))
        params.extend(("scope", s) for s in self._scopes)
        headers = {"Accept": "application/json"}
        if self.credentials is not None:
            self._check_transport(realm, self.credentials)
            headers["Authorization"] = self.credentials.basic()
        where = urlsplit(realm).netloc
        try:
            r = self.session.get(realm, params=params, headers=headers, verify=self._tls_verify, timeout=60)
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
        if r.status_code in (401, 403):
            if self.credentials is None:
                raise AuthError(
                    f"{self.registry}: the token service {where} requires credentials and none were found",
                    hint=_LOGIN_HINT.replace("HOST", self.registry),
                )
            raise self._refused(self.credentials)
        if r.status_code != 200:
            raise AuthError(f"{self.registry}: the token service {where} answered HTTP {r.status_code}")
        try:
            body = r.json()
        except ValueError:
            raise AuthError(f"{self.registry}: the token service {where} sent no JSON") from None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError(f"{self.registry}: the token service {where} sent no token")
        return token
