"""Issue 3 acceptance, part 3: `dockerify export --format stage0` (point 5) and its refusals (7).

The bundle's own `run` script is what boots, with QEMU's firmware (SeaBIOS) in place of stage0;
readelf judges the extracted vmlinux; QEMU itself judges that the legacy command line is valid."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.conftest import dockerify, require_tool
from tests.fixtures import require
from tests.integration.test_export_support import (
    Boot,
    build_image,
    busybox_tree,
    kernel,
    kvm_works,
    require_init,
)

SCRIPT = 'echo "bundle says $GREETING from $(pwd)"; exit 4'
SEABIOS = Path("/usr/share/seabios/bios-256k.bin")  # QEMU's own PC firmware (Debian: seabios)
MICROVM_BIOS = Path("/usr/share/qemu/bios-microvm.bin")  # QEMU's own microvm firmware (qboot)
GiB = 1 << 30


def _bundle_env() -> dict[str, str]:
    return {**os.environ, "ACCEL": "kvm" if kvm_works() else "tcg"}


def _check_manifest(bundle: Path) -> dict:
    manifest = json.loads((bundle / "manifest.json").read_text())
    for part in manifest["files"].values():
        data = (bundle / part["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == part["sha256"], part["file"]
        assert len(data) == part["size"]
    assert os.access(bundle / "run", os.X_OK)
    return manifest


def test_amd64_bundle_boots_with_both_contracts(tmp_path) -> None:
    require_init()
    require_tool("qemu-system-x86_64", "readelf")
    require(SEABIOS.is_file(), f"QEMU's SeaBIOS firmware is missing ({SEABIOS}, package seabios)")
    root = busybox_tree(tmp_path / "root", "amd64")
    ref = build_image(
        root,
        tmp_path / "img",
        "linux/amd64",
        "--cmd",
        json.dumps(["/bin/sh", "-c", SCRIPT]),
        "--env",
        "GREETING=hi",
        "--workdir",
        "/srv",
        "--expose",
        "8080",
    )
    bundle = tmp_path / "bundle"
    dockerify("export", ref, "--format", "stage0", "-o", str(bundle), "--kernel", str(kernel("amd64")))
    manifest = _check_manifest(bundle)
    files = manifest["files"]
    assert {"kernel", "vmlinux", "initramfs", "cmdline"} <= set(files)
    assert files["kernel"]["format"] == "bzImage"
    assert manifest["hostfwd"] == "hostfwd=tcp::8080-:8080"

    # Current contract, QEMU's own firmware standing in for stage0 (-bios).
    env = {**_bundle_env(), "STAGE0": str(SEABIOS)}
    printed = subprocess.run(
        [str(bundle / "run"), "print"], capture_output=True, text=True, env=env, check=True
    )
    assert (
        f"-bios {SEABIOS}" in printed.stdout and "-kernel" in printed.stdout and "-initrd" in printed.stdout
    )
    assert "hostfwd=tcp::8080-:8080" in printed.stdout
    result = _run_bundle(bundle, env)
    assert "bundle says hi from /srv" in result.console, result.console[-3000:]
    assert "dockerify-init: exit status 4" in result.console
    assert result.returncode == 0

    # Legacy contract: the ELF vmlinux passes the checks, and the command line carries the three
    # opt/stage0 entries on a microvm; QEMU accepts it (the real stage0 would then boot it).
    elf = subprocess.run(
        ["readelf", "-hlW", str(bundle / "vmlinux")], capture_output=True, text=True, check=True
    )
    assert "ELF64" in elf.stdout and "X86-64" in elf.stdout
    loads = [line.split() for line in elf.stdout.splitlines() if line.strip().startswith("LOAD")]
    assert loads
    for fields in loads:
        paddr, memsz = int(fields[3], 16), int(fields[5], 16)
        assert 2 << 20 <= paddr and paddr + memsz <= GiB
    legacy = subprocess.run(
        [str(bundle / "run"), "print", "legacy"], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "-machine microvm" in legacy
    for name, file in (
        ("elf_kernel", "vmlinux"),
        ("initramfs", files["initramfs"]["file"]),
        ("cmdline", "cmdline"),
    ):
        assert f"name=opt/stage0/{name},file={bundle / file}" in legacy
    if MICROVM_BIOS.is_file():
        proc = subprocess.Popen(
            [str(bundle / "run"), "legacy", "-S"],
            env={**env, "STAGE0": str(MICROVM_BIOS)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            _out, err = proc.communicate(timeout=4)
            raise AssertionError(f"QEMU refused the legacy command line: {err.decode(errors='replace')}")
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def _run_bundle(bundle: Path, env: dict[str, str]) -> Boot:
    start = time.monotonic()
    try:
        proc = subprocess.run([str(bundle / "run")], capture_output=True, timeout=150, env=env)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"the bundle did not power off: {(e.stdout or b'')[-2000:]!r}") from None
    return Boot(proc.stdout.decode(errors="replace"), proc.returncode, time.monotonic() - start)


def test_arm64_bundle_takes_the_kernel_from_the_image(tmp_path) -> None:
    require_init()
    require_tool("qemu-system-aarch64")
    root = busybox_tree(tmp_path / "root", "arm64")
    (root / "boot").mkdir()
    shutil.copy(kernel("arm64"), root / "boot" / "vmlinuz-6.1.0-test-arm64")
    os.symlink("boot/vmlinuz-6.1.0-test-arm64", root / "vmlinuz")
    ref = build_image(
        root,
        tmp_path / "img",
        "linux/arm64",
        "--cmd",
        json.dumps(["/bin/sh", "-c", SCRIPT]),
        "--env",
        "GREETING=arm",
        "--workdir",
        "/srv",
    )
    bundle = tmp_path / "bundle"
    dockerify("export", ref, "--format", "stage0", "-o", str(bundle), "--memory", "512M")
    manifest = _check_manifest(bundle)
    assert manifest["files"]["kernel"]["from"] == "/boot/vmlinuz-6.1.0-test-arm64"
    assert "vmlinux" not in manifest["files"] and manifest["contracts"]["legacy"] is None
    result = _run_bundle(bundle, {**os.environ, "ACCEL": "tcg"})
    assert "bundle says arm from /srv" in result.console, result.console[-3000:]
    assert "dockerify-init: exit status 4" in result.console and result.returncode == 0
    legacy = subprocess.run([str(bundle / "run"), "legacy"], capture_output=True, text=True)
    assert legacy.returncode == 2 and "x86-64 only" in legacy.stderr


def _refused(args: list[str], output: Path, *words: str) -> None:
    proc = dockerify("export", *args, "-o", str(output), check=False)
    assert proc.returncode != 0
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
    assert not output.exists()
    assert not [p for p in output.parent.iterdir() if p.name.startswith(f".{output.name}.")]


def test_bundle_refusals(tmp_path) -> None:
    require_init()
    root = busybox_tree(tmp_path / "root", "amd64")
    (root / "blob").write_bytes(os.urandom(6 << 20))
    ref = build_image(root, tmp_path / "img", "linux/amd64", "--cmd", '["/bin/sh"]')
    out = tmp_path / "bundle"
    _refused([ref, "--format", "stage0"], out, "no kernel in /boot", "--kernel")
    _refused([ref, "--format", "stage0", "--kernel", str(tmp_path / "missing")], out, "no such file")
    _refused(
        [ref, "--format", "stage0", "--kernel", str(root / "bin" / "busybox")], out, "not a Linux kernel"
    )
    _refused(
        [ref, "--format", "stage0", "--kernel", str(kernel("amd64")), "--memory", "12M"],
        out,
        "more than half of --memory 12 MiB",
        "give --memory",
    )
    _refused([ref, "--format", "stage0", "--kernel", str(kernel("arm64"))], out, "arm64 kernel")
