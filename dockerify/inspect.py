"""`dockerify inspect`: what a source or an image holds, as a dict for --json or as text."""

from __future__ import annotations

from typing import Any

from dockerify.chunking import KIND_ANNOTATION, PACKAGES_ANNOTATION
from dockerify.entry import FileType
from dockerify.observe import TreeFacts
from dockerify.oci.mediatype import is_index
from dockerify.oci.refs import image_ref
from dockerify.oci.select import images
from dockerify.platform import Platform
from dockerify.sources import DEFAULT_MAX_SIZE, open_source
from dockerify.sources.options import DEFAULT_READ, ReadOptions
from dockerify.stores import open_layout
from dockerify.trees import is_image_ref


def _scan(entries: Any) -> TreeFacts:
    facts = TreeFacts()
    for entry in facts.tap(entries):
        if entry.type is FileType.REG:
            for offset, data in entry.chunks():
                # Only ELF files are read to the end (their ARM attributes sit near the end);
                # small files are read whole so os-release and config.txt get captured.
                if offset == 0 and data[:4] != b"\x7fELF" and entry.size > 65536:
                    break
    return facts


def inspect_source(
    path: str, max_size: int = DEFAULT_MAX_SIZE, read: ReadOptions = DEFAULT_READ
) -> dict[str, Any]:
    with open_source(path, max_size=max_size, read=read) as source:
        facts = _scan(source.entries())
        facts.apply_boot_config()
        evidence = facts.detector.evidence()
        info: dict[str, Any] = {
            "source": path,
            "kind": source.kind,
            "platform": str(evidence.platform) if evidence.platform else None,
            "platform_evidence": evidence.to_json(),
            "entries": facts.entries,
            "os_release": facts.os_release(),
        }
        if source.layout is not None:
            info["disk"] = source.layout.to_json()
        if source.journal is not None:
            info["journal"] = source.journal.to_json()
        return info


def inspect_image(text: str, platform: str | None) -> dict[str, Any]:
    ref = image_ref(text)
    with open_layout(ref) as (layout, root):
        body = layout.read_json(root)
        found = images(layout, root)
        wanted = Platform.parse(platform) if platform else None
        return {
            "image": str(ref),
            "digest": root.digest,
            "mediaType": root.media_type or body.get("mediaType", ""),
            "index": is_index(root.media_type, body),
            "platforms": [str(i.platform) for i in found],
            "manifests": [
                {
                    "platform": str(i.platform),
                    "digest": i.descriptor.digest,
                    "layers": [d.to_json() for d in i.layers],
                    "config": i.config.get("config", {}),
                    "created": i.config.get("created"),
                }
                for i in found
                if wanted is None or i.platform == wanted
            ],
        }


def inspect_target(
    text: str,
    platform: str | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    read: ReadOptions = DEFAULT_READ,
) -> dict[str, Any]:
    if is_image_ref(text):
        return inspect_image(text, platform)
    return inspect_source(text, max_size, read)


def _journal_line(journal: dict[str, Any]) -> str:
    if not journal["needs_recovery"]:
        return "clean (no recovery needed)"
    if not journal["replayed"]:
        return f"needs recovery, not replayed ({journal.get('skipped', '')})"
    n = journal["transactions"]
    return (
        f"replayed {n} transaction{'s' if n != 1 else ''} ({journal['blocks']} blocks, "
        f"{journal['revoked']} revoked copies skipped)"
    )


def _why(evidence: dict[str, Any] | None) -> str:
    if not evidence or evidence["decided_by"] == "none":
        return ""
    if evidence["decided_by"] != "core":
        return f" (from the {evidence['decided_by']})"
    core = ", ".join(c["via"] for c in evidence["core"])
    odd = evidence["disagree"]["count"]
    return f" (from {core}" + (f"; {odd} ELF file(s) disagree)" if odd else ")")


def _layer_lines(layers: list[dict[str, Any]]) -> list[str]:
    """One line per layer of a chunked image: what `build --chunked` put in it."""

    if not any(KIND_ANNOTATION in (layer.get("annotations") or {}) for layer in layers):
        return []
    out = []
    for n, layer in enumerate(layers, 1):
        notes = layer.get("annotations") or {}
        what = notes.get(KIND_ANNOTATION, "")
        if notes.get(PACKAGES_ANNOTATION):
            what += ": " + notes[PACKAGES_ANNOTATION]
        out.append(f"    layer {n}: {layer['size']} bytes, {what}")
    return out


def render(info: dict[str, Any]) -> str:
    lines = []
    if "image" in info:
        lines.append(f"image:     {info['image']}")
        lines.append(f"digest:    {info['digest']}")
        lines.append(f"platforms: {', '.join(info['platforms'])}")
        for m in info["manifests"]:
            cfg = m["config"]
            size = sum(layer["size"] for layer in m["layers"])
            lines.append(f"  {m['platform']}: {m['digest']} ({len(m['layers'])} layer(s), {size} bytes)")
            for key in ("Entrypoint", "Cmd", "WorkingDir", "User"):
                if cfg.get(key):
                    lines.append(f"    {key}: {cfg[key]}")
            lines += _layer_lines(m["layers"])
        return "\n".join(lines)
    lines.append(f"source:   {info['source']} ({info['kind']})")
    lines.append(f"platform: {info['platform'] or 'unknown'}{_why(info.get('platform_evidence'))}")
    lines.append(f"entries:  {info['entries']}")
    osr = info.get("os_release") or {}
    if osr:
        lines.append(f"os:       {osr.get('PRETTY_NAME', osr.get('NAME', ''))}")
    journal = info.get("journal")
    if journal:
        lines.append(f"journal:  {_journal_line(journal)}")
    disk = info.get("disk")
    if disk and disk["table_type"] == "none":
        fs = disk["partitions"][0]["fs"]
        ident = fs.get("uuid") or fs.get("volume_id") or ""
        lines.append(
            f"filesystem: bare {fs.get('type', '?')} {ident} label {fs.get('label', '')!r}, {disk['size']} bytes"
        )
    elif disk:
        lines.append(f"table:    {disk['table_type']} disk id {disk['disk_id']}, {disk['size']} bytes")
        for p in disk["partitions"]:
            fs = p.get("fs") or {}
            ident = fs.get("uuid") or fs.get("volume_id") or ""
            lines.append(
                f"  {p['number']}: start {p['start']} size {p['size']} type {p['type']} partuuid {p['partuuid']}"
                f" {fs.get('type', '?')} {ident} label {fs.get('label', '')!r} -> {p.get('mountpoint') or '-'}"
            )
    return "\n".join(lines)
