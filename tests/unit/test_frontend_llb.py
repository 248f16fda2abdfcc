"""The LLB builder, the protobuf codec and the build-file parser, without a daemon."""

from __future__ import annotations

import pytest

from dockerify.frontend import llb
from dockerify.frontend.buildfile import BuildFileError, expand, pairs, parse, words
from dockerify.frontend.proto import Schema, decode, encode, schema
from dockerify.platform import Platform

ARM64 = Platform("linux", "arm64")


def test_codec_round_trip_and_proto3_presence() -> None:
    s = schema()
    # A oneof member at its default value is present (byID 0 is root); a plain default is not.
    assert encode(s.new("pb.UserOpt", byID=0)) == b"\x10\x00"
    assert encode(s.new("pb.Mount", input=0, dest="/")) == b"\x1a\x01/"
    # Negative int64 is ten-byte two's complement, as Go writes it.
    assert encode(s.new("pb.Mount", input=-1)) == b"\x08" + b"\xff" * 9 + b"\x01"
    op = s.new(
        "pb.Op",
        inputs=[s.new("pb.Input", digest="sha256:x", index=1)],
        source=s.new("pb.SourceOp", identifier="local://context", attrs={"b": "2", "a": "1"}),
        platform=s.new("pb.Platform", Architecture="arm", OS="linux", Variant="v7"),
    )
    back = decode(s, "pb.Op", encode(op))
    assert back.which("op") == "source"
    assert back.source.attrs == {"a": "1", "b": "2"}
    assert back.inputs[0].index == 1 and back.platform.Variant == "v7"
    assert encode(back) == encode(op)


def test_map_entries_are_sorted_whatever_the_insertion_order() -> None:
    s = schema()
    a = s.new("pb.SourceOp", identifier="x", attrs={"z": "1", "a": "2", "m": "3"})
    b = s.new("pb.SourceOp", identifier="x", attrs={"m": "3", "z": "1", "a": "2"})
    assert encode(a) == encode(b)


def test_schema_resolves_nested_and_cross_package_types() -> None:
    s = Schema(
        {
            "a.proto": 'syntax = "proto3"; package p.q; message A { B b = 1; message B { int32 x = 1; } }',
            "b.proto": "package r; message C { p.q.A a = 1; repeated string s = 2; map<string, int64> m = 3; }",
        }
    )
    assert s["p.q.A"].field("b").type == "p.q.A.B"
    assert s["r.C"].field("a").type == "p.q.A"
    c = s.new("r.C", a=s.new("p.q.A", b=s.new("p.q.A.B", x=-5)), s=["x", "y"], m={"k": 7})
    back = decode(s, "r.C", encode(c))
    assert back.a.b.x == -5 and back.s == ["x", "y"] and back.m == {"k": 7}


def test_definition_lists_dependencies_first_once_then_the_terminal() -> None:
    ctx = llb.local("context", "s", include=["card.img"])
    tool = llb.image("dockerify/frontend:latest", ARM64)
    run = llb.Exec(
        ("true",),
        mounts=(
            llb.Mount("/", tool),
            llb.Mount("/a", ctx, readonly=True),
            llb.Mount("/b", ctx, readonly=True),
        ),
    )
    v = run.vertex(ARM64, "step")
    d = llb.definition(v.output(0))
    defs = list(getattr(d, "def"))
    ops = [decode(schema(), "pb.Op", b) for b in defs]
    assert [o.which("op") for o in ops] == ["source", "source", "exec", None]
    assert len(ops[2].inputs) == 2  # the context is one input, mounted twice
    assert ops[3].inputs[0].digest == v.digest
    assert llb.normalize_image("dockerify/frontend:latest") == "docker.io/dockerify/frontend:latest"
    assert llb.normalize_image("busybox") == "docker.io/library/busybox:latest"
    assert llb.normalize_image("127.0.0.1:5000/x/y") == "127.0.0.1:5000/x/y:latest"


def test_no_cache_spares_local_sources() -> None:
    ctx = llb.local("context", "s", include=["a"])
    step = llb.copy(ctx, "/a", None, "/a", platform=ARM64, description="COPY a")
    d = llb.definition(step, ignore_cache=True)
    flags = {k: m.ignore_cache for k, m in d.metadata.items()}
    assert flags[step.vertex.digest] is True
    assert flags.get(ctx.vertex.digest, False) is False


def test_parse_directives_comments_continuations_and_flags() -> None:
    bf = parse(
        "# syntax=x/frontend\n# escape=`\n# platforms=linux/arm64\n"
        "# a comment\nFROM --platform=linux/arm64 card.img AS Pi\n"
        "RUN echo one `\n  # skipped comment\n  two\n"
        "copy --from=pi /a /b\n",
        "Build.df",
    )
    assert bf.directives == {"syntax": "x/frontend", "escape": "`", "platforms": "linux/arm64"}
    frm, run, cp = bf.instructions
    assert (frm.keyword, frm.flag("platform"), frm.args, frm.line) == (
        "FROM",
        "linux/arm64",
        "card.img AS Pi",
        5,
    )
    assert (run.args, run.line) == ("echo one two", 6)
    assert (cp.keyword, cp.flag("from"), cp.line) == ("COPY", "pi", 9)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM a.img\nBOGUS x\n", "Dockerfile:2: unknown instruction BOGUS"),
        ("FROM a.img\nCOPY --mode=0644 a /\n", "Dockerfile:2: COPY does not support --mode"),
        ("RUN true\n", "Dockerfile:1: a build file starts with FROM"),
        ("FROM a.img\nENV\n", "Dockerfile:2: ENV needs arguments"),
    ],
)
def test_parse_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(BuildFileError) as e:
        parse(text, "Dockerfile")
    assert str(e.value).startswith(message)


def test_words_pairs_and_expansion() -> None:
    env = {"A": "x", "EMPTY": ""}
    assert expand("$A ${A} ${B:-dflt} ${A:+alt} ${EMPTY:-e} \\$A", env) == "x x dflt alt e $A"
    assert words("a \"b c\" 'd e' f\\ g") == ["a", "b c", "d e", "f g"]
    assert pairs('K=v L="two words"', "ENV") == [("K", "v"), ("L", "two words")]
    assert pairs("KEY some value", "ENV") == [("KEY", "some value")]
    with pytest.raises(ValueError):
        pairs("novalue", "LABEL")
