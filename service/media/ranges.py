"""HTTP byte ranges for serving stored media (RFC 9110 §14): a pure policy.

Video elements seek by asking for ``Range: bytes=<start>-``; Safari also probes with
``bytes=0-1``. One range is served as 206; a header we cannot read, or several ranges,
is ignored (200 with the whole file, which the RFC allows); a range wholly past the
end is 416.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Whole:
    """Serve the whole file (no Range header, or one we ignore)."""


@dataclasses.dataclass(frozen=True)
class Partial:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


@dataclasses.dataclass(frozen=True)
class Unsatisfiable:
    def content_range(self, size: int) -> str:
        return f"bytes */{size}"


Decision = Whole | Partial | Unsatisfiable


def decide(header: str | None, size: int) -> Decision:
    """What to answer a request carrying ``Range: header`` for a file of ``size`` bytes."""
    if header is None:
        return Whole()
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or not spec or "," in spec:
        return Whole()
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or (first and not first.isdigit()) or (last and not last.isdigit()):
        return Whole()
    if not first:  # suffix range: the last N bytes
        if not last:
            return Whole()
        count = int(last)
        if count == 0 or size == 0:
            return Unsatisfiable()
        return Partial(max(0, size - count), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return Whole()  # syntactically invalid: ignore the header
    if start >= size:
        return Unsatisfiable()
    return Partial(start, min(end, size - 1))
