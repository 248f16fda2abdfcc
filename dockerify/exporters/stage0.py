"""`--format stage0`: a directory that boots the image under QEMU, for both stage0 contracts.

  kernel file     the kernel as given (bzImage for x86, Image for arm64)
  vmlinux         (x86) the uncompressed ELF kernel, for the legacy contract
  initramfs.cpio.*  the image with dockerify's init (see initramfs.py)
  cmdline         the kernel command line, no trailing newline
  stage0.bin      (when --stage0 is given) the firmware for -bios
  manifest.json   what is in the bundle, with the sha256 of each part
  run             the QEMU command lines: `./run` (current contract: -kernel/-initrd/-append, with
                  -bios stage0.bin when present), `./run legacy` (the seed's: -machine microvm, the
                  ELF vmlinux, initramfs and cmdline through fw_cfg opt/stage0/*), `./run print`

The kernel comes from --kernel or the image's own /boot. Before anything is kept, the bundle is
checked: the kernel and the compressed initramfs within the first 1 GiB, the initramfs at most half
of --memory, and for the legacy contract the vmlinux an ELF64 with its segments between 2 MiB and
1 GiB. EXPOSEd ports become QEMU user-network `hostfwd` forwards (the init configures eth0 when the
kernel has a driver for the virtio NIC)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from dockerify.entry import Entry, FileType, bytes_reader
from dockerify.errors import DockerifyError, NotFound
from dockerify.exporters.common import atomic_dir, run_config
from dockerify.exporters.initramfs import BootOptions, InitramfsOptions, write_initramfs
from dockerify.exporters.kernel import GiB, MiB, check_elf, extract_vmlinux, identify, read_kernel
from dockerify.exporters.sink import EntrySource, Result, read_once
from dockerify.oci.select import Image
from dockerify.paths import require_file

log = logging.getLogger("dockerify")

GUEST_NET = "eth0 10.0.2.15/24 10.0.2.2"
_KERNEL_NAMES = re.compile(rb"^(boot/)?(vmlinuz|bzImage|Image|vmlinux)(-[^/]*)?(\.gz)?$")
SUFFIX = {"gzip": ".gz", "zstd": ".zst", "xz": ".xz", "none": ""}


@dataclass(frozen=True)
class Stage0Options:
    initramfs: InitramfsOptions = field(default_factory=InitramfsOptions)
    kernel: str | None = None
    stage0: str | None = None
    append: str = ""
    accel: str = "auto"


@dataclass(frozen=True)
class Stage0FormatOptions(BootOptions):
    """`--format stage0`'s options: the init's, and the kernel and QEMU's."""

    kernel: str | None = None
    stage0: str | None = None
    append: str | None = None
    accel: str | None = None  # None: auto


@dataclass(frozen=True)
class BundleResult(Result):
    FORMAT: ClassVar[str] = "stage0"
    path: str
    manifest: dict[str, Any]
    warnings: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.path,
            "format": self.FORMAT,
            "manifest": self.manifest,
            "warnings": list(self.warnings),
        }


class Stage0:
    name = BundleResult.FORMAT
    options = Stage0FormatOptions
    directory = True

    def write(
        self, image: Image, entries: EntrySource, output: str, options: Stage0FormatOptions
    ) -> BundleResult:
        settings = Stage0Options(
            initramfs=options.initramfs("gzip"),
            kernel=options.kernel,
            stage0=options.stage0,
            append=options.append or "",
            accel=options.accel or "auto",
        )
        return write_stage0(image, read_once(entries), output, settings)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class _KernelTap:
    """Passes entries through, keeping a copy of the kernels found under /boot (or at /)."""

    def __init__(self) -> None:
        self.found: dict[bytes, bytes] = {}
        self.links: dict[bytes, bytes] = {}

    def filter(self, entries: Iterable[Entry]) -> Iterator[Entry]:
        for entry in entries:
            if _KERNEL_NAMES.match(entry.path):
                if entry.type is FileType.REG and 0 < entry.size <= 256 * MiB:
                    data = entry.read_all()
                    self.found[entry.path] = data
                    entry = entry.with_(reader=bytes_reader(data), sparse=None)
                elif entry.type is FileType.SYMLINK:
                    self.links[entry.path] = entry.linkname
            yield entry

    def choose(self) -> tuple[bytes, bytes] | None:
        for link in (b"vmlinuz", b"boot/vmlinuz"):
            target = self.links.get(link)
            if target is not None:
                if target.startswith(b"/"):
                    path = os.path.normpath(target.lstrip(b"/"))
                else:
                    path = os.path.normpath(os.path.join(os.path.dirname(link), target))
                if path in self.found:
                    return path, self.found[path]
        if not self.found:
            return None

        def version_key(p: bytes) -> list[Any]:
            return [int(x) if x.isdigit() else x for x in re.split(rb"(\d+)", p)]

        best = max(self.found, key=version_key)
        return best, self.found[best]


def _qemu(arch: str) -> str:
    return "qemu-system-x86_64" if arch == "amd64" else "qemu-system-aarch64"


