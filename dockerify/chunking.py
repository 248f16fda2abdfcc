"""Splitting a tree into layers by package ownership, so that an updated card shares layers
with the previous one.

The plan is computed from a metadata-only first pass over the tree (`TreeScan`): every path's
type, size and hard-link target, and the content of the tree's own dpkg database
(/var/lib/dpkg/status, info/*.list, info/*.conffiles, diversions). The result (`Plan`) maps
every path to exactly one layer. Rules, each chosen so that a layer's bytes depend only on the
packages in it:

- Layer "directories": every directory (and the root). Directories are tiny, but their mtimes
  change whenever anything in them is installed or removed, so spreading them over package
  layers would make every layer churn; kept together they also make each parent exist below
  every child.
- Package layers, grouped by *source* package (binary packages built from one source, such as
  libc6 and libc-bin, are upgraded together). A source package is placed by its own name and
  size only, never by what else is installed:
  * a source package of at least SOLO_BYTES gets a layer of its own (its layer's content is then
    exactly its files, whatever else changes); if there are more such packages than slots, the
    biggest keep theirs (ties by name) and the rest fall back to buckets;
  * every other source package goes to bucket sha256(name) mod B. A bucket's content changes
    only when one of its own packages changes.
- Layer "conffiles": files dpkg lists as conffiles. Card builders edit /etc, so these differ
  from the shipped package far more often than the package itself changes.
- Layer "unowned": files no package owns (the dpkg database itself, generated files, /home).
- A path owned by several packages goes with the owner whose source package name is first in
  byte order (stable while both are installed). A diverted path: the file at the diversion's target
  (`/x.distrib`) belongs to the packages that ship `/x` other than the diverting one; `/x` itself
  belongs to the diverting package (or is unowned for a local diversion).
- Hard links: every member of a hard-link group goes to the layer of the group's first member
  (the regular file). Layer appliers (Docker's overlay2 applies a layer into its own directory)
  cannot link to a file in another layer, so the group must be in one layer.

Trees without a dpkg database are split by top-level directory (two levels under /usr and
/var), each name hashed into a bucket, for the same stability.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from dockerify.entry import Entry, FileType

#: Below Docker's 127-layer limit and overlayfs' lower-directory limit (about 500 short paths,
#: far fewer with the long paths containerd uses), with room for layers built on top.
DEFAULT_LAYERS = 64
MIN_LAYERS = 4
MAX_LAYERS = 120
SOLO_BYTES = 4 << 20
#: Layer annotations: the packages a layer holds, bounded so a manifest stays small.
PACKAGES_ANNOTATION = "io.dockerify.layer.packages"
KIND_ANNOTATION = "io.dockerify.layer.kind"
ANNOTATION_LIMIT = 1024

DPKG = b"var/lib/dpkg"
INFO = DPKG + b"/info/"


def stable_bucket(name: str, buckets: int) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % buckets


@dataclass
class TreeScan:
    """What the first pass learns: types, sizes, hard links, symlinks and the dpkg files."""

    types: dict[bytes, FileType] = field(default_factory=dict)
    sizes: dict[bytes, int] = field(default_factory=dict)
    links: dict[bytes, bytes] = field(default_factory=dict)  # hard link -> first of its group
    symlinks: dict[bytes, bytes] = field(default_factory=dict)
    dpkg: dict[bytes, bytes] = field(default_factory=dict)  # path under var/lib/dpkg -> content

    def add(self, entry: Entry) -> None:
        self.types[entry.path] = entry.type
        self.sizes[entry.path] = entry.size if entry.type is FileType.REG else 0
        if entry.type is FileType.HARDLINK:
            self.links[entry.path] = entry.linkname
        elif entry.type is FileType.SYMLINK:
            self.symlinks[entry.path] = entry.linkname
        elif entry.type is FileType.REG and _is_dpkg_file(entry.path):
            self.dpkg[entry.path] = entry.read_all()

    @classmethod
    def of(cls, entries: Iterable[Entry]) -> TreeScan:
        scan = cls()
        for entry in entries:
            scan.add(entry)
        return scan


def _is_dpkg_file(path: bytes) -> bool:
    if path in (DPKG + b"/status", DPKG + b"/diversions"):
        return True
    return (
        path.startswith(INFO) and path.endswith((b".list", b".conffiles")) and b"/" not in path[len(INFO) :]
    )


@dataclass(frozen=True)
class Package:
    name: str  # without :arch
    source: str
    version: str


_SOURCE = re.compile(r"^(\S+)(?:\s+\((.+)\))?$")


def parse_status(text: str) -> dict[str, Package]:
    """Installed packages from dpkg's status file, by name (and name:arch)."""
    out: dict[str, Package] = {}
    for para in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in para.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        name = fields.get("package")
        if not name or "installed" not in fields.get("status", "installed").split()[-1:]:
            continue
        source = name
        m = _SOURCE.match(fields.get("source", ""))
        if m:
            source = m.group(1)
        pkg = Package(name, source, fields.get("version", ""))
        out[name] = pkg
        arch = fields.get("architecture", "")
        if arch:
            out[f"{name}:{arch}"] = pkg
    return out


