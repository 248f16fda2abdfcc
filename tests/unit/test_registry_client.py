"""The registry client against an in-process fake registry: retries with backoff on 5xx and
dropped connections, none on 4xx; uploads that resume at the registry's offset; existing
blobs not sent again; downloads checked against digest and size."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockerify.errors import CorruptInput, DockerifyError
from dockerify.registry.client import Options, RegistryClient, RegistryError
from dockerify.registry.reference import parse_reference

FAST = Options(backoff=0.01, retries=3, chunk_size=512 << 10)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    """Just enough of the distribution API, with faults on demand."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[bytes, str]] = {}
        self.uploads: dict[str, bytearray] = {}
        self.log: list[tuple[str, str]] = []
        self.faults: list[tuple[str, str, int]] = []  # (method, path fragment, status); 0 = drop
        self.drop_patch_at: int | None = None  # keep this many bytes of one PATCH, then drop it
        self.tamper = False
        reg = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", "0")))

            def handle_any(self) -> None:
                path = self.path.split("?", 1)[0]
                reg.log.append((self.command, path))
                for i, (method, frag, status) in enumerate(reg.faults):
                    if method == self.command and frag in path:
                        del reg.faults[i]
                        if status == 0:
                            self.close_connection = True
                            self.connection.shutdown(2)
                            return
                        self.body()
                        return self.reply(
                            status, json.dumps({"errors": [{"code": "X", "message": "injected"}]}).encode()
                        )
                parts = path.split("/")
                if path == "/v2/":
                    return self.reply(200, b"{}")
                if "/blobs/uploads/" in path:
                    return self.upload(parts[-1])
                if "/blobs/" in path:
                    digest = parts[-1]
                    if digest not in reg.blobs:
                        return self.reply(404)
                    data = reg.blobs[digest]
                    if reg.tamper:
                        data = data[:-1] + bytes([data[-1] ^ 1])
                    rng = self.headers.get("Range")
                    if rng:
                        start = int(rng.removeprefix("bytes=").split("-")[0])
                        return self.reply(
                            206, data[start:], {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
                        )
                    return self.reply(200, data)
                if "/manifests/" in path:
                    ref = parts[-1]
                    if self.command == "PUT":
                        data = self.body()
                        reg.manifests[ref] = reg.manifests[sha(data)] = (data, self.headers["Content-Type"])
                        return self.reply(201, headers={"Docker-Content-Digest": sha(data)})
                    if ref not in reg.manifests:
                        return self.reply(404)
                    data, mt = reg.manifests[ref]
                    return self.reply(200, data, {"Content-Type": mt, "Docker-Content-Digest": sha(data)})
                self.reply(404)

            def upload(self, uid: str) -> None:
                if self.command == "POST":
                    uid = uuid.uuid4().hex
                    reg.uploads[uid] = bytearray()
                    return self.reply(202, headers={"Location": f"/v2/repo/blobs/uploads/{uid}"})
                if uid not in reg.uploads:
                    self.body()
                    return self.reply(404)
                buf = reg.uploads[uid]
                if self.command == "GET":
                    return self.reply(
                        204,
                        headers={"Location": f"/v2/repo/blobs/uploads/{uid}", "Range": f"0-{len(buf) - 1}"},
                    )
                if self.command == "PATCH":
                    start = int(self.headers["Content-Range"].split("-")[0])
                    if start != len(buf):
                        self.body()
                        return self.reply(416)
                    n = int(self.headers["Content-Length"])
                    if reg.drop_patch_at is not None and len(buf) + n > reg.drop_patch_at:
                        keep = reg.drop_patch_at - len(buf)
                        reg.drop_patch_at = None
                        buf.extend(self.rfile.read(keep))
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    buf.extend(self.rfile.read(n))
                    return self.reply(
                        202,
                        headers={"Location": f"/v2/repo/blobs/uploads/{uid}", "Range": f"0-{len(buf) - 1}"},
                    )
                if self.command == "PUT":
                    buf.extend(self.body())
                    digest = self.path.split("digest=", 1)[1].replace("%3A", ":")
                    if sha(bytes(buf)) != digest:
                        return self.reply(400)
                    reg.blobs[digest] = bytes(buf)
                    return self.reply(201, headers={"Docker-Content-Digest": digest})

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = handle_any  # noqa: N815

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, method: str, fragment: str = "") -> int:
        return sum(1 for m, p in self.log if m == method and fragment in p)


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    reg = FakeRegistry()
    yield reg
    reg.server.shutdown()
    reg.server.server_close()


def client(fake: FakeRegistry, **kw: object) -> RegistryClient:
    opts = Options(**{**FAST.__dict__, **kw})  # type: ignore[arg-type]
    return RegistryClient(parse_reference(f"{fake.host}/repo:v1"), opts, credentials=None)


def test_retries_5xx_with_backoff_then_succeeds(fake: FakeRegistry) -> None:
    fake.manifests["v1"] = (b"{}", "application/vnd.oci.image.manifest.v1+json")
    fake.faults += [("GET", "/manifests/", 503), ("GET", "/manifests/", 502)]
    data, _, digest = client(fake).get_manifest_bytes("v1")
    assert data == b"{}" and digest == sha(b"{}")
    assert fake.count("GET", "/manifests/") == 3