def _hostfwd(ports: tuple[str, ...]) -> str:
    fwd = []
    for spec in ports:
        number, _, proto = spec.partition("/")
        proto = proto or "tcp"
        if proto not in ("tcp", "udp") or not number.isdigit():
            continue
        fwd.append(f"hostfwd={proto}::{number}-:{number}")
    return ",".join(fwd)


def run_script(
    arch: str, kernel_name: str, initrd_name: str, memory_mib: int, hostfwd: str, accel: str
) -> str:
    net_pci = net_mmio = ""
    if hostfwd:
        net_pci = f"-netdev user,id=net0,{hostfwd} -device virtio-net-pci,netdev=net0"
        net_mmio = f"-netdev user,id=net0,{hostfwd} -device virtio-net-device,netdev=net0"
    if arch == "amd64":
        current = (
            'qemu-system-x86_64 -accel "$accel" -cpu max -m '
            + f"{memory_mib}M"
            + ' -nodefaults -display none -serial stdio -no-reboot ${stage0:+-bios "$stage0"}'
            + f' -kernel "$here/{kernel_name}" -initrd "$here/{initrd_name}" -append "$(cat "$here/cmdline")"'
            + (f" {net_pci}" if net_pci else "")
        )
        legacy = (
            'qemu-system-x86_64 -machine microvm -accel "$accel" -cpu max -m '
            + f"{memory_mib}M"
            + ' -nodefaults -display none -serial stdio -no-reboot -bios "$stage0"'
            + ' -fw_cfg "name=opt/stage0/elf_kernel,file=$here/vmlinux"'
            + f' -fw_cfg "name=opt/stage0/initramfs,file=$here/{initrd_name}"'
            + ' -fw_cfg "name=opt/stage0/cmdline,file=$here/cmdline"'
            + (f" {net_mmio}" if net_mmio else "")
        )
        cpu_probe = "if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then accel=kvm; else accel=tcg; fi"
    else:
        current = (
            'qemu-system-aarch64 -M virt -accel "$accel" -cpu max,pauth-impdef=on -m '
            + f"{memory_mib}M"
            + " -nodefaults -display none -serial stdio -no-reboot"
            + f' -kernel "$here/{kernel_name}" -initrd "$here/{initrd_name}" -append "$(cat "$here/cmdline")"'
            + (f" {net_pci}" if net_pci else "")
        )
        legacy = ""
        cpu_probe = 'if [ "$(uname -m)" = aarch64 ] && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then accel=kvm; else accel=tcg; fi'
    legacy_case = (
        f"""legacy)
	if [ -z "$stage0" ] && [ "$print" = 0 ]; then
		echo "run: the legacy contract needs stage0 firmware: STAGE0=/path/to/stage0.bin $0 legacy" >&2
		exit 2
	fi
	stage0=${{stage0:-STAGE0}}
	set -- {legacy} "$@" ;;"""
        if legacy
        else """legacy)
	echo "run: stage0's legacy contract (ELF vmlinux through fw_cfg on microvm) is x86-64 only" >&2
	exit 2 ;;"""
    )
    return f"""#!/bin/sh
# Boot this dockerify bundle under QEMU. Generated by `dockerify export --format stage0`.
#   ./run [current] [QEMU ARGS...]  kernel/initramfs/cmdline through -kernel/-initrd/-append
#                                   (with -bios stage0.bin when the bundle has one, or STAGE0=FILE)
#   ./run legacy [QEMU ARGS...]     the seed's contract: -machine microvm -bios STAGE0, the ELF
#                                   vmlinux, initramfs and cmdline through fw_cfg opt/stage0/*
#   ./run print [current|legacy]    print the command line instead of running it
# ACCEL=kvm|tcg|auto (default {accel}: KVM when /dev/kvm is usable).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
stage0=${{STAGE0:-}}
if [ -z "$stage0" ] && [ -f "$here/stage0.bin" ]; then stage0=$here/stage0.bin; fi
accel=${{ACCEL:-{accel}}}
if [ "$accel" = auto ]; then {cpu_probe}; fi
print=0
if [ "${{1:-}}" = print ]; then print=1; shift; fi
contract=current
case "${{1:-}}" in current|legacy) contract=$1; shift ;; esac
case "$contract" in
current)
	set -- {current} "$@" ;;
{legacy_case}
esac
if [ "$print" = 1 ]; then
	for arg in "$@"; do
		case "$arg" in *[!A-Za-z0-9_./:=,+-]*) printf "'%s' " "$arg" ;; *) printf '%s ' "$arg" ;; esac
	done
	echo
	exit 0
fi
exec "$@"
"""