def parse_diversions(text: str) -> list[tuple[bytes, bytes, str]]:
    """(diverted path, where it went, diverting package or ":" for a local diversion)."""
    lines = text.split("\n")
    out = []
    for i in range(0, len(lines) - 2, 3):
        frm, to, by = lines[i], lines[i + 1], lines[i + 2]
        if frm.startswith("/") and to.startswith("/"):
            out.append((_rel(frm.encode()), _rel(to.encode()), by.strip()))
    return out


def _rel(path: bytes) -> bytes:
    p = path.strip(b"/")
    return p if p and p != b"." else b"."


@dataclass(frozen=True)
class LayerPlan:
    kind: str  # directories | package | bucket | conffiles | unowned | tree
    packages: tuple[str, ...]  # source packages (or directory names for "tree")

    def annotations(self) -> dict[str, str]:
        out = {KIND_ANNOTATION: self.kind}
        if self.packages:
            out[PACKAGES_ANNOTATION] = bounded(self.packages)
        return out


def bounded(names: Iterable[str], limit: int = ANNOTATION_LIMIT) -> str:
    names = list(names)
    text = ""
    for i, name in enumerate(names):
        more = f" (+{len(names) - i} more)"
        candidate = name if not text else f"{text},{name}"
        if len(candidate) + len(more) > limit and i < len(names) - 1:
            return text + more
        text = candidate
    return text


@dataclass(frozen=True)
class Plan:
    layers: tuple[LayerPlan, ...]
    assignment: dict[bytes, int]  # path -> index into layers

    def layer_of(self, path: bytes) -> int:
        return self.assignment.get(path, len(self.layers) - 1)


class _Owners:
    def __init__(self, scan: TreeScan) -> None:
        self.scan = scan
        status = scan.dpkg.get(DPKG + b"/status")
        self.packages = parse_status(status.decode("utf-8", "replace")) if status else {}
        self.owners: dict[bytes, list[str]] = {}
        self.conffiles: set[bytes] = set()
        for path, data in sorted(scan.dpkg.items()):
            if not path.startswith(INFO):
                continue
            stem, _, ext = path[len(INFO) :].rpartition(b".")
            pkg = stem.decode("utf-8", "replace")
            for line in data.split(b"\n"):
                line = line.rstrip()
                if not line.startswith(b"/"):
                    continue
                if ext == b"conffiles":
                    # "remove-on-upgrade" / "obsolete" flags follow the path after a space.
                    self.conffiles.add(self.resolve(_rel(line.split(b" ")[0])))
                else:
                    self.owners.setdefault(self.resolve(_rel(line)), []).append(self.source_of(pkg))
        diversions = scan.dpkg.get(DPKG + b"/diversions")
        for frm, to, by in parse_diversions(diversions.decode("utf-8", "replace")) if diversions else []:
            frm, to = self.resolve(frm), self.resolve(to)
            listed = self.owners.get(frm, [])
            diverter = self.source_of(by) if by != ":" else None
            shipped = [p for p in listed if p != diverter]
            if shipped:
                self.owners[to] = sorted(set(shipped + self.owners.get(to, [])))
            if diverter is not None and diverter in listed:
                self.owners[frm] = [diverter]
            else:
                self.owners.pop(frm, None)

    def source_of(self, pkg: str) -> str:
        p = self.packages.get(pkg) or self.packages.get(pkg.split(":")[0])
        return p.source if p else pkg.split(":")[0]

    def resolve(self, path: bytes) -> bytes:
        """A listed path as it is in the tree: usrmerge trees list /bin/x for usr/bin/x."""
        if path in self.scan.types:
            return path
        head, sep, rest = path.partition(b"/")
        target = self.scan.symlinks.get(head)
        if sep and target and not target.startswith(b"/"):
            moved = target.rstrip(b"/") + b"/" + rest
            if moved in self.scan.types:
                return moved
        return path


