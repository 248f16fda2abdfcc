"""Acceptance 3 and 4: a 2 GiB blob pushed and pulled in bounded memory; a connection cut in
the middle of an upload or a download still ends in a correct transfer; a byte flipped on the
way makes pull fail with a digest error and write nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.integration import test_registry_support as support
from tests.integration.test_registry_support import (
    proxy,
    root_of,
    run_cli,
    sha256_file,
    unique,
)

pytestmark = pytest.mark.registry
# session fixtures shared by the registry tests
busybox_dirs = support.busybox_dirs
single_image = support.single_image
PEAK_LIMIT_KIB = 200 * 1024


def peak_rss_kib(
    *args: str, env: dict[str, str] | None = None
) -> tuple[int, subprocess.CompletedProcess[str]]:
    """Run the CLI under /usr/bin/time and return its peak resident set size in KiB."""
    require_tool("/usr/bin/time")
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "PEAK_RSS_KIB=%M", sys.executable, "-m", "dockerify", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr
    line = [x for x in proc.stderr.splitlines() if x.startswith("PEAK_RSS_KIB=")][-1]
    return int(line.split("=", 1)[1]), proc


def registry_port(registry: str) -> int:
    return int(registry.rsplit(":", 1)[1])


def test_two_gib_blob_in_bounded_memory(registry: str, tmp_path: Path) -> None:
    big = tmp_path / "card.img"
    with open(big, "wb") as f:  # sparse, with a few bytes of data so it is not all zeros
        f.truncate(2 << 30)
        for offset in (0, 1 << 30, (2 << 30) - 7):
            f.seek(offset)
            f.write(b"dockerify"[: min(9, (2 << 30) - offset)])
    ref = f"{registry}/{unique('big')}:v1"
    push_peak, pushed = peak_rss_kib("push-artifact", str(big), ref, "--platform", "linux/arm64", "-q")
    out = tmp_path / "back.img"
    pull_peak, _ = peak_rss_kib("pull-artifact", ref, str(out), "-q")
    print(
        f"\n2 GiB artifact: push peak RSS {push_peak / 1024:.1f} MiB, pull peak RSS {pull_peak / 1024:.1f} MiB"
    )
    assert push_peak < PEAK_LIMIT_KIB, f"push peaked at {push_peak} KiB"
    assert pull_peak < PEAK_LIMIT_KIB, f"pull peaked at {pull_peak} KiB"
    assert out.stat().st_size == big.stat().st_size
    assert sha256_file(out) == sha256_file(big)


def test_upload_survives_a_cut_connection(registry: str, tmp_path: Path) -> None:
    blob = tmp_path / "random.img"
    blob.write_bytes(os.urandom(24 << 20))
    with proxy(registry_port(registry), cut_upload_after=10 << 20) as p:
        ref = f"{p.host}/{unique('cut-up')}:v1"
        r = run_cli(
            "push-artifact",
            str(blob),
            ref,
            "--chunk-size",
            "4M",
            "--debug",
            env={**os.environ, "DOCKERIFY_RETRY_BACKOFF": "0.05"},
        )
        assert p.cuts == 1
        assert "restarting upload" in r.stderr or "resuming upload" in r.stderr
    # read back directly from the registry, not through the proxy
    direct = ref.replace(p.host, registry)
    out = tmp_path / "back.img"
    run_cli("pull-artifact", direct, str(out))
    assert out.read_bytes() == blob.read_bytes()


def test_download_survives_a_cut_connection(registry: str, tmp_path: Path) -> None:
    blob = tmp_path / "random.img"
    blob.write_bytes(os.urandom(12 << 20))
    ref = f"{registry}/{unique('cut-down')}:v1"
    run_cli("push-artifact", str(blob), ref)
    with proxy(registry_port(registry), cut_download_after=5 << 20) as p:
        out = tmp_path / "back.img"
        r = run_cli(
            "pull-artifact",
            ref.replace(registry, p.host),
            str(out),
            "--debug",
            env={**os.environ, "DOCKERIFY_RETRY_BACKOFF": "0.05"},
        )
        assert p.cuts == 1
        assert "-> 206" in r.stderr  # resumed with a Range request
    assert out.read_bytes() == blob.read_bytes()


def test_flipped_byte_fails_pull_and_writes_nothing(
    registry: str, single_image: Path, tmp_path: Path
) -> None:
    ref = f"{registry}/{unique('flip')}:v1"
    run_cli("push", f"oci:{single_image}:v1", ref)
    layer = max(
        json.loads(
            (single_image / "blobs" / "sha256" / root_of(single_image, "v1")["digest"][7:]).read_text()
        )["layers"],
        key=lambda d: d["size"],
    )
    assert layer["size"] > 300_000
    env = {**os.environ, "DOCKERIFY_RETRY_BACKOFF": "0.05"}
    with proxy(registry_port(registry), flip_at=200_000) as p:
        bad_ref = ref.replace(registry, p.host)
        # into a new layout, an archive, and an existing layout: each fails, nothing is written
        # (a layout holding another image: one holding this one's blobs would fetch nothing)
        existing = tmp_path / "existing"
        small = tmp_path / "small"
        small.mkdir()
        (small / "hello.txt").write_text("hello\n")
        run_cli("build", str(small), "--platform", "linux/amd64", "-o", f"oci:{existing}:old", "-q")
        before = (sorted(os.listdir(existing / "blobs" / "sha256")), (existing / "index.json").read_bytes())
        for dest in (f"oci:{tmp_path / 'new'}", f"oci-archive:{tmp_path / 'new.tar'}", f"oci:{existing}:new"):
            r = run_cli("pull", bad_ref, dest, env=env, check=False)
            assert r.returncode != 0
            assert "digest mismatch" in r.stderr and layer["digest"] in r.stderr, r.stderr
        assert p.flips >= 3
    assert not (tmp_path / "new").exists() and not (tmp_path / "new.tar").exists()
    assert [n for n in os.listdir(tmp_path) if n.startswith(".")] == []
    assert (
        sorted(os.listdir(existing / "blobs" / "sha256")),
        (existing / "index.json").read_bytes(),
    ) == before
    assert [n for n in os.listdir(existing) if n.startswith(".")] == []
