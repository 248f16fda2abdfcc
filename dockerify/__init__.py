"""dockerify: bootable OS images <-> multi-platform OCI images.

The SDK mirrors the CLI: `build()` turns sources into an image, `open_tree()` reads any tree
(disk image, tarball, directory or image reference) as entries, `diff` compares two trees.
"""

from dockerify.build import BuildOptions, BuildResult, build
from dockerify.entry import Entry, FileType
from dockerify.errors import CorruptInput, DockerifyError, NotFound
from dockerify.oci.image import ImageOptions
from dockerify.oci.refs import ImageRef, parse_ref
from dockerify.platform import Arch, Platform
from dockerify.sources.options import ReadOptions
from dockerify.trees import open_image, open_tree

__version__ = "0.1.0"

__all__ = [
    "Arch",
    "BuildOptions",
    "BuildResult",
    "CorruptInput",
    "DockerifyError",
    "Entry",
    "FileType",
    "ImageOptions",
    "ImageRef",
    "NotFound",
    "Platform",
    "ReadOptions",
    "build",
    "open_image",
    "open_tree",
    "parse_ref",
]
