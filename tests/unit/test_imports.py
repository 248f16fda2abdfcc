"""The package's import graph, read with ast from dockerify/**/*.py: no cycles, `oci/` standing
alone, imports at the top of modules, argparse only in the command line."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "dockerify"

# Imports that may sit inside a function, by the module imported: optional dependencies, absent
# where parts of dockerify run without them (the frontend image has python3, zstandard, crc32c
# and grpcio only), or slow to load for commands that never use them.
OPTIONAL = {
    "docker": "docker-py: only docker-daemon: outputs and inputs",
    "python_on_whales": "the docker CLI wrapper: only `run`, `pi` and the daemon",
    "tqdm": "progress bars: only on a terminal",
    "nacl": "PyNaCl: only scrypt-encrypted cosign keys",
    "shtab": "the completion generator: only `dockerify completion`",
    "dockerify.registry": "the registry client needs oras and requests (not in the frontend image)",
    "dockerify.trust.keys": "signing keys need cryptography (not in the frontend image)",
    "dockerify.frontend.gateway": "grpcio: only the frontend's gateway, not its exec ops",
    "dockerify.frontend.transport": "grpcio: only the frontend's gateway, not its exec ops",
    "dockerify.frontend.convert": "the exec ops' tool: the gateway process does not load the exporters",
}
# argparse is the command line's: the one exception is the frontend image's exec-op entry
# (`python3 -m dockerify.frontend convert|export`), an internal protocol between the frontend
# and the containers it starts; EXPORT's user-facing flags are read by dockerify.cli.export.
ARGPARSE_OUTSIDE_CLI = {"dockerify.frontend.convert"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str) -> list[tuple[str, bool, int]]:
    """(module imported, inside a function, line) for each import outside `if TYPE_CHECKING`.
    `from pkg import mod` counts as importing pkg.mod, `from pkg import name` as importing pkg."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[str, bool, int]] = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                out.extend((a.name, in_function, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parent = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                subs = [f"{base}.{a.name}" for a in child.names if f"{base}.{a.name}" in MODULES]
                out.extend((s, in_function, child.lineno) for s in subs)
                if len(subs) < len(child.names):
                    out.append((base, in_function, child.lineno))
            walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    walk(ast.parse(path.read_text()), False)
    return out


def _graph() -> dict[str, set[str]]:
    return {name: {m for m, _, _ in _imports(name) if m in MODULES and m != name} for name in MODULES}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_graph_sees_the_package() -> None:
    graph = _graph()
    assert len(graph) > 50
    assert "dockerify.oci.layout" in graph["dockerify.stores"]
    assert "dockerify.cli.export" in graph["dockerify.cli.app"]


def test_no_import_cycle() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_oci_imports_no_registry_daemon_or_fixups() -> None:
    banned = ("dockerify.registry", "dockerify.daemon", "dockerify.fixups")
    bad = [
        f"{name}:{line} imports {module}"
        for name in MODULES
        if name.startswith("dockerify.oci.") or name == "dockerify.oci"
        for module, _, line in _imports(name)
        if any(module == b or module.startswith(b + ".") or module.startswith(b + "_") for b in banned)
    ]
    assert not bad, bad


def _optional(module: str) -> bool:
    return any(module == o or module.startswith(o + ".") for o in OPTIONAL)


def test_imports_inside_functions_only_for_optional_dependencies() -> None:
    bad = []
    for name in MODULES:
        for module, inside, line in _imports(name):
            if not inside:
                continue
            own = next((o for o in OPTIONAL if module == o or module.startswith(o + ".")), None)
            # An optional part imports its own modules at the top like any other.
            if own is None or name == own or name.startswith(own + "."):
                bad.append(f"{MODULES[name].relative_to(ROOT)}:{line}: import {module}")
    assert not bad, "imports inside functions:\n" + "\n".join(bad)


def test_argparse_only_in_the_cli() -> None:
    users = {
        name
        for name in MODULES
        for module, _, _ in _imports(name)
        if module == "argparse" and not name.startswith("dockerify.cli")
    }
    assert users <= ARGPARSE_OUTSIDE_CLI, users


def test_core_and_cli_load_without_optional_dependencies() -> None:
    """What the frontend image runs (`dockerify.frontend.convert`, which reads EXPORT's flags
    with dockerify.cli) must not need what that image lacks."""
    code = (
        "import sys; import dockerify, dockerify.cli, dockerify.frontend.convert; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
    )
    absent = {
        "oras",
        "requests",
        "cryptography",
        "nacl",
        "docker",
        "python_on_whales",
        "tqdm",
        "grpc",
        "shtab",
    }
    assert not loaded & absent, loaded & absent


def test_core_and_cli_load_no_optional_part_of_dockerify() -> None:
    """The optional parts of dockerify itself (the registry client, the signing keys) stay
    unloaded until a command uses them: the frontend image and a bare Debian python lack what
    they need (an SDK result type once pulled dockerify.registry in at import)."""
    code = (
        "import sys; import dockerify, dockerify.cli, dockerify.frontend.convert; "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('dockerify.'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    parts = ("dockerify.registry", "dockerify.trust.keys")
    assert not [m for m in loaded if m.startswith(parts)], loaded
