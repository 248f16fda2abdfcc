"""Benchmark: an image exported to an SD card and to an initramfs, against the naive pipelines.

    python3 bench/bench_export.py [--image oci:DIR[:TAG]] [--runs N]

Without --image, the builder benchmark's large Pi-style card (bench/common.py) is built into an
OCI layout once (cached under .cache/bench). The naive pipelines start from the same image in the
Docker daemon, as the seed's users did:
  SD card:    docker export | tar -x (as root, with xattrs), mkfs.ext4 -d, mkfs.vfat + mcopy -s,
              sfdisk, dd conv=sparse of both partitions into the card
  initramfs:  docker export | tar -x, then find . | cpio -o -H newc | gzip
Prints wall time and peak RSS (GNU time: the largest process of each pipeline) of every step,
medians over --runs, and each target of issue 10 with PASS or FAIL (exit status 1 when one fails):
SD card and initramfs (gzip) at least 2x and 4x faster than the naive pipelines, peak memory
under 300 MiB. Needs root (the naive tar -x keeps owners
only as root) and the Docker daemon. Not part of the test suite."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, compile_package, dockerify_cmd, large_card, measure, report  # noqa: E402

DAEMON_TAG = "bench/export:latest"


def prepare(image: str | None) -> tuple[str, str | None, Path | None]:
    """The OCI reference to export (gzip layers, the builder's default), the same image with zstd
    layers (None when --image was given), and the card they came from."""
    if image:
        return image, None, None
    card = large_card()
    refs = []
    for compression, name in (("gzip", "export-image"), ("zstd", "export-image-zstd")):
        layout = CACHE / name
        if not (layout / "index.json").is_file():
            subprocess.run(
                dockerify_cmd(
                    "build", "-q", str(card), "--compression", compression, "--output", f"oci:{layout}:latest"
                ),
                check=True,
                stdout=subprocess.DEVNULL,
            )
        refs.append(f"oci:{layout}:latest")
    return refs[0], refs[1], card


def to_daemon(ref: str) -> None:
    if subprocess.run(["docker", "image", "inspect", DAEMON_TAG], capture_output=True).returncode == 0:
        return
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        archive = Path(tmp) / "image.tar"
        subprocess.run(
            dockerify_cmd("export", ref, "--format", "rootfs-tar", "-o", str(archive)), check=True
        )  # not timed: only to give the naive pipeline the same tree
        config = json.loads(
            subprocess.run(dockerify_cmd("inspect", ref, "--json"), capture_output=True, check=True).stdout
        )
        platform = config["manifests"][0]["platform"]
        subprocess.run(
            ["docker", "import", "--platform", platform, str(archive), DAEMON_TAG],
            check=True,
            capture_output=True,
        )


def naive_sdcard(out: Path, boot_mount: str) -> str:
    work = out / "naive-tree"
    card = out / "naive.img"
    return f"""
set -e
rm -rf {work} && mkdir -p {work}/root {work}/boot
cid=$(docker create {DAEMON_TAG} /bin/true)
docker export "$cid" | tar --xattrs --xattrs-include='*' --numeric-owner -xpf - -C {work}/root
docker rm "$cid" >/dev/null
if [ -d {work}/root{boot_mount} ]; then
  find {work}/root{boot_mount} -mindepth 1 -maxdepth 1 -exec mv -t {work}/boot {{}} +
fi
root_kib=$(( $(du -sk --apparent-size {work}/root | cut -f1) * 13 / 10 + 65536 ))
truncate -s 0 {work}/root.img {work}/boot.img
mkfs.ext4 -q -F -d {work}/root {work}/root.img ${{root_kib}}k
mkfs.vfat -F 32 -C {work}/boot.fat $((256 * 1024)) >/dev/null
if [ -n "$(ls -A {work}/boot)" ]; then MTOOLS_SKIP_CHECK=1 mcopy -s -m -i {work}/boot.fat {work}/boot/* ::/; fi
root_sectors=$(( root_kib * 2 ))
truncate -s $(( (8192 + 256 * 2048 + root_sectors) * 512 )) {card}
printf 'label: dos\\nstart=8192, size={256 * 2048}, type=c\\nstart={8192 + 256 * 2048}, size='$root_sectors', type=83\\n' \\
  | sfdisk -q {card}
dd if={work}/boot.fat of={card} bs=1M seek=4 conv=notrunc,sparse status=none
dd if={work}/root.img of={card} bs=1M seek={4 + 256} conv=notrunc,sparse status=none
rm -rf {work}
"""


def naive_initramfs(out: Path) -> str:
    work = out / "naive-initrd"
    return f"""
set -e
rm -rf {work} && mkdir -p {work}
cid=$(docker create {DAEMON_TAG} /bin/true)
docker export "$cid" | tar --numeric-owner -xpf - -C {work}
docker rm "$cid" >/dev/null
cd {work} && find . | cpio -o -H newc --quiet | gzip > {out}/naive.cpio.gz
rm -rf {work}
"""


def median(samples: list[tuple[float, int]]) -> tuple[float, int]:
    return statistics.median(s[0] for s in samples), max(s[1] for s in samples)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image", help="oci:DIR[:TAG] (default: build the builder benchmark's large card)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each step; the median is shown")
    parser.add_argument("--skip-naive", action="store_true", help="only dockerify's own figures")
    args = parser.parse_args()
    if os.geteuid() != 0 and not args.skip_naive:
        print(
            "the naive pipelines need root (tar -x keeping owners); run as root or --skip-naive",
            file=sys.stderr,
        )
        return 2
    compile_package()
    ref, zstd_ref, card = prepare(args.image)
    if card is not None:
        print(
            f"card: {card} ({card.stat().st_size >> 20} MiB, {card.stat().st_blocks * 512 >> 20} MiB allocated)"
        )
    print(f"image: {ref}")
    CACHE.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, float, int]] = []
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        out = Path(tmp)
        sd = [
            measure(dockerify_cmd("export", "-q", ref, "--format", "sdcard", "-o", str(out / "card.img")))
            for _ in range(args.runs)
        ]
        d_sd = median(sd)
        rows.append(("dockerify export --format sdcard (gzip layers)", *d_sd))
        d_sdz = None
        if zstd_ref:
            sdz = [
                measure(
                    dockerify_cmd(
                        "export", "-q", zstd_ref, "--format", "sdcard", "-o", str(out / "cardz.img")
                    )
                )
                for _ in range(args.runs)
            ]
            d_sdz = median(sdz)
            rows.append(("dockerify export --format sdcard (zstd layers)", *d_sdz))
            (out / "cardz.img").unlink()
        info = json.loads(
            subprocess.run(
                dockerify_cmd(
                    "export", "-q", ref, "--format", "sdcard", "-o", str(out / "card2.img"), "--json"
                ),
                capture_output=True,
                check=True,
            ).stdout
        )
        boot_mount = info["boot"]["mountpoint"]
        st = (out / "card.img").stat()
        print(f"card written: {st.st_size >> 20} MiB, {st.st_blocks * 512 >> 20} MiB allocated")
        (out / "card2.img").unlink()
        ir = [
            measure(
                dockerify_cmd(
                    "export",
                    "-q",
                    ref,
                    "--format",
                    "initramfs",
                    "--cmd",
                    "/bin/sh",
                    "-o",
                    str(out / "initrd.gz"),
                )
            )
            for _ in range(args.runs)
        ]
        d_ir = median(ir)
        rows.append(("dockerify export --format initramfs (gzip)", *d_ir))
        ir_z = [
            measure(
                dockerify_cmd(
                    "export",
                    "-q",
                    ref,
                    "--format",
                    "initramfs",
                    "--cmd",
                    "/bin/sh",
                    "-o",
                    str(out / "initrd.zst"),
                )
            )
            for _ in range(args.runs)
        ]
        rows.append(("dockerify export --format initramfs (zstd)", *median(ir_z)))
        print(
            f"initramfs: {(out / 'initrd.gz').stat().st_size >> 20} MiB gzip, "
            f"{(out / 'initrd.zst').stat().st_size >> 20} MiB zstd"
        )
        for name in ("card.img", "initrd.gz", "initrd.zst"):
            (out / name).unlink(missing_ok=True)
        ratios = []
        if not args.skip_naive:
            to_daemon(ref)
            n_sd = median([measure(naive_sdcard(out, boot_mount)) for _ in range(args.runs)])
            rows.append(("naive: docker export, tar -x, mkfs.ext4 -d, mkfs.vfat+mcopy, sfdisk", *n_sd))
            n_ir = median([measure(naive_initramfs(out)) for _ in range(args.runs)])
            rows.append(("naive: docker export, tar -x, find | cpio | gzip", *n_ir))
            ratios = [
                ("sdcard: naive / dockerify (speed-up)", n_sd[0] / d_sd[0], ">= 2"),
                *(
                    [("sdcard, zstd layers: naive / dockerify (speed-up)", n_sd[0] / d_sdz[0], ">= 2")]
                    if d_sdz
                    else []
                ),
                ("initramfs (gzip): naive / dockerify (speed-up)", n_ir[0] / d_ir[0], ">= 4"),
            ]
        shutil.rmtree(out / "naive-tree", ignore_errors=True)
    peak = max(r[2] for r in rows if r[0].startswith("dockerify"))
    ratios.append(("dockerify peak memory (MiB)", peak / 1024, "< 300"))
    return 0 if report(rows, ratios) else 1


if __name__ == "__main__":
    sys.exit(main())
