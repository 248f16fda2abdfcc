"""The Python SDK: one function per command, taking the arguments a person would write and
returning a frozen result. Each is a thin call of the library code the command line calls, so
the two cannot drift apart; failures are DockerifyError subclasses, as on the command line.

    dockerify.build("card.img", output="oci:/tmp/x:v1", tag="pi:v1")
    dockerify.export("oci:/tmp/x:v1", "sdcard", "card.img")
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from dockerify import daemon, runner
from dockerify.build import BuildOptions, BuildResult
from dockerify.build import build as build_image
from dockerify.diff import compare, records
from dockerify.errors import DockerifyError
from dockerify.exporters import formats
from dockerify.exporters.export import ExportOptions
from dockerify.exporters.export import export as _export
from dockerify.exporters.sink import Result
from dockerify.inspect import inspect_target, render
from dockerify.limits import DEFAULT_MAX_SIZE
from dockerify.oci import copy as _copy
from dockerify.oci.copy import CopyResult
from dockerify.oci.image import ImageOptions
from dockerify.oci.refs import ImageRef, image_ref, parse_ref
from dockerify.platform import Platform
from dockerify.progress import Progress
from dockerify.runner import RunResult
from dockerify.sources.options import DEFAULT_READ, ReadOptions
from dockerify.stores import open_store
from dockerify.trees import open_image, open_tree

if TYPE_CHECKING:
    from dockerify.registry.client import Options

__all__ = [
    "BinfmtResult",
    "BuildResult",
    "CopyResult",
    "DiffResult",
    "ExportResult",
    "InspectResult",
    "KeygenResult",
    "PullResult",
    "PushResult",
    "RunResult",
    "SignResult",
    "SignedDigest",
    "TransferCounts",
    "VerifiedDigest",
    "VerifyResult",
    "binfmt_status",
    "build",
    "copy",
    "diff",
    "export",
    "inspect",
    "keygen",
    "pull",
    "push",
    "run",
    "sign",
    "verify",
]

PathLike = str | os.PathLike[str]


def _platform(text: str | Platform | None) -> Platform | None:
    if text is None or isinstance(text, Platform):
        return text
    return Platform.parse(text)


def _frozen(info: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(info))


# ---------------------------------------------------------------- build


def build(
    sources: PathLike | Sequence[PathLike | tuple[Platform | str | None, PathLike]],
    output: str | ImageRef | None = None,
    tag: str | None = None,
    opts: BuildOptions | None = None,
    *,
    platform: str | Platform | None = None,
    compression: str | None = None,
    env: Sequence[str] = (),
    labels: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    cmd: Sequence[str] | None = None,
    entrypoint: Sequence[str] | None = None,
    workdir: str = "",
    user: str = "",
    expose: Sequence[str] = (),
    pi_fixups: bool = True,
    force: bool = False,
    max_size: int = DEFAULT_MAX_SIZE,
    read: ReadOptions = DEFAULT_READ,
    chunked: int | None = None,
    quiet: bool = True,
) -> BuildResult:
    """Build an image of `sources` (a disk image, tarball or directory, or several, each a path
    or a (platform, path) pair, for a multi-platform index) and write it to `output` (any image
    reference: oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, docker-daemon:NAME or
    REGISTRY/REPO:TAG; default docker-daemon:TAG). `tag` names the image (default pi:latest
    when `output` is given). The keywords are `dockerify build`'s options; `opts`, a whole
    BuildOptions, replaces them (the older form `build(sources, ref, tag, opts)` still works)."""
    if output is None and tag is None:
        raise DockerifyError(
            "build: name where the image goes",
            hint='pass output="oci:DIR:TAG" (or any image reference), or tag="NAME[:TAG]" for the daemon',
        )
    name = tag or "pi:latest"
    out = output if isinstance(output, ImageRef) else parse_ref(output or f"docker-daemon:{name}")
    items: Sequence[PathLike | tuple[Platform | str | None, PathLike]] = (
        [sources] if isinstance(sources, (str, os.PathLike)) else sources
    )
    plat = _platform(platform)
    if plat is not None and len(items) > 1:
        raise DockerifyError("platform= applies to a single source; give several as (platform, path) pairs")
    pairs: list[tuple[Platform | None, str]] = []
    for item in items:
        if isinstance(item, tuple):
            pairs.append((_platform(item[0]), os.fspath(item[1])))
        else:
            pairs.append((plat, os.fspath(item)))
    if opts is None:
        image = ImageOptions(
            env=tuple(env),
            labels=tuple(labels.items() if isinstance(labels, Mapping) else labels),
            cmd=tuple(cmd) if cmd is not None else None,
            entrypoint=tuple(entrypoint) if entrypoint is not None else None,
            workdir=workdir,
            user=user,
            expose=tuple(expose),
        )
        daemon_out = out.transport in ("docker-daemon", "docker-archive")
        opts = BuildOptions(
            image=image,
            # as the command line: the daemon unpacks every layer, so compressing for it only costs time
            compression=compression or ("none" if out.transport == "docker-daemon" else "gzip"),
            epoch=BuildOptions.epoch_from_env(),
            pi_fixups=pi_fixups,
            force=force,
            max_size=max_size,
            read=read,
            quiet=quiet,
            sparse=not daemon_out,  # Docker's layer store cannot reassemble sparse members
            chunked=chunked,
        )
    return build_image(pairs, out, name, opts)


# ---------------------------------------------------------------- inspect and diff


@dataclass(frozen=True)
class InspectResult:
    """What `dockerify inspect` finds: `info` is what `--json` prints, `text` what it shows."""

    target: str
    info: Mapping[str, Any]

    @property
    def text(self) -> str:
        return render(dict(self.info))


def inspect(
    target: PathLike,
    *,
    platform: str | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    read: ReadOptions = DEFAULT_READ,
) -> InspectResult:
    """Partitions, filesystems and platform of a disk image, tarball or directory, or the index,
    manifests and config of an image reference."""
    text = os.fspath(target)
    return InspectResult(text, _frozen(inspect_target(text, platform=platform, max_size=max_size, read=read)))


@dataclass(frozen=True)
class DiffResult:
    """`lines` are `dockerify diff`'s lines, one per difference; `entries` counts each tree."""

    a: str
    b: str
    lines: tuple[str, ...]
    entries: tuple[int, int]

    @property
    def identical(self) -> bool:
        return not self.lines


