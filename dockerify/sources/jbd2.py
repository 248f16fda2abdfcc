"""Replay of an ext3/ext4 (jbd2) journal in userspace, into an overlay of changed blocks.

A filesystem that was not cleanly unmounted (a card pulled from a running Pi) keeps recent
metadata, and with data=journal recent data, only in its journal. The kernel replays the
journal when it mounts; this module does the same, on read: the input is never written, the
replayed blocks are remembered as "filesystem block B now reads as journal block J".

The rules follow the kernel's fs/jbd2/recovery.c (and e2fsprogs, which shares it): a scan
finds the transactions that have a valid commit block, in sequence order from the journal
superblock's s_start, stopping at the first gap; revoke records of those transactions cancel
older copies of a block; the remaining tagged blocks are replayed in order, later copies
winning. Checksums v2/v3 are verified as the kernel does: a bad commit block ends the log,
a bad descriptor or revoke block is fatal unless it is stale, and a bad data block fails
the recovery (the kernel refuses to mount). Fast commits (an ext4 feature that logs inode
changes, not blocks) are not replayed: a journal that holds any is refused, naming it.

Everything is bounded by the journal's own size: each journal block is visited at most once
and the overlay keeps two integers per replayed block, not the block.
"""

from __future__ import annotations

import bisect
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dockerify.errors import CorruptInput
from dockerify.sources import ext4csum

log = logging.getLogger("dockerify")

JBD2_MAGIC = 0xC03B3998
HEADER = struct.Struct(">III")  # h_magic, h_blocktype, h_sequence
DESCRIPTOR_BLOCK, COMMIT_BLOCK, SUPERBLOCK_V1, SUPERBLOCK_V2, REVOKE_BLOCK = 1, 2, 3, 4, 5

# Journal superblock fields (big-endian), after the 12-byte header.
JSB = struct.Struct(">IIIII")  # s_blocksize, s_maxlen, s_first, s_sequence, s_start
JSB_FEATURES = struct.Struct(">III")  # compat, incompat, ro_compat at 0x24
JSB_UUID = 0x30
JSB_CHECKSUM_TYPE = 0x50
JSB_NUM_FC_BLOCKS = 0x54
JSB_CHECKSUM = 0xFC
JSB_SIZE = 1024

COMPAT_CHECKSUM = 0x1  # v1 transaction checksums (crc32_be over whole transactions): not verified
INCOMPAT_REVOKE = 0x1
INCOMPAT_64BIT = 0x2
INCOMPAT_ASYNC_COMMIT = 0x4
INCOMPAT_CSUM_V2 = 0x8
INCOMPAT_CSUM_V3 = 0x10
INCOMPAT_FAST_COMMIT = 0x20
INCOMPAT_KNOWN = (
    INCOMPAT_REVOKE | INCOMPAT_64BIT | INCOMPAT_ASYNC_COMMIT | INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3
    | INCOMPAT_FAST_COMMIT
)  # fmt: skip
CRC32C_CHKSUM = 4
DEFAULT_FC_BLOCKS = 256

FLAG_ESCAPE = 1
FLAG_SAME_UUID = 2
FLAG_LAST_TAG = 8
BLOCK_TAIL_SIZE = 4  # jbd2_journal_block_tail: the crc32c of descriptor and revoke blocks
COMMIT_CHECKSUM = 0x10  # h_chksum[0], after the header and h_chksum_type, _size, padding
COMMIT_SEC = 0x30
REVOKE_HEADER = struct.Struct(">I")  # r_count at 0x0C: bytes used, header included

# Fast-commit area: tag-length-value records; the first block of a pending fast commit starts
# with a HEAD tag naming the transaction it follows.
FC_TAG_ADD_RANGE, FC_TAG_DEL_RANGE, FC_TAG_PAD, FC_TAG_TAIL, FC_TAG_HEAD = 1, 2, 7, 8, 9
FC_DENTRY_TAGS = {3, 4, 5}  # CREAT, LINK, UNLINK: parent inode, inode, name
FC_INODE_TAGS = {FC_TAG_ADD_RANGE, FC_TAG_DEL_RANGE, 6}  # ... and INODE: the inode number first
FC_TL = struct.Struct("<HH")
FC_HEAD = struct.Struct("<II")  # fc_features, fc_tid

