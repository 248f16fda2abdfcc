"""Where logins are looked for and written, how keys name registries, and the credential-helper
protocol against a small helper script (a real executable)."""

from __future__ import annotations

import base64
import json
import stat
import sys
from pathlib import Path

import pytest

from dockerify.errors import DockerifyError
from dockerify.registry.auth import find_credentials
from dockerify.registry.authfiles import (
    DOCKER_HUB_KEY,
    auth_files,
    docker_key,
    helper_for,
    key_variants,
    login_file,
    matching_entries,
    normalize_registry,
    registry_of_key,
)
from dockerify.registry.helpers import Helper, HelperError
from dockerify.registry.login import login, logout


@pytest.mark.parametrize(
    ("name", "registry"),
    [
        ("docker.io", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("Docker.IO", "docker.io"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("http://127.0.0.1:5000", "127.0.0.1:5000"),
        ("https://quay.io/v2/", "quay.io"),
        ("quay.io/team/repo", "quay.io"),
    ],
)
def test_normalize_registry(name: str, registry: str) -> None:
    assert normalize_registry(name) == registry


def test_keys() -> None:
    assert registry_of_key("https://index.docker.io/v1/") == ("docker.io", "")
    assert registry_of_key("quay.io/team/") == ("quay.io", "team")
    assert docker_key("docker.io") == DOCKER_HUB_KEY
    assert docker_key("127.0.0.1:5000") == "127.0.0.1:5000"
    assert key_variants("docker.io")[0] == DOCKER_HUB_KEY
    assert "index.docker.io" in key_variants("docker.io")
    assert key_variants("r.io") == ["r.io", "https://r.io", "http://r.io"]


def test_search_order() -> None:
    env = {"HOME": "/h", "XDG_RUNTIME_DIR": "/run/user/7"}
    assert [str(f.path) for f in auth_files(env)] == [
        "/run/user/7/containers/auth.json",
        "/h/.config/containers/auth.json",
        "/h/.docker/config.json",
        "/h/.dockercfg",
    ]
    assert auth_files(env)[-1].legacy
    # REGISTRY_AUTH_FILE replaces the primary file; --authfile replaces REGISTRY_AUTH_FILE
    env.update(REGISTRY_AUTH_FILE="/a.json", XDG_CONFIG_HOME="/cfg", DOCKER_CONFIG="/dc")
    files = auth_files(env)
    assert [str(f.path) for f in files] == [
        "/a.json",
        "/cfg/containers/auth.json",
        "/dc/config.json",
        "/h/.dockercfg",
    ]
    assert files[0].explicit and not files[1].explicit
    assert str(auth_files(env, "/b.json")[0].path) == "/b.json"
    # login writes the explicit file, else Docker's config.json
    assert str(login_file(env, "/b.json")) == "/b.json"
    assert str(login_file(env)) == "/a.json"
    assert str(login_file({"HOME": "/h"})) == "/h/.docker/config.json"
    assert str(login_file({"HOME": "/h", "DOCKER_CONFIG": "/dc"})) == "/dc/config.json"


def test_helper_choice() -> None:
    config = {"credsStore": "pass", "credHelpers": {"gcr.io": "gcloud", "https://index.docker.io/v1/": "hub"}}
    assert helper_for(config, "gcr.io").name == "gcloud"  # type: ignore[union-attr]
    assert helper_for(config, "docker.io").name == "hub"  # type: ignore[union-attr]
    other = helper_for(config, "quay.io")
    assert other is not None and (other.name, other.why) == ("pass", "credsStore")
    assert helper_for({"auths": {}}, "quay.io") is None


def test_namespaced_keys_most_specific_first() -> None:
    config = {"auths": {"r.io": {"auth": "a"}, "r.io/team": {"auth": "b"}, "r.io/team/app": {"auth": "c"}}}
    keys = [k for k, _ in matching_entries(config, "r.io", "team/app")]
    assert keys == ["r.io/team/app", "r.io/team", "r.io"]
    assert [k for k, _ in matching_entries(config, "r.io", "teammate/x")] == ["r.io"]
    assert [k for k, _ in matching_entries(config, "r.io")] == ["r.io"]


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_first_file_wins_and_podman_files_are_read(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runtime = tmp_path / "run"
    (runtime / "containers").mkdir(parents=True)
    (home / ".docker").mkdir(parents=True)
    (runtime / "containers" / "auth.json").write_text(
        json.dumps({"auths": {"r.io": {"auth": _auth("pod", "x")}}})
    )
    (home / ".docker" / "config.json").write_text(
        json.dumps({"auths": {"r.io": {"auth": _auth("dock", "y")}, "s.io": {"auth": _auth("dock", "z")}}})
    )
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    found = find_credentials("r.io", env)
    assert found is not None and found.username == "pod" and "auth.json" in found.source
    found = find_credentials("s.io", env)
    assert found is not None and found.username == "dock"
    (home / ".dockercfg").write_text(json.dumps({"https://t.io": {"auth": _auth("legacy", "w")}}))
    found = find_credentials("t.io", env)
    assert found is not None and found.username == "legacy"
    with pytest.raises(DockerifyError, match="nope.json: no such file"):
        find_credentials("r.io", env, authfile=str(tmp_path / "nope.json"))


def test_identity_token_entry(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {DOCKER_HUB_KEY: {"auth": _auth("me", ""), "identitytoken": "refresh-xyz"}}})
    )
    found = find_credentials("registry-1.docker.io", {"DOCKER_CONFIG": str(tmp_path), "HOME": str(tmp_path)})
    assert found is not None and found.identity_token and found.username == "me"
    assert "refresh-xyz" not in repr(found)


HELPER = r"""#!{python}
import json, os, sys
store = {store!r}
verb, data = sys.argv[1], sys.stdin.read()
logins = json.load(open(store)) if os.path.exists(store) else {{}}
if data == "boom":
    print("s3cret-on-stdout"); print("locked", file=sys.stderr); sys.exit(3)
if verb == "get":
    if data not in logins:
        print("credentials not found in native keychain"); sys.exit(1)
    print(json.dumps({{"ServerURL": data, "Username": logins[data][0], "Secret": logins[data][1]}}))
elif verb == "store":
    body = json.loads(data); logins[body["ServerURL"]] = [body["Username"], body["Secret"]]
    json.dump(logins, open(store, "w"))
elif verb == "erase":
    if data not in logins:
        print("credentials not found in native keychain"); sys.exit(1)
    del logins[data]; json.dump(logins, open(store, "w"))
"""


@pytest.fixture
def helper_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    store = tmp_path / "store.json"
    prog = bindir / "docker-credential-unit"
    prog.write_text(HELPER.format(python=sys.executable, store=str(store)))
    prog.chmod(prog.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / "dc")}
    return env, store


