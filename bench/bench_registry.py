#!/usr/bin/env python3
"""Push and pull throughput of dockerify against `skopeo copy`, same image, same registry, same run.

    python3 bench/bench_registry.py [--registry 127.0.0.1:5000] [--image oci:DIR[:TAG]] [--size-mib 1024]

Without --image it builds its own image with `dockerify build`: one layer holding SIZE MiB of
random (incompressible) data, compressed with zstd. Every transfer goes to a fresh repository so
nothing is skipped as already present. Prints MB/s (10^6 bytes per second) for each tool and the
ratio dockerify / skopeo (>= 1.0 means dockerify is at least as fast)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path


def run(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return elapsed


def build_image(workdir: Path, size_mib: int) -> tuple[str, int]:
    tree = workdir / "tree"
    (tree / "data").mkdir(parents=True)
    with open(tree / "data" / "random.bin", "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(1 << 20))
    shutil.copy("/bin/busybox", tree / "busybox") if Path("/bin/busybox").exists() else None
    out = workdir / "image"
    print(f"building a {size_mib} MiB image ...", file=sys.stderr)
    run(
        [
            sys.executable,
            "-m",
            "dockerify",
            "build",
            str(tree),
            "--platform",
            "linux/amd64",
            "--compression",
            "zstd",
            "--output",
            f"oci:{out}:bench",
            "-q",
        ]
    )
    shutil.rmtree(tree)
    return f"oci:{out}:bench", blob_bytes(out)


def blob_bytes(layout: Path) -> int:
    return sum(
        p.stat().st_size for p in (layout / "blobs" / "sha256").iterdir() if not p.name.startswith(".")
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--registry", default="127.0.0.1:5000")
    ap.add_argument("--image", help="oci:DIR[:TAG] to use instead of building one")
    ap.add_argument("--size-mib", type=int, default=1024)
    args = ap.parse_args()
    if not shutil.which("skopeo"):
        sys.exit("skopeo is not installed (apt-get install skopeo)")
    with tempfile.TemporaryDirectory(
        prefix="bench-registry-", dir=os.environ.get("TMPDIR", "/var/tmp")
    ) as tmp:
        work = Path(tmp)
        if args.image:
            src = args.image
            layout = Path(src.split(":", 2)[1])
            size = blob_bytes(layout)
        else:
            src, size = build_image(work, args.size_mib)
        run_id = uuid.uuid4().hex[:8]
        repo = f"{args.registry}/bench/{run_id}"
        results: dict[str, float] = {}
        # push: each tool to its own fresh repository (skopeo first, so dockerify never profits
        # from anything skopeo left behind in its blob cache)
        results["skopeo push"] = run(
            ["skopeo", "copy", "-q", "--dest-tls-verify=false", src, f"docker://{repo}-skopeo:v1"]
        )
        results["dockerify push"] = run(
            [sys.executable, "-m", "dockerify", "push", src, f"{repo}-dockerify:v1", "-q"]
        )
        # pull: the same pushed image into fresh OCI layouts
        results["skopeo pull"] = run(
            [
                "skopeo",
                "copy",
                "-q",
                "--src-tls-verify=false",
                f"docker://{repo}-dockerify:v1",
                f"oci:{work / 'pull-skopeo'}:v1",
            ]
        )
        results["dockerify pull"] = run(
            [
                sys.executable,
                "-m",
                "dockerify",
                "pull",
                f"{repo}-dockerify:v1",
                f"oci:{work / 'pull-dockerify'}:v1",
                "-q",
            ]
        )
        mb = size / 1e6
        print(
            f"image: {src if args.image else f'{args.size_mib} MiB random data (built)'}, {mb:.0f} MB of blobs, registry {args.registry}"
        )
        for op in ("push", "pull"):
            ours, theirs = results[f"dockerify {op}"], results[f"skopeo {op}"]
            print(
                f"{op}: dockerify {mb / ours:7.1f} MB/s ({ours:.2f} s)   skopeo {mb / theirs:7.1f} MB/s ({theirs:.2f} s)"
                f"   ratio {theirs / ours:.2f}"
            )
        print(json.dumps({k: round(mb / v, 1) for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