MASK = 0xFFFFFFFF


@dataclass(frozen=True)
class JournalReport:
    """What the journal held and what was done with it, for `inspect`."""

    needed: bool = False  # the filesystem was not cleanly unmounted and the log is not empty
    replayed: bool = False
    transactions: int = 0
    blocks: int = 0  # filesystem blocks replayed (each counted once)
    revoked: int = 0  # tagged copies skipped because a later transaction revoked them
    escaped: int = 0  # replayed copies whose first word jbd2 had to escape (it looked like a header)
    first_transaction: int | None = None
    skipped_reason: str = ""  # why a needed replay was not done (--no-journal)

    def to_json(self) -> dict[str, Any]:
        return {
            "needs_recovery": self.needed,
            "replayed": self.replayed,
            "transactions": self.transactions,
            "blocks": self.blocks,
            "revoked": self.revoked,
            "escaped": self.escaped,
            "first_transaction": self.first_transaction,
            **({"skipped": self.skipped_reason} if self.skipped_reason else {}),
        }


@dataclass
class Overlay:
    """Filesystem blocks that read as other blocks of the same image (their journal copies)."""

    block_size: int
    sources: dict[int, tuple[int, bool]] = field(default_factory=dict)  # fs block -> (block, escaped)
    keys: list[int] = field(default_factory=list)

    def freeze(self) -> None:
        self.keys = sorted(self.sources)

    def patch(self, pos: int, data: bytes, read: Callable[[int, int], bytes]) -> bytes:
        """`data` read at byte `pos`, with every replayed block it covers swapped in."""
        bs = self.block_size
        first, last = pos // bs, (pos + len(data) - 1) // bs
        i = bisect.bisect_left(self.keys, first)
        if i == len(self.keys) or self.keys[i] > last:
            return data
        out = bytearray(data)
        while i < len(self.keys) and self.keys[i] <= last:
            block = self.keys[i]
            source, escaped = self.sources[block]
            content = read(source * bs, bs)
            if escaped:
                # jbd2 zeroes a logged block's first word when it looks like a journal header.
                content = struct.pack(">I", JBD2_MAGIC) + content[4:]
            start = max(pos, block * bs)
            end = min(pos + len(data), block * bs + bs)
            out[start - pos : end - pos] = content[start - block * bs : end - block * bs]
            i += 1
        return bytes(out)


@dataclass
class _Transaction:
    sequence: int
    tags: list[tuple[int, int, bool, int]] = field(default_factory=list)  # fs block, log block, esc, csum
    revokes: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Geometry:
    block_size: int
    maxlen: int
    first: int
    last: int  # end (exclusive) of the circular log; the fast-commit area follows it
    incompat: int
    compat: int
    seed: int

    @property
    def csum(self) -> bool:
        return bool(self.incompat & (INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3))

    @property
    def tag_bytes(self) -> int:
        if self.incompat & INCOMPAT_CSUM_V3:
            return 16
        size = 12 + (2 if self.incompat & INCOMPAT_CSUM_V2 else 0)
        return size if self.incompat & INCOMPAT_64BIT else size - 4

    def wrap(self, block: int) -> int:
        return block - (self.last - self.first) if block >= self.last else block


