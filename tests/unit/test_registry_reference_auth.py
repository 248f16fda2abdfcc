"""Registry references, credentials from config.json and the environment, challenges."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from dockerify.errors import DockerifyError
from dockerify.registry.auth import Credentials, find_credentials, parse_challenge
from dockerify.registry.reference import is_loopback, parse_reference

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repo", "tag", "digest"),
    [
        ("127.0.0.1:5000/pi/os:bookworm", "127.0.0.1:5000", "pi/os", "bookworm", None),
        ("localhost/x", "localhost", "x", "latest", None),
        ("debian", "docker.io", "library/debian", "latest", None),
        ("docker.io/debian:12", "docker.io", "library/debian", "12", None),
        ("index.docker.io/user/app", "docker.io", "user/app", "latest", None),
        (f"ghcr.io/o/r@{D}", "ghcr.io", "o/r", None, D),
        (f"ghcr.io/o/r:t@{D}", "ghcr.io", "o/r", "t", D),
        ("[::1]:5000/a/b:c", "[::1]:5000", "a/b", "c", None),
        ("docker://reg.example:443/a", "reg.example:443", "a", "latest", None),
    ],
)
def test_parse_reference(text: str, registry: str, repo: str, tag: str | None, digest: str | None) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repo, tag, digest)
    assert ref.reference == (digest or tag)


@pytest.mark.parametrize(
    "text", ["", "UPPER/case", "reg:5000/a:b:c", "a/b@sha256:short", "a/b:bad/tag", "a//b"]
)
def test_parse_reference_rejects(text: str) -> None:
    with pytest.raises(DockerifyError):
        parse_reference(text)


def test_names() -> None:
    assert parse_reference("debian").name == "index.docker.io/library/debian"
    assert parse_reference("debian").api_host == "registry-1.docker.io"
    assert parse_reference("127.0.0.1:5000/a:v").name == "127.0.0.1:5000/a"
    assert str(parse_reference(f"r.io/a:t@{D}")) == f"r.io/a:t@{D}"


@pytest.mark.parametrize(
    ("host", "loop"),
    [
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("localhost:80", True),
        ("[::1]:5000", True),
        ("10.0.0.1:5000", False),
        ("registry.example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_loopback(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop


def _config(tmp_path: Path, body: dict) -> dict[str, str]:
    (tmp_path / "config.json").write_text(json.dumps(body))
    return {"DOCKER_CONFIG": str(tmp_path)}


def test_credentials_from_docker_config(tmp_path: Path) -> None:
    auth = base64.b64encode(b"bob:pa:ss").decode()
    env = _config(
        tmp_path,
        {"auths": {"https://index.docker.io/v1/": {"auth": auth}, "http://127.0.0.1:5000": {"auth": auth}}},
    )
    for registry in ("docker.io", "127.0.0.1:5000"):
        creds = find_credentials(registry, env)
        assert creds is not None and creds.username == "bob"
        assert creds.basic() == "Basic " + auth
    assert find_credentials("other.example", env) is None


def test_environment_wins_and_secrets_never_print(tmp_path: Path) -> None:
    env = _config(tmp_path, {"auths": {"r.io": {"auth": base64.b64encode(b"file:filepw").decode()}}})
    env.update(DOCKERIFY_REGISTRY_USER="envuser", DOCKERIFY_REGISTRY_PASSWORD="hunter2-secret")
    creds = find_credentials("r.io", env)
    assert creds is not None and creds.username == "envuser" and creds.source == "environment"
    for text in (repr(creds), str(creds), f"{creds}", f"{creds!r}"):
        assert "hunter2" not in text and "<hidden>" in text
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(creds)


def test_missing_credential_helper_is_named(tmp_path: Path) -> None:
    env = _config(tmp_path, {"auths": {"gcr.io": {}}, "credHelpers": {"gcr.io": "dockerify-no-such"}})
    env["PATH"] = str(tmp_path)  # where no helper is
    with pytest.raises(
        DockerifyError, match=r"^gcr.io: the credential helper docker-credential-dockerify-no-such"
    ):
        find_credentials("gcr.io", env)


def test_bad_auth_field_is_named(tmp_path: Path) -> None:
    env = _config(tmp_path, {"auths": {"r.io": {"auth": "%%%not base64"}}})
    with pytest.raises(DockerifyError, match=r"config.json: auths.r.io.auth"):
        find_credentials("r.io", env)


def test_parse_challenge() -> None:
    c = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"'
    )
    assert c is not None and c.scheme == "bearer"
    assert c.params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:a/b:pull,push",
    }
    b = parse_challenge('Basic realm="Registry Realm"')
    assert b is not None and b.scheme == "basic" and b.params["realm"] == "Registry Realm"
    assert parse_challenge("") is None


def test_credentials_type() -> None:
    c = Credentials("u", "p", "x")
    assert c.basic() == "Basic " + base64.b64encode(b"u:p").decode()
