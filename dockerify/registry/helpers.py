"""The docker-credential-helpers protocol: `docker-credential-NAME get|store|erase`, the data
on stdin (a server URL, or a JSON object for `store`), the answer on stdout.

Secrets travel only on the helper's stdin and stdout, never on its command line. The helper's
stdout is never quoted in a message (on `get` it is the secret); on failure the message names
the registry, the helper and its exit status, and the last line of its stderr.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass

from dockerify.errors import DockerifyError
from dockerify.run import run

PREFIX = "docker-credential-"
# What every helper built on docker-credential-helpers prints (on stdout, exit 1) for a
# server it has nothing for.
NOT_FOUND = "credentials not found in native keychain"
# A helper answers this user name when the secret is an identity (OAuth2 refresh) token.
TOKEN_USERNAME = "<token>"
_KNOWN_PACKAGES = {
    "pass": "golang-docker-credential-helpers",
    "secretservice": "golang-docker-credential-helpers",
}


class HelperError(DockerifyError):
    """A credential helper is missing, or failed."""


@dataclass(frozen=True)
class HelperSecret:
    username: str
    secret: str
    identity_token: bool

    def __repr__(self) -> str:
        return f"HelperSecret(username={self.username!r}, secret=<hidden>)"


class Helper:
    def __init__(self, name: str, registry: str, why: str, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.program = PREFIX + name
        self.registry = registry
        self.why = why  # e.g. "credsStore in /home/u/.docker/config.json"
        # The helper sees the user's whole environment: pass needs GNUPGHOME and
        # PASSWORD_STORE_DIR, secretservice the D-Bus address, cloud helpers their own settings.
        self.env = dict(os.environ if env is None else env)

    def __str__(self) -> str:
        return self.program

    def require(self) -> None:
        """Fail early, naming the registry and the helper, when the helper is not installed."""
        if shutil.which(self.program, path=self.env.get("PATH")) is None:
            package = _KNOWN_PACKAGES.get(self.name)
            raise HelperError(
                f"{self.registry}: the credential helper {self.program} ({self.why}) is not installed",
                hint=(f"install it (apt-get install {package})" if package else f"install {self.program}")
                + f", or remove that entry from {self.why.split(' in ', 1)[-1]}",
            )

    def _call(self, verb: str, data: bytes, secret: str | None = None) -> tuple[int, bytes]:
        self.require()
        program = shutil.which(self.program, path=self.env.get("PATH")) or self.program
        proc = run([program, verb], input=data, env=self.env, check=False)
        if proc.returncode != 0 and not (verb in ("get", "erase") and _not_found(proc.stdout)):
            raise self._failed(verb, proc.returncode, proc.stderr or b"", secret)
        return proc.returncode, proc.stdout or b""

    def _failed(self, verb: str, returncode: int, stderr: bytes, secret: str | None) -> HelperError:
        lines = [ln.strip() for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
        detail = lines[-1][:200] if lines else ""
        if secret and secret in detail:
            detail = ""
        status = f"exit status {returncode}" if returncode >= 0 else f"killed by signal {-returncode}"
        doing = {"get": "reading", "store": "storing", "erase": "erasing"}[verb]
        return HelperError(
            f"{self.registry}: credential helper {self.program} ({self.why}) failed {doing} the login "
            f"({status}{': ' + detail if detail else ''})",
            hint=f"check that `{self.program} list` works for this user",
        )

    def get(self, server_url: str) -> HelperSecret | None:
        """The login the helper keeps for `server_url`; None when it has none."""
        code, out = self._call("get", server_url.encode())
        if code != 0:
            return None
        try:
            answer = json.loads(out)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("Secret"), str):
            raise HelperError(
                f"{self.registry}: credential helper {self.program} ({self.why}) answered `get` "
                "with something other than its JSON"
            )
        username = answer.get("Username") if isinstance(answer.get("Username"), str) else ""
        if not answer["Secret"]:
            return None
        return HelperSecret(username or "", answer["Secret"], username == TOKEN_USERNAME)

    def store(self, server_url: str, username: str, secret: str) -> None:
        body = json.dumps({"ServerURL": server_url, "Username": username, "Secret": secret}).encode()
        self._call("store", body, secret)

    def erase(self, server_url: str) -> bool:
        """True when the helper had a login for `server_url` and erased it."""
        code, _ = self._call("erase", server_url.encode())
        return code == 0


def default_store(env: Mapping[str, str]) -> str | None:
    """The store Docker on Linux picks for a config.json that holds no logins yet: `pass` when
    that program is installed, else `secretservice`, provided its helper is installed too."""
    path = env.get("PATH")
    name = "pass" if shutil.which("pass", path=path) else "secretservice"
    return name if shutil.which(PREFIX + name, path=path) else None


def _not_found(stdout: bytes | None) -> bool:
    return NOT_FOUND in (stdout or b"").decode(errors="replace")


__all__ = ["Helper", "HelperError", "HelperSecret", "default_store"]
