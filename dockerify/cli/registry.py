"""`dockerify login`, `logout`, `push`, `pull`, `push-artifact`, `pull-artifact`, `keygen`, `sign`,
`verify`, `sbom` and `verify-attestation`."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys

from dockerify import sdk
from dockerify.cli.options import (
    authfile_flag,
    chunk_flag,
    common,
    json_flag,
    key_value,
    max_size,
    platform_flag,
    print_result,
    registry_flags,
    registry_options,
)
from dockerify.errors import DockerifyError
from dockerify.oci.model import SDCARD_ARTIFACT_TYPE
from dockerify.trust.keynames import Algorithm, KeyFormat

log = logging.getLogger("dockerify")


def _read_login(args: argparse.Namespace, registry: str) -> tuple[str, str]:
    """User name and password as `docker login` takes them: --password-stdin, else a prompt."""

    if args.password_stdin:
        if not args.username:
            raise DockerifyError("--password-stdin needs --username", hint="pass --username USER")
        password = sys.stdin.read()
        for end in ("\n", "\r"):  # the newline `echo` and here-strings add
            password = password.removesuffix(end)
        return args.username, password
    if not sys.stdin.isatty():
        raise DockerifyError(
            f"{registry}: no terminal to ask for the password",
            hint="pipe it in with --password-stdin (never put it on the command line)",
        )
    username = args.username or input("Username: ").strip()
    return username, getpass.getpass("Password: ")


class _RefusePassword(argparse.Action):
    """`docker login -p` exists; here a password on the command line is refused, without echoing it."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        parser.error(
            f"{option_string} would put the password in the process list and the shell history; "
            "pipe it to --password-stdin instead"
        )


def cmd_login(args: argparse.Namespace) -> int:
    from dockerify.registry.authfiles import normalize_registry  # the registry package: optional

    username, password = _read_login(args, normalize_registry(args.registry))
    result = sdk.login(
        args.registry,
        username,
        password,
        authfile=args.authfile,
        insecure=True if args.insecure else None,
        ca_cert=args.ca_cert,
    )
    kept = f"by {result.helper}" if result.helper else f"in {result.path}"
    what = "an identity token" if result.identity_token else "the login"
    log.info("Login Succeeded: %s (%s kept %s)", result.registry, what, kept)
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    result = sdk.logout(args.registry, authfile=args.authfile)
    if result.removed:
        log.info("Removed login credentials for %s", result.registry)
    else:
        log.info("Not logged in to %s", result.registry)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    result = sdk.push(
        args.source,
        args.reference,
        platform=args.platform,
        mount_from=args.mount_from,
        chunk_size=args.chunk_size,
        quiet=args.quiet,
        **registry_options(args),
    )
    if not args.quiet:
        print(f"dockerify: {result.transfer.line('pushed')}", file=sys.stderr)
    print_result(result, args, result.digest)
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    result = sdk.pull(
        args.reference,
        args.dest,
        platform=args.platform,
        verify_key=args.verify_key,
        quiet=args.quiet,
        **registry_options(args),
    )
    if not args.quiet:
        print(f"dockerify: {result.transfer.line('pulled')}", file=sys.stderr)
    print_result(result, args, result.digest)
    return 0


def cmd_push_artifact(args: argparse.Namespace) -> int:
    result = sdk.push_artifact(
        args.file,
        args.reference,
        artifact_type=args.artifact_type,
        annotations=args.annotation,
        platform=args.platform,
        media_type=args.media_type,
        title=args.title,
        chunk_size=args.chunk_size,
        quiet=args.quiet,
        **registry_options(args),
    )
    print_result(result, args, result.digest)
    return 0


def cmd_pull_artifact(args: argparse.Namespace) -> int:
    result = sdk.pull_artifact(args.reference, args.dest, quiet=args.quiet, **registry_options(args))
    print_result(result, args, str(result.path))
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    result = sdk.keygen(
        args.output_key_prefix, force=args.force, format=args.format, algorithm=args.algorithm
    )
    log.info("private key (%s format) written to %s, public key to %s", result.format, result.key, result.pub)
    print_result(result, args, str(result.pub))
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    result = sdk.sign(
        args.reference,
        args.key,
        recursive=args.recursive,
        identity=args.identity,
        referrers=args.referrers,
        **registry_options(args),
    )
    for signed in result.signed:
        if signed.added:
            log.info("signed %s (%s)", signed.digest, signed.stored)
        else:
            log.info("%s: already signed with this key (%s); nothing added", signed.digest, signed.stored)
    print_result(result, args, "\n".join(result.digests))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    result = sdk.verify(args.reference, args.key, recursive=args.recursive, **registry_options(args))
    print_result(result, args, "\n".join(f"{d} verified" for d in result.digests))
    return 0