def diff(
    a: PathLike,
    b: PathLike,
    *,
    platform: str | Platform | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    read: ReadOptions = DEFAULT_READ,
) -> DiffResult:
    """Compare two trees (disk image, tarball, directory or image reference), entry by entry."""
    plat = _platform(platform)
    with open_tree(os.fspath(a), platform=plat, max_size=max_size, read=read) as tree:
        ra = records(tree.entries())
    with open_tree(os.fspath(b), platform=plat, max_size=max_size, read=read) as tree:
        rb = records(tree.entries())
    return DiffResult(os.fspath(a), os.fspath(b), tuple(compare(ra, rb)), (len(ra), len(rb)))


# ---------------------------------------------------------------- export


@dataclass(frozen=True)
class PushedArtifact:
    """Where `export(..., push=REF)` sent the SD card, as an OCI artifact."""

    reference: str
    digest: str


@dataclass(frozen=True)
class ExportResult:
    """`output` is the path written; `result` the format's own typed result (rootfs-tar: TarResult,
    rootfs-dir: DirResult, sdcard: CardResult, initramfs: InitramfsResult, stage0: BundleResult);
    `info` the summary `dockerify export --json` prints (`to_json()`, read-only)."""

    format: str
    output: str
    result: Result
    pushed: PushedArtifact | None = None

    @property
    def info(self) -> Mapping[str, Any]:
        return _frozen(self.to_json())

    def to_json(self) -> dict[str, Any]:
        out = self.result.to_json()
        if self.pushed is not None:
            out["pushed"] = {"reference": self.pushed.reference, "digest": self.pushed.digest}
        return out


def export(
    image: str,
    format: str,
    output: PathLike,
    *,
    platform: str | Platform | None = None,
    verify_key: str | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    push: str | None = None,
    **options: Any,
) -> ExportResult:
    """Write one platform of `image` as `format` (rootfs-tar, rootfs-dir, sdcard, initramfs or
    stage0) at `output`. Further keywords are the format's options, the flags of `dockerify
    export` (compress="xz", root_size=..., shrink=True, cmd=["/bin/sh"], ...); one of another
    format is refused. `push` (sdcard only) sends the card to a registry reference as an OCI
    artifact."""
    known = formats.option_defaults()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise DockerifyError(
            f"export: unknown option {unknown[0]!r}", hint="one of " + ", ".join(sorted(known))
        )
    opts = ExportOptions.of(format, os.fspath(output), max_size, **options)
    if push and format != "sdcard":
        raise DockerifyError(f"--push applies to --format sdcard, not {format}")
    pushed = None
    with open_image(image, _platform(platform), verify_key=verify_key, max_size=max_size) as img:
        result = _export(img, opts)
        if push:
            from dockerify.registry.artifact import push_artifact  # oras: not in the frontend image

            descriptor = push_artifact(
                result.path,
                push,
                platform=img.platform,
                annotations={"io.dockerify.source-image": img.descriptor.digest},
            )
            pushed = PushedArtifact(push, descriptor.digest)
    return ExportResult(format, result.path, result, pushed)


