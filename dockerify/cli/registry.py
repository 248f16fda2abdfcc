"""`dockerify login`, `logout`, `push`, `pull`, `push-artifact`, `pull-artifact`, `keygen`, `sign`,
`verify`, `sbom` and `verify-attestation`."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dockerify.cli.options import common, json_flag, max_size, parse_size
from dockerify.errors import DockerifyError
from dockerify.oci.model import SDCARD_ARTIFACT_TYPE
from dockerify.platform import Platform
from dockerify.progress import Progress
from dockerify.trees import open_tree
from dockerify.trust.sbom import sbom_json, sbom_of_entries

if TYPE_CHECKING:
    from dockerify.registry.client import Options

# The registry client and the signing keys need oras, requests and cryptography, which the
# frontend image does not have: the commands that use them import them.

log = logging.getLogger("dockerify")


def _options(args: argparse.Namespace) -> Options:
    from dockerify.registry.client import Options

    return Options.from_env(
        insecure=True if getattr(args, "insecure", False) else None,
        ca_cert=getattr(args, "ca_cert", None),
        chunk_size=getattr(args, "chunk_size", None),
        authfile=getattr(args, "authfile", None),
    )


def _platform(args: argparse.Namespace) -> Platform | None:
    return Platform.parse(args.platform) if getattr(args, "platform", None) else None


def _progress(args: argparse.Namespace) -> Progress:
    return Progress(quiet=args.quiet)


def _annotation(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


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
    from dockerify.registry.authfiles import normalize_registry
    from dockerify.registry.login import login

    username, password = _read_login(args, normalize_registry(args.registry))
    result = login(args.registry, username, password, authfile=args.authfile, options=_options(args))
    kept = f"by {result.helper}" if result.helper else f"in {result.path}"
    what = "an identity token" if result.identity_token else "the login"
    log.info("Login Succeeded: %s (%s kept %s)", result.registry, what, kept)
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    from dockerify.registry.authfiles import normalize_registry
    from dockerify.registry.login import logout

    registry = normalize_registry(args.registry)
    if logout(args.registry, authfile=args.authfile):
        log.info("Removed login credentials for %s", registry)
    else:
        log.info("Not logged in to %s", registry)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from dockerify.registry.copy import push_source
    from dockerify.registry.transfer import TransferStats

    stats = TransferStats()
    root = push_source(
        args.source,
        args.reference,
        _platform(args),
        _options(args),
        _progress(args),
        stats,
        tuple(args.mount_from),
    )
    if not args.quiet:
        print(f"dockerify: {stats.line('pushed')}", file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                {"digest": root.digest, "mediaType": root.media_type, "size": root.size, **stats.to_json()}
            )
        )
    else:
        print(root.digest)
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from dockerify.registry.copy import pull
    from dockerify.registry.transfer import TransferStats

    stats = TransferStats()
    root, manifests = pull(
        args.reference, args.dest, _platform(args), _options(args), _progress(args), args.verify_key, stats
    )
    if not args.quiet:
        print(f"dockerify: {stats.line('pulled')}", file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                {
                    "digest": root.digest,
                    "manifests": [{"platform": str(d.platform), "digest": d.digest} for d in manifests],
                    **stats.to_json(),
                }
            )
        )
    else:
        print(root.digest)
    return 0


def cmd_push_artifact(args: argparse.Namespace) -> int:
    from dockerify.registry.artifact import push_artifact

    desc = push_artifact(
        args.file,
        args.reference,
        args.artifact_type,
        dict(args.annotation),
        _platform(args),
        args.media_type,
        args.title,
        options=_options(args),
        progress=_progress(args),
    )
    print(
        json.dumps({"digest": desc.digest, "artifactType": desc.artifact_type}) if args.json else desc.digest
    )
    return 0


def cmd_pull_artifact(args: argparse.Namespace) -> int:
    from dockerify.registry.artifact import pull_artifact

    path, manifest = pull_artifact(args.reference, args.dest, _options(args), _progress(args))
    if args.json:
        print(json.dumps({"path": str(path), "artifactType": manifest.get("artifactType", "")}))
    else:
        print(path)
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from dockerify.registry.signing import read_password
    from dockerify.trust.keys import Algorithm, KeyFormat, keygen

    password = read_password("for the new private key", confirm=True)
    fmt, algorithm = KeyFormat(args.format), Algorithm(args.algorithm)
    key, pub = keygen(args.output_key_prefix, password, force=args.force, fmt=fmt, algorithm=algorithm)
    log.info("private key (%s format) written to %s, public key to %s", fmt.value, key, pub)
    if args.json:
        print(
            json.dumps({"key": str(key), "pub": str(pub), "format": fmt.value, "algorithm": algorithm.value})
        )
    else:
        print(pub)
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from dockerify.registry.signing import sign, signature_tag

    done = []
    for signed in sign(
        args.reference, args.key, args.recursive, _options(args), args.identity, referrers=args.referrers
    ):
        where = "a referrer" if args.referrers else signature_tag(signed.digest)
        if signed.added:
            log.info("signed %s (%s)", signed.digest, where)
        else:
            log.info("%s: already signed with this key (%s); nothing added", signed.digest, where)
        if args.json:
            done.append({"digest": signed.digest, "added": signed.added, "stored": where})
        else:
            print(signed.digest)
    if args.json:
        print(json.dumps(done))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from dockerify.registry.signing import verify

    results = verify(args.reference, args.key, args.recursive, _options(args))
    if args.json:
        print(
            json.dumps(
                [
                    {"digest": r.digest, "docker-reference": r.docker_reference, "signatures": r.signatures}
                    for r in results
                ]
            )
        )
    else:
        for r in results:
            print(f"{r.digest} verified")
    return 0


def cmd_sbom(args: argparse.Namespace) -> int:
    from dockerify.registry.attestations import attest_sboms
    from dockerify.registry.signing import signature_tag
    from dockerify.trust.keys import write_new

    platform = Platform.parse(args.platform) if args.platform else None
    if args.attest:
        if not args.key:
            raise DockerifyError("--attest signs the SBOM and needs --key", hint="pass --key KEY")

        for done in attest_sboms(
            args.target, args.key, platform, _options(args), args.referrers, max_size=args.max_size
        ):
            where = "a referrer" if args.referrers else signature_tag(done.digest, "att")
            log.info(
                "%s: %s",
                done.digest,
                f"SBOM attested ({where})" if done.added else "already attested; nothing added",
            )
            print(done.digest)
        return 0

    with open_tree(args.target, platform=platform, max_size=args.max_size) as tree:
        created = str(tree.image.config.get("created") or "") if tree.image is not None else None
        data = sbom_json(sbom_of_entries(args.target, tree.entries(), created=created))
    if args.output:
        write_new(Path(args.output), data, 0o644, force=True)
    else:
        sys.stdout.buffer.write(data)
    return 0


def cmd_verify_attestation(args: argparse.Namespace) -> int:
    from dockerify.registry.attestations import predicate_type, verify_attestation

    results = verify_attestation(
        args.reference, args.key, predicate_type(args.type), args.recursive, _options(args)
    )
    if args.json:
        print(
            json.dumps(
                [
                    {"digest": r.digest, "predicateType": r.predicate_type, "predicates": r.predicates}
                    for r in results
                ]
            )
        )
    else:
        for r in results:
            print(f"{r.digest} verified ({len(r.predicates)} {r.predicate_type} attestation(s))")
    return 0


def _registry_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow plain HTTP and unverified TLS for any registry (loopback registries may use HTTP anyway)",
    )
    p.add_argument("--ca-cert", metavar="FILE", help="CA certificate(s) to verify the registry's TLS with")
    _authfile_flag(p)


def _authfile_flag(p: argparse.ArgumentParser, verb: str | None = None) -> None:
    if verb is None:
        text = (
            "registry login file (auth.json or config.json) to search first, as skopeo's --authfile "
            "(default: $REGISTRY_AUTH_FILE, then Podman's and Docker's usual files)"
        )
    else:
        text = (
            f"{verb} FILE (auth.json or config.json), as skopeo's --authfile "
            "(default: $REGISTRY_AUTH_FILE, else Docker's config.json)"
        )
    p.add_argument("--authfile", metavar="FILE", help=text)


def _chunk_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chunk-size", type=parse_size, metavar="SIZE", help="upload chunk size (default 128M)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from dockerify.trust.keys import Algorithm, KeyFormat

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
        _authfile_flag(p, "keep the login in" if name == "login" else "remove the login from")
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
    p.add_argument("--platform", help="push only this platform of a multi-platform image")
    p.add_argument(
        "--mount-from",
        action="append",
        default=[],
        metavar="REPO",
        help="a repository of the same registry holding blobs of this image (an earlier version): "
        "they are mounted, not uploaded",
    )
    json_flag(p)
    _registry_flags(p)
    _chunk_flag(p)
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
    p.add_argument("--platform", help="pull only this platform of a multi-platform image")
    p.add_argument(
        "--verify-key",
        metavar="PUB",
        help="refuse the image unless its signature verifies with this public key",
    )
    json_flag(p)
    _registry_flags(p)
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
        type=_annotation,
        metavar="K=V",
        help="a manifest annotation (repeatable)",
    )
    p.add_argument("--platform", help="the platform the file is for (an annotation)")
    p.add_argument("--title", help="file name recorded in the artifact (default: FILE's name)")
    p.add_argument(
        "--media-type",
        help="layer media type (default from the content: an SD card, cpio, tar or octet-stream, "
        "with the compression as a suffix, e.g. +xz)",
    )
    json_flag(p)
    _registry_flags(p)
    _chunk_flag(p)
    common(p)
    p.set_defaults(func=cmd_push_artifact)

    p = sub.add_parser("pull-artifact", help="pull a one-file OCI artifact")
    p.add_argument("reference", metavar="REF", help="HOST/REPO[:TAG|@DIGEST] of the artifact")
    p.add_argument("dest", metavar="DEST", help="a file name, or a directory to use the artifact's title")
    json_flag(p)
    _registry_flags(p)
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

    p = sub.add_parser("sign", help="sign an image (registry or oci:DIR) in cosign's format")
    p.add_argument(
        "reference", metavar="REF", help="the image: HOST/REPO[:TAG], oci:DIR[:TAG] or a layout's path"
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
    _registry_flags(p)
    common(p)
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser("verify", help="verify an image's cosign signature with a public key")
    p.add_argument(
        "reference", metavar="REF", help="the image: HOST/REPO[:TAG], oci:DIR[:TAG], oci-archive:FILE"
    )
    p.add_argument("--key", required=True, metavar="PUB", help="public key (PEM)")
    p.add_argument("--recursive", action="store_true", help="also verify every platform manifest of an index")
    json_flag(p)
    _registry_flags(p)
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
    p.add_argument("--platform", help="the platform of an image that holds several")
    p.add_argument("-o", "--output", metavar="FILE", help="write the SBOM here instead of stdout")
    p.add_argument(
        "--attest",
        action="store_true",
        help="attach the SBOM to the image (registry or oci:DIR) as a cosign attestation (sha256-<hex>.att)",
    )
    p.add_argument("--key", metavar="KEY", help="private key to sign the attestation with")
    p.add_argument("--referrers", action="store_true", help="attach it as an OCI 1.1 referrer instead")
    _registry_flags(p)
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
    _registry_flags(p)
    common(p)
    p.set_defaults(func=cmd_verify_attestation)
