"""Running images: `dockerify run`, the seed-compatible `pi` command, and `dockerify binfmt`.

Containers run through python-on-whales (the docker CLI), so a TTY session behaves exactly like
`docker run -it`. The platform passed to docker keeps the arm variant, which the seed's script lost."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from dockerify.errors import DockerifyError, NotFound
from dockerify.platform import Arch

BINFMT = Path("/proc/sys/fs/binfmt_misc")


def binfmt_status() -> dict[str, bool]:
    """Which foreign architectures the kernel can run through qemu-user."""
    return {
        arch.oci: (BINFMT / f"qemu-{arch.qemu}").exists() for arch in (Arch.ARM64, Arch.ARM, Arch.RISCV64)
    }


def _platform_of(docker: object, image: str) -> str:
    from python_on_whales import DockerException
    from python_on_whales.exceptions import NoSuchImage

    from dockerify import daemon

    try:
        info = docker.image.inspect(image)  # type: ignore[attr-defined]
    except NoSuchImage:
        raise NotFound(
            f"docker-daemon:{image}: no such image in the daemon at {daemon.host()}",
            hint="build it first: dockerify build CARD.img -t " + image,
        ) from None
    except DockerException as e:
        detail = (e.stderr or "").strip().splitlines()
        raise DockerifyError(
            f"docker-daemon:{image}: cannot inspect it in the daemon at {daemon.host()}"
            + (f": {detail[-1]}" if detail else ""),
            hint="start dockerd (scripts/start-daemons.sh does) or point DOCKER_HOST at a running one",
        ) from None
    parts = [info.os, info.architecture] + ([info.variant] if getattr(info, "variant", None) else [])
    return "/".join(parts)


def run_container(
    image: str,
    command: list[str],
    *,
    rm: bool = True,
    interactive: bool = True,
    tty: bool | None = None,
    workdir: str | None = None,
    mount_cwd: bool = True,
    platform: str | None = None,
) -> int:
    from python_on_whales import DockerException

    from dockerify import daemon

    docker = daemon.cli()
    plat = platform or _platform_of(docker, image)
    arch = plat.split("/")[1] if "/" in plat else plat
    status = binfmt_status()
    if arch in status and not status[arch] and os.uname().machine not in ("aarch64", "armv7l"):
        raise DockerifyError(
            f"{image} is {plat}, and no qemu-user handler is registered for it",
            hint="install qemu-user-static and binfmt-support, then run `dockerify binfmt`",
        )
    volumes = [(os.getcwd(), "/mnt/host")] if mount_cwd else []
    try:
        output = docker.run(
            image,
            command,
            remove=rm,
            interactive=interactive,
            tty=os.isatty(0) if tty is None else tty,
            volumes=volumes,
            workdir=workdir or ("/mnt/host" if mount_cwd else None),
            platform=plat,
        )
    except DockerException as e:
        if e.stdout:
            sys.stdout.write(e.stdout)
        if e.stderr:
            sys.stderr.write(e.stderr)
        return e.return_code or 1
    # Without a TTY python-on-whales hands back the output instead of streaming it.
    if isinstance(output, str) and output:
        sys.stdout.write(output if output.endswith("\n") else output + "\n")
    return 0


def load_verified(reference: str, key: str, platform: str | None) -> str:
    """Verify `reference`'s signature, then load exactly those bytes into the daemon; returns
    the local name to run, so what runs is what was verified."""
    from dockerify import daemon
    from dockerify.oci.archive import docker_archive_stream
    from dockerify.platform import Platform
    from dockerify.trees import open_image

    with open_image(reference, Platform.parse(platform) if platform else None, verify_key=key) as image:
        name = f"dockerify-verified:{image.descriptor.hex[:16]}"
        daemon.load(docker_archive_stream([(image, [name])]))
        return name


def cmd_run(args: argparse.Namespace) -> int:
    image = args.image
    if args.verify_key:
        image = load_verified(image, args.verify_key, args.platform)
    return run_container(
        image,
        args.command,
        rm=not args.no_rm,
        interactive=not args.no_interactive,
        workdir=args.workdir,
        platform=args.platform,
    )


def cmd_binfmt(args: argparse.Namespace) -> int:
    for arch, ok in binfmt_status().items():
        print(f"{arch:8} {'enabled' if ok else 'missing'}")
    if not all(binfmt_status()[a] for a in ("arm64", "arm")):
        print(
            "hint: apt-get install qemu-user-static binfmt-support; update-binfmts --enable qemu-aarch64",
            file=__import__("sys").stderr,
        )
        return 1
    return 0


def _run_args(p: argparse.ArgumentParser, default_image: str | None) -> None:
    p.add_argument("--no-rm", "--keep", dest="no_rm", action="store_true", help="keep the container")
    p.add_argument("--no-interactive", action="store_true")
    p.add_argument("--workdir", help="working directory (default /mnt/host, the current directory)")
    p.add_argument("--platform", help="override the image's own platform")
    p.add_argument(
        "--verify-key",
        metavar="KEY.pub",
        help="run only if IMAGE (a registry or oci: reference) carries a signature this key verifies",
    )
    if default_image:
        p.add_argument("image", nargs="?", default=default_image)
    else:
        p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Callable[[argparse.ArgumentParser], None],
) -> None:
    r = sub.add_parser("run", help="run an image from the daemon with the current directory at /mnt/host")
    _run_args(r, None)
    common(r)
    r.set_defaults(func=cmd_run)
    b = sub.add_parser("binfmt", help="show whether foreign architectures can run here (qemu-user)")
    common(b)
    b.set_defaults(func=cmd_binfmt)


def pi_parser() -> argparse.ArgumentParser:
    """`pi [--no-rm] [--no-interactive] [IMAGE] [CMD...]`, as in the seed (default pi:latest, bash)."""
    p = argparse.ArgumentParser(
        prog="pi", description="run a Raspberry Pi OS image with the current directory at /mnt/host"
    )
    _run_args(p, "pi:latest")
    p.add_argument("--debug", action="store_true")

    def run(args: argparse.Namespace) -> int:
        args.command = args.command or ["bash"]
        return cmd_run(args)

    p.set_defaults(func=run)
    return p