def plan_layers(scan: TreeScan, max_layers: int = DEFAULT_LAYERS) -> Plan:
    max_layers = max(MIN_LAYERS, min(MAX_LAYERS, max_layers))
    if not any(p.startswith(INFO) and p.endswith(b".list") for p in scan.dpkg):
        return _plan_by_directory(scan, max_layers)
    owners = _Owners(scan)
    # owner of each non-directory path: first package in byte order
    owner: dict[bytes, str] = {}
    for path, pkgs in owners.owners.items():
        if scan.types.get(path, FileType.DIR) is not FileType.DIR:
            owner[path] = min(pkgs)
    sizes: dict[str, int] = {}
    for path, pkg in owner.items():
        sizes[pkg] = sizes.get(pkg, 0) + scan.sizes.get(path, 0)
    slots = max_layers - 3  # directories, conffiles, unowned
    big = sorted((p for p, s in sizes.items() if s >= SOLO_BYTES), key=lambda p: (-sizes[p], p))
    # A fixed bucket count: a small package's bucket must not move when big ones come and go.
    buckets = max(1, slots // 2)
    solo = sorted(big[: slots - buckets])
    plans: list[LayerPlan] = [LayerPlan("directories", ())]
    index: dict[str, int] = {}
    for pkg in solo:
        index[pkg] = len(plans)
        plans.append(LayerPlan("package", (pkg,)))
    bucket_members: dict[int, list[str]] = {}
    for pkg in sorted(sizes):
        if pkg not in index:
            bucket_members.setdefault(stable_bucket(pkg, buckets), []).append(pkg)
    for b in sorted(bucket_members):
        for pkg in bucket_members[b]:
            index[pkg] = len(plans)
        plans.append(LayerPlan("bucket", tuple(bucket_members[b])))
    conf = len(plans)
    plans.append(LayerPlan("conffiles", ()))
    unowned = len(plans)
    plans.append(LayerPlan("unowned", ()))
    assignment: dict[bytes, int] = {}
    for path, ftype in scan.types.items():
        if ftype is FileType.DIR:
            assignment[path] = 0
        elif path in owners.conffiles:
            assignment[path] = conf
        elif path in owner:
            assignment[path] = index[owner[path]]
        else:
            assignment[path] = unowned
    return _finish(scan, plans, assignment)


def _dir_key(path: bytes) -> str:
    parts = path.split(b"/")
    depth = 2 if parts[0] in (b"usr", b"var") and len(parts) > 2 else 1
    return b"/".join(parts[:depth]).decode("utf-8", "surrogateescape")


def _plan_by_directory(scan: TreeScan, max_layers: int) -> Plan:
    buckets = max_layers - 1
    members: dict[int, set[str]] = {}
    assignment: dict[bytes, int] = {}
    raw: dict[bytes, int] = {}
    for path, ftype in scan.types.items():
        if ftype is FileType.DIR:
            continue
        key = _dir_key(path)
        b = stable_bucket(key, buckets)
        members.setdefault(b, set()).add(key)
        raw[path] = b
    plans: list[LayerPlan] = [LayerPlan("directories", ())]
    renumber: dict[int, int] = {}
    for b in sorted(members):
        renumber[b] = len(plans)
        plans.append(LayerPlan("tree", tuple(sorted(members[b]))))
    for path, ftype in scan.types.items():
        assignment[path] = 0 if ftype is FileType.DIR else renumber[raw[path]]
    if len(plans) == 1:
        plans.append(LayerPlan("unowned", ()))
    return _finish(scan, plans, assignment)


def _finish(scan: TreeScan, plans: list[LayerPlan], assignment: dict[bytes, int]) -> Plan:
    for link, target in scan.links.items():
        if target in assignment:
            assignment[link] = assignment[target]
    used = sorted(set(assignment.values()) | {0})
    keep = {old: new for new, old in enumerate(used)}
    if len(used) == 1:  # nothing but directories: still a well-formed plan
        return Plan((plans[0],), {p: 0 for p in assignment})
    return Plan(tuple(plans[i] for i in used), {p: keep[i] for p, i in assignment.items()})
