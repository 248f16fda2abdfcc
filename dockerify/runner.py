"""Running images (`dockerify run`, the seed-compatible `pi`) and the binfmt check.

Containers run through python-on-whales (the docker CLI), so a TTY session behaves exactly like
`docker run -it`. The platform passed to docker keeps the arm variant, which the seed's script lost."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec

from dockerify import daemon
from dockerify.errors import DockerifyError, NotFound
from dockerify.oci.archive import docker_archive_stream
from dockerify.platform import Arch, Platform
from dockerify.trees import open_image

BINFMT = Path("/proc/sys/fs/binfmt_misc")
P = ParamSpec("P")


def binfmt_status() -> dict[str, bool]:
    """Which foreign architectures the kernel can run through qemu-user."""
    return {
        arch.oci: (BINFMT / f"qemu-{arch.qemu}").exists() for arch in (Arch.ARM64, Arch.ARM, Arch.RISCV64)
    }


def _inspect(docker: object, image: str) -> Any:
    from python_on_whales import DockerException
    from python_on_whales.exceptions import NoSuchImage

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
    return info


def _platform_of(docker: object, image: str) -> str:
    info = _inspect(docker, image)
    parts = [info.os, info.architecture] + ([info.variant] if getattr(info, "variant", None) else [])
    return "/".join(parts)


def interactive_shell(image: str, platform: str | None = None) -> tuple[list[str], str | None]:
    """The shell `pi IMAGE` starts: bash, as the seed did, or /bin/sh when the image has no bash
    (with a note saying so). dockerify's images record their shell as Cmd (bash when the tree has
    it); for other images, bash is looked for in a throwaway container."""
    from python_on_whales import DockerException

    docker = daemon.cli()
    cmd = list(getattr(_inspect(docker, image).config, "cmd", None) or [])
    if cmd and cmd[0].rsplit("/", 1)[-1] == "bash":
        return ["bash"], None
    if cmd != ["/bin/sh"]:
        try:
            docker.run(
                image,
                ["-c", "exit 0"],
                entrypoint="bash",
                remove=True,
                platform=platform or _platform_of(docker, image),
            )
            return ["bash"], None
        except DockerException:
            pass
    return ["/bin/sh"], f"{image} has no bash; starting /bin/sh"


@dataclass(frozen=True)
class RunResult:
    image: str
    platform: str
    exit_code: int
    output: str  # what the command wrote to stdout, when captured (no TTY)
    errors: str  # and to stderr, when it failed


def run_captured(
    image: str,
    command: list[str],
    *,
    rm: bool = True,
    interactive: bool = True,
    tty: bool | None = None,
    workdir: str | None = None,
    mount_cwd: bool = True,
    platform: str | None = None,
) -> RunResult:
    """Run `command` in `image` (with a TTY only if asked or stdin is one); what it did."""
    from python_on_whales import DockerException

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
        return RunResult(image, plat, e.return_code or 1, e.stdout or "", e.stderr or "")
    return RunResult(image, plat, 0, output if isinstance(output, str) else "", "")


def _shown(captured: Callable[P, RunResult]) -> Callable[P, int]:
    """The same call with the container's output on ours, returning its exit status."""

    def run(*args: P.args, **kwargs: P.kwargs) -> int:
        result = captured(*args, **kwargs)
        # Without a TTY python-on-whales hands back the output instead of streaming it.
        if result.output:
            sys.stdout.write(result.output if result.output.endswith("\n") else result.output + "\n")
        if result.errors:
            sys.stderr.write(result.errors)
        return result.exit_code

    return run


#: Run `command` in `image`, its output on ours; the command's exit status. The same options as
#: run_captured, which it calls: the keywords and the docker arguments are written once.
run_container = _shown(run_captured)


def load_verified(reference: str, key: str | None, platform: str | None) -> str:
    """Load `reference` (any image but the daemon's) into the daemon, and return the local name
    to run. With `key`, its signature is verified first and exactly those bytes are loaded, so
    what runs is what was verified."""

    with open_image(reference, Platform.parse(platform) if platform else None, verify_key=key) as image:
        name = f"dockerify-{'verified' if key else 'run'}:{image.descriptor.hex[:16]}"
        daemon.load(docker_archive_stream([(image, [name])]))
        return name
