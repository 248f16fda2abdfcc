"""Issue 13: logins kept the way Docker and Podman users keep them, against htpasswd registries on
loopback ports. Credential helpers (Debian's docker-credential-pass over `pass` with a throwaway
GPG key, and a small helper script implementing the protocol), `docker login` / `dockerify login`
round trips, credHelpers over credsStore, skopeo's auth.json, and the errors, none of which may
show the password."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.integration import test_registry_support as support
from tests.integration.test_registry_auth import PASSWORD, USER, WRONG, docker_cli, secrets_absent
from tests.integration.test_registry_support import (
    CA,
    TokenService,
    htpasswd_line,
    registry_process,
    root_of,
    unique,
)

pytestmark = pytest.mark.registry
busybox_dirs = support.busybox_dirs
single_image = support.single_image

BOB = "bob"
BOB_PASSWORD = "b0b-Pa55word-never-shown"


def no_secret(text: str) -> None:
    secrets_absent(text)
    assert BOB_PASSWORD not in text


@pytest.fixture
def pass_store() -> Iterator[dict[str, str]]:
    """GNUPGHOME and PASSWORD_STORE_DIR of a throwaway `pass` store, unlocked (no passphrase)."""
    require_tool("gpg", "pass", "docker-credential-pass", "gpgconf")
    # gpg-agent's socket path must stay short: a directory right under /tmp
    base = Path(tempfile.mkdtemp(prefix="dfy-creds-"))
    env = {**os.environ, "GNUPGHOME": str(base / "g"), "PASSWORD_STORE_DIR": str(base / "p")}
    (base / "g").mkdir(mode=0o700)
    try:
        subprocess.run(
            ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "dockerify-test@example.invalid"],
            env=env,
            check=True,
            capture_output=True,
        )
        listing = subprocess.run(
            ["gpg", "--list-keys", "--with-colons"], env=env, check=True, capture_output=True, text=True
        ).stdout
        keyid = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
        subprocess.run(["pass", "init", keyid], env=env, check=True, capture_output=True)
        yield {"GNUPGHOME": env["GNUPGHOME"], "PASSWORD_STORE_DIR": env["PASSWORD_STORE_DIR"]}
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Our environment with every login location pointed into `tmp` (HOME too), plus `extra`."""
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DOCKERIFY_REGISTRY_")
        and k not in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "DOCKER_CONFIG")
    }
    env["HOME"] = str(home)
    env.update(extra)
    return env


