"""The frontend against a fake LLBBridge over a pipe pair: the gateway client, the stdio
transport, the LLB it sends and the result it returns, without a daemon."""

from __future__ import annotations

import json
import random

import pytest

from dockerify.frontend.gateway import PKG, Bridge
from dockerify.frontend.main import run_frontend
from dockerify.frontend.proto import decode, schema
from dockerify.frontend.transport import FdTransport
from tests.unit.fake_bridge import FakeBridge, Solved, SolveFailure, serve

grpc = pytest.importorskip("grpc")

BUILD_FILE = b"""# syntax=127.0.0.1:5000/dockerify/frontend:latest
ARG CARD=pi.img
FROM ${CARD} AS base
ENV GREETING="hello world"
LABEL org.example.team=pi
WORKDIR /srv
USER 1000
EXPOSE 8080 53/udp
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo $GREETING"]
"""

FACTS = {
    "platform": "linux/arm64",
    "labels": {"io.dockerify.disk-layout": "{}"},
    "default_cmd": ["/bin/bash"],
    "created": 1700000000,
    "entries": 3,
}


def local_name(solved: Solved, digest: str) -> str:
    op = solved.op(digest)
    if op.which("op") == "source":
        return str(op.source.identifier)
    return ""


class Script:
    """Answers Solves the way BuildKit would for this build: refs by what is asked."""

    def __init__(self, files: dict[tuple[str, str], bytes], fail_exec: str | None = None) -> None:
        self.files = files
        self.fail_exec = fail_exec

    def __call__(self, solved: Solved) -> str:
        digest, index = solved.result
        kind = solved.kind()
        if kind == "source":
            ident = local_name(solved, digest)
            return {"local://dockerfile": "df", "local://context": "ctx"}.get(ident, "img")
        if kind == "exec":
            args = list(solved.result_op.exec.meta.args)
            if self.fail_exec and self.fail_exec in " ".join(args):
                raise SolveFailure(f'process "{" ".join(args)}" did not complete successfully: exit code: 3')
            if "convert" in args:
                platform = args[args.index("--platform") + 1] if "--platform" in args else ""
                return f"meta{platform}" if index == 1 else f"tree{platform}"
        return "final"


def run(
    build_file: bytes,
    opts: dict[str, str],
    facts: dict[str, object] | None = None,
    context: dict[str, bytes] | None = None,
    fail_exec: str | None = None,
) -> FakeBridge:
    files = {("df", "Dockerfile"): build_file, ("meta", "facts.json"): json.dumps(facts or FACTS).encode()}
    for platform in ("linux/arm64", "linux/arm/v7"):
        files[("meta" + platform, "facts.json")] = json.dumps({**FACTS, "platform": platform}).encode()
    for name, data in (context or {"pi.img": b"x"}).items():
        files[("ctx", name)] = data
    bridge = FakeBridge(on_solve=Script(files, fail_exec), files=files)
    environ = {"BUILDKIT_SESSION_ID": "session-1"}
    items = list(opts.items())
    random.shuffle(items)  # BuildKit numbers options in Go map order
    for i, (k, v) in enumerate(items):
        environ[f"BUILDKIT_FRONTEND_OPT_{i}"] = f"{k}={v}"
    with serve(bridge) as (read_fd, write_fd):
        transport = FdTransport(read_fd, write_fd)
        try:
            assert run_frontend(Bridge(transport), environ) == 0
        finally:
            transport.close()
    return bridge


BASE_OPTS = {"filename": "Dockerfile", "source": "127.0.0.1:5000/dockerify/frontend:latest"}


