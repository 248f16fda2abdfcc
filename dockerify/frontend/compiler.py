"""From a parsed build file to LLB and image configs, one evaluation per target platform.

Stages are evaluated in order. A FROM that names a disk image or tarball in the build context
becomes an exec op that runs the frontend's own image on the build platform and unpacks the file
into a fresh tree; the facts it learns (platform, labels, the disk layout) come back through a
small file the frontend reads. RUN is an exec op on the stage's platform (foreign platforms run
through the host's qemu-user binfmt handlers). COPY is a file op. EXPORT is an exec op, again in
the frontend's image, that writes the stage's tree as an SD card, an initramfs or a bundle.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from dockerify.errors import DockerifyError
from dockerify.frontend import llb
from dockerify.frontend.buildfile import BuildFile, Instruction, expand, pairs, words
from dockerify.frontend.proto import Message
from dockerify.oci.image import DEFAULT_PATH, rfc3339
from dockerify.platform import Arch, Platform

# A FROM name that is a file in the build context rather than an image reference.
CONTEXT_SUFFIXES = (
    ".img",
    ".raw",
    ".iso",
    ".bin",
    ".tar",
    ".tgz",
    ".tbz2",
    ".txz",
    ".zip",
    ".gz",
    ".xz",
    ".zst",
    ".bz2",
)
EXPORT_FORMATS = {
    "sdcard": "card.img",
    "initramfs": "initramfs.cpio.gz",
    "stage0": "stage0",
    "rootfs-tar": "rootfs.tar",
}
_PORT = re.compile(r"^\d{1,5}(-\d{1,5})?(/(tcp|udp|sctp))?$")


class Gateway(Protocol):
    """What the compiler needs of BuildKit (the gateway Bridge, or a test double)."""

    def solve(self, definition: Message, what: str) -> str: ...

    def read_file(self, ref: str, path: str) -> bytes: ...

    def stat_file(self, ref: str, path: str) -> Message | None: ...

    def resolve_image_config(self, ref: str, platform: Platform | None, mode: str, log_name: str) -> Any: ...


@dataclass(frozen=True)
class Options:
    """The frontend options BuildKit passes (BUILDKIT_FRONTEND_OPT_*), already canonical."""

    filename: str = "Dockerfile"
    target: str = ""
    platforms: tuple[Platform, ...] = ()
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    source: str = ""  # the frontend's own image, from the # syntax= line
    session: str = ""
    resolve_mode: str = "default"
    no_cache: bool = False

    @classmethod
    def from_map(cls, opts: Mapping[str, str], session: str) -> Options:
        platforms: list[Platform] = []
        for text in (opts.get("platform") or "").split(","):
            if text.strip():
                platforms.append(Platform.parse(text))
        mode = opts.get("image-resolve-mode", "default")
        return cls(
            filename=opts.get("filename") or "Dockerfile",
            target=opts.get("target", ""),
            platforms=tuple(platforms),
            build_args={
                k[len("build-arg:") :]: v for k, v in sorted(opts.items()) if k.startswith("build-arg:")
            },
            labels={k[len("label:") :]: v for k, v in sorted(opts.items()) if k.startswith("label:")},
            source=opts.get("source", ""),
            session=session,
            resolve_mode=mode if mode in ("default", "pull", "local") else "default",
            no_cache="no-cache" in opts,
        )


@dataclass
class ImageSettings:
    """The image config a stage accumulates."""

    env: list[tuple[str, str]] = field(default_factory=lambda: [("PATH", DEFAULT_PATH[len("PATH=") :])])
    labels: dict[str, str] = field(default_factory=dict)
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    workdir: str = ""
    user: str = ""
    expose: list[str] = field(default_factory=list)
    created: int = 0

    def copy(self) -> ImageSettings:
        return replace(
            self,
            env=list(self.env),
            labels=dict(self.labels),
            cmd=list(self.cmd) if self.cmd is not None else None,
            entrypoint=list(self.entrypoint) if self.entrypoint is not None else None,
            expose=list(self.expose),
        )

    def set_env(self, key: str, value: str) -> None:
        self.env = [(k, v) for k, v in self.env if k != key] + [(key, value)]

    def env_list(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.env]

    def to_json(self, platform: Platform, extra_labels: Mapping[str, str]) -> dict[str, Any]:
        config: dict[str, Any] = {"Env": self.env_list()}
        if self.cmd is not None:
            config["Cmd"] = self.cmd
        if self.entrypoint is not None:
            config["Entrypoint"] = self.entrypoint
        if self.workdir:
            config["WorkingDir"] = self.workdir
        if self.user:
            config["User"] = self.user
        if self.expose:
            config["ExposedPorts"] = {p: {} for p in sorted(self.expose)}
        labels = {**self.labels, **extra_labels}
        if labels:
            config["Labels"] = dict(sorted(labels.items()))
        return {
            "created": rfc3339(self.created),
            **platform.to_oci(),
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [{"created": rfc3339(self.created), "created_by": "dockerify frontend"}],
        }

    @classmethod
    def from_image(cls, config: Mapping[str, Any]) -> ImageSettings:
        c = config.get("config") or {}
        env = []
        for item in c.get("Env") or []:
            k, _, v = item.partition("=")
            env.append((k, v))
        return cls(
            env=env,
            labels=dict(c.get("Labels") or {}),
            cmd=c.get("Cmd"),
            entrypoint=c.get("Entrypoint"),
            workdir=c.get("WorkingDir") or "",
            user=c.get("User") or "",
            expose=sorted((c.get("ExposedPorts") or {}).keys()),
        )


@dataclass
class Stage:
    name: str
    index: int
    platform: Platform
    state: llb.Output | None
    settings: ImageSettings
    args: dict[str, str] = field(default_factory=dict)
    exported: bool = False


@dataclass(frozen=True)
class Result:
    platform: Platform
    state: llb.Output | None
    config: dict[str, Any]
    stage: str


def build_platform() -> Platform:
    """Where the frontend runs is the build platform: BuildKit starts its image natively."""
    machine = os.uname().machine
    arch = Arch.from_oci({"armv7l": "arm", "armv6l": "arm", "i686": "386"}.get(machine, machine))
    return Platform("linux", arch.oci, "v7" if arch is Arch.ARM else "")


def platform_args(prefix: str, p: Platform) -> dict[str, str]:
    return {
        f"{prefix}PLATFORM": str(p),
        f"{prefix}OS": p.os,
        f"{prefix}ARCH": p.architecture,
        f"{prefix}VARIANT": p.variant,
    }


def is_context_file(name: str) -> bool:
    return name.startswith(("./", "/")) or name.lower().endswith(CONTEXT_SUFFIXES)


def _clean_context_path(name: str) -> str:
    path = posixpath.normpath("/" + name.lstrip("/"))
    return path.lstrip("/")


class Compiler:
    def __init__(self, bf: BuildFile, opts: Options, gw: Gateway, build: Platform | None = None) -> None:
        self.bf = bf
        self.opts = opts
        self.gw = gw
        self.build = build or build_platform()
        self.multi = False
        self.runs: list[tuple[Instruction, llb.Vertex]] = []
        self.stages_so_far: list[Stage] = []

    # ------------------------------------------------------------ top level

    def target_platforms(self) -> list[Platform | None]:
        if self.opts.platforms:
            return list(dict.fromkeys(self.opts.platforms))
        directive = self.bf.directives.get("platforms", "")
        if directive:
            try:
                return list(dict.fromkeys(Platform.parse(p) for p in directive.split(",") if p.strip()))
            except DockerifyError as e:
                raise self.bf.error(1, f"# platforms= directive: {e}") from None
        return [None]

    def compile(self) -> list[Result]:
        targets = self.target_platforms()
        self.multi = len(targets) > 1
        results = [self.evaluate(t) for t in targets]
        seen: dict[str, Platform | None] = {}
        for r, t in zip(results, targets, strict=True):
            key = str(r.platform)
            if key in seen:
                raise DockerifyError(
                    f"{self.bf.name}: two target platforms ({seen[key]} and {t}) both give {key}",
                    hint="name one card or tarball per platform, e.g. FROM rootfs-${TARGETARCH}.tar.gz",
                )
            seen[key] = t
        return results

    def evaluate(self, target: Platform | None) -> Result:
        bf = self.bf
        auto = {**platform_args("BUILD", self.build), **platform_args("TARGET", target or self.build)}
        global_args: dict[str, str] = {}
        stages: list[Stage] = []
        self.stages_so_far = stages
        stage: Stage | None = None
        for ins in bf.instructions:
            if ins.keyword == "FROM":
                stage = self.from_(ins, stages, {**auto, **global_args}, target, auto)
                stages.append(stage)
                continue
            if stage is None:
                if ins.keyword != "ARG":
                    raise bf.error(ins, f"{ins.keyword} before the first FROM")
                for key, value in self._arg_pairs(ins, {**auto, **global_args}):
                    global_args[key] = value
                continue
            if stage.exported:
                raise bf.error(ins, f"{ins.keyword} after EXPORT: EXPORT ends its stage")
            self.instruction(ins, stage, global_args)
        if not stages:
            raise bf.error(1, "no FROM: nothing to build")
        final = stages[-1]
        if self.opts.target:
            for s in stages:
                if s.name == self.opts.target.lower():
                    final = s
                    break
            else:
                raise DockerifyError(
                    f"{bf.name}: no stage named {self.opts.target!r} (--target)",
                    hint="stages: " + ", ".join(s.name for s in stages if not s.name.isdigit()),
                )
        config = final.settings.to_json(final.platform, self.opts.labels)
        return Result(final.platform, final.state, config, final.name)

    # ------------------------------------------------------------ FROM

    def from_(
        self,
        ins: Instruction,
        stages: list[Stage],
        scope: Mapping[str, str],
        target: Platform | None,
        auto: Mapping[str, str],
    ) -> Stage:
        bf = self.bf
        parts = words(expand(ins.args, scope, bf.escape), bf.escape)
        if len(parts) == 3 and parts[1].lower() == "as":
            name, alias = parts[0], parts[2].lower()
        elif len(parts) == 1:
            name, alias = parts[0], str(len(stages))
        else:
            raise bf.error(ins, f"FROM takes NAME [AS STAGE], not {ins.args!r}")
        if not name:
            raise bf.error(ins, f"FROM {ins.args}: the name expands to nothing")
        if any(s.name == alias for s in stages):
            raise bf.error(ins, f"stage name {alias!r} is used twice")
        want = target
        flag = ins.flag("platform")
        if flag:
            try:
                want = Platform.parse(expand(flag, scope, bf.escape))
            except DockerifyError as e:
                raise bf.error(ins, f"FROM --platform: {e}") from None
        base_args = dict(auto)
        for s in stages:
            if s.name == name.lower():
                return Stage(alias, len(stages), s.platform, s.state, s.settings.copy(), base_args)
        if name.lower() == "scratch":
            return Stage(alias, len(stages), want or self.build, None, ImageSettings(), base_args)
        if is_context_file(name):
            return self.from_context_file(ins, name, alias, len(stages), want, base_args)
        return self.from_image(ins, name, alias, len(stages), want, base_args)

    def frontend_image(self, ins: Instruction) -> llb.Output:
        if not self.opts.source:
            raise self.bf.error(
                ins,
                "this step runs dockerify's frontend image, but its name is unknown",
                hint="start the build file with `# syntax=IMAGE` naming the frontend",
            )
        return llb.image(
            self.opts.source,
            self.build,
            resolve_mode=self.opts.resolve_mode,
            description=f"dockerify frontend {self.opts.source}",
        )

    def _label(self, text: str, platform: Platform | None) -> str:
        return f"[{platform}] {text}" if self.multi and platform is not None else text

    def from_context_file(
        self,
        ins: Instruction,
        name: str,
        alias: str,
        index: int,
        want: Platform | None,
        base_args: dict[str, str],
    ) -> Stage:
        path = _clean_context_path(name)
        context = llb.local(
            "context",
            self.opts.session,
            include=[path],
            follow=[path],
            shared_key="context",
            description=f"context {path}",
        )
        self.require_in_context(ins, context, [path], "FROM")
        args = [
            "python3",
            "-m",
            "dockerify.frontend",
            "convert",
            "--source",
            "/context/" + path,
            "--name",
            name,
            "--out",
            "/out",
            "--meta",
            "/meta",
        ]
        if want is not None:
            args += ["--platform", str(want)]
        run = llb.Exec(
            tuple(args),
            env=(DEFAULT_PATH, "PYTHONDONTWRITEBYTECODE=1"),
            network=llb.Network.NONE,
            mounts=(
                llb.Mount("/", self.frontend_image(ins), output=False),
                llb.Mount("/context", context, readonly=True),
                llb.Mount("/out", None),
                llb.Mount("/meta", None),
                # The image's own root is read-only here; decompression may need room.
                llb.Mount("/tmp", None),
            ),
        )
        vertex = run.vertex(self.build, self._label(f"dockerify: convert {name}", want))
        facts = self.read_facts(ins, vertex.output(1), f"FROM {name}")
        platform = Platform.parse(facts["platform"])
        settings = ImageSettings(
            labels=dict(facts.get("labels") or {}), created=int(facts.get("created") or 0)
        )
        settings.cmd = facts.get("default_cmd")
        return Stage(alias, index, platform, vertex.output(0), settings, base_args)

    def read_facts(self, ins: Instruction, meta: llb.Output, what: str) -> dict[str, Any]:
        ref = self.solve(ins, meta, what)
        try:
            error = json.loads(self.gw.read_file(ref, "error.json"))
        except DockerifyError:
            error = None
        if error:
            raise self.bf.error(ins, f"{what}: {error['error']}", hint=error.get("hint") or None)
        try:
            return dict(json.loads(self.gw.read_file(ref, "facts.json")))
        except (DockerifyError, ValueError) as e:
            raise self.bf.error(ins, f"{what}: the conversion left no facts: {e}") from None

    def from_image(
        self,
        ins: Instruction,
        name: str,
        alias: str,
        index: int,
        platform: Platform | None,
        base_args: dict[str, str],
    ) -> Stage:
        try:
            info = self.gw.resolve_image_config(
                llb.normalize_image(name),
                platform,
                self.opts.resolve_mode,
                f"resolve image config for {name}",
            )
        except DockerifyError as e:
            raise self.bf.error(ins, f"FROM {name}: {e}") from None
        config = info.config
        actual = platform or self.build
        if config.get("architecture"):
            actual = Platform(config.get("os", "linux"), config["architecture"], config.get("variant", ""))
            if actual.architecture == "arm" and not actual.variant:
                actual = replace(actual, variant="v7")
        ref = (
            name
            if "@" in name or not info.digest
            else f"{llb.normalize_image(name).split('@')[0]}@{info.digest}"
        )
        state = llb.image(
            ref, actual, resolve_mode=self.opts.resolve_mode, description=self._label(f"FROM {name}", actual)
        )
        return Stage(alias, index, actual, state, ImageSettings.from_image(config), base_args)

    # ------------------------------------------------------------ the rest

    def _arg_pairs(self, ins: Instruction, scope: Mapping[str, str]) -> list[tuple[str, str]]:
        out = []
        for item in words(ins.args, self.bf.escape):
            key, sep, default = item.partition("=")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise self.bf.error(ins, f"ARG {item!r}: not a valid name")
            if key in self.opts.build_args:
                value = self.opts.build_args[key]
            elif sep:
                value = expand(default, scope, self.bf.escape)
            elif key in scope:
                value = scope[key]
            else:
                continue
            out.append((key, value))
        return out

    def scope(self, stage: Stage) -> dict[str, str]:
        return {**stage.args, **dict(stage.settings.env)}

    def instruction(self, ins: Instruction, stage: Stage, global_args: Mapping[str, str]) -> None:
        bf = self.bf
        kw = ins.keyword
        try:
            handler = getattr(self, "do_" + kw.lower())
            handler(ins, stage, global_args)
        except ValueError as e:
            raise bf.error(ins, f"{kw} {ins.args}: {e}") from None

    def do_arg(self, ins: Instruction, stage: Stage, global_args: Mapping[str, str]) -> None:
        scope = {**global_args, **self.scope(stage)}
        for key, value in self._arg_pairs(ins, scope):
            stage.args[key] = value
        for item in words(ins.args, self.bf.escape):
            key = item.partition("=")[0]
            if key in global_args and key not in stage.args:
                stage.args[key] = global_args[key]

    def do_env(self, ins: Instruction, stage: Stage, _g: Mapping[str, str]) -> None:
        for key, value in pairs(ins.args, "ENV", self.bf.escape):
            stage.settings.set_env(key, expand(value, self.scope(stage), self.bf.escape))

    def do_label(self, ins: Instruction, stage: Stage, _g: Mapping[str, str]) -> None:
        for key, value in pairs(ins.args, "LABEL", self.bf.escape):
            scope = self.scope(stage)
            stage.settings.labels[expand(key, scope, self.bf.escape)] = expand(value, scope, self.bf.escape)

    def do_workdir(self, ins: Instruction, stage: Stage, _g: Mapping[str, str]) -> None:
        path = expand(ins.args.strip(), self.scope(stage), self.bf.escape)
        path = posixpath.normpath(posixpath.join(stage.settings.workdir or "/", path))
        stage.settings.workdir = path
        stage.state = llb.mkdir(
            stage.state,
            path,
            platform=stage.platform,
            description=self._label(f"WORKDIR {path}", stage.platform),
        )

    def do_user(self, ins: Instruction, stage: Stage, _g: Mapping[str, str]) -> None:
        stage.settings.user = expand(ins.args.strip(), self.scope(stage), self.bf.escape)

    def _command(self, ins: Instruction) -> list[str]:
        form = ins.json_args()
        if form is not None:
            return form
        return ["/bin/sh", "-c", ins.args]

    def do_cmd(self, ins: Instruction, stage: Stage, _g: Mapping[str, str]) -> None:
        stage.settings.cmd = self._command(ins)

    def do_entrypoint(self, ins: Instruction, stage: Stage, _g: Mapping[str, str]) -> None:
        stage.settings.entrypoint = self._command(ins)
        stage.settings.cmd = None  # as Docker: a new entrypoint drops the inherited command

    def do_expose(self, ins: Instruction, stage: Stage, _g: Mapping[str, str]) -> None:
        for port in words(expand(ins.args, self.scope(stage), self.bf.escape), self.bf.escape):
            if not _PORT.match(port):
                raise self.bf.error(ins, f"EXPOSE {port}: not a port (80, 80/tcp, 53/udp)")
            key = port if "/" in port else port + "/tcp"
            if key not in stage.settings.expose:
                stage.settings.expose.append(key)

    def do_run(self, ins: Instruction, stage: Stage, global_args: Mapping[str, str]) -> None:
        if stage.state is None:
            raise self.bf.error(ins, "RUN in a stage FROM scratch: there is no shell to run it")
        argv = self._command(ins)
        # Build arguments reach RUN as environment variables (as with Docker), without being
        # recorded in the image.
        env = dict(stage.settings.env)
        for key, value in stage.args.items():
            env.setdefault(key, value)
        run = llb.Exec(
            tuple(argv),
            env=tuple(f"{k}={v}" for k, v in env.items()),
            cwd=stage.settings.workdir or "/",
            user=stage.settings.user,
            mounts=(llb.Mount("/", stage.state),),
        )
        vertex = run.vertex(stage.platform, self._label(f"RUN {ins.args}", stage.platform))
        stage.state = vertex.output(0)
        self.runs.append((ins, vertex))

    def _owner(self, ins: Instruction, text: str | None) -> tuple[int, int] | None:
        if not text:
            return None
        user, _, group = text.partition(":")
        try:
            uid = int(user)
            gid = int(group) if group else uid
        except ValueError:
            raise self.bf.error(ins, f"COPY --chown={text}: give numeric ids (uid:gid)") from None
        return uid, gid

    def do_copy(self, ins: Instruction, stage: Stage, _g: Mapping[str, str]) -> None:
        scope = self.scope(stage)
        form = ins.json_args()
        items = form if form is not None else words(expand(ins.args, scope, self.bf.escape), self.bf.escape)
        if len(items) < 2:
            raise self.bf.error(ins, "COPY takes SOURCE... DEST")
        *srcs, dest = items
        if len(srcs) > 1 and not dest.endswith("/"):
            raise self.bf.error(ins, f"COPY of several sources: the destination {dest!r} must end with /")
        dest_path = dest if dest.startswith("/") else posixpath.join(stage.settings.workdir or "/", dest)
        if dest.endswith("/") and not dest_path.endswith("/"):
            dest_path += "/"
        owner = self._owner(ins, ins.flag("chown"))
        source_stage = ins.flag("from")
        src_state: llb.Output | None
        if source_stage:
            src_state = self._from_state(ins, source_stage.lower(), stage)
            paths = ["/" + _clean_context_path(s) for s in srcs]
        else:
            rel = [_clean_context_path(s) for s in srcs]
            src_state = llb.local(
                "context",
                self.opts.session,
                include=rel,
                shared_key="context",
                description="context " + " ".join(rel),
            )
            self.require_in_context(
                ins, src_state, [r for r in rel if not any(c in r for c in "*?[")], "COPY"
            )
            paths = ["/" + r for r in rel]
        for path in paths:
            stage.state = llb.copy(
                src_state,
                path,
                stage.state,
                dest_path,
                platform=stage.platform,
                owner=owner,
                description=self._label(f"COPY {path} {dest_path}", stage.platform),
            )

    def _from_state(self, ins: Instruction, name: str, current: Stage) -> llb.Output | None:
        for s in self.stages_so_far:
            if s.name == name:
                return s.state
        # Not a stage: an image, as Docker allows (COPY --from=busybox ...).
        image = self.from_image(ins, name, "", -1, current.platform, {})
        return image.state

    def require_in_context(
        self, ins: Instruction, context: llb.Output, paths: Sequence[str], what: str
    ) -> None:
        """Fail at the line that names a missing file, before anything uses it."""
        if not paths:
            return
        ref = self.solve(ins, context, f"{what}: sending the build context")
        for path in paths:
            if self.gw.stat_file(ref, path) is None:
                raise self.bf.error(
                    ins,
                    f"{what} {path}: no such file in the build context",
                    hint="paths are relative to the context directory given to docker build",
                )

    def do_export(self, ins: Instruction, stage: Stage, _g: Mapping[str, str]) -> None:
        bf = self.bf
        fmt = ins.flag("format")
        if fmt not in EXPORT_FORMATS:
            raise bf.error(ins, f"EXPORT needs --format= one of {', '.join(EXPORT_FORMATS)}")
        if stage.state is None:
            raise bf.error(ins, "EXPORT of an empty stage (FROM scratch with nothing added)")
        scope = self.scope(stage)
        names = words(expand(ins.args, scope, bf.escape), bf.escape)
        if len(names) > 1:
            raise bf.error(ins, "EXPORT takes one output name")
        name = names[0] if names else EXPORT_FORMATS[fmt]
        if "/" in name or name in (".", ".."):
            raise bf.error(ins, f"EXPORT {name}: give a plain file name, it is written at the output's top")
        options = []
        for key, value in sorted(ins.flags):
            if key == "format":
                continue
            value = expand(value, scope, bf.escape)
            options.append(f"--{key}" if key == "shrink" and value == "true" else f"--{key}={value}")
        config = stage.settings.to_json(stage.platform, {})
        config_state = llb.mkfile(
            None,
            "/config.json",
            json.dumps(config, sort_keys=True).encode(),
            platform=self.build,
            description="dockerify: image config for EXPORT",
        )
        run = llb.Exec(
            (
                "python3",
                "-m",
                "dockerify.frontend",
                "export",
                "--rootfs",
                "/rootfs",
                "--config",
                "/config/config.json",
                "--out",
                "/out",
                "--meta",
                "/meta",
                "--format",
                fmt,
                "--name",
                name,
                "--",
                *options,
            ),
            env=(DEFAULT_PATH, "PYTHONDONTWRITEBYTECODE=1"),
            network=llb.Network.NONE,
            mounts=(
                llb.Mount("/", self.frontend_image(ins), output=False),
                llb.Mount("/rootfs", stage.state, readonly=True),
                llb.Mount("/config", config_state, readonly=True),
                llb.Mount("/out", None),
                llb.Mount("/meta", None),
                # The exporters stage the tree and filesystems here (the image's root is read-only);
                # they clean up, so the kept snapshot is empty.
                llb.Mount("/tmp", None),
            ),
        )
        vertex = run.vertex(self.build, self._label(f"dockerify: export {fmt} {name}", stage.platform))
        self.read_facts(ins, vertex.output(1), f"EXPORT {fmt} {name}")
        stage.state = vertex.output(0)
        stage.exported = True

    # ------------------------------------------------------------ solving

    def solve(self, ins: Instruction, output: llb.Output | None, what: str) -> str:
        try:
            return self.gw.solve(llb.definition(output, ignore_cache=self.opts.no_cache), what)
        except DockerifyError as e:
            raise self.explain(e, ins) from None

    def explain(self, err: DockerifyError, ins: Instruction | None = None) -> DockerifyError:
        """A solve error with the line of the instruction that failed, when we can tell it."""
        text = getattr(err, "detail", err.message)
        for run_ins, vertex in reversed(self.runs):
            argv = vertex.body.meta.args
            if " ".join(argv) in text or json.dumps(argv) in text or run_ins.args in text:
                return self.bf.error(run_ins, f"RUN {run_ins.args}: {_tail(text)}", hint=err.hint)
        if ins is not None:
            return self.bf.error(ins, err.message, hint=err.hint)
        return DockerifyError(f"{self.bf.name}: {err.message}", hint=err.hint)


def _tail(text: str) -> str:
    # BuildKit wraps errors in layers ("failed to solve: rpc error: ... desc = "); keep the end.
    return text.rsplit("desc = ", 1)[-1]