def write_stage0(image: Image, entries: Iterable[Entry], output: str, opts: Stage0Options) -> BundleResult:
    platform = image.platform
    arch = platform.architecture
    if arch not in ("amd64", "arm64"):
        raise DockerifyError(f"stage0 bundles boot amd64 or arm64 images, not {platform}")
    given = read_kernel(opts.kernel) if opts.kernel else None
    stage0_fw = None
    if opts.stage0:
        fw = Path(opts.stage0)
        require_file(fw, f"--stage0 {opts.stage0}")
        stage0_fw = fw
    rc = run_config(image)
    hostfwd = _hostfwd(rc.exposed)
    ir_opts = opts.initramfs
    if hostfwd:
        ir_opts = replace(ir_opts, net=GUEST_NET)
    memory = ir_opts.memory
    tap = _KernelTap()
    initrd_name = "initramfs.cpio" + SUFFIX[ir_opts.compression]
    with atomic_dir(output) as bundle:
        initrd = bundle / initrd_name
        result = write_initramfs(image, tap.filter(entries), str(initrd), ir_opts)
        if given is not None:
            kernel_data, kernel_from = given, str(opts.kernel)
        else:
            chosen = tap.choose()
            if chosen is None:
                raise NotFound(
                    f"{output}: the image has no kernel in /boot (vmlinuz*, bzImage, Image)",
                    hint="give one with --kernel FILE (e.g. Debian's linux-image package's /boot/vmlinuz-*)",
                )
            kernel_from = "/" + chosen[0].decode(errors="replace")
            kernel_data = chosen[1]
        info = identify(kernel_data, kernel_from)
        if info.arch and info.arch != arch:
            raise DockerifyError(f"{kernel_from}: a {info.arch} kernel, but the image is {platform}")
        kernel_name = (
            "bzImage"
            if info.kind == "bzImage"
            else ("Image.gz" if info.kind == "gzip" else "vmlinux" if info.kind == "elf" else "Image")
        )
        (bundle / kernel_name).write_bytes(kernel_data)
        files: dict[str, dict[str, Any]] = {
            "kernel": {
                "file": kernel_name,
                "from": kernel_from,
                "format": info.kind,
                "version": info.version,
            },
            "initramfs": {
                "file": initrd_name,
                "compression": result.compression,
                "unpacked": result.unpacked,
                "init": result.init_path,
                "image_init": result.image_init,
            },
        }
        # ---- checks
        if result.unpacked > memory // 2:
            need = -(-2 * result.unpacked // MiB)
            raise DockerifyError(
                f"the initramfs unpacks to {result.unpacked >> 20} MiB, more than half of --memory "
                f"{memory >> 20} MiB (the kernel fails with 'Initramfs unpacking failed: write error')",
                hint=f"give --memory {need}M or more, or make the image smaller",
            )
        load_end = info.load_end
        legacy_end = 0
        if arch == "amd64":
            vmlinux = kernel_data if info.kind == "elf" else extract_vmlinux(kernel_data, kernel_from)
            check = check_elf(vmlinux, f"{kernel_from} (vmlinux)")
            if kernel_name != "vmlinux":
                (bundle / "vmlinux").write_bytes(vmlinux)
            files["vmlinux"] = {
                "file": "vmlinux",
                "entry": hex(check.entry),
                "segments": [[hex(p), hex(m)] for p, m in check.segments],
            }
            legacy_end = check.end
        end = max(load_end or 0, legacy_end) + result.size
        if end > GiB:
            raise DockerifyError(
                f"the kernel (ending at {max(load_end, legacy_end) >> 20} MiB) plus the compressed initramfs "
                f"({result.size >> 20} MiB) do not fit in the first 1 GiB",
                hint="make the image smaller, or compress the initramfs harder (--compress xz)",
            )
        console = "console=ttyS0" if arch == "amd64" else "console=ttyAMA0"
        words = [console, "quiet", "panic=-1"]
        if opts.append:
            words += shlex.split(opts.append)
        cmdline = " ".join(words)
        (bundle / "cmdline").write_text(cmdline)
        files["cmdline"] = {"file": "cmdline", "text": cmdline}
        if stage0_fw is not None:
            (bundle / "stage0.bin").write_bytes(stage0_fw.read_bytes())
            files["stage0"] = {"file": "stage0.bin", "from": str(stage0_fw)}
        script = run_script(arch, kernel_name, initrd_name, memory >> 20, hostfwd, opts.accel)
        (bundle / "run").write_text(script)
        os.chmod(bundle / "run", 0o755)
        for part in files.values():
            p = bundle / part["file"]
            part["sha256"] = _sha256(p)
            part["size"] = p.stat().st_size
        manifest = {
            "schema": 1,
            "image": image.descriptor.digest,
            "platform": str(platform),
            "argv": list(result.argv),
            "memory": memory,
            "ports": list(rc.exposed),
            "hostfwd": hostfwd,
            "contracts": {
                "current": "-kernel/-initrd/-append, -bios stage0 optional",
                "legacy": "microvm, -bios stage0, fw_cfg opt/stage0/{elf_kernel,initramfs,cmdline}"
                if arch == "amd64"
                else None,
            },
            "files": files,
        }
        (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        for bundle_file in bundle.iterdir():
            if bundle_file.name != "run":
                os.chmod(bundle_file, 0o644)
        os.chmod(bundle, 0o755)
    return BundleResult(output, manifest, result.warnings)
