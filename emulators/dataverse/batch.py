"""`POST $batch`: multipart/mixed requests, atomic changesets with Content-ID references, and
`Prefer: odata.continue-on-error`, answered in Dataverse's multipart response format."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from emulators.dataverse import errors
from emulators.dataverse.errors import DataverseFault
from emulators.dataverse.webapi import ApiRequest, ApiResponse, WebApi, fault_response

MAX_REQUESTS = 1000
_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    412: "Precondition Failed",
    429: "Too Many Requests",
    500: "Internal Server Error",
}
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


@dataclass
class Part:
    headers: dict[str, str]
    method: str = ""
    url: str = ""
    request_headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    changeset: list[Part] | None = None

    @property
    def content_id(self) -> str | None:
        return self.headers.get("content-id")


class _Rollback(Exception):
    pass


def _split_headers(block: bytes) -> tuple[dict[str, str], bytes]:
    text = block.replace(b"\r\n", b"\n")
    head, _, rest = text.partition(b"\n\n")
    headers: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").split("\n"):
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return headers, rest


def _parts(body: bytes, boundary: str) -> list[bytes]:
    delimiter = b"--" + boundary.encode()
    chunks = body.split(delimiter)
    if len(chunks) < 2:
        raise errors.query_error("The batch request body is not a multipart/mixed message with the declared boundary.")
    result = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        result.append(chunk.lstrip(b"\r\n"))
    return result


def parse_batch(body: bytes, content_type: str) -> list[Part]:
    match = _BOUNDARY.search(content_type or "")
    if not content_type.lower().startswith("multipart/mixed") or not match:
        raise errors.query_error("The content type of a $batch request must be multipart/mixed with a boundary.")
    parts = []
    for raw in _parts(body, match.group(1)):
        headers, content = _split_headers(raw)
        part_type = headers.get("content-type", "")
        if part_type.lower().startswith("multipart/mixed"):
            inner = parse_batch(content, part_type)
            for item in inner:
                if item.changeset is not None:
                    raise errors.query_error("A changeset cannot contain another changeset.")
            parts.append(Part(headers, changeset=inner))
        else:
            parts.append(_http_part(headers, content))
    return parts


def _http_part(headers: dict[str, str], content: bytes) -> Part:
    text = content.replace(b"\r\n", b"\n")
    request_line, _, rest = text.partition(b"\n")
    bits = request_line.decode("utf-8", "replace").strip().split(" ")
    if len(bits) < 2:
        raise errors.query_error("A part of the batch is not an HTTP request.")
    if rest.startswith(b"\n"):
        request_headers: dict[str, str] = {}
        body = rest[1:]
    else:
        head, _, body = rest.partition(b"\n\n")
        request_headers, _ = _split_headers(head + b"\n\n")
    return Part(headers, bits[0].upper(), bits[1], request_headers, body.strip(b"\n"))


class BatchHandler:
    def __init__(self, web_api: WebApi, log_part: Callable[[ApiRequest, ApiResponse], None]) -> None:
        self.web_api = web_api
        self.log_part = log_part

    def handle(self, request: ApiRequest) -> ApiResponse:
        parts = parse_batch(request.body, request.headers.get("content-type", ""))
        count = sum(len(p.changeset) if p.changeset is not None else 1 for p in parts)
        if count > MAX_REQUESTS:
            raise errors.query_error(
                f"The number of requests in a batch exceeds the limit of {MAX_REQUESTS}."
            )  # (unverified)
        continue_on_error = request.prefer.continue_on_error
        boundary = f"batchresponse_{uuid.uuid4()}"
        out: list[bytes] = []
        status = 200
        for part in parts:
            if part.changeset is not None:
                block, failed = self._changeset(request, part.changeset)
            else:
                response = self._run(request, part, {})
                block, failed = self._render(response, None), response if response.status >= 400 else None
            out.append(f"--{boundary}\r\n".encode() + block)
            if failed is not None and not continue_on_error:
                status = failed.status
                break
        payload = b"".join(out) + f"--{boundary}--\r\n".encode()
        headers = [("Content-Type", f"multipart/mixed; boundary={boundary}"), ("OData-Version", "4.0")]
        if continue_on_error:
            headers.append(("Preference-Applied", "odata.continue-on-error"))
        return ApiResponse(status, headers, payload, operation="$batch", records=count)

    def _sub_request(self, batch: ApiRequest, part: Part, content_ids: dict[str, str]) -> ApiRequest:
        url = part.url
        if url.startswith("$"):
            reference, _, tail = url.partition("/")
            if reference not in content_ids:
                raise errors.query_error(f"Content-ID Reference: '{reference}' does not exist in the batch context.")
            url = content_ids[reference] + (f"/{tail}" if tail else "")
        split = urlsplit(url)
        path = split.path
        match = re.match(r"^/?(?:api/data/v9\.\d/)?(.*)$", path)
        path = match.group(1) if match else path
        if split.scheme == "" and not part.url.startswith("/") and not part.url.startswith("$"):
            path = split.path
        headers = {k.lower(): v for k, v in part.request_headers.items()}
        headers["authorization"] = batch.headers.get("authorization", "")
        if "prefer" not in headers and "prefer" in batch.headers:
            prefer = ",".join(p for p in batch.headers["prefer"].split(",") if "continue-on-error" not in p)
            if prefer.strip():
                headers["prefer"] = prefer
        return ApiRequest(
            method=part.method,
            path=path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers=headers,
            body=part.body,
            caller=batch.caller,
            base=batch.base,
            content_ids=content_ids,
        )

    def _run(
        self, batch: ApiRequest, part: Part, content_ids: dict[str, str], *, raise_faults: bool = False
    ) -> ApiResponse:
        try:
            sub = self._sub_request(batch, part, content_ids)
        except DataverseFault as fault:
            if raise_faults:
                raise
            return fault_response(fault)
        if sub.path.startswith("$batch"):
            nested = errors.query_error("A batch request cannot contain another batch request.")
            if raise_faults:
                raise nested
            return fault_response(nested)
        try:
            response = self.web_api._dispatch(sub)
        except DataverseFault as fault:
            response = fault_response(fault)
            response.operation, response.table = sub.operation or "error", sub.table
            self.log_part(sub, response)
            if raise_faults:
                raise
            return response
        self.log_part(sub, response)
        return response

    def _changeset(self, batch: ApiRequest, parts: list[Part]) -> tuple[bytes, ApiResponse | None]:
        content_ids: dict[str, str] = {}
        rendered: list[tuple[Part, ApiResponse]] = []
        failure: tuple[Part, ApiResponse] | None = None
        for part in parts:
            if part.method == "GET":
                fault = errors.query_error("GET requests are not allowed in a changeset.")  # (unverified)
                return self._render(fault_response(fault), None), fault_response(fault)
        try:
            with self.web_api.store.transaction():
                for part in parts:
                    try:
                        response = self._run(batch, part, content_ids, raise_faults=True)
                    except DataverseFault as fault:
                        failure = (part, fault_response(fault))
                        raise _Rollback from fault
                    rendered.append((part, response))
                    if part.content_id:
                        location = dict(response.headers).get("OData-EntityId")
                        if location:
                            content_ids[f"${part.content_id}"] = location
        except _Rollback:
            assert failure is not None
            part, response = failure
            return self._render(response, part.content_id), response
        boundary = f"changesetresponse_{uuid.uuid4()}"
        blocks = [f"--{boundary}\r\n".encode() + self._render(r, p.content_id) for p, r in rendered]
        body = b"".join(blocks) + f"--{boundary}--\r\n".encode()
        return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n".encode() + body, None

    @staticmethod
    def _render(response: ApiResponse, content_id: str | None) -> bytes:
        lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
        if content_id:
            lines.append(f"Content-ID: {content_id}")
        lines += ["", f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}"]
        for name, value in response.headers:
            lines.append(f"{name}: {value}")
            if name == "OData-EntityId":
                lines.append(f"Location: {value}")
        lines.append("")
        head = "\r\n".join(lines).encode() + b"\r\n"
        return head + response.body + b"\r\n"
