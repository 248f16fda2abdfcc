"""A content-addressed blob store (the `blobs/` directory of an OCI layout)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import BinaryIO

from dockerify import umask
from dockerify.errors import CorruptInput, NotFound

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def check_digest(digest: str, where: str) -> str:
    if not _DIGEST.match(digest):
        raise CorruptInput(f"{where}: invalid digest {digest!r}")
    return digest


class BlobWriter:
    """Streams bytes into a temporary file while hashing them; `commit()` renames it into place."""

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        fd, self._tmp = umask.mkstemp(dir=store.root, prefix=".tmp-")
        self._f = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self._f.write(data)
        self.size += len(data)

    def commit(self) -> str:
        self._f.close()
        digest = "sha256:" + self._hash.hexdigest()
        os.replace(self._tmp, self._store.path(digest))
        return digest

    def abort(self) -> None:
        self._f.close()
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)


class BlobStore:
    def __init__(self, layout_dir: str | Path) -> None:
        self.root = Path(layout_dir) / "blobs" / "sha256"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        check_digest(digest, str(self.root))
        return self.root / digest.split(":", 1)[1]

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def put(self, data: bytes) -> str:
        w = BlobWriter(self)
        w.write(data)
        return w.commit()

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"{self.root.parent.parent}: blob {digest} is missing") from None

    def read(self, digest: str, verify: bool = True) -> bytes:
        with self.open(digest) as f:
            data = f.read()
        if verify and "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise CorruptInput(f"{self.root.parent.parent}: blob {digest} does not match its digest")
        return data
