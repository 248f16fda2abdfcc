"""The HTTP side of the OCI distribution API, built on oras-py's Registry.

oras-py gives the session, URL building (its Container) and the method names; this module adds
what it lacks for large images over real networks:

- one request path (`request`) with auth challenges answered (Basic or Bearer, see auth.py),
  retries with exponential backoff on connection errors and 5xx, never on 4xx;
- blob uploads streamed from disk in chunks (POST, PATCH..., PUT) that resume from the
  registry's reported offset, or restart cleanly, after a dropped connection; HEAD first so
  an existing blob is never sent again;
- blob downloads streamed to disk with sha256 and size checked before the caller may use
  them, resumed with a Range request after a dropped connection;
- manifests fetched as raw bytes (never re-serialised) and checked against their digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import json as _json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import oras.container
import oras.provider
import oras.utils
import requests
import requests.adapters
import urllib3.exceptions

from dockerify.errors import CorruptInput, DockerifyError, NotFound
from dockerify.oci.blobcheck import METADATA_LIMIT, BlobCheck, read_checked
from dockerify.oci.model import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
)
from dockerify.paths import require_file
from dockerify.registry.auth import Authenticator, AuthError, Credentials, credentials_loader
from dockerify.registry.reference import Reference, split_host  # noqa: F401

log = logging.getLogger("dockerify")
# urllib3 logs every connection and full URL at DEBUG; our own request lines say what matters.
logging.getLogger("urllib3").setLevel(logging.INFO)

MANIFEST_ACCEPT = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)
MANIFEST_LIMIT = 4 << 20  # the OCI distribution spec's recommended manifest size limit
READ_BLOCK = 1 << 20
_ALTERED = "the registry or something between it and you altered the data; nothing was written"
SEND_BLOCK = 1 << 20
SMALL_BLOB = 1 << 20  # blobs up to this size go in one PUT
_CERT_DIRS = ("/etc/containers/certs.d", "/etc/docker/certs.d")
_NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
    ConnectionError,
)


class RegistryError(DockerifyError):
    """The registry answered with an error, or could not be reached."""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Options:
    """How to talk to a registry. `from_env` reads the same settings from DOCKERIFY_* variables,
    for commands (build, export, inspect) that reach registries without registry flags."""

    insecure: bool = False  # allow plain HTTP and unverified TLS for any host
    ca_cert: str | None = None  # a CA bundle to verify the registry with
    retries: int = 5
    backoff: float = 1.0  # first delay in seconds; doubles each time, capped at 30
    chunk_size: int = 128 << 20
    timeout: float = 300.0  # seconds without data before a request counts as dropped
    jobs: int = 4  # blobs transferred at once
    authfile: str | None = None  # skopeo's --authfile: the login file searched first

    @classmethod
    def from_env(cls, **overrides: Any) -> Options:
        opts = cls(
            insecure=_env_flag("DOCKERIFY_INSECURE"),
            ca_cert=os.environ.get("DOCKERIFY_CA_CERT") or None,
        )
        if os.environ.get("DOCKERIFY_CHUNK_SIZE"):
            opts = replace(opts, chunk_size=max(1, int(os.environ["DOCKERIFY_CHUNK_SIZE"])))
        if os.environ.get("DOCKERIFY_RETRY_BACKOFF"):
            opts = replace(opts, backoff=float(os.environ["DOCKERIFY_RETRY_BACKOFF"]))
        if os.environ.get("DOCKERIFY_RETRIES"):
            opts = replace(opts, retries=int(os.environ["DOCKERIFY_RETRIES"]))
        return replace(opts, **{k: v for k, v in overrides.items() if v is not None})


def _short(url: str) -> str:
    """A URL without its query (upload state tokens are long and say nothing to a reader)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _reason(e: BaseException) -> str:
    text = str(e)
    for marker in ("Connection refused", "Connection reset", "Broken pipe", "timed out", "Name or service"):
        if marker in text:
            return marker.lower()
    return type(e).__name__


