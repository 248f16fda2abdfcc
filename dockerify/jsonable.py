"""The base of every result a command prints: `to_json()` is the document `--json` shows. Its
own module, importing nothing of dockerify, so any layer (oci/ too) can give its results one."""

from __future__ import annotations

import json
from typing import Any


class Result:
    """A result a command can print as JSON."""

    def to_json(self) -> Any:
        raise NotImplementedError

    def dumps(self, pretty: bool = False) -> str:
        """`to_json()` as text: one line, or indented with sorted keys (inspect and copy print so)."""
        if pretty:
            return json.dumps(self.to_json(), indent=2, sort_keys=True)
        return json.dumps(self.to_json())