def docker_config(directory: Path, config: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def cli(
    *args: str, env: dict[str, str], stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "dockerify", *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"dockerify {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def pass_list(env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(["docker-credential-pass", "list"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout or "{}")


def error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("dockerify: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


FAKE_HELPER = r"""#!{python}
# docker-credential-{name}: the credential-helper protocol over a JSON file, for the tests.
# It records its argv (to show no secret is ever passed there) and the server URLs asked for.
import json, os, sys
store = {store!r}
verb = sys.argv[1] if len(sys.argv) > 1 else ""
data = sys.stdin.read()
with open(store + ".calls", "a") as f:
    f.write(json.dumps({{"argv": sys.argv, "verb": verb, "server": data if verb != "store" else json.loads(data)["ServerURL"]}}) + "\n")
if {fail!r}:
    print({leak!r})  # what a broken helper may print: never to be shown
    print("the keyring is locked", file=sys.stderr)
    sys.exit(1)
logins = json.load(open(store)) if os.path.exists(store) else {{}}
if verb == "get":
    if data not in logins:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({{"ServerURL": data, "Username": logins[data][0], "Secret": logins[data][1]}}))
elif verb == "store":
    body = json.loads(data)
    logins[body["ServerURL"]] = [body["Username"], body["Secret"]]
    json.dump(logins, open(store, "w"))
elif verb == "erase":
    if data not in logins:
        print("credentials not found in native keychain")
        sys.exit(1)
    del logins[data]
    json.dump(logins, open(store, "w"))
else:
    sys.exit(2)
"""


def fake_helper(bindir: Path, name: str, *, fail: bool = False, leak: str = "") -> Path:
    """A real executable docker-credential-NAME in `bindir`; returns its store file."""
    bindir.mkdir(parents=True, exist_ok=True)
    store = bindir / f"{name}.json"
    prog = bindir / f"docker-credential-{name}"
    prog.write_text(
        FAKE_HELPER.format(python=sys.executable, name=name, store=str(store), fail=fail, leak=leak)
    )
    prog.chmod(prog.stat().st_mode | stat.S_IXUSR)
    return store


def calls(store: Path) -> list[dict]:
    path = Path(str(store) + ".calls")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ---------------------------------------------------------------- 1: docker-credential-pass


def test_pass_store_shared_with_docker(
    single_image: Path, tmp_path: Path, pass_store: dict[str, str], docker_daemon: str
) -> None:
    docker = docker_cli()
    with registry_process(tmp_path / "reg", htpasswd=htpasswd_line(USER, PASSWORD)) as reg:
        dcfg = docker_config(tmp_path / "docker", {"credsStore": "pass"})
        env = clean_env(tmp_path, DOCKER_CONFIG=str(dcfg), **pass_store)
        repo = unique("creds/pass")
        ref = f"{reg.host}/{repo}:v1"
        digest = root_of(single_image, "v1")["digest"]
        outputs: list[str] = []

        # `docker login` stores the login through docker-credential-pass ...
        login = subprocess.run(
            [docker, "login", reg.host, "-u", USER, "--password-stdin"],
            input=PASSWORD,
            capture_output=True,
            text=True,
            env=env,
        )
        assert login.returncode == 0, login.stderr
        config = json.loads((dcfg / "config.json").read_text())
        assert config["auths"][reg.host] == {} and config["credsStore"] == "pass"
        assert pass_list(env) == {reg.host: USER}

        # ... and dockerify push and pull use it with no other configuration
        r = cli("push", f"oci:{single_image}:v1", ref, "--debug", env=env)
        outputs.append(r.stdout + r.stderr)
        assert r.stdout.strip() == digest
        assert "docker-credential-pass get" in r.stderr  # the --debug command line
        r = cli("pull", ref, f"oci:{tmp_path / 'pulled'}", "--debug", env=env)
        outputs.append(r.stdout + r.stderr)
        assert r.stdout.strip() == digest

        r = subprocess.run([docker, "logout", reg.host], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
        assert pass_list(env) == {}
        r = cli("pull", ref, f"oci:{tmp_path / 'anon'}", env=env, check=False)
        assert r.returncode != 0 and "no credentials were found" in r.stderr

        # `dockerify login` stores through the same helper, with Docker's placeholder entry
        r = cli("login", reg.host, "-u", USER, "--password-stdin", "--debug", env=env, stdin=PASSWORD + "\n")
        outputs.append(r.stdout + r.stderr)
        assert "Login Succeeded" in r.stderr and "docker-credential-pass" in r.stderr
        assert pass_list(env) == {reg.host: USER}
        text = (dcfg / "config.json").read_text()
        outputs.append(text)
        assert json.loads(text) == {"auths": {reg.host: {}}, "credsStore": "pass"}

        # ... and the daemon pulls with what dockerify stored
        image = f"{reg.host}/{repo}:v1"
        try:
            r = subprocess.run([docker, "pull", image], capture_output=True, text=True, env=env)
            assert r.returncode == 0, r.stderr
            inspect = subprocess.run(
                [docker, "image", "inspect", image, "--format", "{{json .RepoDigests}}"],
                capture_output=True,
                text=True,
                env=env,
            )
            assert f"{reg.host}/{repo}@{digest}" in inspect.stdout
        finally:
            subprocess.run([docker, "rmi", "-f", image], capture_output=True, env=env)

        # `dockerify logout` erases it from the helper and the placeholder from config.json
        r = cli("logout", reg.host, "--debug", env=env)
        outputs.append(r.stdout + r.stderr)
        assert "Removed login credentials" in r.stderr
        assert pass_list(env) == {}
        assert json.loads((dcfg / "config.json").read_text()) == {"auths": {}, "credsStore": "pass"}
        r = cli("logout", reg.host, env=env)
        assert "Not logged in" in r.stderr
        for text in outputs:
            no_secret(text)


# ---------------------------------------------------------------- 2: credHelpers over credsStore


def test_cred_helpers_entry_wins_over_creds_store(
    single_image: Path, tmp_path: Path, pass_store: dict[str, str]
) -> None:
    with (
        registry_process(tmp_path / "reg-a", htpasswd=htpasswd_line(USER, PASSWORD)) as a,
        registry_process(tmp_path / "reg-b", htpasswd=htpasswd_line(BOB, BOB_PASSWORD)) as b,
    ):
        bindir = tmp_path / "bin"
        store = fake_helper(bindir, "dockerifytest")
        dcfg = docker_config(
            tmp_path / "docker", {"credsStore": "pass", "credHelpers": {b.host: "dockerifytest"}}
        )
        env = clean_env(
            tmp_path, DOCKER_CONFIG=str(dcfg), PATH=f"{bindir}:{os.environ['PATH']}", **pass_store
        )
        outputs: list[str] = []
        # a stale, wrong login for B in the credsStore: it must not be used for B
        stale = json.dumps({"ServerURL": b.host, "Username": BOB, "Secret": WRONG})
        subprocess.run(["docker-credential-pass", "store"], input=stale, text=True, env=env, check=True)

        r = cli("login", a.host, "-u", USER, "--password-stdin", env=env, stdin=PASSWORD)
        outputs.append(r.stdout + r.stderr)
        assert "docker-credential-pass" in r.stderr
        r = cli("login", b.host, "-u", BOB, "--password-stdin", env=env, stdin=BOB_PASSWORD)
        outputs.append(r.stdout + r.stderr)
        assert "docker-credential-dockerifytest" in r.stderr
        assert json.loads(store.read_text()) == {b.host: [BOB, BOB_PASSWORD]}
        assert set(pass_list(env)) == {a.host, b.host}  # B's entry in pass is the stale one

        digest = root_of(single_image, "v1")["digest"]
        for reg in (a, b):
            r = cli(
                "push", f"oci:{single_image}:v1", f"{reg.host}/{unique('creds/two')}:v1", "--debug", env=env
            )
            outputs.append(r.stdout + r.stderr)
            assert r.stdout.strip() == digest
        asked = [c["server"] for c in calls(store)]
        assert asked and set(asked) == {b.host}  # the credHelpers helper never heard of A
        for c in calls(store):  # secrets travel on stdin, never on the command line
            assert c["argv"][1:] == [c["verb"]]
        for text in outputs:
            no_secret(text)


# ---------------------------------------------------------------- 3: skopeo's auth.json


def test_skopeo_authfile(single_image: Path, tmp_path: Path) -> None:
    require_tool("skopeo")
    with registry_process(tmp_path / "reg", htpasswd=htpasswd_line(USER, PASSWORD)) as reg:
        authfile = tmp_path / "podman" / "auth.json"
        env = clean_env(tmp_path)
        r = subprocess.run(
            [
                "skopeo",
                "login",
                "--authfile",
                str(authfile),
                "--tls-verify=false",
                "-u",
                USER,
                "--password-stdin",
                reg.host,
            ],
            input=PASSWORD,
            capture_output=True,
            text=True,
            env=env,
        )
        assert r.returncode == 0, r.stderr
        assert reg.host in json.loads(authfile.read_text())["auths"]
        ref = f"{reg.host}/{unique('creds/skopeo')}:v1"
        digest = root_of(single_image, "v1")["digest"]
        outputs: list[str] = []

        r = cli("push", f"oci:{single_image}:v1", ref, "--authfile", str(authfile), "--debug", env=env)
        outputs.append(r.stdout + r.stderr)
        assert r.stdout.strip() == digest
        r = cli(
            "pull", ref, f"oci:{tmp_path / 'a'}", "--debug", env={**env, "REGISTRY_AUTH_FILE": str(authfile)}
        )
        outputs.append(r.stdout + r.stderr)
        assert r.stdout.strip() == digest
        # neither: no login
        r = cli("pull", ref, f"oci:{tmp_path / 'b'}", env=env, check=False)
        assert r.returncode != 0 and "no credentials were found" in r.stderr
        # a missing --authfile is named, not silently skipped
        r = cli(
            "pull",
            ref,
            f"oci:{tmp_path / 'c'}",
            "--authfile",
            str(tmp_path / "nope.json"),
            env=env,
            check=False,
        )
        assert r.returncode != 0 and "nope.json: no such file" in error_line(r.stderr)

        # dockerify login --authfile writes there as skopeo does, logout removes it; skopeo reads ours
        other = tmp_path / "mine.json"
        r = cli(
            "login",
            reg.host,
            "--authfile",
            str(other),
            "-u",
            USER,
            "--password-stdin",
            env=env,
            stdin=PASSWORD,
        )
        outputs.append(r.stdout + r.stderr)
        assert oct(other.stat().st_mode & 0o777) == "0o600"
        r = subprocess.run(
            [
                "skopeo",
                "inspect",
                "--raw",
                "--tls-verify=false",
                "--authfile",
                str(other),
                f"docker://{ref}",
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        assert r.returncode == 0, r.stderr
        cli("logout", reg.host, "--authfile", str(other), env=env)
        assert json.loads(other.read_text())["auths"] == {}
        for text in outputs:
            no_secret(text)


# ---------------------------------------------------------------- 4: errors


def test_helper_errors_name_registry_and_helper(
    single_image: Path, tmp_path: Path, pass_store: dict[str, str]
) -> None:
    with registry_process(tmp_path / "reg", htpasswd=htpasswd_line(USER, PASSWORD)) as reg:
        bindir = tmp_path / "bin"
        fake_helper(bindir, "dockerifybroken", fail=True, leak=f"{USER}:{PASSWORD} {PASSWORD}")
        path = f"{bindir}:{os.environ['PATH']}"
        ref = f"{reg.host}/{unique('creds/errors')}:v1"
        src = f"oci:{single_image}:v1"
        outputs: list[str] = []

        cases = {
            "missing": ({"credsStore": "dockerifynosuchhelper"}, "docker-credential-dockerifynosuchhelper"),
            "broken": ({"credHelpers": {reg.host: "dockerifybroken"}}, "docker-credential-dockerifybroken"),
            "wrong": ({"credsStore": "pass"}, "docker-credential-pass"),
        }
        for case, (config, helper) in cases.items():
            dcfg = docker_config(tmp_path / case, config)
            env = clean_env(tmp_path, DOCKER_CONFIG=str(dcfg), PATH=path, **pass_store)
            if case == "wrong":
                body = json.dumps({"ServerURL": reg.host, "Username": USER, "Secret": WRONG})
                subprocess.run(
                    ["docker-credential-pass", "store"], input=body, text=True, env=env, check=True
                )
            for args in (("push", src, ref), ("pull", ref, f"oci:{tmp_path / case / 'out'}")):
                for debug in ((), ("--debug",)):
                    r = cli(*args, *debug, env=env, check=False)
                    outputs.append(r.stdout + r.stderr)
                    assert r.returncode != 0, (case, r.stderr)
                    line = error_line(r.stderr)
                    assert reg.host in line and helper in line, (case, line)
                    if not debug:
                        assert "Traceback" not in r.stderr
            if case == "wrong":
                assert f"authentication failed for user '{USER}'" in line
                # a wrong password at login: refused before anything is stored
                r = cli(
                    "login",
                    reg.host,
                    "-u",
                    USER,
                    "--password-stdin",
                    "--debug",
                    env=env,
                    stdin=WRONG,
                    check=False,
                )
                outputs.append(r.stdout + r.stderr)
                assert r.returncode != 0
                line = error_line(r.stderr)
                assert reg.host in line and helper in line and "authentication failed" in line
            else:
                # login and logout through a missing or failing helper say so the same way
                r = cli(
                    "login",
                    reg.host,
                    "-u",
                    USER,
                    "--password-stdin",
                    "--debug",
                    env=env,
                    stdin=PASSWORD,
                    check=False,
                )
                outputs.append(r.stdout + r.stderr)
                assert r.returncode != 0
                line = error_line(r.stderr)
                assert reg.host in line and helper in line
            outputs.append((dcfg / "config.json").read_text())
        for text in outputs:
            no_secret(text)


# ---------------------------------------------------------------- identity tokens


def test_identity_token_from_login(single_image: Path, tmp_path: Path, pass_store: dict[str, str]) -> None:
    ca = CA(tmp_path / "ca")
    tokens = TokenService(ca, USER, PASSWORD)
    token_cfg = {
        "realm": tokens.realm,
        "service": tokens.service,
        "issuer": tokens.issuer,
        "rootcertbundle": str(ca.ca_pem),
    }
    try:
        with registry_process(tmp_path / "reg", token=token_cfg) as reg:
            authfile = tmp_path / "auth.json"
            env = clean_env(tmp_path, **pass_store)
            ref = f"{reg.host}/{unique('creds/idtoken')}:v1"
            digest = root_of(single_image, "v1")["digest"]
            outputs: list[str] = []

            # like `docker login`, the token service's refresh token is kept, not the password
            r = cli(
                "login",
                reg.host,
                "--authfile",
                str(authfile),
                "-u",
                USER,
                "--password-stdin",
                "--debug",
                env=env,
                stdin=PASSWORD,
            )
            outputs.append(r.stdout + r.stderr)
            assert "identity token" in r.stderr
            entry = json.loads(authfile.read_text())["auths"][reg.host]
            assert entry["identitytoken"] in tokens.refresh_tokens
            assert base64.b64decode(entry["auth"]).decode() == f"{USER}:"
            secrets = [entry["identitytoken"]]

            tokens.requests.clear()
            r = cli("push", f"oci:{single_image}:v1", ref, "--authfile", str(authfile), "--debug", env=env)
            outputs.append(r.stdout + r.stderr)
            assert r.stdout.strip() == digest
            # every token came from the refresh_token grant, none from the password
            assert tokens.requests and all(
                q.get("grant") == "refresh_token" and q["ok"] and q["client_id"] == "dockerify"
                for q in tokens.requests
            )
            assert any("push" in s for q in tokens.requests for s in q["scopes"])

            # the same through a credential helper: Docker's `<token>` user name
            dcfg = docker_config(tmp_path / "docker", {"credsStore": "pass"})
            henv = {**env, "DOCKER_CONFIG": str(dcfg)}
            r = cli("login", reg.host, "-u", USER, "--password-stdin", env=henv, stdin=PASSWORD)
            outputs.append(r.stdout + r.stderr)
            assert pass_list(henv) == {reg.host: "<token>"}
            r = cli("pull", ref, f"oci:{tmp_path / 'pulled'}", "--debug", env=henv)
            outputs.append(r.stdout + r.stderr)
            assert r.stdout.strip() == digest
            got = subprocess.run(
                ["docker-credential-pass", "get"], input=reg.host, capture_output=True, text=True, env=henv
            )
            secrets.append(json.loads(got.stdout)["Secret"])

            # a token the service no longer knows: one line naming the registry and the file
            tokens.refresh_tokens.clear()
            r = cli(
                "pull",
                ref,
                f"oci:{tmp_path / 'stale'}",
                "--authfile",
                str(authfile),
                "--debug",
                env=env,
                check=False,
            )
            outputs.append(r.stdout + r.stderr)
            assert r.returncode != 0
            line = error_line(r.stderr)
            assert reg.host in line and "refused the identity token" in line and str(authfile) in line
            for text in outputs:
                no_secret(text)
                for secret in secrets:
                    assert secret not in text
    finally:
        tokens.stop()
