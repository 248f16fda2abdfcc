"""The command line as a new user meets it: each run is a fresh `python -m dockerify` process, and
each test checks the message, the exit status and what was (or was not) written."""

from __future__ import annotations

import argparse
import fcntl
import gzip
import json
import os
import pty
import re
import stat
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from dockerify.cli.app import build_parser
from dockerify.cli.export import undockerify_parser
from dockerify.cli.run import pi_parser
from dockerify.oci.refs import ImageRef, resolve_ref
from tests.conftest import dockerify
from tests.fixtures import FIXTURES_DIR, entry
from tests.integration.test_registry_artifact import skopeo_raw
from tests.integration.test_registry_support import unique

PASSWORD = {"DOCKERIFY_KEY_PASSWORD": "correct horse"}


def _rootfs() -> str:
    entry("rootfs-amd64.tar.gz")
    return str(FIXTURES_DIR / "rootfs-amd64.tar.gz")


def _one_error(proc: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    """The error line and the hint line: nothing else on stderr, no traceback."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 2 and lines[0].startswith("dockerify: error: "), proc.stderr
    assert lines[1].startswith("hint: "), proc.stderr
    return lines[0], lines[1]


def _files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


# ---------------------------------------------------------------- where images go


def test_build_says_where_the_image_went(tmp_path: Path) -> None:
    proc = dockerify("build", _rootfs(), "--output", f"oci:{tmp_path / 'l'}:v1")
    digest = proc.stdout.strip()
    went = [line for line in proc.stderr.splitlines() if "image written to" in line]
    assert went == [f"image written to oci:{tmp_path / 'l'}:v1: {digest}"]
    quiet = dockerify("build", "-q", _rootfs(), "--output", f"oci:{tmp_path / 'l'}:v2")
    assert quiet.stderr == "" and quiet.stdout.strip() == digest


def test_seed_positional_name_fails_before_any_work(tmp_path: Path) -> None:
    proc = dockerify("build", _rootfs(), "pi-seed:v1", check=False, cwd=tmp_path)
    error, hint = _one_error(proc)
    assert error == "dockerify: error: pi-seed:v1: no such file (every argument of build is a source)"
    assert hint == f"hint: to name the image, write: dockerify build {_rootfs()} -t pi-seed:v1"
    assert _files(tmp_path) == []


def test_a_missing_second_source_fails_before_the_first_is_built(tmp_path: Path) -> None:
    out = tmp_path / "out.tar"
    proc = dockerify(
        "build",
        f"linux/amd64={_rootfs()}",
        "linux/arm64=gone.img",
        "--output",
        f"oci-archive:{out}",
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode != 0 and "gone.img: no such file or directory" in proc.stderr
    assert "entries" not in proc.stderr  # nothing was read
    assert _files(tmp_path) == []


@pytest.mark.parametrize(
    ("output", "message", "hint"),
    [
        ("oci-archive:{d}/missing/x.tar", "directory {d}/missing does not exist", "mkdir -p {d}/missing"),
        ("oci-archive:{d}", "{d} is a directory, and an oci-archive: output is a file", "{d}/image.tar"),
        (
            "docker-archive:{d}",
            "{d} is a directory, and an docker-archive: output is a file",
            "{d}/image.tar",
        ),
        ("oci:{d}/file", "{d}/file is a file, and an oci: layout is a directory", "oci-archive:{d}/file"),
    ],
)
def test_unwritable_output_is_one_line_before_any_work(
    tmp_path: Path, output: str, message: str, hint: str
) -> None:
    (tmp_path / "file").write_text("mine\n")
    proc = dockerify("build", _rootfs(), "--output", output.format(d=tmp_path), check=False)
    error, hint_line = _one_error(proc)
    assert message.format(d=tmp_path) in error and hint.format(d=tmp_path) in hint_line
    assert "entries" not in proc.stderr
    assert _files(tmp_path) == ["file"] and (tmp_path / "file").read_text() == "mine\n"


def test_export_to_a_missing_directory_or_onto_a_directory(tmp_path: Path) -> None:
    layout = tmp_path / "l"
    dockerify("build", "-q", _rootfs(), "--output", f"oci:{layout}:v1")
    missing = dockerify(
        "export", f"oci:{layout}:v1", "-f", "rootfs-tar", "-o", str(tmp_path / "no" / "r.tar"), check=False
    )
    assert missing.returncode != 0 and f"directory {tmp_path / 'no'} does not exist" in missing.stderr
    (tmp_path / "d").mkdir()
    onto = dockerify("export", f"oci:{layout}:v1", "-f", "rootfs-tar", "-o", str(tmp_path / "d"), check=False)
    assert onto.returncode != 0 and "is a directory" in onto.stderr and "Traceback" not in onto.stderr
    assert _files(tmp_path / "d") == [] and not (tmp_path / "no").exists()


# ---------------------------------------------------------------- how names are read


def test_resolution_rule_for_names() -> None:
    assert resolve_ref("pi:latest") == ImageRef("docker-daemon", "pi:latest")
    assert resolve_ref("dockerify-test/run") == ImageRef("docker-daemon", "dockerify-test/run")
    assert resolve_ref("127.0.0.1:5000/demo/pi:v1") == ImageRef("registry", "127.0.0.1:5000/demo/pi:v1")
    assert resolve_ref("localhost/pi") == ImageRef("registry", "localhost/pi")
    assert resolve_ref("docker.io/library/debian:12") == ImageRef("registry", "docker.io/library/debian:12")
    assert resolve_ref("docker-daemon:pi") == ImageRef("docker-daemon", "pi")
    assert resolve_ref("oci:/x:v1") == ImageRef("oci", "/x", "v1")


def test_local_paths_are_read_as_what_they_are(tmp_path: Path) -> None:
    layout, archive, docker_archive = tmp_path / "l", tmp_path / "a.oci.tar", tmp_path / "d.tar"
    dockerify("build", "-q", _rootfs(), "--output", f"oci:{layout}:v1")
    dockerify("build", "-q", _rootfs(), "--output", f"oci-archive:{archive}")
    dockerify("build", "-q", _rootfs(), "-t", "x:v1", "--output", f"docker-archive:{docker_archive}")
    for path, kind in ((layout, "oci"), (archive, "oci-archive"), (docker_archive, "docker-archive")):
        info = json.loads(dockerify("inspect", "--json", str(path)).stdout)
        assert info["image"].startswith(f"{kind}:{path}") and info["platforms"] == ["linux/amd64"]
        out = tmp_path / f"{kind}.tar"
        dockerify("export", "-q", str(path), "-f", "rootfs-tar", "-o", str(out))
        assert out.stat().st_size > 0
    source = json.loads(dockerify("inspect", "--json", _rootfs()).stdout)
    assert "image" not in source
    proc = dockerify("export", _rootfs(), "-f", "rootfs-tar", "-o", str(tmp_path / "x.tar"), check=False)
    error, hint = _one_error(proc)
    assert "not an image" in error and "dockerify build" in hint
    assert not (tmp_path / "x.tar").exists()
    # A path that is not there and no name either: said plainly, not "invalid repository name".
    gone = dockerify("inspect", str(tmp_path / "gone"), check=False)
    assert gone.returncode != 0 and "gone: no such file" in gone.stderr


# ---------------------------------------------------------------- commands and their text


def test_cmd_is_words_not_a_shell(tmp_path: Path) -> None:
    """README: --cmd takes a JSON array or words split as a shell would; no shell runs them."""
    layout = tmp_path / "l"
    dockerify("build", "-q", _rootfs(), "--cmd", "echo a && echo 'b c'", "--output", f"oci:{layout}:v1")
    info = json.loads(dockerify("inspect", "--json", f"oci:{layout}:v1").stdout)
    assert info["manifests"][0]["config"]["Cmd"] == ["echo", "a", "&&", "echo", "b c"]
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "no shell runs them" in readme


def test_version() -> None:
    proc = dockerify("--version")
    assert proc.stdout.strip().startswith("dockerify ") and proc.returncode == 0


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    found = [("undockerify", undockerify_parser()), ("pi", pi_parser())]
    top = build_parser()
    found.append(("dockerify", top))
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += [(f"dockerify {name}", p) for name, p in action.choices.items()]
    return found


def test_every_option_and_positional_has_help() -> None:
    missing = [
        f"{prog}: {'/'.join(a.option_strings) or a.dest}"
        for prog, parser in _parsers()
        for a in parser._actions
        if not a.help and not isinstance(a, argparse._SubParsersAction)
    ]
    assert not missing, missing
    assert len(_parsers()) >= 20


def test_max_size_only_where_input_is_decompressed() -> None:
    has = {prog for prog, p in _parsers() if any("--max-size" in a.option_strings for a in p._actions)}
    assert {"dockerify build", "dockerify inspect", "dockerify diff", "dockerify export"} <= has
    assert not has & {"dockerify keygen", "dockerify login", "dockerify sign", "dockerify binfmt"}
    proc = dockerify("keygen", "--max-size", "1G", check=False)
    assert proc.returncode == 2 and "unrecognized arguments: --max-size" in proc.stderr


def test_json_on_diff_binfmt_keygen_sign(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "f").write_text("same\n")
    (b / "g").write_text("new\n")
    diff = dockerify("diff", "--json", str(a), str(b), check=False)
    assert diff.returncode == 1 and json.loads(diff.stdout)["differences"]
    binfmt = dockerify("binfmt", "--json", check=False)
    assert set(json.loads(binfmt.stdout)["handlers"]) == {"arm64", "arm", "riscv64"}
    keys = json.loads(
        dockerify("keygen", "--json", "--output-key-prefix", str(tmp_path / "k"), env=PASSWORD).stdout
    )
    assert keys["key"] == str(tmp_path / "k.key") and Path(keys["pub"]).is_file()
    layout = tmp_path / "l"
    dockerify("build", "-q", _rootfs(), "--output", f"oci:{layout}:v1")
    signed = json.loads(
        dockerify("sign", "--json", f"oci:{layout}:v1", "--key", keys["key"], env=PASSWORD).stdout
    )
    assert len(signed) == 1 and signed[0]["added"] and signed[0]["digest"].startswith("sha256:")


def test_quiet_keeps_warnings_and_says_so() -> None:
    text = dockerify("build", "--help").stdout
    assert "warnings and errors still show" in " ".join(text.split())


# ---------------------------------------------------------------- outputs


def test_overwrite_rule(tmp_path: Path) -> None:
    """Files are replaced, as docker save -o and skopeo copy do; a private key is kept unless
    --force; a directory output must be new or empty."""
    layout, out = tmp_path / "l", tmp_path / "r.tar"
    dockerify("build", "-q", _rootfs(), "--output", f"oci:{layout}:v1")
    out.write_text("old\n")
    dockerify("export", "-q", f"oci:{layout}:v1", "-f", "rootfs-tar", "-o", str(out))
    assert out.stat().st_size > 1024
    archive = tmp_path / "a.tar"
    archive.write_text("old\n")
    dockerify("build", "-q", _rootfs(), "--output", f"oci-archive:{archive}")
    assert archive.stat().st_size > 1024
    dockerify("keygen", "--output-key-prefix", str(tmp_path / "k"), env=PASSWORD)
    key = (tmp_path / "k.key").read_bytes()
    again = dockerify("keygen", "--output-key-prefix", str(tmp_path / "k"), env=PASSWORD, check=False)
    assert again.returncode != 0 and "--force" in again.stderr and (tmp_path / "k.key").read_bytes() == key
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "mine").write_text("x")
    onto = dockerify(
        "export", f"oci:{layout}:v1", "-f", "rootfs-dir", "-o", str(tmp_path / "dir"), check=False
    )
    assert onto.returncode != 0 and (tmp_path / "dir" / "mine").read_text() == "x"


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_outputs_follow_the_umask(tmp_path: Path, mask: int) -> None:
    layout, tar = tmp_path / "l", tmp_path / "r.tar"

    def run(*args: str) -> None:
        proc = subprocess.run(
            [sys.executable, "-m", "dockerify", *args],
            capture_output=True,
            text=True,
            preexec_fn=lambda: os.umask(mask),
        )
        assert proc.returncode == 0, proc.stderr

    run("build", "-q", _rootfs(), "--output", f"oci:{layout}:v1")
    run("export", "-q", f"oci:{layout}:v1", "-f", "rootfs-tar", "-o", str(tar))
    modes = {stat.S_IMODE(p.stat().st_mode) for p in [layout, *layout.rglob("*")] if p.is_dir()}
    assert modes == {0o777 & ~mask}
    modes = {stat.S_IMODE(p.stat().st_mode) for p in layout.rglob("*") if p.is_file()}
    assert modes == {0o666 & ~mask}
    assert stat.S_IMODE(tar.stat().st_mode) == 0o666 & ~mask


# ---------------------------------------------------------------- run and pi


def test_missing_docker_cli_is_one_line_before_any_work(tmp_path: Path) -> None:
    env = {"DOCKERIFY_DOCKER": str(tmp_path / "no-docker")}
    proc = dockerify("run", "--no-interactive", "pi:latest", "true", env=env, check=False)
    error, hint = _one_error(proc)
    assert "the docker CLI" in error and "not on PATH" in error and "DOCKERIFY_DOCKER" in hint


def test_pi_without_bash_starts_sh(tmp_path: Path, docker_daemon: str) -> None:
    dockerify("build", "-q", _rootfs(), "--output", "docker-daemon:dockerify-cli/nobash:v1")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from dockerify.cli import pi_main; sys.exit(pi_main())",
            "--no-interactive",
            "dockerify-cli/nobash:v1",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "pi: dockerify-cli/nobash:v1 has no bash; starting /bin/sh"
    assert "executable file not found" not in proc.stderr


def test_bash_completion_completes_commands_and_options(tmp_path: Path) -> None:
    script = dockerify("completion", "bash").stdout
    assert "complete" in script and "export" in script
    (tmp_path / "c.sh").write_text(script)
    # Ask bash itself what `dockerify exp<TAB>` and `dockerify export --for<TAB>` complete to.
    probe = (
        f"source {tmp_path / 'c.sh'}; "
        "f=$(complete -p dockerify | sed -E 's/.*-F ([^ ]+).*/\\1/'); "
        "COMP_WORDS=(dockerify exp); COMP_CWORD=1; COMP_LINE='dockerify exp'; COMP_POINT=13; "
        '$f dockerify exp dockerify; echo "${COMPREPLY[@]}"; '
        "COMP_WORDS=(dockerify export --for); COMP_CWORD=2; COMP_LINE='dockerify export --for'; "
        'COMP_POINT=22; $f dockerify --for export; echo "${COMPREPLY[@]}"'
    )
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True).stdout.split("\n")
    assert "export" in out[0].split() and "--format" in out[1].split(), out


# ---------------------------------------------------------------- artifacts


def test_push_artifact_type_from_content_and_pull_keeps_a_card_sparse(registry: str, tmp_path: Path) -> None:
    card = tmp_path / "card.img"
    with open(card, "wb") as f:
        mbr = bytearray(512)
        mbr[510:512] = b"\x55\xaa"
        f.write(mbr)
        f.seek(32 << 20)
        f.write(b"data in the middle")
        f.truncate(64 << 20)
    cpio = tmp_path / "initrd.cpio.gz"
    with gzip.open(cpio, "wb") as g:
        g.write(b"070701" + b"0" * 104 + b"TRAILER!!!\0\0")
    kinds = {}
    for path in (card, cpio):
        ref = f"{registry}/{unique('cli-artifact')}:v1"
        pushed = json.loads(dockerify("push-artifact", "-q", "--json", str(path), ref).stdout)
        (layer,) = skopeo_raw(ref)["layers"]
        kinds[path.name] = (pushed["artifactType"], layer["mediaType"])
        if path == card:
            out = tmp_path / "pulled.img"
            dockerify("pull-artifact", "-q", ref, str(out))
            assert out.read_bytes() == card.read_bytes()
            assert out.stat().st_blocks * 512 < (1 << 20), "the pulled card is not sparse"
            assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~_umask()
    assert kinds == {
        "card.img": ("application/vnd.dockerify.sdcard.v1", "application/vnd.dockerify.sdcard.image.v1"),
        "initrd.cpio.gz": ("application/vnd.dockerify.file.v1", "application/x-cpio+gzip"),
    }


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------- progress


def _on_a_terminal(*args: str) -> str:
    """Run the CLI with stderr on a pseudo-terminal (so bars are drawn); what the terminal got."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal has a width
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockerify", *args],
        stdout=subprocess.DEVNULL,
        stderr=slave,
        stdin=subprocess.DEVNULL,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait() == 0
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.fixtures
def test_progress_bar_has_total_and_log_lines_go_above_it(tmp_path: Path, registry: str) -> None:
    entry("pi-arm64.img")
    screen = _on_a_terminal(
        "build", str(FIXTURES_DIR / "pi-arm64.img"), "--output", f"oci:{tmp_path / 'l'}:v1"
    )
    # The Pi fixup's message is logged while the layer's bar is drawn: it starts a line of its own.
    at = screen.index("neutralised libarmmem")
    assert screen[at - 1] in "\r\n", repr(screen[max(0, at - 80) : at + 20])
    card = tmp_path / "big.img"
    with open(card, "wb") as f:
        f.write(os.urandom(8 << 20))
    ref = f"{registry}/{unique('cli-progress')}:v1"
    screen = _on_a_terminal("push-artifact", str(card), ref)
    bar = next(line for line in re.split(r"[\r\n]", screen) if line.startswith("pushing big.img"))
    assert re.search(r"\d+%\|.*\| [\d.]+\w?/8\.00M \[[\d:]+<[\d:?]+", bar), bar  # percentage, total, ETA


def test_run_json(tmp_path: Path, docker_daemon: str) -> None:
    dockerify("build", "-q", _rootfs(), "--output", "docker-daemon:dockerify-cli/json:v1")
    proc = dockerify(
        "run",
        "--json",
        "--no-interactive",
        "dockerify-cli/json:v1",
        "sh",
        "-c",
        "echo hi; exit 3",
        check=False,
        cwd=tmp_path,
    )
    result = json.loads(proc.stdout)
    assert proc.returncode == 3 and result["exit_code"] == 3
    assert result["platform"] == "linux/amd64" and result["image"] == "dockerify-cli/json:v1"


def test_directory_where_a_file_is_expected(tmp_path: Path) -> None:
    proc = dockerify("push-artifact", str(tmp_path), "127.0.0.1:5000/cli/dir:v1", check=False)
    error, hint = _one_error(proc)
    assert error == f"dockerify: error: {tmp_path}: is a directory, not a file"
    layout = tmp_path / "l"
    dockerify("build", "-q", _rootfs(), "--output", f"oci:{layout}:v1")
    proc = dockerify(
        "export",
        f"oci:{layout}:v1",
        "-f",
        "stage0",
        "-o",
        str(tmp_path / "b"),
        "--kernel",
        str(tmp_path),
        check=False,
    )
    assert proc.returncode != 0 and f"--kernel {tmp_path}: is a directory, not a file" in proc.stderr
    assert not (tmp_path / "b").exists()


@pytest.mark.fixtures
def test_undockerify_says_where_it_wrote(tmp_path: Path) -> None:
    entry("pi-arm64.img")
    layout = tmp_path / "l"
    dockerify("build", "-q", str(FIXTURES_DIR / "pi-arm64.img"), "--output", f"oci:{layout}:v1")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from dockerify.cli import undockerify_main; sys.exit(undockerify_main())",
            f"oci:{layout}:v1",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    card = tmp_path / "l-v1.img"
    assert f"SD-card image written to {card}" in proc.stderr.splitlines()
    assert proc.stdout.strip() == "l-v1.img" and card.stat().st_size > 0
