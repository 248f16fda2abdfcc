"""Benchmark: reading a large rootfs tarball (every header and every content byte), dockerify's
own header parser against Python's tarfile in stream mode (what the reader was built on before).

    python3 bench/bench_tar_read.py [TARBALL]     (default: a tar of /usr/share, made once)

Prints wall and CPU seconds of each reader, best of three runs, and the ratio."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dockerify.sources.tarstream import tar_entries  # noqa: E402

CHUNK = 1 << 20


def _ours(path: Path) -> int:
    total = 0
    with open(path, "rb") as f:
        for entry in tar_entries(f, str(path)):
            for _, data in entry.chunks():
                total += len(data)
    return total


def _tarfile(path: Path) -> int:
    total = 0
    with open(path, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
        for member in tar:
            if member.isreg():
                handle = tar.extractfile(member)
                assert handle is not None
                while data := handle.read(CHUNK):
                    total += len(data)
    return total


def _best(fn: Callable[[Path], int], path: Path) -> tuple[float, float, int]:
    runs = []
    for _ in range(3):
        wall, cpu = time.perf_counter(), time.process_time()
        total = fn(path)
        runs.append((time.perf_counter() - wall, time.process_time() - cpu, total))
    return min(runs)


def main() -> int:
    if len(sys.argv) > 1:
        path = Path(sys.argv[1])
    else:
        path = Path(os.environ.get("TMPDIR", "/tmp")) / "dockerify-bench-usr-share.tar"
        if not path.exists():
            subprocess.run(
                ["tar", "-cf", str(path), "-C", "/", "usr/share"], check=False, stderr=subprocess.DEVNULL
            )
    print(f"tarball: {path} ({path.stat().st_size >> 20} MiB)")
    ours = _best(_ours, path)
    theirs = _best(_tarfile, path)
    assert ours[2] == theirs[2], "both readers must see the same content"
    print(f"{'reader':<28}{'wall s':>9}{'cpu s':>9}")
    print(f"{'dockerify tarheader':<28}{ours[0]:>9.2f}{ours[1]:>9.2f}")
    print(f"{'python tarfile r|':<28}{theirs[0]:>9.2f}{theirs[1]:>9.2f}")
    print(f"cpu ratio dockerify / tarfile: {ours[1] / theirs[1]:.2f} (want <= 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
