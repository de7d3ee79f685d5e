from __future__ import annotations

import pytest

from sync.connectors.dynamics.batch import BatchRequest, decode_batch, encode_batch, parse_http_response

BASE = "https://org.example/api/data/v9.2/"


def test_encode_batch_of_independent_requests() -> None:
    content_type, body = encode_batch(
        [
            BatchRequest("POST", BASE + "leads", {"lastname": "O'Bryan"}),
            BatchRequest("PATCH", BASE + "leads(new_marketopersonid='7')?$select=leadid", {"x": 1}, {"If-Match": "*"}),
        ],
        boundary="batch_abc",
    )
    assert content_type == "multipart/mixed; boundary=batch_abc"
    text = body.decode()
    assert text.count("--batch_abc\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n") == 2
    assert f"POST {BASE}leads HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n" in text
    assert '{"lastname":"O\'Bryan"}' in text
    assert "If-Match: *\r\n" in text and "Content-ID: 2\r\n" in text
    assert text.endswith("--batch_abc--\r\n")


REPLY = (
    b"--batchresponse_1\r\n"
    b"Content-Type: application/http\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"\r\n"
    b"HTTP/1.1 204 No Content\r\n"
    b"OData-Version: 4.0\r\n"
    b"OData-EntityId: https://org.example/api/data/v9.2/leads(6b1c7e6e-1111-4a3e-9f1a-2b3c4d5e6f70)\r\n"
    b"\r\n"
    b"\r\n"
    b"--batchresponse_1\r\n"
    b"Content-Type: application/http\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"\r\n"
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Content-Type: application/json; odata.metadata=minimal\r\n"
    b"\r\n"
    b'{"error":{"code":"0x80044331","message":"The length of the \'firstname\' attribute ..."}}\r\n'
    b"--batchresponse_1\r\n"
    b"Content-Type: multipart/mixed; boundary=changesetresponse_2\r\n"
    b"\r\n"
    b"--changesetresponse_2\r\n"
    b"Content-Type: application/http\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"Content-ID: 1\r\n"
    b"\r\n"
    b"HTTP/1.1 201 Created\r\n"
    b"Content-Type: application/json\r\n"
    b"\r\n"
    b'{"leadid":"abc"}\r\n'
    b"--changesetresponse_2--\r\n"
    b"--batchresponse_1--\r\n"
)


def test_decode_batch_reply_in_order_with_changesets_flattened() -> None:
    parts = decode_batch("multipart/mixed; boundary=batchresponse_1", REPLY)
    assert [p.status for p in parts] == [204, 400, 201]
    assert parts[0].headers["OData-EntityId"].endswith("leads(6b1c7e6e-1111-4a3e-9f1a-2b3c4d5e6f70)")
    assert parts[0].body == b"" and parts[0].json() is None
    assert parts[1].json()["error"]["code"] == "0x80044331"
    assert parts[2].json() == {"leadid": "abc"}


def test_decode_refuses_a_non_multipart_reply() -> None:
    with pytest.raises(ValueError, match="multipart"):
        decode_batch("application/json", b"{}")


def test_parse_http_response_refuses_garbage() -> None:
    with pytest.raises(ValueError, match="status line"):
        parse_http_response(b"garbage\r\n\r\n")