def test_helper_protocol(helper_env: tuple[dict[str, str], Path]) -> None:
    env, store = helper_env
    helper = Helper("unit", "r.io", "credsStore in test", env)
    assert helper.get("r.io") is None
    helper.store("r.io", "<token>", "tok-123")
    got = helper.get("r.io")
    assert got is not None and got.identity_token and got.secret == "tok-123"
    assert "tok-123" not in repr(got)
    assert helper.erase("r.io") and not helper.erase("r.io")
    with pytest.raises(HelperError, match=r"^r.io: credential helper docker-credential-unit .* failed") as e:
        helper.get("boom")
    assert "exit status 3: locked" in str(e.value) and "s3cret" not in str(e.value)


def test_login_logout_through_helper_and_plain(helper_env: tuple[dict[str, str], Path]) -> None:
    env, store = helper_env
    dc = Path(env["DOCKER_CONFIG"])
    dc.mkdir()
    (dc / "config.json").write_text(json.dumps({"credsStore": "unit", "auths": {"https://r.io": {}}}))
    result = login("https://r.io/", "u", "p4ss", env=env, verify=False)
    assert result.helper == "docker-credential-unit" and result.registry == "r.io"
    assert json.loads(store.read_text()) == {"r.io": ["u", "p4ss"]}
    assert json.loads((dc / "config.json").read_text()) == {"credsStore": "unit", "auths": {"r.io": {}}}
    found = find_credentials("r.io", env)
    assert found is not None and found.username == "u" and "docker-credential-unit" in found.source
    assert logout("r.io", env=env) and json.loads(store.read_text()) == {}
    assert not logout("r.io", env=env)

    plain = Path(env["HOME"]) / "auth.json"
    login("index.docker.io", "u", "p4ss", env=env, authfile=str(plain), verify=False)
    assert json.loads(plain.read_text()) == {"auths": {DOCKER_HUB_KEY: {"auth": _auth("u", "p4ss")}}}
    assert plain.stat().st_mode & 0o077 == 0
    assert logout("docker.io", env=env, authfile=str(plain))
    assert json.loads(plain.read_text()) == {"auths": {}}


