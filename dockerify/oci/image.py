"""Image configuration and manifests, built from options and layer results."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from dockerify.oci.model import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, Descriptor
from dockerify.platform import Platform

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ImageOptions:
    """What `docker build` would put in the image config, as given on the command line."""

    env: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    workdir: str = ""
    user: str = ""
    expose: tuple[str, ...] = ()


def rfc3339(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ImageConfig:
    platform: Platform
    diff_ids: list[str]
    created: int
    options: ImageOptions
    labels: dict[str, str] = field(default_factory=dict)
    default_cmd: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        o = self.options
        env = list(o.env)
        if not any(e.startswith("PATH=") for e in env):
            env.insert(0, DEFAULT_PATH)
        labels = dict(self.labels)
        labels.update(dict(o.labels))
        config: dict[str, Any] = {"Env": env}
        cmd = o.cmd if o.cmd is not None else (None if o.entrypoint else self.default_cmd)
        if cmd:
            config["Cmd"] = list(cmd)
        if o.entrypoint:
            config["Entrypoint"] = list(o.entrypoint)
        if o.workdir:
            config["WorkingDir"] = o.workdir
        if o.user:
            config["User"] = o.user
        if o.expose:
            config["ExposedPorts"] = {(p if "/" in p else p + "/tcp"): {} for p in o.expose}
        if labels:
            config["Labels"] = labels
        return {
            "created": rfc3339(self.created),
            **self.platform.to_oci(),
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": self.diff_ids},
            # One history entry per layer: Docker pairs them with the layers it lists.
            "history": [
                {"created": rfc3339(self.created), "created_by": "dockerify build"}
                for _ in range(max(1, len(self.diff_ids)))
            ],
        }


def manifest_json(
    config: Descriptor, layers: list[Descriptor], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    m: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": Descriptor(OCI_CONFIG, config.digest, config.size).to_json(),
        "layers": [d.to_json() for d in layers],
    }
    if annotations:
        m["annotations"] = annotations
    return m


def index_json(manifests: list[Descriptor], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    idx: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [d.to_json() for d in manifests],
    }
    if annotations:
        idx["annotations"] = annotations
    return idx