def _error_detail(r: requests.Response) -> str:
    """The registry's own error code and message, when it sent the standard JSON."""
    try:
        body = r.json()
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors and isinstance(errors[0], dict):
            first = errors[0]
            return f"{first.get('code', '')}: {first.get('message', '')}".strip(": ")
    except ValueError:
        pass
    return r.reason or ""


class FileSlice:
    """`length` bytes of a file from `offset`, as an iterable request body of known length.

    requests sends iterables as they come (the blocks size the socket writes) and reads the
    length from __len__, so the body streams from disk with bounded memory."""

    def __init__(
        self, path: Path, offset: int, length: int, progress: Callable[[int], object] | None
    ) -> None:
        self.path, self.offset, self.length, self.progress = path, offset, length, progress

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        left = self.length
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            while left:
                block = f.read(min(SEND_BLOCK, left))
                if not block:
                    raise CorruptInput(f"{self.path}: file shrank while uploading")
                left -= len(block)
                if self.progress:
                    self.progress(len(block))
                yield block


def _cert_dir_ca(host: str) -> str | None:
    """A CA from /etc/docker/certs.d/HOST:PORT/ (or containers' certs.d), as docker and skopeo use."""
    for root in _CERT_DIRS:
        d = Path(root) / host
        if d.is_dir():
            crts = sorted(d.glob("*.crt"))
            if crts:
                return str(crts[0])
    return None


