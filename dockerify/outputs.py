"""Where a built image goes: an OCI layout, an archive, the Docker daemon or a registry.

Every output is produced under a temporary name and moved into place at the end, so a failed
build leaves nothing behind."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from dockerify import daemon, daemon_stream, umask
from dockerify.errors import DockerifyError
from dockerify.oci.archive import docker_archive_stream, oci_archive_stream, write_stream
from dockerify.oci.layout import Layout
from dockerify.oci.model import Descriptor
from dockerify.oci.refs import ImageRef
from dockerify.oci.select import Image, images
from dockerify.progress import Progress

Producer = Callable[[Layout], Descriptor]


def tag_of(name: str) -> str:
    """The tag part of NAME[:TAG] (a colon before the last slash is a registry port)."""
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


def _single(found: list[Image], output: ImageRef) -> Image:
    if len(found) != 1:
        raise DockerifyError(
            f"{output}: a Docker image holds one platform, but this build has {len(found)}",
            hint="build one platform at a time for Docker, or write all of them to oci:DIR or oci-archive:FILE",
        )
    return found[0]


def check_output(output: ImageRef) -> None:
    """Refuse, before any work, an output that cannot be written: a file where a directory is
    wanted or the other way round, or a place in a directory that does not exist."""
    if output.transport not in ("oci", "oci-archive", "docker-archive"):
        return
    path = Path(output.path)
    parent = path.resolve().parent
    if not parent.is_dir():
        raise DockerifyError(
            f"{output}: directory {parent} does not exist", hint=f"create it first: mkdir -p {parent}"
        )
    if output.transport == "oci":
        if path.exists() and not path.is_dir():
            raise DockerifyError(
                f"{output}: {path} is a file, and an oci: layout is a directory",
                hint=f"name a directory, or write an archive: oci-archive:{path}",
            )
    elif path.is_dir():
        raise DockerifyError(
            f"{output}: {path} is a directory, and an {output.transport}: output is a file",
            hint=f"name a file, e.g. {output.transport}:{path / 'image.tar'}",
        )


def write_output(
    output: ImageRef, name: str, produce: Producer, progress: Progress, *, single_layer: bool = False
) -> tuple[Descriptor, list[Descriptor]]:
    """Write what `produce` makes to `output`. `single_layer` promises one layer per image, which
    lets a docker-daemon output stream that layer straight into the daemon (daemon_stream.py)."""
    check_output(output)
    if output.transport == "oci":
        return _to_layout_dir(Path(output.path), output.tag or tag_of(name), produce)
    if output.transport == "docker-daemon":
        return _to_daemon(output, produce, single_layer)
    with tempfile.TemporaryDirectory(prefix="dockerify-build-") as tmp:
        layout = Layout.create(tmp)
        root = produce(layout)
        found = images(layout, root)
        manifests = [i.descriptor for i in found]
        if output.transport == "oci-archive":
            layout.tag(root, output.tag or tag_of(name))
            with progress.task(f"writing {output.path}") as advance:
                write_stream(oci_archive_stream(layout), Path(output.path), advance)
        elif output.transport == "docker-archive":
            image = _single(found, output)
            with progress.task(f"writing {output.path}") as advance:
                write_stream(
                    docker_archive_stream([(image, [name] if name else [])]), Path(output.path), advance
                )
        else:
            from dockerify.registry.push import push_layout

            push_layout(layout, root, output.path)
        return root, manifests


def _to_daemon(
    output: ImageRef, produce: Producer, single_layer: bool
) -> tuple[Descriptor, list[Descriptor]]:
    """The layer straight into the daemon as it is produced (daemon_stream.py), or, with the
    containerd image store or several layers, through a docker-archive load."""

    target = output.path if ":" in output.path.rsplit("/", 1)[-1] else output.path + ":latest"
    # The import endpoint registers each layer as a base layer: only a one-layer image's chain
    # id matches what the config-only load then looks for.
    api = daemon_stream.one_pass_engine() if single_layer else None
    one_pass = api is not None
    with tempfile.TemporaryDirectory(prefix="dockerify-build-") as tmp:
        layout = daemon_stream.one_pass_layout(tmp, api) if api is not None else Layout.create(tmp)
        try:
            root = produce(layout)
            found = images(layout, root)
            image = _single(found, output)
            if one_pass:
                daemon_stream.finish(layout, image, target)
            else:
                daemon.load(docker_archive_stream([(image, [target])]))
        finally:
            daemon_stream.cleanup(layout.blobs)
        return root, [i.descriptor for i in found]


def _to_layout_dir(path: Path, tag: str, produce: Producer) -> tuple[Descriptor, list[Descriptor]]:
    if path.exists() and (path / "index.json").exists():
        layout = Layout.open(path)
        root = produce(layout)
        layout.tag(root, tag)
        return root, [i.descriptor for i in images(layout, root)]
    if path.exists() and any(path.iterdir()):
        raise DockerifyError(
            f"oci:{path}: the directory exists and is not an OCI layout", hint="name a new or empty directory"
        )
    if not path.resolve().parent.is_dir():
        raise DockerifyError(f"oci:{path}: directory {path.resolve().parent} does not exist")
    tmp = Path(umask.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.resolve().parent))
    try:
        layout = Layout.create(tmp)
        root = produce(layout)
        layout.tag(root, tag)
        manifests = [i.descriptor for i in images(layout, root)]
        if path.exists():
            path.rmdir()
        tmp.rename(path)
        return root, manifests
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