def test_login_picks_dockers_default_store(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    store = tmp_path / "store.json"
    for name, text in (
        ("docker-credential-pass", HELPER.format(python=sys.executable, store=str(store))),
        ("pass", "#!/bin/sh\nexit 0\n"),
    ):
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    dc = tmp_path / "dc"
    env = {"PATH": str(bindir), "HOME": str(tmp_path), "DOCKER_CONFIG": str(dc)}
    # a config.json with no logins: Docker's default store on Linux, `pass`, and it says so
    result = login("r.io", "u", "p4ss", env=env, verify=False)
    assert result.helper == "docker-credential-pass"
    assert json.loads((dc / "config.json").read_text()) == {"credsStore": "pass", "auths": {"r.io": {}}}
    assert json.loads(store.read_text()) == {"r.io": ["u", "p4ss"]}
    # one that already holds a plain login stays plain
    (dc / "config.json").write_text(json.dumps({"auths": {"s.io": {"auth": _auth("a", "b")}}}))
    assert login("r.io", "u", "p4ss", env=env, verify=False).helper is None
    assert json.loads((dc / "config.json").read_text())["auths"]["r.io"] == {"auth": _auth("u", "p4ss")}
    # without the helper installed, plain too
    (bindir / "docker-credential-pass").unlink()
    (dc / "config.json").unlink()
    assert login("r.io", "u", "p4ss", env=env, verify=False).helper is None


def test_default_store_that_fails_falls_back_to_plain(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, text in (
        ("docker-credential-pass", "#!/bin/sh\necho 'pass not initialized'\nexit 1\n"),
        ("pass", ""),
    ):
        (bindir / name).write_text(text or "#!/bin/sh\n")
        (bindir / name).chmod(0o755)
    dc = tmp_path / "dc"
    env = {"PATH": str(bindir), "HOME": str(tmp_path), "DOCKER_CONFIG": str(dc)}
    assert login("r.io", "u", "p4ss", env=env, verify=False).helper is None
    assert json.loads((dc / "config.json").read_text()) == {"auths": {"r.io": {"auth": _auth("u", "p4ss")}}}
    # a store the user configured that fails is an error
    (dc / "config.json").write_text(json.dumps({"credsStore": "pass"}))
    with pytest.raises(
        HelperError, match=r"^r.io: credential helper docker-credential-pass .* failed storing"
    ):
        login("r.io", "u", "p4ss", env=env, verify=False)


def test_login_keeps_a_symlinked_config(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "docker.json"
    real.parent.mkdir()
    real.write_text(json.dumps({"auths": {"s.io": {"auth": _auth("a", "b")}}, "detachKeys": "ctrl-x"}))
    link = tmp_path / "auth.json"
    link.symlink_to(real)
    login("r.io", "u", "p4ss", env={"HOME": str(tmp_path)}, authfile=str(link), verify=False)
    assert link.is_symlink()
    config = json.loads(real.read_text())
    assert config["detachKeys"] == "ctrl-x" and set(config["auths"]) == {"s.io", "r.io"}
