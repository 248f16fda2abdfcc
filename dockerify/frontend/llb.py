"""LLB, BuildKit's build graph: ops that name their inputs by digest, marshalled deterministically.

A `Vertex` is one op; an `Output` is one of its results (an exec op has one per writable mount).
`definition()` walks the graph from a final output and lists every op once, dependencies first,
ending with the terminal op BuildKit expects. Everything is ordered by construction, so the same
build file and options always give the same bytes and the same cache keys.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from dockerify.frontend.proto import Message, Schema, encode, schema
from dockerify.platform import Platform

SCRATCH = -1  # a mount or file action input that is empty
NO_OUTPUT = -1


class Network(enum.IntEnum):
    SANDBOX = 0
    HOST = 1
    NONE = 2


@dataclass(frozen=True, eq=False)
class Vertex:
    kind: str  # the Op oneof member: "exec", "source" or "file"
    body: Message
    inputs: tuple[Output, ...] = ()
    platform: Platform | None = None
    description: str = ""

    @cached_property
    def op_bytes(self) -> bytes:
        s = _schema()
        op = s.new(
            "pb.Op",
            inputs=[s.new("pb.Input", digest=i.vertex.digest, index=i.index) for i in self.inputs],
        )
        setattr(op, self.kind, self.body)
        if self.platform is not None:
            op.platform = s.new(
                "pb.Platform",
                Architecture=self.platform.architecture,
                OS=self.platform.os,
                Variant=self.platform.variant or "",
            )
        return encode(op)

    @cached_property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.op_bytes).hexdigest()

    def output(self, index: int = 0) -> Output:
        return Output(self, index)


@dataclass(frozen=True, eq=False)
class Output:
    vertex: Vertex
    index: int = 0


def _schema() -> Schema:
    return schema()


# ---------------------------------------------------------------- sources


def local(
    name: str,
    session: str,
    *,
    include: Sequence[str] | None = None,
    follow: Sequence[str] | None = None,
    shared_key: str | None = None,
    description: str = "",
) -> Output:
    """A directory the client sends (`context`, `dockerfile`). Only `include`d paths are sent and
    hashed, so a change elsewhere in the context does not touch this op's cache."""
    attrs = {"local.session": session}
    if include is not None:
        attrs["local.includepattern"] = json.dumps(sorted(include))
    if follow is not None:
        attrs["local.followpaths"] = json.dumps(sorted(follow))
    if shared_key:
        attrs["local.sharedkeyhint"] = shared_key
    body = _schema().new("pb.SourceOp", identifier="local://" + name, attrs=attrs)
    return Vertex("source", body, description=description or f"local {name}").output()


def normalize_image(ref: str) -> str:
    """docker.io/library/ for short names, :latest when neither tag nor digest: what BuildKit
    expects in a docker-image:// identifier."""
    first, _, rest = ref.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        ref = "docker.io/" + (ref if rest else "library/" + ref)
    last = ref.rsplit("/", 1)[-1]
    if "@" not in last and ":" not in last:
        ref += ":latest"
    return ref


def image(ref: str, platform: Platform, *, resolve_mode: str = "default", description: str = "") -> Output:
    attrs = {} if resolve_mode == "default" else {"image.resolvemode": resolve_mode}
    body = _schema().new("pb.SourceOp", identifier="docker-image://" + normalize_image(ref), attrs=attrs)
    return Vertex("source", body, platform=platform, description=description or ref).output()


# ---------------------------------------------------------------- exec


@dataclass(frozen=True)
class Mount:
    dest: str
    source: Output | None  # None: scratch
    readonly: bool = False
    output: bool = True  # a writable mount whose result is kept
    selector: str = ""


@dataclass(frozen=True)
class Exec:
    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    user: str = ""
    network: Network = Network.SANDBOX
    mounts: tuple[Mount, ...] = field(default_factory=tuple)

    def vertex(self, platform: Platform | None, description: str) -> Vertex:
        s = _schema()
        inputs: list[Output] = []
        index_of: dict[tuple[str, int], int] = {}
        pb_mounts = []
        outputs = 0
        for m in self.mounts:
            if m.source is None:
                idx = SCRATCH
            else:
                key = (m.source.vertex.digest, m.source.index)
                if key not in index_of:
                    index_of[key] = len(inputs)
                    inputs.append(m.source)
                idx = index_of[key]
            out = NO_OUTPUT
            if not m.readonly and m.output:
                out, outputs = outputs, outputs + 1
            pb_mounts.append(
                s.new(
                    "pb.Mount",
                    input=idx,
                    selector=m.selector,
                    dest=m.dest,
                    output=out,
                    readonly=m.readonly,
                )
            )
        meta = s.new("pb.Meta", args=list(self.args), env=list(self.env), cwd=self.cwd, user=self.user)
        body = s.new("pb.ExecOp", meta=meta, mounts=pb_mounts, network=int(self.network))
        return Vertex("exec", body, tuple(inputs), platform, description)


