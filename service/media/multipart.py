"""Streaming ``multipart/form-data`` reading for the upload target.

Starlette's form parser spools files to temporary files capped only by disk; here the
file part is written straight to its destination as it arrives and the request is cut
off the moment it passes the configured limit (``CALLBOARD_UPLOAD_MAX_BYTES``), so a
200 MB upload costs one pass over the bytes and an oversized one costs nothing more
than the limit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any, Protocol

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from service import errors

FIELDS_MAX_BYTES = 64 * 1024
FILE_FIELD = "file"


@dataclasses.dataclass
class Form:
    fields: dict[str, str]
    filename: str | None
    size: int


class Sink(Protocol):
    def write(self, data: bytes) -> object: ...


class _Reader:
    def __init__(self, sink: Sink, limit: int) -> None:
        self.sink = sink
        self.limit = limit
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.size = 0
        self.files = 0
        self._field_bytes = 0
        self._name = b""
        self._value = b""
        self._disposition = b""
        self._part_name: str | None = None
        self._is_file = False
        self._data = bytearray()

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._part_name = None
        self._is_file = False
        self._data = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        if self._name.lower() == b"content-disposition":
            self._disposition = self._value
        self._name = b""
        self._value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name")
        if name is None:
            raise errors.ValidationError("Each form part needs a Content-Disposition name", field="file")
        self._part_name = name.decode("utf-8", "replace")
        if self._part_name == FILE_FIELD:
            self.files += 1
            if self.files > 1:
                raise errors.ValidationError("file: send exactly one file part", field="file")
            self._is_file = True
            raw = options.get(b"filename")
            self.filename = raw.decode("utf-8", "replace") if raw is not None else None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._is_file:
            self.size += len(chunk)
            if self.size > self.limit:
                raise errors.PayloadTooLarge(
                    f"file: the file is larger than the {self.limit} bytes allowed", field="file"
                )
            self.sink.write(chunk)
            return
        self._field_bytes += len(chunk)
        if self._field_bytes > FIELDS_MAX_BYTES:
            raise errors.ValidationError("The form fields are too large", field="fields")
        self._data.extend(chunk)

    def on_part_end(self) -> None:
        if not self._is_file and self._part_name is not None:
            self.fields[self._part_name] = self._data.decode("utf-8", "replace")

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }


async def read_form(
    content_type: str | None, stream: AsyncIterator[bytes], sink: Sink, *, limit: int
) -> Form:
    """Parse a multipart body from ``stream``, writing the part named ``file`` to ``sink``.

    Raises ``errors.UnsupportedMediaType`` for a body that is not multipart,
    ``errors.PayloadTooLarge`` past ``limit`` file bytes and ``errors.ValidationError``
    for a malformed body or a missing file part.
    """
    kind, params = parse_options_header(content_type or "")
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise errors.UnsupportedMediaType(
            "Send the file as multipart/form-data with the form fields and a part named 'file'", field="file"
        )
    reader = _Reader(sink, limit)
    parser = MultipartParser(params[b"boundary"], reader.callbacks())
    try:
        async for chunk in stream:
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise errors.ValidationError(f"The multipart body is malformed ({exc})", field="file") from None
    if reader.files == 0:
        raise errors.ValidationError("file: the form has no part named 'file'", field="file")
    return Form(fields=reader.fields, filename=reader.filename, size=reader.size)
