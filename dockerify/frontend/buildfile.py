"""The build file: Dockerfile syntax (directives, comments, continuations, flags, JSON and shell
forms, variable expansion), read into instructions that remember their line."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from dockerify.errors import DockerifyError

INSTRUCTIONS = (
    "FROM",
    "ARG",
    "ENV",
    "LABEL",
    "WORKDIR",
    "USER",
    "CMD",
    "ENTRYPOINT",
    "EXPOSE",
    "COPY",
    "RUN",
    "EXPORT",
)
# Flags each instruction accepts; anything else is an error naming the line.
FLAGS = {
    "FROM": {"platform"},
    "COPY": {"from", "chown"},
    "RUN": set(),
    "EXPORT": {
        "format",
        "disk-id",
        "boot-id",
        "root-uuid",
        "boot-label",
        "root-label",
        "boot-size",
        "root-size",
        "shrink",
        "compress",
        "cmd",
        "entrypoint",
        "env",
        "hostname",
        "memory",
        "append",
    },
}
DIRECTIVES = ("syntax", "escape", "platforms")


class BuildFileError(DockerifyError):
    """A mistake in the build file, at a line."""

    def __init__(self, where: str, line: int, message: str, hint: str | None = None) -> None:
        super().__init__(f"{where}:{line}: {message}", hint=hint)
        self.line = line


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str  # the text after the keyword and flags, continuations joined
    line: int  # where the instruction starts, 1-based
    flags: tuple[tuple[str, str], ...] = ()
    original: str = ""

    def flag(self, name: str) -> str | None:
        for k, v in self.flags:
            if k == name:
                return v
        return None

    def json_args(self) -> list[str] | None:
        """The exec (JSON array) form, or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return None
        return value


@dataclass(frozen=True)
class BuildFile:
    name: str
    instructions: tuple[Instruction, ...]
    directives: Mapping[str, str] = field(default_factory=dict)
    escape: str = "\\"

    def error(self, ins: Instruction | int, message: str, hint: str | None = None) -> BuildFileError:
        line = ins if isinstance(ins, int) else ins.line
        return BuildFileError(self.name, line, message, hint)


_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.*?)\s*$")
_FLAG = re.compile(r"--([a-z][a-z0-9-]*)(?:=(\S*))?")


def parse(text: str, name: str = "Dockerfile") -> BuildFile:
    lines = text.splitlines()
    directives: dict[str, str] = {}
    start = 0
    for i, line in enumerate(lines):
        m = _DIRECTIVE.match(line.strip())
        if not m or m.group(1).lower() not in DIRECTIVES or m.group(1).lower() in directives:
            start = i
            break
        directives[m.group(1).lower()] = m.group(2)
    else:
        start = len(lines)
    escape = directives.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise BuildFileError(name, 1, f"escape directive must be \\ or `, not {escape!r}")

    instructions: list[Instruction] = []
    i = start
    while i < len(lines):
        raw = lines[i]
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        first = i
        parts = []
        while True:
            body = lines[i].rstrip()
            if body.endswith(escape) and not body.endswith(escape * 2):
                parts.append(body[: -len(escape)])
                i += 1
                # Comment and blank lines inside a continuation are skipped, as Docker does.
                while i < len(lines) and (not lines[i].strip() or lines[i].strip().startswith("#")):
                    i += 1
                if i >= len(lines):
                    break
                continue
            parts.append(body)
            i += 1
            break
        text_line = " ".join(p.strip() for p in parts).strip()
        keyword, _, rest = text_line.partition(" ")
        upper = keyword.upper()
        if upper not in INSTRUCTIONS:
            raise BuildFileError(
                name,
                first + 1,
                f"unknown instruction {keyword}",
                hint="dockerify's build files know " + ", ".join(INSTRUCTIONS),
            )
        rest = rest.strip()
        flags: list[tuple[str, str]] = []
        while rest.startswith("--"):
            m = _FLAG.match(rest)
            if not m:
                break
            flag, value = m.group(1), m.group(2)
            allowed = FLAGS.get(upper, set())
            if flag not in allowed:
                raise BuildFileError(
                    name,
                    first + 1,
                    f"{upper} does not support --{flag}",
                    hint=(f"{upper} takes " + ", ".join(f"--{f}" for f in sorted(allowed)))
                    if allowed
                    else f"{upper} takes no flags",
                )
            flags.append((flag, value if value is not None else "true"))
            rest = rest[m.end() :].strip()
        if not rest and upper not in ("EXPORT",):
            raise BuildFileError(name, first + 1, f"{upper} needs arguments")
        instructions.append(Instruction(upper, rest, first + 1, tuple(flags), text_line))
    if not instructions or instructions[0].keyword not in ("FROM", "ARG"):
        at = instructions[0].line if instructions else 1
        raise BuildFileError(name, at, "a build file starts with FROM (ARG may come before it)")
    return BuildFile(name, tuple(instructions), directives, escape)


# ---------------------------------------------------------------- words and variables

_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:[-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def expand(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """$VAR, ${VAR}, ${VAR:-default}, ${VAR:+alternative}; an escaped $ stays literal."""
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == escape and i + 1 < len(text) and text[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        if c == "$":
            m = _VAR.match(text, i)
            if m:
                name = m.group(1) or m.group(4)
                value = env.get(name)
                op, word = m.group(2), m.group(3)
                if op == ":-":
                    value = value if value else expand(word or "", env, escape)
                elif op == ":+":
                    value = expand(word or "", env, escape) if value else ""
                out.append(value or "")
                i = m.end()
                continue
        out.append(c)
        i += 1
    return "".join(out)


def words(text: str, escape: str = "\\") -> list[str]:
    """Split on blanks, honouring "double" and 'single' quotes and the escape character."""
    out: list[str] = []
    cur: list[str] = []
    in_word = False
    quote: str | None = None
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == quote:
                quote = None
            elif c == escape and quote == '"' and i + 1 < len(text):
                i += 1
                cur.append(text[i])
            else:
                cur.append(c)
        elif c in "\"'":
            quote = c
            in_word = True
        elif c == escape and i + 1 < len(text):
            i += 1
            cur.append(text[i])
            in_word = True
        elif c.isspace():
            if in_word:
                out.append("".join(cur))
                cur, in_word = [], False
        else:
            cur.append(c)
            in_word = True
        i += 1
    if quote:
        raise ValueError("unterminated quote")
    if in_word:
        out.append("".join(cur))
    return out


def pairs(text: str, keyword: str, escape: str = "\\") -> list[tuple[str, str]]:
    """KEY=VALUE pairs of ENV, LABEL and ARG; also the legacy `ENV KEY VALUE` form."""
    items = words(text, escape)
    if keyword == "ENV" and items and "=" not in items[0]:
        # `ENV KEY some value`: everything after the key is the value.
        key, _, value = text.strip().partition(" ")
        return [(key, " ".join(words(value, escape)))]
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not key or (not sep and keyword != "ARG"):
            raise ValueError(f"expected KEY=VALUE, found {item!r}")
        out.append((key, value if sep else ""))
    return out
