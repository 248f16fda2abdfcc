"""Benchmark of issue 12: `build --chunked` against the one-layer build, and the bytes an
update moves.

    python3 bench/bench_chunked.py [--scale N] [--registry HOST:PORT]

1. Build time: the large Pi-style card of bench_build.py (no dpkg database: split by
   directory) and a generated card with a dpkg database (tests/cardgen.py, --scale times
   27 MiB), each as one layer and --chunked, gzip to oci:. Target: chunked within 1.3x.
2. Bytes moved: version 1 of the generated card pushed, then version 2 (packages added, removed,
   upgraded) pushed to the same repository, and pulled into a layout holding version 1; chunked
   against one layer. Target: at most 25 % of version 2's compressed size.
Prints each figure and pass/fail per target."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from common import dockerify_cmd, large_card, measure  # noqa: E402

from tests.cardgen import make_card  # noqa: E402


def run_json(*args: str) -> dict:
    proc = subprocess.run(dockerify_cmd(*args, "--json"), capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def image_size(layout: Path) -> int:
    index = json.loads((layout / "index.json").read_text())
    m = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text())
    return m["config"]["size"] + sum(layer["size"] for layer in m["layers"])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=20, help="generated card size in units of 27 MiB")
    ap.add_argument("--registry", default="127.0.0.1:5000")
    ap.add_argument("--skip-large", action="store_true", help="leave out the large card (no dpkg)")
    args = ap.parse_args()
    results: list[tuple[str, str, bool]] = []
    with tempfile.TemporaryDirectory(prefix="bench-chunked-") as tmp:
        out = Path(tmp)
        t0 = time.monotonic()
        for version in (1, 2):
            make_card(out / f"v{version}", version, args.scale)
        print(f"generated two card versions in {time.monotonic() - t0:.1f} s (scale {args.scale})")
        sources = [("generated card (dpkg)", out / "v1", ["--platform", "linux/arm64"])]
        if not args.skip_large:
            sources.insert(0, ("large card (no dpkg)", large_card(), []))
        print(f"{'build':40} {'one layer s':>12} {'chunked s':>10} {'ratio':>6} {'peak MiB (1/chunked)':>22}")
        for name, src, extra in sources:
            one, one_peak = measure(dockerify_cmd("build", "-q", *extra, str(src), "-o", f"oci:{out / 'b1'}"))
            ch, ch_peak = measure(
                dockerify_cmd("build", "-q", "--chunked", *extra, str(src), "-o", f"oci:{out / 'b2'}")
            )
            subprocess.run(["rm", "-rf", str(out / "b1"), str(out / "b2")], check=True)
            ratio = ch / one
            peaks = f"{one_peak / 1024:.0f} / {ch_peak / 1024:.0f}"
            print(f"{name:40} {one:12.2f} {ch:10.2f} {ratio:6.2f} {peaks:>22}")
            results.append(
                (f"build time {name}: chunked/one-layer {ratio:.2f} (target <= 1.3)", "", ratio <= 1.3)
            )
        layouts = {}
        for mode, flags in (("chunked", ["--chunked"]), ("one", [])):
            for version in (1, 2):
                layout = out / f"{mode}-v{version}"
                subprocess.run(
                    dockerify_cmd(
                        "build",
                        "-q",
                        "--platform",
                        "linux/arm64",
                        *flags,
                        str(out / f"v{version}"),
                        "-o",
                        f"oci:{layout}:t",
                    ),
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
                layouts[(mode, version)] = layout
        print(f"{'update v1 -> v2':40} {'v2 size':>12} {'push moved':>12} {'pull moved':>12}")
        for mode in ("chunked", "one"):
            repo = f"{args.registry}/bench-chunked-{mode}-{uuid.uuid4().hex[:8]}"
            run_json("push", "-q", f"oci:{layouts[(mode, 1)]}:t", f"{repo}:v1")
            pushed = run_json("push", "-q", f"oci:{layouts[(mode, 2)]}:t", f"{repo}:v2")["bytes_moved"]
            device = out / f"device-{mode}"
            run_json("pull", "-q", f"{repo}:v1", f"oci:{device}:v1")
            pulled = run_json("pull", "-q", f"{repo}:v2", f"oci:{device}:v2")["bytes_moved"]
            size = image_size(layouts[(mode, 2)])
            print(f"{mode:40} {size:12} {pushed:12} {pulled:12}  ({pushed / size:.1%} / {pulled / size:.1%})")
            if mode == "chunked":
                results.append(
                    (f"v2 push moved {pushed / size:.1%} of v2 (target <= 25%)", "", pushed <= 0.25 * size)
                )
                results.append(
                    (f"v2 pull moved {pulled / size:.1%} of v2 (target <= 25%)", "", pulled <= 0.25 * size)
                )
    for text, _, ok in results:
        print(f"{verdict(ok)}  {text}")
    return 0 if all(ok for _, _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