# ---------------------------------------------------------------- file


def _chown(owner: tuple[int, int] | None) -> Message | None:
    if owner is None:
        return None
    s = _schema()
    return s.new(
        "pb.ChownOpt",
        user=s.new("pb.UserOpt", byID=owner[0]),
        group=s.new("pb.UserOpt", byID=owner[1]),
    )


def copy(
    src: Output | None,
    src_path: str,
    dest: Output | None,
    dest_path: str,
    *,
    platform: Platform | None,
    owner: tuple[int, int] | None = None,
    dir_contents: bool = True,
    wildcard: bool = True,
    description: str = "",
) -> Output:
    """Copy `src_path` of `src` to `dest_path` of `dest` (parents created), as `COPY` does."""
    s = _schema()
    inputs = tuple(o for o in (dest, src) if o is not None)
    dest_idx = 0 if dest is not None else SCRATCH
    src_idx = (1 if dest is not None else 0) if src is not None else SCRATCH
    action = s.new(
        "pb.FileActionCopy",
        src=src_path,
        dest=dest_path,
        mode=-1,
        followSymlink=True,
        dirCopyContents=dir_contents,
        createDestPath=True,
        allowWildcard=wildcard,
        timestamp=-1,
    )
    chown = _chown(owner)
    if chown is not None:
        action.owner = chown
    fa = s.new("pb.FileAction", input=dest_idx, secondaryInput=src_idx, output=0, copy=action)
    body = s.new("pb.FileOp", actions=[fa])
    return Vertex("file", body, inputs, platform, description).output()


def mkfile(
    dest: Output | None,
    path: str,
    data: bytes,
    *,
    platform: Platform | None,
    mode: int = 0o644,
    description: str = "",
) -> Output:
    s = _schema()
    action = s.new("pb.FileActionMkFile", path=path, mode=mode, data=data, timestamp=-1)
    fa = s.new(
        "pb.FileAction",
        input=0 if dest is not None else SCRATCH,
        secondaryInput=SCRATCH,
        output=0,
        mkfile=action,
    )
    inputs = (dest,) if dest is not None else ()
    return Vertex("file", s.new("pb.FileOp", actions=[fa]), inputs, platform, description).output()


def mkdir(
    dest: Output | None,
    path: str,
    *,
    platform: Platform | None,
    mode: int = 0o755,
    owner: tuple[int, int] | None = None,
    description: str = "",
) -> Output:
    s = _schema()
    action = s.new("pb.FileActionMkDir", path=path, mode=mode, makeParents=True, timestamp=-1)
    chown = _chown(owner)
    if chown is not None:
        action.owner = chown
    fa = s.new(
        "pb.FileAction",
        input=0 if dest is not None else SCRATCH,
        secondaryInput=SCRATCH,
        output=0,
        mkdir=action,
    )
    inputs = (dest,) if dest is not None else ()
    return Vertex("file", s.new("pb.FileOp", actions=[fa]), inputs, platform, description).output()


# ---------------------------------------------------------------- definition


def _walk(outputs: Iterable[Output]) -> list[Vertex]:
    order: list[Vertex] = []
    seen: set[str] = set()

    def visit(v: Vertex) -> None:
        if v.digest in seen:
            return
        for i in v.inputs:
            visit(i.vertex)
        seen.add(v.digest)
        order.append(v)

    for o in outputs:
        visit(o.vertex)
    return order


def definition(result: Output | None, *, ignore_cache: bool = False) -> Message:
    """The pb.Definition of `result`; None is scratch (an empty definition). `ignore_cache` is
    `docker build --no-cache`: every op runs again."""
    s = _schema()
    if result is None:
        return s.new("pb.Definition")
    vertices = _walk([result])
    defs = [v.op_bytes for v in vertices]
    terminal = encode(
        s.new("pb.Op", inputs=[s.new("pb.Input", digest=result.vertex.digest, index=result.index)])
    )
    defs.append(terminal)
    metadata = {}
    for v in vertices:
        meta = s.new("pb.OpMetadata")
        if v.description:
            meta.description = {"llb.customname": v.description}
        # A local source's cache key is its content: --no-cache re-runs every step but need not
        # send an unchanged build context again (a card is gigabytes).
        if ignore_cache and not (v.kind == "source" and str(v.body.identifier).startswith("local://")):
            meta.ignore_cache = True
        if meta.has("description") or meta.has("ignore_cache"):
            metadata[v.digest] = meta
    return s.new("pb.Definition", metadata=metadata, **{"def": defs})