# ---------------------------------------------------------------- copy, push and pull


def copy(
    source: str | ImageRef,
    destination: str | ImageRef,
    *,
    platforms: Sequence[str | Platform] = (),
    quiet: bool = True,
) -> CopyResult:
    """Copy an image, or a whole index (only `platforms` of it, when given), between any two
    image references; blobs the destination has are not copied again."""
    chosen = [p if isinstance(p, Platform) else Platform.parse(p) for p in platforms]
    with open_store(source) as src, open_store(destination) as dst:
        return _copy.copy(src, dst, platforms=chosen, progress=Progress(quiet=quiet))


@dataclass(frozen=True)
class TransferCounts:
    """What crossed the network and what the other side already had."""

    bytes_moved: int
    blobs_moved: int
    blobs_skipped: int
    bytes_skipped: int
    blobs_mounted: int


@dataclass(frozen=True)
class PushResult:
    digest: str
    media_type: str
    size: int
    transfer: TransferCounts


@dataclass(frozen=True)
class PullResult:
    digest: str
    manifests: tuple[tuple[str, str], ...]  # (platform, manifest digest)
    transfer: TransferCounts


def _registry_options(insecure: bool | None, ca_cert: str | None, authfile: str | None) -> Options:
    from dockerify.registry.client import Options  # oras and requests: not in the frontend image

    return Options.from_env(insecure=insecure, ca_cert=ca_cert, authfile=authfile)


def _counts(stats: Any) -> TransferCounts:
    return TransferCounts(
        stats.bytes_moved, stats.blobs_moved, stats.blobs_skipped, stats.bytes_skipped, stats.blobs_mounted
    )


def push(
    source: str,
    reference: str,
    *,
    platform: str | Platform | None = None,
    mount_from: Sequence[str] = (),
    insecure: bool | None = None,
    ca_cert: str | None = None,
    authfile: str | None = None,
    quiet: bool = True,
) -> PushResult:
    """Push any image reference to the registry `reference` (HOST/REPO:TAG)."""
    from dockerify.registry.copy import push_source
    from dockerify.registry.transfer import TransferStats

    stats = TransferStats()
    root = push_source(
        source,
        reference,
        _platform(platform),
        _registry_options(insecure, ca_cert, authfile),
        Progress(quiet=quiet),
        stats,
        tuple(mount_from),
    )
    return PushResult(root.digest, root.media_type, root.size, _counts(stats))


def pull(
    reference: str,
    destination: str | ImageRef,
    *,
    platform: str | Platform | None = None,
    verify_key: str | None = None,
    insecure: bool | None = None,
    ca_cert: str | None = None,
    authfile: str | None = None,
    quiet: bool = True,
) -> PullResult:
    """Pull the registry image `reference` into `destination` (any image reference); with
    `verify_key`, only an image whose signature that key verifies. Nothing is written unless
    every digest checks out."""
    from dockerify.registry.copy import pull as _pull
    from dockerify.registry.transfer import TransferStats

    stats = TransferStats()
    root, manifests = _pull(
        reference,
        destination,
        _platform(platform),
        _registry_options(insecure, ca_cert, authfile),
        Progress(quiet=quiet),
        verify_key,
        stats,
    )
    return PullResult(root.digest, tuple((str(d.platform), d.digest) for d in manifests), _counts(stats))


# ---------------------------------------------------------------- keys, sign and verify


@dataclass(frozen=True)
class KeygenResult:
    key: Path  # the private key, mode 0600, encrypted with the password
    pub: Path
    format: str
    algorithm: str


def _password(password: str | bytes | None, purpose: str, confirm: bool = False) -> bytes:
    """The given password, else DOCKERIFY_KEY_PASSWORD / COSIGN_PASSWORD, else a prompt."""
    if password is not None:
        return password.encode() if isinstance(password, str) else password
    from dockerify.registry.signing import read_password

    return read_password(purpose, confirm=confirm)


