"""Helpers for the registry tests (no tests here): extra docker-registry instances with htpasswd,
TLS or token auth on free loopback ports, a bearer token service, a fault-injecting TCP proxy,
and the small busybox images the tests push around."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.server
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.conftest import REPO, dockerify, require_tool
from tests.fixtures import require

CACHE = REPO / ".cache" / "registry-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


# ---------------------------------------------------------------- certificates


class CA:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dockerify test CA")])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            # Key identifiers: Python 3.13's default context verifies strictly (RFC 5280), and
            # rejects a chain whose leaf lacks an Authority Key Identifier (Debian 13).
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_pem = directory / "ca.crt"
        self.ca_pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.server_key, self.server_cert = self.issue(
            "127.0.0.1",
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
        )
        self.server_key_pem = directory / "server.key"
        self.server_cert_pem = directory / "server.crt"
        self.server_key_pem.write_bytes(
            self.server_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        self.server_cert_pem.write_bytes(self.server_cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self, cn: str, sans: list[x509.GeneralName]
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        now = dt.datetime.now(dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())


# ---------------------------------------------------------------- registries


def htpasswd_line(user: str, password: str) -> str:
    require_tool("htpasswd")
    out = subprocess.run(["htpasswd", "-Bbn", user, password], capture_output=True, text=True, check=True)
    return out.stdout.strip() + "\n"


class Registry:
    """A docker-registry process with its own config, storage and port."""

    def __init__(
        self, workdir: Path, *, htpasswd: str | None = None, tls: CA | None = None, token: dict | None = None
    ) -> None:
        require_tool("docker-registry")
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {workdir / 'data'}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            f"  secret: {uuid.uuid4().hex}",
        ]
        if tls is not None:
            lines += ["  tls:", f"    certificate: {tls.server_cert_pem}", f"    key: {tls.server_key_pem}"]
        if htpasswd is not None:
            (workdir / "htpasswd").write_text(htpasswd)
            lines += [
                "auth:",
                "  htpasswd:",
                "    realm: dockerify-test",
                f"    path: {workdir / 'htpasswd'}",
            ]
        if token is not None:
            lines += ["auth:", "  token:"] + [f"    {k}: {v}" for k, v in token.items()]
        (workdir / "config.yml").write_text("\n".join(lines) + "\n")
        self.log = open(workdir / "registry.log", "wb")
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(workdir / "config.yml")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_port(self.port)
        except AssertionError:
            self.stop()
            raise AssertionError((workdir / "registry.log").read_text()) from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@contextmanager
def registry_process(workdir: Path, **kw) -> Iterator[Registry]:
    reg = Registry(workdir, **kw)
    try:
        yield reg
    finally:
        reg.stop()


# ---------------------------------------------------------------- a bearer token service


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    """The token endpoint of Docker's token auth: Basic credentials in, a signed JWT out
    (ES256, the signing certificate in x5c, issued by the test CA the registry trusts); with
    offline_token=true also a refresh token, which the OAuth2 refresh_token grant (a form POST)
    takes instead of a password."""

    issuer = "dockerify-test-issuer"
    service = "dockerify-test-registry"

    def __init__(self, ca: CA, user: str, password: str) -> None:
        self.key, self.cert = ca.issue("token signer", [])
        self.user, self.password = user, password
        self.requests: list[dict] = []
        self.refresh_tokens: set[str] = set()
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                expected = "Basic " + base64.b64encode(f"{service.user}:{service.password}".encode()).decode()
                ok = self.headers.get("Authorization") == expected
                service.requests.append({"scopes": query.get("scope", []), "ok": ok})
                if not ok:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                answer = {"token": service.token(query.get("scope", []))}
                if query.get("offline_token") == ["true"]:  # `docker login` asks for a refresh token
                    answer["refresh_token"] = uuid.uuid4().hex
                    service.refresh_tokens.add(answer["refresh_token"])
                self._json(200, answer)

            def do_POST(self) -> None:  # noqa: N802
                # the OAuth2 refresh_token grant Docker uses with an identity token
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                grant = form.get("grant_type", [""])[0]
                ok = grant == "refresh_token" and form.get("refresh_token", [""])[0] in service.refresh_tokens
                scopes = form.get("scope", [""])[0].split(" ") if form.get("scope") else []
                service.requests.append(
                    {"scopes": scopes, "ok": ok, "grant": grant, "client_id": form.get("client_id", [""])[0]}
                )
                if not ok:
                    self._json(401, {"error": "invalid_grant"})
                    return
                self._json(200, {"access_token": service.token(scopes), "expires_in": 300})

            def _json(self, status: int, answer: dict) -> None:
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            for one in scope.split(" "):
                kind, _, rest = one.partition(":")
                name, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        claims = {
            "iss": self.issuer,
            "sub": self.user,
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------- a fault-injecting proxy


class Proxy:
    """A TCP proxy on a free loopback port to `upstream_port`, which can
    - cut the first connection whose upload passes `cut_upload_after` bytes (once),
    - cut the first connection whose download passes `cut_download_after` bytes (once),
    - flip one byte at download offset `flip_at` of every connection."""

    def __init__(
        self,
        upstream_port: int,
        cut_upload_after: int | None = None,
        cut_download_after: int | None = None,
        flip_at: int | None = None,
    ) -> None:
        self.upstream = upstream_port
        self.cut_upload_after, self.cut_download_after, self.flip_at = (
            cut_upload_after,
            cut_download_after,
            flip_at,
        )
        self.cuts = 0
        self.flips = 0
        # Every byte that crossed the proxy, each way (HTTP headers included): what a push or
        # pull really moved, measured outside dockerify.
        self.uploaded = 0
        self.downloaded = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self.stopping = False
        self.threads: list[threading.Thread] = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                client.close()
                continue
            pair = (client, server)
            for src, dst, upload in ((client, server, True), (server, client, False)):
                t = threading.Thread(target=self._pump, args=(src, dst, upload, pair), daemon=True)
                t.start()

    def _cut(self, pair: tuple[socket.socket, socket.socket]) -> None:
        for s in pair:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _pump(
        self, src: socket.socket, dst: socket.socket, upload: bool, pair: tuple[socket.socket, socket.socket]
    ) -> None:
        seen = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                limit = self.cut_upload_after if upload else self.cut_download_after
                if limit is not None and seen + len(data) > limit:
                    with self.lock:
                        cut = limit is not None and self.cuts == 0
                        if cut:
                            self.cuts += 1
                    if cut:
                        dst.sendall(data[: max(0, limit - seen)])
                        self._cut(pair)
                        return
                if not upload and self.flip_at is not None and seen <= self.flip_at < seen + len(data):
                    i = self.flip_at - seen
                    data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
                    with self.lock:
                        self.flips += 1
                seen += len(data)
                dst.sendall(data)
                with self.lock:
                    if upload:
                        self.uploaded += len(data)
                    else:
                        self.downloaded += len(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def stop(self) -> None:
        self.stopping = True
        self.listener.close()


@contextmanager
def proxy(upstream_port: int, **kw) -> Iterator[Proxy]:
    p = Proxy(upstream_port, **kw)
    try:
        yield p
    finally:
        p.stop()


# ---------------------------------------------------------------- test images


def _arm64_busybox() -> Path:
    """busybox-static for arm64 from Debian, cached under .cache/."""
    target = CACHE / "busybox-arm64" / "bin" / "busybox"
    if target.is_file():
        return target
    debs = CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob("busybox-static_*_arm64.deb"))
    if not found:
        fixtures_debs = sorted((REPO / ".fixtures" / "debs").glob("busybox-static_*_arm64.deb"))
        if fixtures_debs:
            shutil.copy(fixtures_debs[0], debs)
        else:
            subprocess.run(["apt-get", "download", "busybox-static:arm64"], cwd=debs, capture_output=True)
        found = sorted(debs.glob("busybox-static_*_arm64.deb"))
    require(found, "cannot download busybox-static:arm64 (dpkg --add-architecture arm64 && apt-get update)")
    out = CACHE / "busybox-arm64"
    subprocess.run(["dpkg-deb", "-x", str(found[0]), str(out)], check=True)
    return target


def busybox_tree(root: Path, busybox: Path, marker: str) -> Path:
    (root / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "marker").write_text(marker + "\n")
    return root


@pytest.fixture(scope="session")
def busybox_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    amd64 = Path("/bin/busybox")
    require(amd64.is_file(), "/bin/busybox is missing (apt-get install busybox-static)")
    base = tmp_path_factory.mktemp("trees")
    return {
        "amd64": busybox_tree(base / "amd64", amd64, "amd64"),
        "arm64": busybox_tree(base / "arm64", _arm64_busybox(), "arm64"),
    }


@pytest.fixture(scope="session")
def multi_image(busybox_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OCI layout with a two-platform index tagged v1 (linux/amd64, linux/arm64)."""
    out = tmp_path_factory.mktemp("images") / "multi"
    dockerify(
        "build",
        f"linux/amd64={busybox_dirs['amd64']}",
        f"linux/arm64={busybox_dirs['arm64']}",
        "--cmd",
        '["/bin/busybox", "cat", "/etc/marker"]',
        "--output",
        f"oci:{out}:v1",
        "-q",
    )
    return out


@pytest.fixture(scope="session")
def single_image(busybox_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("images") / "single"
    dockerify(
        "build",
        str(busybox_dirs["amd64"]),
        "--cmd",
        '["/bin/busybox", "cat", "/etc/marker"]',
        "--output",
        f"oci:{out}:v1",
        "-q",
    )
    return out


def unique(name: str) -> str:
    """A repository name no earlier run used (the shared registry keeps its data)."""
    return f"dockerify-test/{name}-{uuid.uuid4().hex[:8]}"


def blob_files(layout: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() for p in (layout / "blobs" / "sha256").iterdir() if not p.name.startswith(".")
    }


def root_of(layout: Path, tag: str | None = None) -> dict:
    index = json.loads((layout / "index.json").read_text())
    for d in index["manifests"]:
        if tag is None or d.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return d
    raise AssertionError(f"{layout}: no tag {tag}")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def env_without_credentials(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKERIFY_REGISTRY_")}
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh process with exactly `env` (default: ours minus registry credentials)."""
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "dockerify", *args],
        capture_output=True,
        text=True,
        env=env if env is not None else env_without_credentials(),
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"dockerify {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc
