"""Plumbing of the frontend tests: build contexts, `docker build` with the frontend on a real
BuildKit (Debian's dockerd 20.10, and the buildx daemon when it exists), and the frontend image."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import REGISTRY
from tests.fixtures import require

DEBIAN_DOCKER = "/usr/bin/docker"  # the 20.10 client: BuildKit without the buildx plugin
FRONTEND_LOCAL = "dockerify/frontend:latest"
FRONTEND_REGISTRY = f"{REGISTRY}/dockerify/frontend:latest"


@dataclass(frozen=True)
class Builder:
    """One BuildKit to build with: the docker CLI, its environment, and how it builds."""

    name: str
    docker: str
    env: dict[str, str] = field(default_factory=dict)
    buildx: bool = False

    def run(self, *args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.docker, *args],
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{self.docker} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
            )
        return proc

    def build(
        self, context: Path, dockerfile: str, *args: str, check: bool = True, progress: str = "plain"
    ) -> subprocess.CompletedProcess[str]:
        """`docker build` (20.10) or `docker buildx build` of `dockerfile` text in `context`;
        `progress="rawjson"` (buildx only) gives every status BuildKit sent (see vertex_statuses)."""
        path = context / "Dockerfile"
        path.write_text(dockerfile)
        cmd = ["buildx", "build"] if self.buildx else ["build"]
        return self.run(*cmd, f"--progress={progress}", "-f", str(path), *args, str(context), check=check)


def debian_builder() -> Builder:
    require(Path(DEBIAN_DOCKER).is_file(), "Debian's docker.io client is not installed (scripts/setup.sh)")
    ok = subprocess.run([DEBIAN_DOCKER, "info"], capture_output=True).returncode == 0
    require(ok, "the Docker daemon is not running (scripts/start-daemons.sh starts it)")
    return Builder("dockerd-20.10", DEBIAN_DOCKER, {"DOCKER_BUILDKIT": "1"})


@functools.cache
def _image_present(docker: str, env: tuple[tuple[str, str], ...], name: str) -> bool:
    proc = subprocess.run(
        [docker, "image", "inspect", name], capture_output=True, env={**os.environ, **dict(env)}
    )
    return proc.returncode == 0


def require_frontend(builder: Builder, name: str = FRONTEND_LOCAL) -> str:
    require(
        _image_present(builder.docker, tuple(sorted(builder.env.items())), name),
        f"the frontend image {name} is not in {builder.name}: run `make frontend`",
    )
    return name


def syntax(ref: str) -> str:
    return f"# syntax={ref}\n"


def link_into(context: Path, *files: Path) -> None:
    """Put fixture files into a build context without copying gigabytes (hard links)."""
    context.mkdir(parents=True, exist_ok=True)
    for f in files:
        target = context / f.name
        try:
            os.link(f.resolve(), target)
        except OSError:
            shutil.copy2(f, target)


def vertex_lines(progress: str, name: str) -> list[str]:
    """The progress lines of the vertex whose name contains `name` (--progress=plain)."""
    return [line for line in progress.splitlines() if name in line]


def _states(progress: str, name: str) -> set[str]:
    """What the plain progress output says of the vertices named like `name`: CACHED, DONE, ERROR."""
    lines = [line.split(" ", 1) for line in progress.splitlines() if line.startswith("#")]
    numbers = {n for n, *rest in lines if rest and name in rest[0]}
    return {rest[0].split(" ", 1)[0] for n, *rest in lines if n in numbers and rest} & {
        "CACHED",
        "DONE",
        "ERROR",
        "CANCELED",
    }


def was_cached(progress: str, name: str) -> bool:
    """The vertex came from the cache and never ran (a vertex that ran prints DONE, one cached
    CACHED; v0.13 may also cancel a cached vertex nothing downstream needs any more)."""
    states = _states(progress, name)
    return "CACHED" in states and "DONE" not in states


def ran(progress: str, name: str) -> bool:
    return "DONE" in _states(progress, name)


@dataclass(frozen=True)
class VertexStatus:
    cached: bool
    started: bool
    completed: bool
    error: str


def vertex_statuses(rawjson: str, name: str) -> list[VertexStatus]:
    """Every status BuildKit reported for the vertices named like `name`, from buildx's
    `--progress=rawjson` stream (concatenated JSON documents of SolveStatus). The plain printer
    shows only a vertex's latest state, and v0.13 follows a cached conversion's CACHED by a
    CANCELED when the final solve finds everything after it cached too; the raw stream has both."""
    decoder = json.JSONDecoder()
    out = []
    at = 0
    while (start := rawjson.find("{", at)) >= 0:
        try:
            doc, at = decoder.raw_decode(rawjson, start)
        except ValueError:
            at = start + 1
            continue
        for v in doc.get("vertexes") or () if isinstance(doc, dict) else ():
            if name in v.get("name", ""):
                out.append(
                    VertexStatus(
                        bool(v.get("cached")),
                        bool(v.get("started")),
                        bool(v.get("completed")),
                        v.get("error", ""),
                    )
                )
    return out


def cached_in_stream(rawjson: str, name: str) -> bool:
    """BuildKit reported the vertex as a cache hit and never ran it: some status says cached,
    and none is a completion without cached and without an error."""
    statuses = vertex_statuses(rawjson, name)
    ran_it = any(s.completed and not s.cached and not s.error for s in statuses)
    return any(s.cached for s in statuses) and not ran_it


def buildkit_loss(line: str) -> bool:
    """A `dockerify diff` line that BuildKit's layer export causes, whatever the frontend does
    (both v0.8 and v0.13; see README, BuildKit's limits): its layers are written dense and carry
    only the security.capability xattr. The frontend's
    own tree still has them all: an EXPORT stage reads it directly and keeps every xattr."""
    if line.endswith("sparse: True -> False"):
        return True
    _, sep, names = line.partition("  xattrs differ: ")
    return bool(sep) and all(n.startswith(("user.", "trusted.")) for n in names.split(", "))


# A RUN step of BuildKit's stock Dockerfile frontend, no dockerify in the build, that writes
# what the frontend's conversion writes: a user.* xattr, a security.capability (as setcap does:
# VFS_CAP_REVISION_2 with the effective bit, permitting cap_net_raw) and a file with a hole.
STOCK_RUN = (
    'RUN python3 -c "import os, struct; '
    "open('/with-user-xattr', 'w').write('x'); "
    "os.setxattr('/with-user-xattr', 'user.dockerify.test', b'v'); "
    "open('/with-capability', 'w').write('c'); "
    "os.setxattr('/with-capability', 'security.capability', struct.pack('<IIIII', 0x02000001, 1 << 13, 0, 0, 0)); "
    "f = open('/sparse', 'wb'); f.write(b'head'); f.seek(8 << 20); f.write(b'tail')\"\n"
)


def last_layer(archive: Path) -> dict[str, tarfile.TarInfo]:
    """The members of the top layer of a `docker save` or OCI image archive, read with Python's
    tarfile (not dockerify's reader)."""
    with tarfile.open(archive) as outer:
        names = outer.getnames()
        if "manifest.json" in names:  # docker save
            manifest = json.load(outer.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
            top = manifest["Layers"][-1]
        else:
            index = json.load(outer.extractfile("index.json"))  # type: ignore[arg-type]
            digest = index["manifests"][0]["digest"].split(":")[1]
            manifest = json.load(outer.extractfile(f"blobs/sha256/{digest}"))  # type: ignore[arg-type]
            top = "blobs/sha256/" + manifest["layers"][-1]["digest"].split(":")[1]
        with tarfile.open(fileobj=outer.extractfile(top)) as layer:
            return {m.name.lstrip("./"): m for m in layer.getmembers()}


def assert_buildkit_losses(members: dict[str, tarfile.TarInfo]) -> None:
    """The layer BuildKit wrote from STOCK_RUN: the capability is there, the user.* xattr and
    the hole are not."""
    cap = members["with-capability"].pax_headers
    assert "SCHILY.xattr.security.capability" in cap, cap
    assert not any(k.startswith("SCHILY.xattr.user.") for k in members["with-user-xattr"].pax_headers)
    sparse = members["sparse"]
    assert sparse.size == (8 << 20) + 4 and not sparse.issparse(), (sparse.size, sparse.type)