def test_gives_up_after_the_retry_budget(fake: FakeRegistry) -> None:
    fake.faults += [("HEAD", "/blobs/", 500)] * 5
    with pytest.raises(RegistryError, match="HTTP 500"):
        client(fake, retries=2).has_blob(sha(b"x"))
    assert fake.count("HEAD", "/blobs/") == 3


@pytest.mark.parametrize("status", [400, 403, 404, 429])
def test_never_retries_4xx(fake: FakeRegistry, status: int) -> None:
    fake.manifests["v1"] = (b"{}", "application/vnd.oci.image.manifest.v1+json")
    fake.faults.append(("GET", "/manifests/", status))
    with pytest.raises(DockerifyError) as e:
        client(fake).get_manifest_bytes("v1")
    assert fake.count("GET", "/manifests/") == 1
    assert "repo" in str(e.value)


def test_retries_dropped_connections(fake: FakeRegistry) -> None:
    fake.manifests["v1"] = (b"{}", "application/vnd.oci.image.manifest.v1+json")
    fake.faults += [("GET", "/manifests/", 0), ("GET", "/manifests/", 0)]
    assert client(fake).get_manifest_bytes("v1")[0] == b"{}"


def test_chunked_upload_resumes_at_the_registry_offset(fake: FakeRegistry, tmp_path: Path) -> None:
    data = os.urandom(1536 << 10)  # over SMALL_BLOB, so chunked
    path = tmp_path / "blob"
    path.write_bytes(data)
    fake.drop_patch_at = 700 << 10  # mid-way through the second 512 KiB chunk
    assert client(fake).push_blob_file(path, sha(data), len(data))
    assert fake.blobs[sha(data)] == data
    assert fake.count("POST", "/uploads/") == 1  # resumed, not restarted
    assert fake.count("GET", "/uploads/") == 1, fake.log  # asked where the upload stood


def test_upload_restarts_when_the_registry_lost_it(fake: FakeRegistry, tmp_path: Path) -> None:
    data = os.urandom(1200 << 10)
    path = tmp_path / "blob"
    path.write_bytes(data)
    fake.faults += [("PATCH", "/uploads/", 0), ("GET", "/uploads/", 404)]
    assert client(fake).push_blob_file(path, sha(data), len(data))
    assert fake.blobs[sha(data)] == data
    assert fake.count("POST", "/uploads/") == 2


def test_existing_blob_is_not_uploaded(fake: FakeRegistry, tmp_path: Path) -> None:
    data = b"already there"
    fake.blobs[sha(data)] = data
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert client(fake).push_blob_file(path, sha(data), len(data)) is False
    assert fake.count("POST") == 0 and fake.count("PATCH") == 0


def test_download_checks_digest_and_size(fake: FakeRegistry, tmp_path: Path) -> None:
    data = os.urandom(50_000)
    fake.blobs[sha(data)] = data
    c = client(fake)
    c.fetch_blob_to(sha(data), len(data), tmp_path / "ok")
    assert (tmp_path / "ok").read_bytes() == data
    with pytest.raises(CorruptInput, match="more than"):
        c.fetch_blob_to(sha(data), len(data) - 1, tmp_path / "short")
    fake.tamper = True
    with pytest.raises(CorruptInput, match="digest mismatch"):
        c.fetch_blob_to(sha(data), len(data), tmp_path / "bad")
    with pytest.raises(CorruptInput, match="digest mismatch"):
        c.fetch_blob_bytes(sha(data), len(data), limit=1 << 20)


def test_manifest_digest_is_checked(fake: FakeRegistry) -> None:
    fake.manifests[sha(b"{}")] = (b'{"x":1}', "application/vnd.oci.image.manifest.v1+json")
    with pytest.raises(CorruptInput, match="digest"):
        client(fake).get_manifest_bytes(sha(b"{}"))


def test_plain_http_only_for_loopback_or_insecure(monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[str] = []
    import requests

    def fake_get(self: object, url: str, **kw: object) -> object:
        tried.append(url)
        raise requests.ConnectionError("Connection refused")

    monkeypatch.setattr(requests.Session, "get", fake_get)
    remote = RegistryClient(parse_reference("registry.example.com/repo:v1"), FAST, credentials=None)
    with pytest.raises(RegistryError, match="cannot reach"):
        remote.base()
    assert tried and all(u.startswith("https://") for u in tried)
    tried.clear()
    local = RegistryClient(parse_reference("127.0.0.1:1/repo:v1"), FAST, credentials=None)
    with pytest.raises(RegistryError):
        local.base()
    assert any(u.startswith("http://") for u in tried)
    tried.clear()
    insecure = RegistryClient(
        parse_reference("registry.example.com/repo:v1"),
        Options(insecure=True, backoff=0.01),
        credentials=None,
    )
    with pytest.raises(RegistryError):
        insecure.base()
    assert any(u.startswith("http://") for u in tried)
