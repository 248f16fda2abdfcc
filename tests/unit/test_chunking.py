"""The layer plan of `build --chunked` (dockerify/chunking.py), from synthetic scans."""

from __future__ import annotations

from dockerify.chunking import (
    DPKG,
    INFO,
    SOLO_BYTES,
    TreeScan,
    bounded,
    parse_diversions,
    parse_status,
    plan_layers,
)
from dockerify.entry import Entry, FileType


def scan_of(packages: dict[str, dict[str, int]], *, extra: dict[bytes, bytes] | None = None) -> TreeScan:
    """A tree where package NAME owns the files {path: size}; a status file with Source fields
    for names written "bin/source"."""
    scan = TreeScan()
    scan.add(Entry(b".", FileType.DIR))
    status = []
    for spec, files in packages.items():
        name, _, source = spec.partition("/")
        status.append(
            f"Package: {name}\nStatus: install ok installed\nArchitecture: arm64\nVersion: 1\n"
            + (f"Source: {source} (1.0)\n" if source else "")
        )
        listed = []
        for path, size in files.items():
            parent = path.rpartition("/")[0]
            if parent and parent.encode() not in scan.types:
                scan.add(Entry(parent.encode(), FileType.DIR))
            scan.add(Entry(path.encode(), FileType.REG, size=size))
            listed.append("/" + path)
        scan.dpkg[INFO + name.encode() + b".list"] = ("/.\n" + "\n".join(listed) + "\n").encode()
    scan.dpkg[DPKG + b"/status"] = "\n".join(status).encode()
    scan.dpkg.update(extra or {})
    return scan


def layer_files(scan: TreeScan, max_layers: int = 64) -> dict[tuple[str, ...], frozenset[bytes]]:
    plan = plan_layers(scan, max_layers)
    out: dict[int, set[bytes]] = {}
    for path, i in plan.assignment.items():
        out.setdefault(i, set()).add(path)
    return {(plan.layers[i].kind, *plan.layers[i].packages): frozenset(p) for i, p in out.items()}


def test_a_package_keeps_its_layer_when_others_come_and_go() -> None:
    base = {f"pkg{i}": {f"usr/lib/pkg{i}/f": 1000 + i} for i in range(40)}
    big = {"linux": {"boot/vmlinuz": SOLO_BYTES + 1}}
    v1 = layer_files(scan_of({**base, **big}))
    v2_pkgs = {**base, **big, "newcomer": {"usr/bin/new": 10}}
    del v2_pkgs["pkg7"]
    v2 = layer_files(scan_of(v2_pkgs))
    assert v1[("package", "linux")] == v2[("package", "linux")] == {b"boot/vmlinuz"}
    same = [k for k in v1 if k in v2 and v1[k] == v2[k]]
    # every layer except the directories, the newcomer's bucket and pkg7's bucket is unchanged
    changed = [k for k in v2 if k not in v1 or v1[k] != v2[k]]
    assert len(changed) <= 3, changed
    assert len(same) >= len(v1) - 3


def test_binary_packages_of_one_source_share_a_layer() -> None:
    files = layer_files(
        scan_of({"libc6/glibc": {"usr/lib/libc.so.6": 100}, "libc-bin/glibc": {"usr/bin/ldd": 10}})
    )
    layer = next(v for k, v in files.items() if "glibc" in k)
    assert layer == {b"usr/lib/libc.so.6", b"usr/bin/ldd"}


def test_every_path_in_exactly_one_layer_dirs_first_unowned_last() -> None:
    scan = scan_of({"a": {"usr/bin/a": 5}, "b": {"usr/bin/b": 5}})
    scan.add(Entry(b"etc", FileType.DIR))
    scan.add(Entry(b"etc/hostname", FileType.REG, size=4))
    plan = plan_layers(scan)
    assert set(plan.assignment) == set(scan.types)
    assert plan.layers[0].kind == "directories"
    assert {p for p, i in plan.assignment.items() if i == 0} == {b".", b"usr/bin", b"etc"}
    assert plan.layers[plan.assignment[b"etc/hostname"]].kind == "unowned"
    assert all(
        plan.layers[i].kind == "bucket" for p, i in plan.assignment.items() if p.startswith(b"usr/bin/")
    )


def test_shared_files_conffiles_diversions_and_hard_links() -> None:
    extra = {
        INFO + b"a.conffiles": b"/etc/a.conf\n",
        DPKG + b"/diversions": b"/usr/bin/sh\n/usr/bin/sh.distrib\nb\n",
    }
    scan = scan_of(
        {
            "a": {"usr/share/common": 3, "etc/a.conf": 3, "usr/bin/sh": 3},
            "b": {"usr/share/common": 3, "usr/bin/sh": 3},
        },
        extra=extra,
    )
    scan.add(Entry(b"usr/bin/sh.distrib", FileType.REG, size=3))
    scan.add(Entry(b"usr/bin/zz-link", FileType.HARDLINK, linkname=b"usr/share/common"))
    plan = plan_layers(scan)

    def packages_of(path: bytes) -> tuple[str, ...]:
        return plan.layers[plan.assignment[path]].packages

    def kind_of(path: bytes) -> str:
        return plan.layers[plan.assignment[path]].kind

    assert "a" in packages_of(b"usr/share/common")  # two owners: the first by name
    assert kind_of(b"etc/a.conf") == "conffiles"
    assert "b" in packages_of(b"usr/bin/sh")  # the diverting package's file
    assert "a" in packages_of(b"usr/bin/sh.distrib")  # the diverted one, its shipper's
    assert plan.assignment[b"usr/bin/zz-link"] == plan.assignment[b"usr/share/common"]


def test_usrmerge_paths_resolve_through_the_top_level_symlink() -> None:
    scan = scan_of({"a": {"usr/bin/a": 5}})
    scan.add(Entry(b"bin", FileType.SYMLINK, linkname=b"usr/bin"))
    scan.dpkg[INFO + b"a.list"] = b"/.\n/bin\n/bin/a\n"
    plan = plan_layers(scan)
    assert plan.layers[plan.assignment[b"usr/bin/a"]].packages == ("a",)


def test_without_dpkg_the_split_is_by_directory_and_stable() -> None:
    scan = TreeScan()
    for d in (b".", b"usr", b"usr/lib", b"usr/share", b"etc"):
        scan.add(Entry(d, FileType.DIR))
    for f in (b"usr/lib/x", b"usr/share/y", b"etc/z"):
        scan.add(Entry(f, FileType.REG, size=1))
    plan = plan_layers(scan, 16)
    assert plan.layers[0].kind == "directories"
    kinds = {plan.layers[plan.assignment[f]].packages for f in (b"usr/lib/x", b"usr/share/y", b"etc/z")}
    assert all(k for k in kinds)
    again = plan_layers(scan, 16)
    assert again == plan


def test_parsers_and_bounded_annotation() -> None:
    pkgs = parse_status(
        "Package: libc6\nStatus: install ok installed\nArchitecture: arm64\nSource: glibc (2.36)\n"
        "Version: 2.36\n\nPackage: gone\nStatus: deinstall ok config-files\n"
    )
    assert pkgs["libc6"].source == "glibc" and pkgs["libc6:arm64"].source == "glibc" and "gone" not in pkgs
    assert parse_diversions("/a\n/a.distrib\npkg\n/b\n/b.local\n:\n") == [
        (b"a", b"a.distrib", "pkg"),
        (b"b", b"b.local", ":"),
    ]
    text = bounded([f"package-{i}" for i in range(500)], 100)
    assert len(text) <= 100 and text.endswith("more)")
