"""OData `$batch` bodies: independent requests (no changesets) sent with `Prefer: odata.continue-on-error`, so each
part gets its own answer. Encoding and decoding are pure; the MIME parsing is the standard library's `email`."""

from __future__ import annotations

import email.parser
import email.policy
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True)
class BatchRequest:
    method: str
    url: str  # absolute URL
    body: Any = None  # JSON-able
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body.strip() else None


def encode_batch(requests: Sequence[BatchRequest], boundary: str | None = None) -> tuple[str, bytes]:
    """(Content-Type header, body)."""
    boundary = boundary or f"batch_{uuid.uuid4().hex}"
    lines: list[bytes] = []
    for number, request in enumerate(requests, start=1):
        lines += [
            f"--{boundary}".encode(),
            b"Content-Type: application/http",
            b"Content-Transfer-Encoding: binary",
            f"Content-ID: {number}".encode(),
            b"",
            f"{request.method} {request.url} HTTP/1.1".encode(),
        ]
        headers = dict(request.headers)
        payload = b""
        if request.body is not None:
            headers.setdefault("Content-Type", "application/json; type=entry")
            payload = orjson.dumps(request.body)
        lines += [f"{name}: {value}".encode() for name, value in headers.items()]
        lines += [b"", payload]
    lines += [f"--{boundary}--".encode(), b""]
    return f"multipart/mixed; boundary={boundary}", b"\r\n".join(lines)


def decode_batch(content_type: str, body: bytes) -> list[BatchResponse]:
    """The responses of a $batch reply, in order (changeset replies are flattened)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise ValueError(f"a $batch reply must be multipart, got {content_type!r}")
    responses: list[BatchResponse] = []
    for part in message.walk():
        if part.get_content_type() == "application/http":
            payload = part.get_payload(decode=True)
            responses.append(parse_http_response(payload if isinstance(payload, bytes) else b""))
    return responses


def parse_http_response(raw: bytes) -> BatchResponse:
    """`HTTP/1.1 204 No Content\\r\\nHeader: v\\r\\n\\r\\nbody` -> BatchResponse."""
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    status_line, *header_lines = head.decode("latin-1").strip().split("\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP status line in a $batch reply: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip():
            headers[name.strip()] = value.strip()
    return BatchResponse(status=int(parts[1]), headers=headers, body=body.strip())
