import pytest

from dockerify.errors import DockerifyError, NotFound
from dockerify.oci.layout import Layout
from dockerify.oci.model import OCI_MANIFEST
from dockerify.oci.refs import ImageRef, parse_ref
from dockerify.outputs import tag_of
from dockerify.platform import Platform


def test_parse_ref() -> None:
    assert parse_ref("oci:/tmp/x:v1") == ImageRef("oci", "/tmp/x", "v1")
    assert parse_ref("oci:/tmp/x") == ImageRef("oci", "/tmp/x", None)
    assert parse_ref("oci-archive:a.tar") == ImageRef("oci-archive", "a.tar", None)
    assert parse_ref("docker-daemon:pi:latest") == ImageRef("docker-daemon", "pi:latest")
    assert parse_ref("127.0.0.1:5000/pi:1").transport == "registry"
    with pytest.raises(DockerifyError, match="no transport"):
        parse_ref("pi")


def test_tag_of() -> None:
    assert tag_of("127.0.0.1:5000/pi") == "latest"
    assert tag_of("127.0.0.1:5000/pi:v2") == "v2"


def test_layout_tags(tmp_path) -> None:
    layout = Layout.create(tmp_path / "l")
    a = layout.put_json({"layers": [], "n": 1}, OCI_MANIFEST, Platform("linux", "amd64"))
    b = layout.put_json({"layers": [], "n": 2}, OCI_MANIFEST, Platform("linux", "arm64"))
    layout.tag(a, "one")
    layout.tag(b, "two")
    layout.tag(b, "one")  # moving a tag replaces it
    assert layout.resolve("one").digest == b.digest
    assert len(layout.manifests()) == 2
    with pytest.raises(NotFound, match="no image tagged"):
        layout.resolve("three")
    with pytest.raises(NotFound, match="several images"):
        layout.resolve(None)
