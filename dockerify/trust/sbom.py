"""An SPDX 2.3 JSON SBOM from a tree's own package database (dpkg).

Read from the tree, in one pass over its entries:
- /var/lib/dpkg/status: every package dpkg-query lists (any state but not-installed), with its
  name, version, architecture, source package and maintainer;
- /var/lib/dpkg/info/PKG.list (PKG:ARCH.list for Multi-Arch: same): the paths each package
  owns; the regular files among them that are in the tree become SPDX files with SHA-1 and
  SHA-256 checksums (hashed as the tree streams by, since the lists come after most files);
- /usr/share/doc/PKG/copyright: when machine-readable (DEP-5), its License fields, mapped to
  SPDX license identifiers where Debian's short names have one, LicenseRef-... otherwise.

The document describes one package for the whole tree (the operating system, from os-release),
which contains each dpkg package, which contains its files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from dockerify.entry import Entry, FileType
from dockerify.errors import CorruptInput, DockerifyError

SPDX_VERSION = "SPDX-2.3"
PREDICATE_SPDX = "https://spdx.dev/Document"
_ADMIN = "var/lib/dpkg/"
_DEP5 = re.compile(
    r"^Format:\s*https?://(www\.)?debian\.org/doc/packaging-manuals/copyright-format/1\.0/?\s*$", re.I
)
_LIMIT = 256 << 20  # a status file or copyright larger than this is not one
_NAMESPACE = "https://dockerify.invalid/spdx/"

# Debian's short license names (copyright-format 1.0, "License specification") -> SPDX ids.
_DEBIAN_LICENSES = {
    "apache-2.0": "Apache-2.0",
    "artistic": "Artistic-1.0-Perl",
    "artistic-2.0": "Artistic-2.0",
    "bsd-2-clause": "BSD-2-Clause",
    "bsd-3-clause": "BSD-3-Clause",
    "bsd-4-clause": "BSD-4-Clause",
    "cc0-1.0": "CC0-1.0",
    "expat": "MIT",
    "mit": "MIT",
    "isc": "ISC",
    "mpl-1.1": "MPL-1.1",
    "mpl-2.0": "MPL-2.0",
    "zlib": "Zlib",
    "python-2.0": "Python-2.0",
    "openssl": "OpenSSL",
    "ftl": "FTL",
    "curl": "curl",
    "x11": "X11",
    "bsl-1.0": "BSL-1.0",
    "unlicense": "Unlicense",
    "wtfpl": "WTFPL",
    "0bsd": "0BSD",
}
for _family, _versions in (
    ("GPL", ("1", "2", "3")),
    ("LGPL", ("2", "2.1", "3")),
    ("AGPL", ("3",)),
    ("GFDL", ("1.2", "1.3")),
):
    for _v in _versions:
        _n = _v if "." in _v else f"{_v}.0"
        _DEBIAN_LICENSES[f"{_family}-{_v}".lower()] = f"{_family}-{_n}-only"
        _DEBIAN_LICENSES[f"{_family}-{_v}+".lower()] = f"{_family}-{_n}-or-later"


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    architecture: str
    status: str
    source: str
    source_version: str
    maintainer: str
    summary: str
    multi_arch: str

    @property
    def list_name(self) -> str:
        return f"{self.name}:{self.architecture}" if self.multi_arch == "same" else self.name


def parse_status(text: str, where: str) -> list[DebPackage]:
    """The packages of a dpkg status file that dpkg-query lists (state other than not-installed)."""
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        last = ""
        for line in stanza.split("\n"):
            if not line.strip():
                continue
            if line[:1] in (" ", "\t"):
                if last:
                    fields[last] += "\n" + line.strip()
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise CorruptInput(f"{where}: a line that is not 'Field: value': {line[:60]!r}")
            last = name.strip().lower()
            fields[last] = value.strip()
        if not fields:
            continue
        if "package" not in fields:
            raise CorruptInput(f"{where}: a stanza without a Package field")
        state = fields.get("status", "").split()
        if len(state) != 3:
            raise CorruptInput(f"{where}: package {fields['package']}: Status {fields.get('status', '')!r}")
        if state[2] == "not-installed":
            continue
        version = fields.get("version", "")
        source, source_version = fields.get("source", "") or fields["package"], version
        m = re.match(r"^(\S+)\s*\((.+)\)\s*$", source)
        if m:
            source, source_version = m.group(1), m.group(2)
        out.append(
            DebPackage(
                name=fields["package"],
                version=version,
                architecture=fields.get("architecture", ""),
                status=state[2],
                source=source,
                source_version=source_version,
                maintainer=fields.get("maintainer", ""),
                summary=fields.get("description", "").split("\n", 1)[0],
                multi_arch=fields.get("multi-arch", ""),
            )
        )
    return out


# ---------------------------------------------------------------- licenses


def _license_expression(debian: str) -> tuple[str, list[str]]:
    """A Debian License short-name expression ("GPL-2+ or Artistic") as an SPDX expression, and the
    LicenseRef names it had to invent."""
    refs: list[str] = []
    parts = []
    for token in re.split(r"\s+", debian.replace(",", " ").strip()):
        low = token.lower()
        if low in ("or", "and"):
            parts.append(low.upper())
        elif low == "with":
            parts.append("WITH")
        elif low in _DEBIAN_LICENSES:
            parts.append(_DEBIAN_LICENSES[low])
        elif token:
            ref = "LicenseRef-" + re.sub(r"[^A-Za-z0-9.-]+", "-", token).strip("-")
            refs.append(ref)
            parts.append(ref)
    # a dangling operator or WITH exception we cannot name makes the expression invalid
    if (
        not parts
        or parts[0] in ("OR", "AND", "WITH")
        or parts[-1] in ("OR", "AND", "WITH")
        or "WITH" in parts
    ):
        ref = "LicenseRef-" + re.sub(r"[^A-Za-z0-9.-]+", "-", debian).strip("-")
        return ref, [ref]
    return " ".join(parts), refs


def copyright_licenses(text: str) -> list[str] | None:
    """The License short names of a machine-readable copyright file, in order, or None when the
    file is not machine-readable."""
    lines = text.split("\n")
    if not lines or not _DEP5.match(lines[0].strip()):
        return None
    names = []
    for line in lines:
        if line.lower().startswith("license:"):
            name = line.split(":", 1)[1].strip()
            if name and name not in names:
                names.append(name)
    return names


# ---------------------------------------------------------------- reading the tree


@dataclass
class _Scan:
    status: bytes | None = None
    lists: dict[str, bytes] = field(default_factory=dict)
    copyrights: dict[str, bytes] = field(default_factory=dict)
    os_release: bytes | None = None
    files: dict[str, tuple[str, str]] = field(default_factory=dict)  # path -> (sha1, sha256)
    symlinks: dict[str, str] = field(default_factory=dict)


def _read_small(entry: Entry, where: str) -> bytes:
    if entry.size > _LIMIT:
        raise CorruptInput(f"{where}: /{entry.name} is {entry.size} bytes; too large to be what it claims")
    return entry.read_all()


def scan(entries: Iterable[Entry], where: str) -> _Scan:
    s = _Scan()
    for entry in entries:
        path = entry.name
        if entry.type is FileType.SYMLINK:
            s.symlinks[path] = entry.linkname.decode("utf-8", "surrogateescape")
            continue
        if entry.type is FileType.HARDLINK:
            target = entry.linkname.decode("utf-8", "surrogateescape")
            if target in s.files:
                s.files[path] = s.files[target]
            continue
        if entry.type is not FileType.REG:
            continue
        wanted = (
            path == _ADMIN + "status"
            or (path.startswith(_ADMIN + "info/") and path.endswith(".list") and path.count("/") == 4)
            or (path.startswith("usr/share/doc/") and path.endswith("/copyright") and path.count("/") == 4)
            or path in ("etc/os-release", "usr/lib/os-release")
        )
        sha1, sha256 = hashlib.sha1(), hashlib.sha256()
        data = bytearray() if wanted else None
        for block in entry.dense_chunks():
            sha1.update(block)
            sha256.update(block)
            if data is not None:
                data += block
                if len(data) > _LIMIT:
                    raise CorruptInput(f"{where}: /{path} is too large to be what it claims")
        s.files[path] = (sha1.hexdigest(), sha256.hexdigest())
        if data is None:
            continue
        if path == _ADMIN + "status":
            s.status = bytes(data)
        elif path.startswith(_ADMIN):
            s.lists[path.rsplit("/", 1)[1].removesuffix(".list")] = bytes(data)
        elif path.startswith("usr/"):
            if path.startswith("usr/share/doc/"):
                s.copyrights[path.split("/")[3]] = bytes(data)
            else:
                s.os_release = s.os_release or bytes(data)
        else:
            s.os_release = bytes(data)
    return s


def _resolve(path: str, symlinks: dict[str, str]) -> str:
    """`path` with symlinked directories resolved (usrmerge: /bin -> usr/bin), within the tree."""
    parts = path.strip("/").split("/")
    done: list[str] = []
    hops = 0
    while parts:
        done.append(parts.pop(0))
        here = "/".join(done)
        if here in symlinks and parts:
            hops += 1
            if hops > 40:
                return path
            target = symlinks[here]
            parts = [p for p in target.strip("/").split("/") if p] + parts
            done = [] if target.startswith("/") else done[:-1]
        elif done[-1] == "..":
            done = done[:-2]
        elif done[-1] in (".", ""):
            done.pop()
    return "/".join(done)


def _copyright(s: _Scan, package: str) -> bytes:
    """The package's copyright file; Debian often makes /usr/share/doc/PKG a symlink to the doc
    directory of another package built from the same source."""
    doc = f"usr/share/doc/{package}"
    if package not in s.copyrights and doc in s.symlinks:
        target = _resolve(doc + "/copyright", s.symlinks).split("/")
        if len(target) == 5 and target[:3] == ["usr", "share", "doc"]:
            return s.copyrights.get(target[3], b"")
    return s.copyrights.get(package, b"")


def _os_release(data: bytes | None) -> dict[str, str]:
    out = {}
    for line in (data or b"").decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip().strip("\"'")
    return out


# ---------------------------------------------------------------- the document


def _spdx_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text)


def _supplier(maintainer: str) -> str:
    m = re.match(r"^\s*(.*?)\s*<([^>]*)>\s*$", maintainer)
    if m:
        return f"Person: {m.group(1) or m.group(2)} ({m.group(2)})"
    return f"Person: {maintainer}" if maintainer.strip() else "NOASSERTION"


def _created(created: str | None) -> str:
    """SOURCE_DATE_EPOCH, else the image's own creation time (so the same image gives the same
    document, and attesting it again is a no-op), else now."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    if epoch.isdigit():
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch)))
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)", created or "")
    if m and created and created.endswith("Z"):
        return m.group(1) + "Z"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def spdx_document(name: str, s: _Scan, where: str, created: str | None = None) -> dict[str, Any]:
    if s.status is None:
        raise DockerifyError(
            f"{where}: no /var/lib/dpkg/status in the tree, so there is no package list to make an SBOM from",
            hint="dockerify reads dpkg's database (Debian, Raspberry Pi OS, Ubuntu)",
        )
    packages = parse_status(s.status.decode("utf-8", "replace"), f"{where}: /var/lib/dpkg/status")
    release = _os_release(s.os_release)
    vendor = release.get("ID", "debian") or "debian"
    root_id = "SPDXRef-OperatingSystem"
    doc_packages: list[dict[str, Any]] = [
        {
            "SPDXID": root_id,
            "name": release.get("PRETTY_NAME") or release.get("NAME") or name,
            "versionInfo": release.get("VERSION_ID", "") or "NOASSERTION",
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "primaryPackagePurpose": "OPERATING-SYSTEM",
            "comment": f"the tree of {name}",
        }
    ]
    relationships = [
        {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": root_id}
    ]
    files: dict[str, dict[str, Any]] = {}
    refs: dict[str, str] = {}
    seen_ids: set[str] = set()
    for pkg in sorted(packages, key=lambda p: (p.name, p.architecture)):
        spdx_id = _spdx_id(f"SPDXRef-Package-deb-{pkg.name}-{pkg.architecture}")
        while spdx_id in seen_ids:
            spdx_id += "-dup"
        seen_ids.add(spdx_id)
        purl = (
            f"pkg:deb/{quote(vendor)}/{quote(pkg.name)}@{quote(pkg.version, safe='')}"
            f"?arch={quote(pkg.architecture)}"
        )
        if pkg.source != pkg.name or pkg.source_version != pkg.version:
            purl += f"&upstream={quote(pkg.source, safe='')}"
        entry: dict[str, Any] = {
            "SPDXID": spdx_id,
            "name": pkg.name,
            "versionInfo": pkg.version or "NOASSERTION",
            "downloadLocation": "NOASSERTION",
            "supplier": _supplier(pkg.maintainer),
            "sourceInfo": f"built package from: {pkg.source} {pkg.source_version}",
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "externalRefs": [
                {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl}
            ],
        }
        if pkg.summary:
            entry["summary"] = pkg.summary
        if pkg.status != "installed":
            entry["comment"] = f"dpkg state: {pkg.status}"
        licenses = copyright_licenses(_copyright(s, pkg.name).decode("utf-8", "replace"))
        if licenses:
            exprs = []
            for lic in licenses:
                expr, new_refs = _license_expression(lic)
                for ref in new_refs:
                    refs.setdefault(ref, lic)
                exprs.append(expr if len(licenses) == 1 or " " not in expr else f"({expr})")
            entry["licenseDeclared"] = " AND ".join(dict.fromkeys(exprs))
        owned = []
        listing = s.lists.get(pkg.list_name) or s.lists.get(pkg.name) or b""
        for line in listing.decode("utf-8", "surrogateescape").splitlines():
            path = _resolve(line, s.symlinks)
            if path in s.files:
                owned.append(path)
        for path in dict.fromkeys(owned):
            if path not in files:
                sha1, sha256 = s.files[path]
                files[path] = {
                    "SPDXID": f"SPDXRef-File-{len(files) + 1}",
                    "fileName": "./" + path,
                    "checksums": [
                        {"algorithm": "SHA1", "checksumValue": sha1},
                        {"algorithm": "SHA256", "checksumValue": sha256},
                    ],
                }
        if owned:
            digests = sorted(s.files[p][0] for p in dict.fromkeys(owned))
            entry["filesAnalyzed"] = True
            entry["hasFiles"] = [files[p]["SPDXID"] for p in dict.fromkeys(owned)]
            entry["packageVerificationCode"] = {
                "packageVerificationCodeValue": hashlib.sha1("".join(digests).encode()).hexdigest()
            }
        else:
            entry["filesAnalyzed"] = False
        doc_packages.append(entry)
        relationships.append(
            {"spdxElementId": root_id, "relationshipType": "CONTAINS", "relatedSpdxElement": spdx_id}
        )
    namespace_seed = hashlib.sha256(name.encode() + b"\0" + s.status).hexdigest()
    doc: dict[str, Any] = {
        "spdxVersion": SPDX_VERSION,
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": f"{_NAMESPACE}{quote(_spdx_id(name))}-{namespace_seed[:32]}",
        "creationInfo": {"created": _created(created), "creators": ["Tool: dockerify"]},
        "packages": doc_packages,
        "files": list(files.values()),
        "relationships": relationships,
    }
    if refs:
        doc["hasExtractedLicensingInfos"] = [
            {
                "licenseId": ref,
                "name": debian,
                "extractedText": f"License {debian!r} as named in the package's /usr/share/doc/*/copyright",
            }
            for ref, debian in sorted(refs.items())
        ]
    return doc


def sbom_of_entries(
    name: str, entries: Iterator[Entry], where: str | None = None, created: str | None = None
) -> dict[str, Any]:
    return spdx_document(name, scan(entries, where or name), where or name, created)


def sbom_json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=2, sort_keys=False, ensure_ascii=False).encode() + b"\n"
