"""The Python SDK: one function per command, taking the arguments a person would write and
returning a frozen result (dockerify/results.py; `to_json()` is what the command's `--json`
prints). The command line is a thin layer over these functions, so the two cannot drift apart;
failures are DockerifyError subclasses, as on the command line.

    dockerify.build("card.img", output="oci:/tmp/x:v1", tag="pi:v1")
    dockerify.export("oci:/tmp/x:v1", "sdcard", "card.img")
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from dockerify import daemon, results, runner
from dockerify.build import BuildOptions
from dockerify.build import build as build_image
from dockerify.diff import compare, records
from dockerify.errors import DockerifyError
from dockerify.exporters import formats
from dockerify.exporters.export import ExportOptions
from dockerify.exporters.export import export as _export
from dockerify.exporters.sink import Result
from dockerify.inspect import inspect_target
from dockerify.jsonable import Result as JsonResult
from dockerify.limits import DEFAULT_MAX_SIZE
from dockerify.oci import copy as _copy
from dockerify.oci.copy import CopyResult
from dockerify.oci.image import ImageOptions
from dockerify.oci.refs import ImageRef, image_ref, parse_ref
from dockerify.platform import Platform
from dockerify.progress import Progress

# Every result type, re-exported through results.__all__ (a new one needs no edit here); the
# ones this module builds are imported by name below as well.
from dockerify.results import *  # noqa: F403
from dockerify.results import (
    ArtifactPulled,
    ArtifactPushed,
    AttestationVerifyResult,
    AttestedDigest,
    AttestResult,
    BinfmtResult,
    BuildResult,
    DiffResult,
    InspectResult,
    KeygenResult,
    LoginResult,
    LogoutResult,
    PullResult,
    PushResult,
    RunResult,
    SbomResult,
    SignedDigest,
    SignResult,
    VerifiedAttestation,
    VerifiedDigest,
    VerifyResult,
)
from dockerify.sources.options import DEFAULT_READ, ReadOptions
from dockerify.stores import open_store
from dockerify.trees import open_image, open_tree
from dockerify.trust.keynames import Algorithm, KeyFormat
from dockerify.trust.sbom import sbom_json, sbom_of_entries

if TYPE_CHECKING:
    from dockerify.registry.client import Options

# Every result type (dockerify/results.py) and the two made beside their code, then the functions.
__all__ = [
    *results.__all__,
    "CopyResult",
    "ExportResult",
    "attest_sbom",
    "binfmt_status",
    "build",
    "copy",
    "diff",
    "export",
    "inspect",
    "keygen",
    "login",
    "logout",
    "pull",
    "pull_artifact",
    "push",
    "push_artifact",
    "run",
    "sbom",
    "sign",
    "verify",
    "verify_attestation",
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
    dense: bool = False,
    max_size: int = DEFAULT_MAX_SIZE,
    read: ReadOptions = DEFAULT_READ,
    chunked: int | None = None,
    quiet: bool = True,
) -> BuildResult:
    """Build an image of `sources` (a disk image, tarball or directory, or several, each a path
    or a (platform, path) pair, for a multi-platform index) and write it to `output` (any image
    reference: oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, docker-daemon:NAME or
    REGISTRY/REPO:TAG; default docker-daemon:TAG). `tag` names the image (default pi:latest
    when `output` is given). The keywords are `dockerify build`'s options (`dense=True` writes
    files with holes in full); `opts`, a whole BuildOptions, replaces them (the older form
    `build(sources, ref, tag, opts)` still works)."""
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
            # the daemon unpacks every layer, so compressing for it only costs time
            compression=compression or ("none" if out.transport == "docker-daemon" else "gzip"),
            epoch=BuildOptions.epoch_from_env(),
            pi_fixups=pi_fixups,
            force=force,
            max_size=max_size,
            read=read,
            quiet=quiet,
            sparse=not dense and not daemon_out,  # Docker's layer store cannot reassemble sparse members
            chunked=chunked,
        )
    built = build_image(pairs, out, name, opts)
    return BuildResult(built.digest, built.manifests, str(out))


# ---------------------------------------------------------------- inspect and diff


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
class ExportResult(JsonResult):
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


def _registry_options(
    insecure: bool | None, ca_cert: str | None, authfile: str | None, chunk_size: int | None = None
) -> Options:
    from dockerify.registry.client import Options  # oras and requests: not in the frontend image

    return Options.from_env(insecure=insecure, ca_cert=ca_cert, authfile=authfile, chunk_size=chunk_size)


def push(
    source: str,
    reference: str,
    *,
    platform: str | Platform | None = None,
    mount_from: Sequence[str] = (),
    insecure: bool | None = None,
    ca_cert: str | None = None,
    authfile: str | None = None,
    chunk_size: int | None = None,
    quiet: bool = True,
) -> PushResult:
    """Push any image reference to the registry `reference` (HOST/REPO:TAG); blobs of the
    `mount_from` repositories (of the same registry) are mounted, not uploaded."""
    from dockerify.registry.pushpull import push_source
    from dockerify.registry.transfer import TransferStats

    stats = TransferStats()
    root = push_source(
        source,
        reference,
        _platform(platform),
        _registry_options(insecure, ca_cert, authfile, chunk_size),
        Progress(quiet=quiet),
        stats,
        tuple(mount_from),
    )
    return PushResult(root.digest, root.media_type, root.size, stats.counts())


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
    from dockerify.registry.pushpull import pull as _pull
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
    return PullResult(root.digest, tuple((str(d.platform), d.digest) for d in manifests), stats.counts())


def push_artifact(
    file: PathLike,
    reference: str,
    *,
    artifact_type: str | None = None,
    annotations: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    platform: str | Platform | None = None,
    media_type: str | None = None,
    title: str | None = None,
    insecure: bool | None = None,
    ca_cert: str | None = None,
    authfile: str | None = None,
    chunk_size: int | None = None,
    quiet: bool = True,
) -> ArtifactPushed:
    """Push one file (an SD card, say) as an OCI artifact to `reference` (HOST/REPO:TAG). The
    artifact and layer media types come from the content unless given."""
    from dockerify.registry.artifact import push_artifact as _push_artifact

    desc = _push_artifact(
        os.fspath(file),
        reference,
        artifact_type,
        dict(annotations.items() if isinstance(annotations, Mapping) else annotations),
        _platform(platform),
        media_type,
        title,
        options=_registry_options(insecure, ca_cert, authfile, chunk_size),
        progress=Progress(quiet=quiet),
    )
    return ArtifactPushed(desc.digest, desc.artifact_type or "")


def pull_artifact(
    reference: str,
    destination: PathLike,
    *,
    insecure: bool | None = None,
    ca_cert: str | None = None,
    authfile: str | None = None,
    quiet: bool = True,
) -> ArtifactPulled:
    """Fetch a one-file artifact into `destination` (a file name, or a directory to use the
    artifact's title); the file appears only once its digest checks out."""
    from dockerify.registry.artifact import pull_artifact as _pull_artifact

    path, manifest = _pull_artifact(
        reference,
        os.fspath(destination),
        _registry_options(insecure, ca_cert, authfile),
        Progress(quiet=quiet),
    )
    return ArtifactPulled(path, str(manifest.get("artifactType", "")))


def login(
    registry: str,
    username: str,
    password: str,
    *,
    authfile: str | None = None,
    insecure: bool | None = None,
    ca_cert: str | None = None,
) -> LoginResult:
    """Check the login with the registry and keep it where `docker login` does (through the
    credential helper config.json names, if any; in `authfile` when given)."""
    from dockerify.registry.login import login as _login

    done = _login(
        registry, username, password, authfile=authfile, options=_registry_options(insecure, ca_cert, None)
    )
    return LoginResult(done.registry, done.path, done.helper, done.identity_token)


def logout(registry: str = "docker.io", *, authfile: str | None = None) -> LogoutResult:
    """Forget the login for `registry`; `removed` is False when there was none."""
    from dockerify.registry.authfiles import normalize_registry
    from dockerify.registry.login import logout as _logout

    removed = _logout(registry, authfile=authfile)
    return LogoutResult(normalize_registry(registry), removed)


# ---------------------------------------------------------------- keys, sign and verify


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
    """Sign the image `reference` (a registry reference, oci:DIR[:TAG] or oci-archive:FILE, which
    is replaced only if a signature was added) with a cosign-format private key; with
    `recursive`, each platform manifest of its index too. Docker's stores are refused: they keep
    no manifests to sign, nor a place for a signature."""
    from dockerify.registry.signing import sign as _sign
    from dockerify.registry.signing import signature_tag

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
    return SignResult(
        tuple(
            SignedDigest(s.digest, s.added, "a referrer" if referrers else signature_tag(s.digest))
            for s in done
        )
    )


def verify(
    reference: str,
    key: PathLike,
    *,
    recursive: bool = False,
    insecure: bool | None = None,
    ca_cert: str | None = None,
    authfile: str | None = None,
) -> VerifyResult:
    """Verify the image `reference` (a registry reference, oci:DIR[:TAG] or oci-archive:FILE)
    with a public key; a missing or bad signature raises VerificationError (a DockerifyError)."""
    from dockerify.registry.signing import verify as _verify

    done = _verify(reference, os.fspath(key), recursive, _registry_options(insecure, ca_cert, authfile))
    return VerifyResult(tuple(VerifiedDigest(v.digest, v.docker_reference, v.signatures) for v in done))


# ---------------------------------------------------------------- SBOMs and attestations


def sbom(
    target: PathLike,
    output: PathLike | None = None,
    *,
    platform: str | Platform | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
) -> SbomResult:
    """An SPDX 2.3 JSON SBOM of the dpkg database of a tree (disk image, tarball, directory or
    image reference), written to `output` (replaced if there) when given."""
    text = os.fspath(target)
    with open_tree(text, platform=_platform(platform), max_size=max_size) as tree:
        created = str(tree.image.config.get("created") or "") if tree.image is not None else None
        data = sbom_json(sbom_of_entries(text, tree.entries(), created=created))
    if output is None:
        return SbomResult(data)
    from dockerify.trust.keys import write_new  # cryptography: not in the frontend image

    path = Path(os.fspath(output))
    write_new(path, data, 0o644, force=True)
    return SbomResult(data, path)


def attest_sbom(
    image: str,
    key: PathLike,
    *,
    password: str | bytes | None = None,
    platform: str | Platform | None = None,
    referrers: bool = False,
    max_size: int = DEFAULT_MAX_SIZE,
    insecure: bool | None = None,
    ca_cert: str | None = None,
    authfile: str | None = None,
) -> AttestResult:
    """Attach each platform's SBOM to `image` (a registry reference, oci:DIR[:TAG] or
    oci-archive:FILE) as a cosign attestation signed with `key`: to its manifest and to the
    root. An equal attestation with this key already there is not added again."""
    from dockerify.registry.attestations import attest_sboms
    from dockerify.registry.signing import signature_tag

    key_path = os.fspath(key)
    done = attest_sboms(
        image,
        key_path,
        _platform(platform),
        _registry_options(insecure, ca_cert, authfile),
        referrers,
        max_size=max_size,
        password=lambda: _password(password, f"for {key_path}"),
    )
    return AttestResult(
        tuple(
            AttestedDigest(a.digest, a.added, "a referrer" if referrers else signature_tag(a.digest, "att"))
            for a in done
        )
    )


def verify_attestation(
    image: str,
    key: PathLike,
    *,
    type: str = "spdxjson",
    recursive: bool = False,
    insecure: bool | None = None,
    ca_cert: str | None = None,
    authfile: str | None = None,
) -> AttestationVerifyResult:
    """The predicates of `type` (spdxjson, cyclonedx, slsaprovenance, ... or a URI) attested for
    `image`, each in an envelope `key` verifies; none raises VerificationError."""
    from dockerify.registry.attestations import predicate_type
    from dockerify.registry.attestations import verify_attestation as _verify_attestation

    done = _verify_attestation(
        image, os.fspath(key), predicate_type(type), recursive, _registry_options(insecure, ca_cert, authfile)
    )
    return AttestationVerifyResult(
        tuple(VerifiedAttestation(v.digest, v.predicate_type, tuple(v.predicates)) for v in done)
    )


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
    interactive: bool = False,
    tty: bool | None = False,
) -> RunResult:
    """Run `command` in `image` (a daemon NAME[:TAG], or any image reference, loaded into the
    daemon first; with `verify_key`, only once its signature verifies) with the current
    directory at /mnt/host. Its output is captured, not shown, unless `tty` (None: when stdin is
    a terminal) gives it a terminal; `interactive` passes stdin on."""
    daemon.cli()  # no docker CLI: say so before loading or verifying anything
    done = runner.run_captured(
        daemon_image(image, verify_key, platform),
        list(command),
        rm=rm,
        interactive=interactive,
        tty=tty,
        workdir=workdir,
        mount_cwd=mount_cwd,
        platform=platform,
    )
    return RunResult(done.image, done.platform, done.exit_code, done.output, done.errors)


def daemon_image(image: str, verify_key: str | None = None, platform: str | None = None) -> str:
    """The daemon's name for `image`: a daemon image as it is; any other image (or any image,
    with `verify_key`, once its signature verifies) loaded into the daemon first."""
    ref = image_ref(image)
    if ref.transport == "docker-daemon" and verify_key is None:
        return ref.path
    return runner.load_verified(str(ref), verify_key, platform)


def binfmt_status() -> BinfmtResult:
    """Which foreign architectures have a qemu-user handler registered with the kernel."""
    return BinfmtResult(_frozen(runner.binfmt_status()))