class RegistryClient(oras.provider.Registry):  # type: ignore[misc]  # oras ships no type information
    """One repository on one registry."""

    def __init__(
        self, ref: Reference, options: Options | None = None, credentials: Credentials | None = None
    ) -> None:
        self.options = options or Options.from_env()
        ca = self.options.ca_cert or _cert_dir_ca(ref.api_host)
        if self.options.ca_cert:
            require_file(self.options.ca_cert, f"--ca-cert {self.options.ca_cert}")
        verify: bool | str = ca or True
        super().__init__(hostname=ref.api_host, insecure=False, tls_verify=verify)
        self.ref = ref
        self.where = f"{ref.registry}/{ref.repository}"
        self._verify = verify
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=2, pool_maxsize=self.options.jobs + 2, max_retries=0
        )
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.headers["User-Agent"] = "dockerify"
        creds = (
            credentials
            if credentials is not None
            else credentials_loader(ref.registry, self.options.authfile, ref.repository)
        )
        self.auth = Authenticator(ref.registry, self.session, verify, creds, self.options.insecure)
        self.container = oras.container.Container(f"{ref.api_host}/{ref.repository}", registry=ref.api_host)
        namespace, _, name = ref.repository.rpartition("/")
        self.container.registry, self.container.namespace, self.container.repository = (
            ref.api_host,
            namespace or None,
            name,
        )
        self._base: str | None = None
        self._connect_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RegistryClient({self.where})"

    __str__ = __repr__

    # ------------------------------------------------------------ transport

    def base(self) -> str:
        """scheme://host: HTTPS, or plain HTTP for a loopback registry (or with --insecure)
        when the registry does not speak TLS."""
        with self._connect_lock:
            if self._base is None:
                self._base = self._probe()
                self.prefix = self._base.split(":", 1)[0]
            return self._base

    def _probe(self) -> str:
        host = self.ref.api_host
        plain_ok = self.ref.loopback or self.options.insecure
        try:
            self._ping(f"https://{host}")
            return f"https://{host}"
        except requests.exceptions.SSLError as e:
            text = str(e)
            if (
                "CERTIFICATE_VERIFY_FAILED" in text
                or "certificate verify failed" in text
                or "hostname" in text
            ):
                if self.options.insecure:
                    log.warning("%s: TLS certificate not verified (--insecure)", host)
                    self._verify = False
                    self.auth._tls_verify = False
                    return f"https://{host}"
                raise RegistryError(
                    f"{host}: the registry's TLS certificate does not verify",
                    hint="pass --ca-cert FILE with the CA that signed it, or put it in "
                    f"/etc/docker/certs.d/{host}/ca.crt",
                ) from None
            if not plain_ok:
                raise RegistryError(
                    f"{host}: TLS handshake failed ({_reason(e)})",
                    hint="plain HTTP is used only for loopback registries or with --insecure",
                ) from None
        except _NETWORK_ERRORS as e:
            if not plain_ok:
                raise RegistryError(f"{host}: cannot reach the registry ({_reason(e)})") from None
        log.debug(
            "%s: no TLS; using plain HTTP (%s)", host, "loopback" if self.ref.loopback else "--insecure"
        )
        try:
            self._ping(f"http://{host}")
        except _NETWORK_ERRORS as e:
            raise RegistryError(f"{host}: cannot reach the registry ({_reason(e)})") from None
        return f"http://{host}"

    def _ping(self, base: str) -> None:
        attempt = 0
        while True:
            try:
                r = self.session.get(f"{base}/v2/", verify=self._verify, timeout=(15, 30))
                r.close()
                log.debug("GET %s/v2/ -> %s", base, r.status_code)
                return
            except requests.exceptions.SSLError:
                raise
            except _NETWORK_ERRORS as e:
                if "refused" in str(e) or attempt >= min(2, self.options.retries):
                    raise
                self._sleep(attempt, "GET /v2/", e)
                attempt += 1

    def _sleep(self, attempt: int, what: str, why: object) -> None:
        delay = min(30.0, self.options.backoff * (2**attempt)) * (0.8 + 0.4 * random.random())
        log.debug("%s: %s; retrying in %.1fs", what, why, delay)
        time.sleep(delay)

    def url(self, path: str) -> str:
        return f"{self.base()}/v2/{self.ref.repository}/{path}"

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | FileSlice | Callable[[], Any] | None = None,
        stream: bool = False,
        retry: bool = True,
    ) -> requests.Response:
        """Send one request: auth challenges answered, connection errors and 5xx retried with
        backoff (when `retry`), 4xx returned to the caller as they are."""
        attempt = 0
        auth_rounds = 0
        what = f"{method} {_short(url)}"
        while True:
            h = dict(headers or {})
            used = self.auth.apply(h)
            data = body() if callable(body) else body
            try:
                r: requests.Response = self.session.request(
                    method,
                    url,
                    data=data,
                    headers=h,
                    stream=stream,
                    verify=self._verify,
                    timeout=(30, self.options.timeout),
                    allow_redirects=method in ("GET", "HEAD"),
                )
            except requests.exceptions.SSLError:
                raise RegistryError(
                    f"{self.ref.api_host}: TLS error on {what}",
                    hint="pass --ca-cert FILE with the registry's CA",
                ) from None
            except _NETWORK_ERRORS as e:
                if not retry or attempt >= self.options.retries:
                    raise RegistryError(f"{self.where}: {what} failed: {_reason(e)}") from e
                self._sleep(attempt, what, _reason(e))
                attempt += 1
                continue
            log.debug("%s -> %s", what, r.status_code)
            if r.status_code == 401:
                r.close()
                if auth_rounds >= 2:
                    raise self.auth.denied()
                self.auth.handle(r, used)
                auth_rounds += 1
                continue
            if r.status_code >= 500 and retry and attempt < self.options.retries:
                r.close()
                self._sleep(attempt, what, f"HTTP {r.status_code}")
                attempt += 1
                continue
            return r

    def do_request(
        self,
        url: str,
        method: str = "GET",
        data: dict[str, Any] | bytes | None = None,
        headers: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """oras-py's request hook, routed through `request` so its helpers share our auth and retries."""
        if json is not None:
            data = _json.dumps(json).encode()
        return self.request(
            method, url, headers=headers, body=data if isinstance(data, bytes) else None, stream=stream
        )

    def _fail(self, r: requests.Response, what: str) -> DockerifyError:
        detail = _error_detail(r)
        r.close()
        text = f"{self.where}: {what}: HTTP {r.status_code}" + (f" ({detail})" if detail else "")
        if r.status_code == 404:
            return NotFound(text)
        if r.status_code == 403:
            return AuthError(text, hint="the account lacks access to this repository")
        return RegistryError(text)

    # ------------------------------------------------------------ manifests

    def get_manifest_bytes(self, reference: str) -> tuple[bytes, str, str]:
        """The manifest (or index) named by a tag or digest: raw bytes, media type, digest."""
        r = self.request(
            "GET",
            self.url(f"manifests/{reference}"),
            headers={"Accept": ", ".join(MANIFEST_ACCEPT)},
            stream=True,
        )
        if r.status_code == 404:
            r.close()
            raise NotFound(f"{self.where}:{reference}: no such manifest in the registry")
        if r.status_code != 200:
            raise self._fail(r, f"manifest {reference}")
        try:
            data = r.raw.read(MANIFEST_LIMIT + 1, decode_content=True)
        except _NETWORK_ERRORS as e:
            raise RegistryError(f"{self.where}: manifest {reference}: {_reason(e)}") from None
        finally:
            r.close()
        if len(data) > MANIFEST_LIMIT:
            raise CorruptInput(f"{self.where}:{reference}: manifest larger than {MANIFEST_LIMIT} bytes")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise CorruptInput(
                f"{self.where}@{reference}: the registry sent a manifest whose digest is {digest}",
                hint="the registry or something between it and you altered the data; nothing was written",
            )
        claimed = r.headers.get("Docker-Content-Digest", "")
        if claimed.startswith("sha256:") and claimed != digest:
            raise CorruptInput(
                f"{self.where}:{reference}: manifest digest {digest} differs from the registry's header {claimed}",
                hint="the registry or something between it and you altered the data; nothing was written",
            )
        media_type = r.headers.get("Content-Type", "").split(";", 1)[0].strip()
        return data, media_type, digest

    def head_manifest(self, reference: str) -> Descriptor | None:
        """The descriptor of a tag or digest, or None when the registry has no such manifest."""
        r = self.request(
            "HEAD", self.url(f"manifests/{reference}"), headers={"Accept": ", ".join(MANIFEST_ACCEPT)}
        )
        r.close()
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise self._fail(r, f"manifest {reference}")
        digest = r.headers.get("Docker-Content-Digest", "")
        size = r.headers.get("Content-Length", "")
        media_type = r.headers.get("Content-Type", "").split(";", 1)[0].strip()
        if not digest.startswith("sha256:") or not size.isdigit():
            data, media_type, digest = self.get_manifest_bytes(reference)
            return Descriptor(media_type, digest, len(data))
        return Descriptor(media_type, digest, int(size))

    def put_manifest_bytes(self, data: bytes, media_type: str, reference: str) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = self.request(
            "PUT", self.url(f"manifests/{reference}"), headers={"Content-Type": media_type}, body=data
        )
        if r.status_code not in (200, 201, 202):
            raise self._fail(r, f"pushing manifest {reference}")
        r.close()
        claimed = r.headers.get("Docker-Content-Digest", "")
        if claimed.startswith("sha256:") and claimed != digest:
            raise RegistryError(
                f"{self.where}:{reference}: the registry stored the manifest as {claimed}, not {digest}"
            )
        return digest

    def tags(self) -> list[str]:
        tags: list[str] = self.get_tags(self.container)
        return tags

    # ------------------------------------------------------------ referrers (OCI 1.1)

    def _referrers_api(self, digest: str) -> list[dict[str, Any]] | None:
        """The registry's referrers list for `digest`, or None when it has no referrers API
        (404, 400 or a body that is not an OCI index, as go-containerregistry decides)."""
        r = self.request("GET", self.url(f"referrers/{digest}"), headers={"Accept": OCI_INDEX}, stream=True)
        try:
            ctype = r.headers.get("Content-Type", "").split(";", 1)[0].strip()
            if r.status_code in (400, 404, 405, 406) or (r.status_code == 200 and ctype != OCI_INDEX):
                return None
            if r.status_code != 200:
                raise self._fail(r, f"referrers of {digest}")
            data = r.raw.read(MANIFEST_LIMIT + 1, decode_content=True)
        finally:
            r.close()
        body = _index_body(data, f"{self.where}: referrers of {digest}")
        manifests: list[dict[str, Any]] = body["manifests"]
        return manifests

    def _fallback_index(self, digest: str) -> dict[str, Any] | None:
        try:
            data, _, _ = self.get_manifest_bytes(digest.replace(":", "-", 1))
        except NotFound:
            return None
        return _index_body(data, f"{self.where}:{digest.replace(':', '-', 1)}")

    def referrers(self, digest: str) -> list[dict[str, Any]]:
        """Descriptors of the manifests whose `subject` is `digest`: from the referrers API, or
        from the fallback tag `sha256-<hex>` where the registry has no such API."""
        listed = self._referrers_api(digest)
        if listed is not None:
            return listed
        index = self._fallback_index(digest)
        return [] if index is None else list(index["manifests"])

    def put_referrer(self, manifest: bytes, subject: str, artifact_type: str) -> Descriptor:
        """Push a manifest with a `subject` by digest, and list it where readers look: a registry
        with the referrers API lists it itself; otherwise add it to the fallback tag's index
        (entries sorted by digest, as go-containerregistry keeps it)."""
        digest = self.put_manifest_bytes(
            manifest, OCI_MANIFEST, "sha256:" + hashlib.sha256(manifest).hexdigest()
        )
        desc = Descriptor(OCI_MANIFEST, digest, len(manifest), artifact_type=artifact_type)
        if self._referrers_api(subject) is not None:
            return desc
        index = self._fallback_index(subject) or {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        if any(isinstance(d, dict) and d.get("digest") == digest for d in index["manifests"]):
            return desc
        index["manifests"] = sorted([*index["manifests"], desc.to_json()], key=lambda d: str(d.get("digest")))
        data = json.dumps(index, separators=(",", ":")).encode()
        self.put_manifest_bytes(data, OCI_INDEX, subject.replace(":", "-", 1))
        return desc

    # ------------------------------------------------------------ blobs

    def has_blob(self, digest: str) -> bool:
        r = self.request("HEAD", self.url(f"blobs/{digest}"))
        r.close()
        if r.status_code == 200:
            return True
        if r.status_code == 404:
            return False
        raise self._fail(r, f"checking blob {digest}")

    def mount_blob(self, digest: str, from_repository: str) -> bool:
        """Ask the registry to link a blob another of its repositories holds (no bytes sent);
        True when it did. A registry that does not offer mounting starts an ordinary upload
        instead (202), which is cancelled."""
        url = self.url("blobs/uploads/") + f"?mount={quote(digest)}&from={quote(from_repository)}"
        try:
            r = self.request("POST", url, headers={"Content-Length": "0"})
        except DockerifyError as e:  # e.g. no pull rights on the other repository
            log.debug("%s: mounting %s from %s failed: %s", self.where, digest, from_repository, e)
            return False
        r.close()
        if r.status_code == 201:
            return True
        if r.status_code == 202 and r.headers.get("Location"):
            with contextlib.suppress(DockerifyError):
                self.request("DELETE", self._location(r)).close()
        return False

    def _location(self, r: requests.Response) -> str:
        location = r.headers.get("Location", "")
        if not location:
            raise RegistryError(f"{self.where}: the registry started an upload without a Location")
        return urljoin(r.url, location)

    def _start_upload(self) -> tuple[str, int]:
        r = self.request("POST", self.url("blobs/uploads/"), headers={"Content-Length": "0"})
        if r.status_code != 202:
            raise self._fail(r, "starting an upload")
        r.close()
        return self._location(r), int(r.headers.get("OCI-Chunk-Min-Length", "0") or 0)

    def push_blob_file(
        self, path: Path, digest: str, size: int, progress: Callable[[int], object] | None = None
    ) -> bool:
        """Upload a blob from a file unless the registry has it; True when bytes were sent."""
        if self.has_blob(digest):
            log.debug("%s: blob %s exists; not uploading", self.where, digest)
            return False
        if size <= SMALL_BLOB:
            self._put_whole(lambda: FileSlice(path, 0, size, None), digest, size)
        else:
            self._upload_chunked(path, digest, size, progress)
        return True

    def push_blob_bytes(self, data: bytes, digest: str | None = None) -> str:
        digest = digest or "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has_blob(digest):
            self._put_whole(lambda: data, digest, len(data))
        return digest

    def _put_whole(self, body: Callable[[], Any], digest: str, size: int) -> None:
        """POST then PUT with the whole blob; a dropped connection restarts it."""
        attempt = 0
        while True:
            location, _ = self._start_upload()
            url = oras.utils.append_url_params(location, {"digest": digest})
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
            try:
                r = self.request("PUT", url, headers=headers, body=body, retry=False)
            except RegistryError:
                if attempt >= self.options.retries:
                    raise
                self._sleep(attempt, f"upload of {digest}", "connection dropped")
                attempt += 1
                continue
            if r.status_code in (200, 201, 204):
                r.close()
                return
            if r.status_code >= 500 and attempt < self.options.retries:
                r.close()
                self._sleep(attempt, f"upload of {digest}", f"HTTP {r.status_code}")
                attempt += 1
                continue
            raise self._fail(r, f"uploading blob {digest}")

    def _upload_status(self, location: str) -> tuple[str, int] | None:
        """Where an interrupted upload stands: (location, bytes the registry holds), or None
        when the registry has dropped it (then the upload restarts)."""
        try:
            r = self.request("GET", location)
        except RegistryError:
            return None
        r.close()
        rng = r.headers.get("Range", "")
        if r.status_code != 204 or not rng.startswith("0-"):
            log.debug("%s: upload status HTTP %s; restarting the upload", self.where, r.status_code)
            return None
        try:
            end = int(rng.split("-", 1)[1])
        except ValueError:
            return None
        return self._location(r), end + 1

    def _upload_chunked(
        self, path: Path, digest: str, size: int, progress: Callable[[int], object] | None
    ) -> None:
        location, min_chunk = self._start_upload()
        chunk = max(self.options.chunk_size, min_chunk)
        offset = 0
        failures = 0
        restarts = 0
        while True:
            try:
                while offset < size:
                    n = min(chunk, size - offset)
                    headers = {
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(n),
                        "Content-Range": f"{offset}-{offset + n - 1}",
                    }
                    r = self.request(
                        "PATCH",
                        location,
                        headers=headers,
                        body=FileSlice(path, offset, n, progress),
                        retry=False,
                    )
                    if r.status_code == 416:
                        r.close()
                        raise _Interrupted("HTTP 416 (range not accepted)")
                    if r.status_code >= 500:
                        r.close()
                        raise _Interrupted(f"HTTP {r.status_code}")
                    if r.status_code != 202:
                        raise self._fail(r, f"uploading blob {digest}")
                    r.close()
                    location = self._location(r)
                    offset += n
                    failures = 0
                url = oras.utils.append_url_params(location, {"digest": digest})
                r = self.request("PUT", url, headers={"Content-Length": "0"}, retry=False)
                if r.status_code >= 500:
                    r.close()
                    raise _Interrupted(f"HTTP {r.status_code}")
                if r.status_code not in (200, 201, 204):
                    raise self._fail(r, f"completing upload of blob {digest}")
                r.close()
                return
            except (RegistryError, _Interrupted) as e:
                if isinstance(e, RegistryError) and not isinstance(e.__cause__, _NETWORK_ERRORS):
                    raise
                failures += 1
                if failures > self.options.retries or restarts > 3 * self.options.retries:
                    raise RegistryError(
                        f"{self.where}: upload of blob {digest} kept failing at byte {offset} of {size}",
                        hint="check the network and the registry's logs",
                    ) from None
                self._sleep(failures - 1, f"upload of {digest}", e)
                status = self._upload_status(location)
                if status is not None and status[1] <= size:
                    location, offset = status
                    log.debug("%s: resuming upload of %s at byte %d", self.where, digest, offset)
                else:
                    if self.has_blob(digest):  # the last request landed after all
                        return
                    restarts += 1
                    log.debug("%s: restarting upload of %s from byte 0", self.where, digest)
                    location, min_chunk = self._start_upload()
                    offset = 0

    def fetch_blob_to(
        self,
        digest: str,
        size: int,
        dest: Path,
        progress: Callable[[int], object] | None = None,
        sparse: bool = False,
    ) -> None:
        """Download a blob into `dest` (created or truncated), checking size and digest. With
        `sparse`, runs of zeros become holes (an SD card's free space stays unallocated).

        A dropped connection resumes with a Range request. On any failure `dest` holds
        unverified bytes and the caller must remove it."""
        what = f"{self.where}@{digest}"
        check = BlobCheck(what, digest, size, _ALTERED)
        failures = 0
        with open(dest, "wb") as f:
            while True:
                got = check.got
                headers = {"Range": f"bytes={got}-"} if got else {}
                r = self.request("GET", self.url(f"blobs/{digest}"), headers=headers, stream=True)
                try:
                    if r.status_code == 404:
                        raise NotFound(f"{what}: no such blob in the registry")
                    if got and r.status_code == 206:
                        start = r.headers.get("Content-Range", "").removeprefix("bytes ").split("-", 1)[0]
                        if start != str(got):
                            raise _Interrupted(f"the registry resumed at {start}, not {got}")
                    elif r.status_code == 200:
                        if got:
                            log.debug("%s: the registry ignored the Range request; starting over", what)
                            f.seek(0)
                            f.truncate()
                            check.restart()
                    else:
                        raise self._fail(r, f"blob {digest}")
                    for block in r.raw.stream(READ_BLOCK, decode_content=False):
                        check.update(block)
                        if sparse:
                            _write_sparse(f, block)
                        else:
                            f.write(block)
                        if progress:
                            progress(len(block))
                    if check.got < size:
                        raise _Interrupted(f"the response ended at byte {check.got} of {size}")
                    break
                except (_Interrupted, *_NETWORK_ERRORS) as e:
                    failures += 1
                    if failures > self.options.retries:
                        raise RegistryError(
                            f"{what}: download kept failing at byte {check.got} of {size}: {_reason(e)}"
                        ) from None
                    self._sleep(failures - 1, f"download of {digest}", e)
                finally:
                    r.close()
            f.truncate(check.got)  # a hole at the end has no bytes written to mark the size
        check.finish()

    def fetch_blob_bytes(self, digest: str, size: int, limit: int = METADATA_LIMIT) -> bytes:
        """A small blob (config, signature payload) in memory, checked against its digest."""
        check = BlobCheck(f"{self.where}@{digest}", digest, size, _ALTERED, limit)
        r = self.request("GET", self.url(f"blobs/{digest}"), stream=True)
        try:
            if r.status_code == 404:
                raise NotFound(f"{self.where}@{digest}: no such blob in the registry")
            if r.status_code != 200:
                raise self._fail(r, f"blob {digest}")
            return read_checked(lambda n: r.raw.read(n, decode_content=False), check)
        except _NETWORK_ERRORS as e:
            raise RegistryError(f"{self.where}@{digest}: {_reason(e)}") from None
        finally:
            r.close()


def _index_body(data: bytes, where: str) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except ValueError:
        raise CorruptInput(f"{where}: not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("manifests", []), list):
        raise CorruptInput(f"{where}: not an OCI image index")
    body.setdefault("manifests", [])
    return body


class _Interrupted(Exception):
    """A transfer stopped short in a way a retry can mend."""


def connect(reference: Reference, options: Options | None = None) -> RegistryClient:
    return RegistryClient(reference, options)


__all__ = ["Options", "RegistryClient", "RegistryError", "connect", "split_host"]


_HOLE = 64 << 10
_ZEROS = bytes(_HOLE)


def _write_sparse(f: BinaryIO, block: bytes) -> None:
    """Write `block`, seeking over each all-zero 64 KiB piece instead of writing it."""
    view = memoryview(block)
    for start in range(0, len(block), _HOLE):
        piece = view[start : start + _HOLE]
        if piece == _ZEROS[: len(piece)]:
            f.seek(len(piece), os.SEEK_CUR)
        else:
            f.write(piece)
