"""The pure parts of SBOMs and attestations: dpkg status parsing, Debian license names, the SPDX
document from an entry stream (validated by spdx-tools), DSSE's pre-authentication encoding and
envelopes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from dockerify.entry import Entry, FileType, file_entry
from dockerify.errors import CorruptInput, DockerifyError
from dockerify.trust.attest import BadEnvelope, envelope, names_digest, open_envelope, pae, statement
from dockerify.trust.keys import Algorithm, PrivateKey, generate_key
from dockerify.trust.sbom import _license_expression, copyright_licenses, parse_status, sbom_of_entries

STATUS = """Package: libc6
Status: install ok installed
Architecture: arm64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u4
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Description: GNU C Library: Shared libraries
 Contains the standard libraries.

Package: gone
Status: purge ok not-installed
Architecture: arm64

Package: oldconf
Status: deinstall ok config-files
Architecture: all
Version: 1.0

Package: busybox-static
Status: install ok installed
Architecture: arm64
Source: busybox (1:1.35.0-4)
Version: 1:1.35.0-4+b1
Maintainer: Debian Install System Team <debian-boot@lists.debian.org>
Description: Standalone rescue shell
"""

DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: busybox

Files: *
Copyright: 1998-2011 Erik Andersen, Rob Landley, Denys Vlasenko and others
License: GPL-2

Files: debian/*
License: GPL-2+ or Artistic
"""


def test_parse_status() -> None:
    pkgs = {p.name: p for p in parse_status(STATUS, "status")}
    assert sorted(pkgs) == ["busybox-static", "libc6", "oldconf"]  # not-installed is not listed
    assert pkgs["libc6"].list_name == "libc6:arm64" and pkgs["libc6"].source == "glibc"
    assert (pkgs["busybox-static"].source, pkgs["busybox-static"].source_version) == ("busybox", "1:1.35.0-4")
    assert pkgs["oldconf"].status == "config-files"
    assert pkgs["libc6"].summary == "GNU C Library: Shared libraries"
    with pytest.raises(CorruptInput, match="status: a line"):
        parse_status("Package: x\nnonsense\n", "status")
    with pytest.raises(CorruptInput, match="without a Package"):
        parse_status("Status: install ok installed\n", "status")


def test_licenses() -> None:
    assert copyright_licenses(DEP5) == ["GPL-2", "GPL-2+ or Artistic"]
    assert copyright_licenses("This is the Debian prepackaged version of ...\n") is None
    assert _license_expression("GPL-2+ or Artistic") == ("GPL-2.0-or-later OR Artistic-1.0-Perl", [])
    assert _license_expression("Expat") == ("MIT", [])
    assert _license_expression("public-domain") == ("LicenseRef-public-domain", ["LicenseRef-public-domain"])


def tree() -> list[Entry]:
    def d(path: str) -> Entry:
        return Entry(path.encode(), FileType.DIR, 0o755)

    return [
        Entry(b"bin", FileType.SYMLINK, 0o777, linkname=b"usr/bin"),
        d("etc"),
        file_entry(b"etc/os-release", b'ID=raspbian\nVERSION_ID="12"\nPRETTY_NAME="Raspbian 12"\n'),
        file_entry(b"usr/bin/busybox", b"\x7fELF busybox"),
        Entry(b"usr/bin/sh", FileType.HARDLINK, linkname=b"usr/bin/busybox"),
        file_entry(b"usr/lib/libc.so.6", b"\x7fELF libc"),
        file_entry(b"usr/share/doc/busybox-static/copyright", DEP5.encode()),
        file_entry(
            b"var/lib/dpkg/info/busybox-static.list", b"/.\n/bin\n/bin/busybox\n/bin/sh\n/bin/missing\n"
        ),
        file_entry(b"var/lib/dpkg/info/libc6:arm64.list", b"/.\n/usr/lib/libc.so.6\n"),
        file_entry(b"var/lib/dpkg/status", STATUS.encode()),
    ]


def test_spdx_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    doc = sbom_of_entries("card.img", iter(tree()))
    assert doc == sbom_of_entries("card.img", iter(tree()))  # reproducible
    assert doc["creationInfo"]["created"] == "2023-11-14T22:13:20Z"
    by_name = {p["name"]: p for p in doc["packages"]}
    assert by_name["Raspbian 12"]["primaryPackagePurpose"] == "OPERATING-SYSTEM"
    bb = by_name["busybox-static"]
    assert bb["licenseDeclared"] == "GPL-2.0-only AND (GPL-2.0-or-later OR Artistic-1.0-Perl)"
    assert bb["externalRefs"][0]["referenceLocator"] == (
        "pkg:deb/raspbian/busybox-static@1%3A1.35.0-4%2Bb1?arch=arm64&upstream=busybox"
    )
    files = {f["SPDXID"]: f["fileName"] for f in doc["files"]}
    # /bin/busybox found through the usrmerge symlink, the hard link as its own file, no missing one
    assert [files[i] for i in bb["hasFiles"]] == ["./usr/bin/busybox", "./usr/bin/sh"]
    assert by_name["oldconf"]["filesAnalyzed"] is False and "config-files" in by_name["oldconf"]["comment"]
    out = tmp_path / "doc.spdx.json"
    out.write_text(json.dumps(doc))
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    assert [m.validation_message for m in validate_full_spdx_document(parse_file(str(out)), "SPDX-2.3")] == []


def test_no_dpkg_database() -> None:
    with pytest.raises(DockerifyError, match="no /var/lib/dpkg/status"):
        sbom_of_entries("x", iter([file_entry(b"etc/hostname", b"x\n")]))


def test_dsse_envelope() -> None:
    # DSSE's own example of the pre-authentication encoding
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    key = PrivateKey(generate_key(Algorithm.ECDSA_P256), "k")
    other = PrivateKey(generate_key(Algorithm.ED25519), "o")
    digest = "sha256:" + "ab" * 32
    payload = statement("https://spdx.dev/Document", {"spdxVersion": "SPDX-2.3"}, "r/x", digest)
    env = envelope(key, payload)
    checked = open_envelope(env, key.public())
    assert checked.predicate_type == "https://spdx.dev/Document" and names_digest(checked, digest)
    assert not names_digest(checked, "sha256:" + "cd" * 32)
    with pytest.raises(BadEnvelope, match="does not verify"):
        open_envelope(env, other.public())
    doc = json.loads(env)
    doc["payload"] = base64.b64encode(payload.replace(b"SPDX-2.3", b"SPDX-2.2")).decode()
    with pytest.raises(BadEnvelope, match="does not verify"):
        open_envelope(json.dumps(doc).encode(), key.public())
    with pytest.raises(BadEnvelope, match="not a DSSE envelope"):
        open_envelope(b"{}", key.public())