def keygen(
    prefix: PathLike,
    *,
    password: str | bytes | None = None,
    force: bool = False,
    format: str = "cosign",
    algorithm: str = "ecdsa-sha2-256-nistp256",
) -> KeygenResult:
    """Write PREFIX.key and PREFIX.pub, a cosign-compatible key pair. The password defaults to
    $DOCKERIFY_KEY_PASSWORD (or $COSIGN_PASSWORD), else it is asked on the terminal."""
    from dockerify.trust.keys import Algorithm, KeyFormat
    from dockerify.trust.keys import keygen as _keygen

    try:
        fmt, algo = KeyFormat(format), Algorithm(algorithm)
    except ValueError:
        raise DockerifyError(
            f"keygen: unknown format {format!r} or algorithm {algorithm!r}",
            hint="format: "
            + ", ".join(f.value for f in KeyFormat)
            + "; algorithm: "
            + ", ".join(a.value for a in Algorithm),
        ) from None
    secret = _password(password, "for the new private key", confirm=True)
    key, pub = _keygen(os.fspath(prefix), secret, force=force, fmt=fmt, algorithm=algo)
    return KeygenResult(key, pub, fmt.value, algo.value)


@dataclass(frozen=True)
class SignedDigest:
    digest: str
    added: bool  # False when an equal signature was already there


@dataclass(frozen=True)
class SignResult:
    signed: tuple[SignedDigest, ...]

    @property
    def digests(self) -> tuple[str, ...]:
        return tuple(s.digest for s in self.signed)


def sign(
    reference: str,
    key: PathLike,
    *,
    password: str | bytes | None = None,
    recursive: bool = False,
    identity: str | None = None,
    referrers: bool = False,
    insecure: bool | None = None,
    ca_cert: str | None = None,
    authfile: str | None = None,
) -> SignResult:
    """Sign the image `reference` (a registry reference or oci:DIR[:TAG]) with a cosign-format
    private key; with `recursive`, each platform manifest of its index too."""
    from dockerify.registry.signing import sign as _sign

    key_path = os.fspath(key)
    done = _sign(
        reference,
        key_path,
        recursive,
        _registry_options(insecure, ca_cert, authfile),
        identity,
        password=lambda: _password(password, f"for {key_path}"),
        referrers=referrers,
    )
    return SignResult(tuple(SignedDigest(s.digest, s.added) for s in done))


@dataclass(frozen=True)
class VerifiedDigest:
    digest: str
    docker_reference: str
    signatures: int  # how many of the stored signatures verified


@dataclass(frozen=True)
class VerifyResult:
    verified: tuple[VerifiedDigest, ...]

    @property
    def digests(self) -> tuple[str, ...]:
        return tuple(v.digest for v in self.verified)


def verify(
    reference: str,
    key: PathLike,
    *,
    recursive: bool = False,
    insecure: bool | None = None,
    ca_cert: str | None = None,
    authfile: str | None = None,
) -> VerifyResult:
    """Verify the image `reference` with a public key; a missing or bad signature raises
    VerificationError (a DockerifyError)."""
    from dockerify.registry.signing import verify as _verify

    done = _verify(reference, os.fspath(key), recursive, _registry_options(insecure, ca_cert, authfile))
    return VerifyResult(tuple(VerifiedDigest(v.digest, v.docker_reference, v.signatures) for v in done))


# ---------------------------------------------------------------- run and binfmt


def run(
    image: str,
    command: Sequence[str] = (),
    *,
    workdir: str | None = None,
    platform: str | None = None,
    verify_key: str | None = None,
    mount_cwd: bool = True,
    rm: bool = True,
) -> RunResult:
    """Run `command` in `image` (a daemon NAME[:TAG], or any image reference, loaded into the
    daemon first) with the current directory at /mnt/host; its output is captured, not shown."""
    daemon.cli()  # no docker CLI: say so before loading or verifying anything
    ref = image_ref(image)
    if ref.transport == "docker-daemon" and verify_key is None:
        name = ref.path
    else:
        name = runner.load_verified(str(ref), verify_key, platform)
    return runner.run_captured(
        name,
        list(command),
        rm=rm,
        interactive=False,
        tty=False,
        workdir=workdir,
        mount_cwd=mount_cwd,
        platform=platform,
    )


@dataclass(frozen=True)
class BinfmtResult:
    """Which foreign architectures the kernel can run through qemu-user; `ok` when the Pi's
    (arm64 and arm) can."""

    handlers: Mapping[str, bool] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.handlers.get(a, False) for a in ("arm64", "arm"))


def binfmt_status() -> BinfmtResult:
    return BinfmtResult(_frozen(runner.binfmt_status()))