class Journal:
    """The journal of one filesystem, stored in the blocks `runs` maps (an inode's extents)."""

    def __init__(
        self,
        read: Callable[[int, int], bytes],
        runs: list[tuple[int, int, int]],
        block_size: int,
        fs_blocks: int,
        name: str,
        *,
        verify: bool = True,
    ) -> None:
        self._read_fs = read
        self._starts = [logical for logical, _, _ in runs]
        self._runs = runs
        self._bs = block_size
        self._fs_blocks = fs_blocks
        self._name = name
        self._verify = verify
        self._warned: set[str] = set()
        self._mapped = sum(count for _, _, count in runs)

    def _corrupt(self, what: str) -> CorruptInput:
        return CorruptInput(
            f"{self._name}: journal: {what}",
            hint="--no-journal reads the filesystem as it is on disk, without the journal's changes",
        )

    def _checksum_failed(self, what: str) -> None:
        """A checksum the kernel would reject: refuse, or warn once with --ignore-checksums."""
        if self._verify:
            raise CorruptInput(
                f"{self._name}: journal: {what}",
                hint="--ignore-checksums reads it anyway; --no-journal reads the filesystem without its journal",
            )
        if "journal" not in self._warned:
            self._warned.add("journal")
            log.warning("%s: journal: %s (ignored: --ignore-checksums)", self._name, what)

    def physical(self, logical: int) -> int:
        i = bisect.bisect_right(self._starts, logical) - 1
        if i >= 0:
            start, physical, count = self._runs[i]
            if logical < start + count:
                return physical + logical - start
        raise self._corrupt(f"journal block {logical} is not mapped (a hole in the journal inode)")

    def _block(self, logical: int) -> bytes:
        return self._read_fs(self.physical(logical) * self._bs, self._bs)

    # --- superblock ---------------------------------------------------------------------------

    def _geometry(self) -> tuple[_Geometry, int, int]:
        """The log's shape, and where replay starts: (geometry, s_sequence, s_start)."""
        raw = self._block(0)[:JSB_SIZE]
        magic, blocktype, _ = HEADER.unpack_from(raw)
        if magic != JBD2_MAGIC or blocktype not in (SUPERBLOCK_V1, SUPERBLOCK_V2):
            raise self._corrupt(f"bad journal superblock (magic 0x{magic:08x}, type {blocktype})")
        block_size, maxlen, first, sequence, start = JSB.unpack_from(raw, 12)
        compat = incompat = 0
        if blocktype == SUPERBLOCK_V2:
            compat, incompat, _ro = JSB_FEATURES.unpack_from(raw, 0x24)
        if incompat & ~INCOMPAT_KNOWN:
            raise self._corrupt(f"unknown incompatible journal features 0x{incompat & ~INCOMPAT_KNOWN:x}")
        if block_size != self._bs:
            raise self._corrupt(f"journal block size {block_size} differs from the filesystem's {self._bs}")
        if maxlen > self._mapped or not 0 < first < maxlen:
            raise self._corrupt(
                f"absurd journal geometry: {maxlen} blocks from {first} in a {self._mapped}-block inode"
            )
        seed = 0
        if incompat & (INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3):
            if raw[JSB_CHECKSUM_TYPE] != CRC32C_CHKSUM:
                raise self._corrupt(f"unknown journal checksum type {raw[JSB_CHECKSUM_TYPE]}")
            (stored,) = struct.unpack_from(">I", raw, JSB_CHECKSUM)
            computed = ext4csum.crc(MASK, raw[:JSB_CHECKSUM] + b"\0\0\0\0" + raw[JSB_CHECKSUM + 4 :])
            if stored != computed:
                self._checksum_failed(
                    f"journal superblock checksum mismatch (stored 0x{stored:08x}, computed 0x{computed:08x})"
                )
            seed = ext4csum.crc(MASK, raw[JSB_UUID : JSB_UUID + 16])
        last = maxlen
        if incompat & INCOMPAT_FAST_COMMIT:
            (fc_blocks,) = struct.unpack_from(">I", raw, JSB_NUM_FC_BLOCKS)
            last = maxlen - (fc_blocks or DEFAULT_FC_BLOCKS)
            if last <= first:
                raise self._corrupt(f"fast-commit area of {maxlen - last} blocks leaves no log")
        if start and not first <= start < last:
            raise self._corrupt(f"log start {start} outside the log ({first}..{last - 1})")
        return _Geometry(block_size, maxlen, first, last, incompat, compat, seed), sequence, start

    def needs_replay(self) -> bool:
        """Whether the log holds anything: s_start is zero exactly when it was cleanly emptied."""
        return self._geometry()[2] != 0

    # --- the passes ---------------------------------------------------------------------------

    def replay(self) -> tuple[Overlay, JournalReport]:
        geo, sequence, start = self._geometry()
        overlay = Overlay(self._bs)
        if not start:
            return overlay, JournalReport()
        transactions = self._scan(geo, sequence, start)
        end = (sequence + len(transactions)) & MASK
        if geo.incompat & INCOMPAT_FAST_COMMIT:
            self._refuse_fast_commits(geo, end)
        # A revoke record cancels copies of its block logged by its transaction and older ones.
        revoked_until: dict[int, int] = {}
        for index, t in enumerate(transactions):
            for block in t.revokes:
                revoked_until[block] = index
        hits = escapes = 0
        for index, t in enumerate(transactions):
            for fs_block, log_block, escaped, stored in t.tags:
                if revoked_until.get(fs_block, -1) >= index:
                    hits += 1
                    continue
                if geo.csum and not self._tag_ok(geo, t.sequence, log_block, stored):
                    self._checksum_failed(
                        f"transaction {t.sequence}: the logged copy of block {fs_block} has a bad checksum"
                    )
                    continue
                overlay.sources[fs_block] = (self.physical(log_block), escaped)
                escapes += escaped
        overlay.freeze()
        report = JournalReport(
            needed=True,
            replayed=True,
            transactions=len(transactions),
            blocks=len(overlay.sources),
            revoked=hits,
            escaped=escapes,
            first_transaction=sequence,
        )
        return overlay, report

    def _scan(self, geo: _Geometry, sequence: int, start: int) -> list[_Transaction]:
        """The committed transactions, in order, from `start` to the first gap."""
        done: list[_Transaction] = []
        current = _Transaction(sequence)
        block = start
        stale_suspect = ""  # a bad descriptor/revoke checksum: fatal unless the commit is stale
        last_commit_time = 0
        budget = geo.last - geo.first  # every log block is visited at most once per lap
        while budget > 0:
            raw = self._block(block)
            here = block
            block = geo.wrap(block + 1)
            budget -= 1
            magic, blocktype, seq = HEADER.unpack_from(raw)
            if magic != JBD2_MAGIC or seq != current.sequence:
                break
            if blocktype == DESCRIPTOR_BLOCK:
                if geo.csum and not self._tail_ok(geo, raw):
                    stale_suspect = f"descriptor block {here} of transaction {seq} has a bad checksum"
                tags = self._tags(geo, raw, here)
                if len(tags) > budget:
                    break  # the tags reach past the log: a torn, stale descriptor
                for fs_block, escaped, stored in tags:
                    current.tags.append((fs_block, block, escaped, stored))
                    block = geo.wrap(block + 1)
                budget -= len(tags)
            elif blocktype == COMMIT_BLOCK:
                (commit_time,) = struct.unpack_from(">Q", raw, COMMIT_SEC)
                if stale_suspect:
                    if commit_time >= last_commit_time:
                        self._checksum_failed(stale_suspect)
                    else:
                        break  # left over from an older use of the log
                if geo.csum and not self._commit_ok(geo, raw):
                    if commit_time >= last_commit_time:
                        log.warning(
                            "%s: journal: transaction %d has a bad commit checksum: the log ends before it "
                            "(as the kernel does)",
                            self._name,
                            seq,
                        )
                    break
                last_commit_time = commit_time
                done.append(current)
                current = _Transaction((seq + 1) & MASK)
            elif blocktype == REVOKE_BLOCK:
                if geo.csum and not self._tail_ok(geo, raw):
                    stale_suspect = f"revoke block {here} of transaction {seq} has a bad checksum"
                current.revokes.extend(self._revokes(geo, raw, here))
            else:
                break
        return done

    def _tags(self, geo: _Geometry, raw: bytes, here: int) -> list[tuple[int, bool, int]]:
        """(filesystem block, escaped, stored checksum) of each block a descriptor logs."""
        out = []
        end = len(raw) - (BLOCK_TAIL_SIZE if geo.csum else 0)
        pos = HEADER.size
        wide = geo.incompat & INCOMPAT_64BIT
        while pos + geo.tag_bytes <= end:
            if geo.incompat & INCOMPAT_CSUM_V3:
                low, flags, high, stored = struct.unpack_from(">IIII", raw, pos)
            else:
                low, stored, flags = struct.unpack_from(">IHH", raw, pos)
                high = struct.unpack_from(">I", raw, pos + 8)[0] if wide else 0
            fs_block = low | (high << 32 if wide else 0)
            if fs_block >= self._fs_blocks:
                raise self._corrupt(
                    f"descriptor block {here} logs block {fs_block}, beyond the end of the filesystem "
                    f"({self._fs_blocks} blocks)"
                )
            out.append((fs_block, bool(flags & FLAG_ESCAPE), stored))
            pos += geo.tag_bytes + (0 if flags & FLAG_SAME_UUID else 16)
            if flags & FLAG_LAST_TAG:
                break
        return out

    def _revokes(self, geo: _Geometry, raw: bytes, here: int) -> list[int]:
        (count,) = REVOKE_HEADER.unpack_from(raw, HEADER.size)
        if count > len(raw) - (BLOCK_TAIL_SIZE if geo.csum else 0) or count < HEADER.size + 4:
            raise self._corrupt(f"revoke block {here} claims {count} bytes")
        size = 8 if geo.incompat & INCOMPAT_64BIT else 4
        fmt = ">Q" if size == 8 else ">I"
        return [struct.unpack_from(fmt, raw, pos)[0] for pos in range(16, count - size + 1, size)]

    def _tail_ok(self, geo: _Geometry, raw: bytes) -> bool:
        stored: int
        (stored,) = struct.unpack_from(">I", raw, len(raw) - BLOCK_TAIL_SIZE)
        return stored == ext4csum.crc(geo.seed, raw[:-BLOCK_TAIL_SIZE] + b"\0\0\0\0")

    def _commit_ok(self, geo: _Geometry, raw: bytes) -> bool:
        stored: int
        (stored,) = struct.unpack_from(">I", raw, COMMIT_CHECKSUM)
        zeroed = raw[:COMMIT_CHECKSUM] + b"\0\0\0\0" + raw[COMMIT_CHECKSUM + 4 :]
        return stored == ext4csum.crc(geo.seed, zeroed)

    def _tag_ok(self, geo: _Geometry, sequence: int, log_block: int, stored: int) -> bool:
        value = ext4csum.crc(geo.seed, struct.pack(">I", sequence))
        value = ext4csum.crc(value, self._block(log_block))
        return stored == (value if geo.incompat & INCOMPAT_CSUM_V3 else value & 0xFFFF)

    def _refuse_fast_commits(self, geo: _Geometry, end: int) -> None:
        """Refuse a journal whose fast-commit area holds changes made after its last full commit.

        ext4 logs fast commits as operations on inodes (ranges added or punched, names linked
        and unlinked, inodes rewritten), which the kernel replays by redoing them; here they are
        only read to name what they change."""
        first = geo.last + 1
        if first >= geo.maxlen:
            return
        raw = self._block(first)
        tag, length = FC_TL.unpack_from(raw)
        if tag != FC_TAG_HEAD or length < FC_HEAD.size:
            return
        _features, tid = FC_HEAD.unpack_from(raw, FC_TL.size)
        if tid != end:
            return  # left over from an older transaction
        inodes, names = self._fast_commit_targets(first, geo.maxlen, tid)
        changed = ", ".join(str(n) for n in sorted(inodes)[:10]) + (" ..." if len(inodes) > 10 else "")
        named = ", ".join(repr(n) for n in names[:5]) + (" ..." if len(names) > 5 else "")
        raise self._corrupt(
            f"the fast-commit area holds changes of transaction {tid}, after the last full commit "
            f"(inodes {changed or '?'}{'; names ' + named if named else ''}); replaying fast commits "
            "is not supported (the kernel would apply them)"
        )

    def _fast_commit_targets(self, first: int, maxlen: int, tid: int) -> tuple[set[int], list[str]]:
        """The inode numbers and names the fast commits of `tid` from block `first` on touch
        (each fast commit ends with a TAIL naming its transaction; stale ones follow)."""
        inodes: set[int] = set()
        names: list[str] = []
        for block in range(first, maxlen):
            raw = self._block(block)
            pos = 0
            while pos + FC_TL.size <= len(raw):
                tag, length = FC_TL.unpack_from(raw, pos)
                value = raw[pos + FC_TL.size : pos + FC_TL.size + length]
                if not FC_TAG_ADD_RANGE <= tag <= FC_TAG_HEAD or len(value) != length:
                    return inodes, names
                if tag in FC_DENTRY_TAGS and length >= 8:
                    _parent, ino = struct.unpack_from("<II", value)
                    inodes.add(ino)
                    names.append(value[8:].decode("utf-8", "backslashreplace"))
                elif tag in FC_INODE_TAGS and length >= 4:
                    inodes.add(struct.unpack_from("<I", value)[0])
                elif tag == FC_TAG_TAIL and (length < 4 or struct.unpack_from("<I", value)[0] != tid):
                    return inodes, names
                elif tag == FC_TAG_PAD:
                    break  # the rest of the block is padding
                pos += FC_TL.size + length
        return inodes, names
