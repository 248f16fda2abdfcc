"""Acceptance 2: registries with htpasswd basic auth over TLS with a test CA, and with bearer
tokens; credentials from `docker login`'s config.json or the environment; clear errors; the
password never appears in output, errors or debug logs."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.fixtures import require
from tests.integration import test_registry_support as support
from tests.integration.test_registry_support import (
    CA,
    TokenService,
    env_without_credentials,
    htpasswd_line,
    registry_process,
    root_of,
    run_cli,
)

pytestmark = pytest.mark.registry
# session fixtures shared by the registry tests
busybox_dirs = support.busybox_dirs
single_image = support.single_image

USER = "alice"
PASSWORD = "s3cr3t-Pa55word-never-shown"
WRONG = "wr0ng-Pa55word-never-shown"


def secrets_absent(text: str) -> None:
    for secret in (PASSWORD, WRONG):
        assert secret not in text
        for form in (f"{USER}:{secret}", secret):
            assert base64.b64encode(form.encode()).decode() not in text
            assert base64.b64encode(form.encode()).decode().rstrip("=") not in text


def docker_cli() -> str:
    require_tool("docker")
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else shutil.which("docker") or "docker"


def test_htpasswd_over_tls_with_docker_login(single_image: Path, tmp_path: Path, docker_daemon: str) -> None:
    ca = CA(tmp_path / "ca")
    with registry_process(tmp_path / "reg", htpasswd=htpasswd_line(USER, PASSWORD), tls=ca) as reg:
        src = f"oci:{single_image}:v1"
        ref = f"{reg.host}/secure/img:v1"
        digest = root_of(single_image, "v1")["digest"]
        dcfg = tmp_path / "docker-config"
        dcfg.mkdir()
        env = env_without_credentials(DOCKER_CONFIG=str(dcfg))
        outputs: list[str] = []

        # TLS with an unknown CA is refused, with a hint
        r = run_cli("push", src, ref, env=env, check=False)
        outputs.append(r.stdout + r.stderr)
        assert r.returncode != 0
        assert "TLS certificate does not verify" in r.stderr and "--ca-cert" in r.stderr

        # no credentials: a clear error
        r = run_cli("push", src, ref, "--ca-cert", str(ca.ca_pem), env=env, check=False)
        assert r.returncode != 0
        assert "requires authentication and no credentials were found" in r.stderr

        # `docker login` writes config.json (dockerd needs the CA in certs.d to reach the registry)
        certs_d = Path("/etc/docker/certs.d") / reg.host
        require(os.access("/etc/docker", os.W_OK), "cannot write /etc/docker/certs.d (needs root)")
        certs_d.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy(ca.ca_pem, certs_d / "ca.crt")
            # Docker on Linux hands a login to docker-credential-pass when that and `pass` are on
            # PATH and config.json has no logins yet; this test is about plain `auths` entries
            bare = tmp_path / "bin"
            bare.mkdir()
            (bare / "docker").symlink_to(docker_cli())
            login = subprocess.run(
                [str(bare / "docker"), "login", reg.host, "-u", USER, "--password-stdin"],
                input=PASSWORD,
                capture_output=True,
                text=True,
                env={**env, "DOCKER_CONFIG": str(dcfg), "PATH": str(bare)},
            )
            assert login.returncode == 0, login.stderr
            config = json.loads((dcfg / "config.json").read_text())
            assert config["auths"][reg.host]["auth"]

            r = run_cli("push", src, ref, "--ca-cert", str(ca.ca_pem), "--debug", env=env)
            outputs.append(r.stdout + r.stderr)
            assert r.stdout.strip() == digest
            # the CA in /etc/docker/certs.d/HOST/ is used without --ca-cert, as docker does
            out = tmp_path / "pulled"
            r = run_cli("pull", ref, f"oci:{out}", "--debug", env=env)
            outputs.append(r.stdout + r.stderr)
            assert r.stdout.strip() == digest
        finally:
            shutil.rmtree(certs_d, ignore_errors=True)

        # credentials from the environment
        envcreds = env_without_credentials(
            DOCKERIFY_REGISTRY_USER=USER,
            DOCKERIFY_REGISTRY_PASSWORD=PASSWORD,
            DOCKER_CONFIG=str(tmp_path / "none"),
        )
        r = run_cli(
            "pull",
            ref,
            f"oci:{tmp_path / 'pulled-env'}",
            "--ca-cert",
            str(ca.ca_pem),
            "--debug",
            env=envcreds,
        )
        outputs.append(r.stdout + r.stderr)

        # `dockerify login` over TLS into a file of its own, the password piped in; one given on
        # the command line is refused without being echoed; a wrong one is refused by the registry
        authfile = tmp_path / "dockerify-auth.json"
        plain = env_without_credentials(DOCKER_CONFIG=str(tmp_path / "none"))
        for password, extra, ok in (
            (PASSWORD, ["--password-stdin"], True),
            ("", ["--password", PASSWORD], False),
            (WRONG, ["--password-stdin"], False),
        ):
            login = subprocess.run(
                [sys.executable, "-m", "dockerify", "login", reg.host, "-u", USER, *extra]
                + ["--authfile", str(authfile), "--ca-cert", str(ca.ca_pem), "--debug"],
                input=password,
                capture_output=True,
                text=True,
                env=plain,
            )
            outputs.append(login.stdout + login.stderr)
            assert (login.returncode == 0) is ok, login.stderr
        assert authfile.stat().st_mode & 0o077 == 0  # it holds the password: owner only
        r = run_cli(
            "pull",
            ref,
            f"oci:{tmp_path / 'pulled-login'}",
            "--authfile",
            str(authfile),
            "--ca-cert",
            str(ca.ca_pem),
            "--debug",
            env=plain,
        )
        outputs.append(r.stdout + r.stderr)
        assert r.stdout.strip() == digest

        # wrong credentials, from config.json and from the environment: a clear error, no secret
        bad = tmp_path / "bad-config"
        bad.mkdir()
        auth = base64.b64encode(f"{USER}:{WRONG}".encode()).decode()
        (bad / "config.json").write_text(json.dumps({"auths": {reg.host: {"auth": auth}}}))
        for bad_env in (
            env_without_credentials(DOCKER_CONFIG=str(bad)),
            env_without_credentials(
                DOCKERIFY_REGISTRY_USER=USER, DOCKERIFY_REGISTRY_PASSWORD=WRONG, DOCKER_CONFIG=str(bad)
            ),
        ):
            r = run_cli("push", src, ref, "--ca-cert", str(ca.ca_pem), "--debug", env=bad_env, check=False)
            outputs.append(r.stdout + r.stderr)
            assert r.returncode != 0
            assert f"authentication failed for user '{USER}'" in r.stderr
            assert "Traceback" in r.stderr  # --debug shows the traceback, and still no secret
        for text in outputs:
            secrets_absent(text)


def test_bearer_token_auth(single_image: Path, tmp_path: Path) -> None:
    ca = CA(tmp_path / "ca")
    tokens = TokenService(ca, USER, PASSWORD)
    try:
        token_cfg = {
            "realm": tokens.realm,
            "service": tokens.service,
            "issuer": tokens.issuer,
            "rootcertbundle": str(ca.ca_pem),
        }
        with registry_process(tmp_path / "reg", token=token_cfg) as reg:
            src = f"oci:{single_image}:v1"
            ref = f"{reg.host}/tokens/img:v1"
            good = env_without_credentials(
                DOCKERIFY_REGISTRY_USER=USER,
                DOCKERIFY_REGISTRY_PASSWORD=PASSWORD,
                DOCKER_CONFIG=str(tmp_path),
            )
            outputs = []
            r = run_cli("push", src, ref, "--debug", env=good)
            outputs.append(r.stdout + r.stderr)
            assert r.stdout.strip() == root_of(single_image, "v1")["digest"]
            scopes = [s for req in tokens.requests for s in req["scopes"]]
            assert any(s.startswith("repository:tokens/img:") and "push" in s for s in scopes), scopes
            r = run_cli("pull", ref, f"oci:{tmp_path / 'out'}", "--debug", env=good)
            outputs.append(r.stdout + r.stderr)
            assert r.stdout.strip() == root_of(single_image, "v1")["digest"]

            bad = env_without_credentials(
                DOCKERIFY_REGISTRY_USER=USER, DOCKERIFY_REGISTRY_PASSWORD=WRONG, DOCKER_CONFIG=str(tmp_path)
            )
            r = run_cli("pull", ref, f"oci:{tmp_path / 'bad'}", "--debug", env=bad, check=False)
            outputs.append(r.stdout + r.stderr)
            assert r.returncode != 0 and f"authentication failed for user '{USER}'" in r.stderr
            assert not (tmp_path / "bad").exists()

            none = env_without_credentials(DOCKER_CONFIG=str(tmp_path))
            r = run_cli("pull", ref, f"oci:{tmp_path / 'anon'}", env=none, check=False)
            assert r.returncode != 0 and "requires credentials and none were found" in r.stderr
            for text in outputs:
                secrets_absent(text)
    finally:
        tokens.stop()