def cmd_sbom(args: argparse.Namespace) -> int:
    if args.attest:
        if not args.key:
            raise DockerifyError("--attest signs the SBOM and needs --key", hint="pass --key KEY")
        attested = sdk.attest_sbom(
            args.target,
            args.key,
            platform=args.platform,
            referrers=args.referrers,
            max_size=args.max_size,
            **registry_options(args),
        )
        for done in attested.attested:
            what = f"SBOM attested ({done.stored})" if done.added else "already attested; nothing added"
            log.info("%s: %s", done.digest, what)
        print_result(attested, args, "\n".join(attested.digests))
        return 0
    result = sdk.sbom(args.target, args.output, platform=args.platform, max_size=args.max_size)
    if result.output is None:
        sys.stdout.buffer.write(result.data)
    return 0


def cmd_verify_attestation(args: argparse.Namespace) -> int:
    result = sdk.verify_attestation(
        args.reference, args.key, type=args.type, recursive=args.recursive, **registry_options(args)
    )
    lines = [
        f"{v.digest} verified ({len(v.predicates)} {v.predicate_type} attestation(s))"
        for v in result.verified
    ]
    print_result(result, args, "\n".join(lines))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:

    for name, what in (("login", "log in to"), ("logout", "log out of")):
        p = sub.add_parser(
            name,
            allow_abbrev=False,  # `--pass SECRET` must not be read as --password-stdin and a registry
            help=f"{what} a registry, keeping the login where `docker {name}` does "
            "(through the credential helper config.json names, if any)",
        )
        p.add_argument(
            "registry",
            metavar="REGISTRY",
            nargs="?",
            default="docker.io",
            help="host[:port] of the registry (default: docker.io, Docker Hub)",
        )
        authfile_flag(p, "keep the login in" if name == "login" else "remove the login from")
        if name == "login":
            p.add_argument("-u", "--username", metavar="USER", help="user name (asked for when not given)")
            p.add_argument("-p", "--password", action=_RefusePassword, help=argparse.SUPPRESS)
            p.add_argument(
                "--password-stdin",
                action="store_true",
                help="read the password from stdin (else it is asked for without echo)",
            )
            p.add_argument(
                "--insecure",
                action="store_true",
                help="allow plain HTTP and unverified TLS when checking the login",
            )
            p.add_argument(
                "--ca-cert", metavar="FILE", help="CA certificate(s) to verify the registry's TLS with"
            )
        common(p)
        p.set_defaults(func=cmd_login if name == "login" else cmd_logout)

    p = sub.add_parser(
        "push", help="push an image (oci:, oci-archive:, docker-archive:, docker-daemon:) to a registry"
    )
    p.add_argument(
        "source",
        metavar="SRC",
        help="the image to push: oci:, oci-archive:, docker-archive:, a daemon NAME or a registry",
    )
    p.add_argument("reference", metavar="REF", help="REGISTRY/REPO[:TAG]")
    platform_flag(p, "push only this platform of a multi-platform image")
    p.add_argument(
        "--mount-from",
        action="append",
        default=[],
        metavar="REPO",
        help="a repository of the same registry holding blobs of this image (an earlier version): "
        "they are mounted, not uploaded",
    )
    json_flag(p)
    registry_flags(p)
    chunk_flag(p)
    max_size(p)
    common(p)
    p.set_defaults(func=cmd_push)

    p = sub.add_parser(
        "pull",
        help="pull an image from a registry into oci:, oci-archive:, docker-archive: or docker-daemon:",
    )
    p.add_argument("reference", metavar="REF", help="HOST/REPO[:TAG|@DIGEST] to pull")
    p.add_argument(
        "dest",
        metavar="DEST",
        help="oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE or docker-daemon:NAME",
    )
    platform_flag(p, "pull only this platform of a multi-platform image")
    p.add_argument(
        "--verify-key",
        metavar="PUB",
        help="refuse the image unless its signature verifies with this public key",
    )
    json_flag(p)
    registry_flags(p)
    max_size(p)
    common(p)
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("push-artifact", help="push a file (e.g. an SD-card image) as an OCI artifact")
    p.add_argument("file", metavar="FILE", help="the file to push")
    p.add_argument("reference", metavar="REF", help="HOST/REPO:TAG to push it to")
    p.add_argument(
        "--artifact-type",
        metavar="TYPE",
        help=f"the manifest's artifactType (default from the content: {SDCARD_ARTIFACT_TYPE} for a "
        "disk image, application/vnd.dockerify.file.v1 for anything else)",
    )
    p.add_argument(
        "--annotation",
        action="append",
        default=[],
        type=key_value,
        metavar="K=V",
        help="a manifest annotation (repeatable)",
    )
    platform_flag(p, "the platform the file is for (an annotation)")
    p.add_argument("--title", help="file name recorded in the artifact (default: FILE's name)")
    p.add_argument(
        "--media-type",
        help="layer media type (default from the content: an SD card, cpio, tar or octet-stream, "
        "with the compression as a suffix, e.g. +xz)",
    )
    json_flag(p)
    registry_flags(p)
    chunk_flag(p)
    common(p)
    p.set_defaults(func=cmd_push_artifact)

    p = sub.add_parser("pull-artifact", help="pull a one-file OCI artifact")
    p.add_argument("reference", metavar="REF", help="HOST/REPO[:TAG|@DIGEST] of the artifact")
    p.add_argument("dest", metavar="DEST", help="a file name, or a directory to use the artifact's title")
    json_flag(p)
    registry_flags(p)
    common(p)
    p.set_defaults(func=cmd_pull_artifact)

    p = sub.add_parser(
        "keygen",
        help="make a key pair for signing (password from a prompt, DOCKERIFY_KEY_PASSWORD or COSIGN_PASSWORD)",
    )
    p.add_argument(
        "--output-key-prefix", default="dockerify", metavar="PREFIX", help="writes PREFIX.key and PREFIX.pub"
    )
    p.add_argument(
        "--format",
        choices=[f.value for f in KeyFormat],
        default=KeyFormat.COSIGN.value,
        help="private key file format: cosign's ENCRYPTED SIGSTORE PRIVATE KEY (default; `cosign sign "
        "--key` reads it) or PKCS#8 ENCRYPTED PRIVATE KEY (openssl reads it)",
    )
    p.add_argument(
        "--algorithm",
        choices=[a.value for a in Algorithm],
        default=Algorithm.ECDSA_P256.value,
        help="key algorithm (default ECDSA P-256, as cosign generate-key-pair)",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing key files")
    json_flag(p, "the key files written")
    common(p)
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser(
        "sign", help="sign an image (registry, oci:DIR or oci-archive:FILE) in cosign's format"
    )
    p.add_argument(
        "reference",
        metavar="REF",
        help="the image: HOST/REPO[:TAG], oci:DIR[:TAG], oci-archive:FILE[:TAG] or a layout's path",
    )
    p.add_argument(
        "--key",
        required=True,
        metavar="KEY",
        help="private key from `dockerify keygen` or `cosign generate-key-pair`",
    )
    p.add_argument("--recursive", action="store_true", help="also sign every platform manifest of an index")
    p.add_argument(
        "--referrers",
        action="store_true",
        help="store the signature as an OCI 1.1 referrer (cosign's --registry-referrers-mode=oci-1-1) "
        "instead of the sha256-<hex>.sig tag",
    )
    p.add_argument(
        "--identity",
        metavar="NAME",
        help="docker-reference to write in the payload (default: the repository)",
    )
    json_flag(p, "the manifests signed")
    registry_flags(p)
    common(p)
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser("verify", help="verify an image's cosign signature with a public key")
    p.add_argument(
        "reference", metavar="REF", help="the image: HOST/REPO[:TAG], oci:DIR[:TAG], oci-archive:FILE"
    )
    p.add_argument("--key", required=True, metavar="PUB", help="public key (PEM)")
    p.add_argument("--recursive", action="store_true", help="also verify every platform manifest of an index")
    json_flag(p)
    registry_flags(p)
    common(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "sbom",
        help="an SPDX 2.3 JSON SBOM from a tree's dpkg database (disk image, tarball, directory or image); "
        "--attest attaches it to the image as a signed attestation",
    )
    p.add_argument(
        "target", metavar="SOURCE|IMAGE", help="a disk image, tarball or directory, or an image (see README)"
    )
    platform_flag(p, "the platform of an image that holds several")
    p.add_argument("-o", "--output", metavar="FILE", help="write the SBOM here instead of stdout")
    p.add_argument(
        "--attest",
        action="store_true",
        help="attach the SBOM to the image (registry or oci:DIR) as a cosign attestation (sha256-<hex>.att)",
    )
    p.add_argument("--key", metavar="KEY", help="private key to sign the attestation with")
    p.add_argument("--referrers", action="store_true", help="attach it as an OCI 1.1 referrer instead")
    registry_flags(p)
    max_size(p)
    common(p)
    p.set_defaults(func=cmd_sbom)

    p = sub.add_parser(
        "verify-attestation", help="verify an image's attestations (cosign's format) with a public key"
    )
    p.add_argument("reference", metavar="REF", help="the image: HOST/REPO[:TAG] or oci:DIR[:TAG]")
    p.add_argument("--key", required=True, metavar="PUB", help="public key (PEM)")
    p.add_argument(
        "--type",
        default="spdxjson",
        help="predicate type: spdxjson (default), cyclonedx, slsaprovenance, ... or a URI",
    )
    p.add_argument("--recursive", action="store_true", help="also verify every platform manifest of an index")
    json_flag(p, "the verified predicates")
    registry_flags(p)
    common(p)
    p.set_defaults(func=cmd_verify_attestation)