def test_config_instructions_reach_the_image_config() -> None:
    bridge = run(BUILD_FILE, BASE_OPTS)
    (ret,) = bridge.returned
    assert not ret.has("error")
    result = ret.result
    assert result.which("result") == "ref"
    assert result.ref.id == "final"
    config = json.loads(result.metadata["containerimage.config"])
    assert config["architecture"] == "arm64"
    c = config["config"]
    assert "GREETING=hello world" in c["Env"]
    assert c["Labels"]["org.example.team"] == "pi"
    assert "io.dockerify.disk-layout" in c["Labels"]
    assert c["WorkingDir"] == "/srv"
    assert c["User"] == "1000"
    assert c["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert c["Entrypoint"] == ["/bin/sh", "-c"]
    assert c["Cmd"] == ["echo $GREETING"]


def test_conversion_runs_the_frontend_image_without_network_on_only_the_card() -> None:
    bridge = run(BUILD_FILE, BASE_OPTS)
    conversions = [s for s in bridge.solves if s.kind() == "exec"]
    assert conversions
    solved = conversions[0]
    ex = solved.result_op.exec
    assert ex.network == 2  # NONE
    assert "convert" in ex.meta.args
    idents = {
        str(solved.op(i.digest).source.identifier): dict(solved.op(i.digest).source.attrs)
        for i in solved.result_op.inputs
    }
    assert "docker-image://127.0.0.1:5000/dockerify/frontend:latest" in idents
    context = idents["local://context"]
    assert json.loads(context["local.includepattern"]) == ["pi.img"]
    assert json.loads(context["local.followpaths"]) == ["pi.img"]
    mounts = {m.dest: m for m in ex.mounts}
    assert mounts["/context"].readonly
    assert mounts["/out"].input == -1 and mounts["/out"].output == 0
    assert mounts["/meta"].output == 1
    assert mounts["/"].output == -1
    names = {
        v.description.get("llb.customname")
        for v in decode(schema(), "pb.Definition", solved.raw).metadata.values()
    }
    assert "dockerify: convert pi.img" in names


def test_same_inputs_give_the_same_definition_bytes() -> None:
    opts = {**BASE_OPTS, "build-arg:CARD": "pi.img", "label:a": "1", "label:b": "2", "target": "base"}
    first = run(BUILD_FILE, opts)
    second = run(BUILD_FILE, opts)
    assert [s.raw for s in first.solves] == [s.raw for s in second.solves]
    assert first.returned[0].result.metadata == second.returned[0].result.metadata


def test_run_copy_and_stage_graph() -> None:
    build_file = b"""# syntax=x
FROM pi.img AS base
RUN echo hi > /greeting
FROM base AS app
COPY --chown=1000:1000 app.conf /etc/app.conf
COPY --from=base /greeting /copied
"""
    bridge = run(build_file, BASE_OPTS, context={"pi.img": b"x", "app.conf": b"conf"})
    final = bridge.solves[-1]
    kinds = [final.kind(d) for d in final.order[:-1]]
    assert kinds.count("exec") == 2  # the conversion and the RUN
    run_op = next(
        final.op(d)
        for d in final.order[:-1]
        if final.kind(d) == "exec" and "echo hi" in " ".join(final.op(d).exec.meta.args)
    )
    assert run_op.platform.Architecture == "arm64"
    assert list(run_op.exec.meta.args) == ["/bin/sh", "-c", "echo hi > /greeting"]
    copies = [final.op(d).file.actions[0].copy for d in final.order[:-1] if final.kind(d) == "file"]
    assert {c.src for c in copies} == {"/app.conf", "/greeting"}
    chowned = next(c for c in copies if c.src == "/app.conf")
    assert chowned.owner.user.byID == 1000 and chowned.owner.user.has("byID")


def test_multi_platform_result_has_refs_and_platforms() -> None:
    build_file = b"# syntax=x\nFROM rootfs-${TARGETARCH}.tar.gz\nLABEL arch=${TARGETARCH}\n"
    opts = {**BASE_OPTS, "platform": "linux/arm64,linux/arm/v7"}
    bridge = run(build_file, opts, context={"rootfs-arm64.tar.gz": b"a", "rootfs-arm.tar.gz": b"b"})
    (ret,) = bridge.returned
    assert not ret.has("error"), ret.error
    result = ret.result
    assert result.which("result") == "refs"
    assert sorted(result.refs.refs) == ["linux/arm/v7", "linux/arm64"]
    platforms = json.loads(result.metadata["refs.platforms"])
    assert platforms == {
        "Platforms": [
            {"ID": "linux/arm64", "Platform": {"architecture": "arm64", "os": "linux"}},
            {"ID": "linux/arm/v7", "Platform": {"architecture": "arm", "os": "linux", "variant": "v7"}},
        ]
    }
    v7 = json.loads(result.metadata["containerimage.config/linux/arm/v7"])
    assert (v7["architecture"], v7["variant"]) == ("arm", "v7")


@pytest.mark.parametrize(
    ("build_file", "expected"),
    [
        (b"FROM pi.img\nFROOM x\n", "Dockerfile:2: unknown instruction FROOM"),
        (b"FROM pi.img\nRUN --mount=type=cache echo\n", "Dockerfile:2: RUN does not support --mount"),
        (b"FROM missing.img\n", "Dockerfile:1: FROM missing.img: no such file in the build context"),
        (b"FROM pi.img\nCOPY nope.txt /\n", "Dockerfile:2: COPY nope.txt: no such file in the build context"),
        (b"FROM pi.img\nEXPOSE eighty\n", "Dockerfile:2: EXPOSE eighty: not a port"),
        (b"FROM pi.img\nEXPORT --format=floppy\n", "Dockerfile:2: EXPORT needs --format="),
    ],
)
def test_errors_name_the_file_and_line(build_file: bytes, expected: str) -> None:
    bridge = run(build_file, BASE_OPTS)
    (ret,) = bridge.returned
    assert ret.has("error")
    message = ret.error.message
    assert message.startswith(expected), message
    assert "Traceback" not in message


def test_run_failure_names_the_line_and_the_exit_code() -> None:
    build_file = b"FROM pi.img\nENV A=1\nRUN exit 3\n"
    bridge = run(build_file, BASE_OPTS, fail_exec="exit 3")
    message = bridge.returned[0].error.message
    assert message.startswith("Dockerfile:3: RUN exit 3: "), message
    assert "exit code: 3" in message


def test_conversion_error_is_reported_at_the_from_line() -> None:
    files_error = {"error": "pi.img: no partition table signature at byte 510", "hint": ""}
    build_file = b"# syntax=x\nFROM pi.img\n"
    bridge = FakeBridge(
        on_solve=lambda s: (
            "meta" if s.kind() == "exec" else "df" if "dockerfile" in str(s.result_op) else "ctx"
        )
    )
    bridge.files = {
        ("df", "Dockerfile"): build_file,
        ("ctx", "pi.img"): b"x",
        ("meta", "error.json"): json.dumps(files_error).encode(),
    }
    environ = {"BUILDKIT_SESSION_ID": "s", "BUILDKIT_FRONTEND_OPT_0": "source=x/frontend"}
    with serve(bridge) as (r, w):
        t = FdTransport(r, w)
        try:
            run_frontend(Bridge(t), environ)
        finally:
            t.close()
    msg = bridge.returned[0].error.message
    assert msg == "Dockerfile:2: FROM pi.img: pi.img: no partition table signature at byte 510"


def test_pong_decodes() -> None:
    s = schema()
    pong = s.new(
        PKG + "PongResponse",
        FrontendAPICaps=[s.new("moby.buildkit.v1.apicaps.APICap", ID="solve.base", Enabled=True)],
    )
    from dockerify.frontend.proto import encode

    back = decode(s, PKG + "PongResponse", encode(pong))
    assert back.FrontendAPICaps[0].ID == "solve.base" and back.FrontendAPICaps[0].Enabled
