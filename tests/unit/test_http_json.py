"""tools.http.http_json, the standard-library client of the tools and tests: an answer
that breaks off mid-body (a bank killed with -9 while replying) is a ConnectionError, an
OSError like any other lost reply, so callers that count lost replies see it as one."""
from __future__ import annotations

import socket
import threading

import pytest

from tools.http import http_json


def serve_once(response: bytes) -> int:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def run():
        conn, _ = srv.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = int(next((l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")), b"0"))
            while len(rest) < length:
                rest += conn.recv(4096)
            conn.sendall(response)
            conn.shutdown(socket.SHUT_WR)  # a clean end of stream, mid-body
            conn.recv(1)
        srv.close()
    threading.Thread(target=run, daemon=True).start()
    return srv.getsockname()[1]


@pytest.mark.parametrize("status", [b"201 Created", b"409 Conflict"])
def test_an_answer_broken_off_mid_body_is_a_connection_error(status):
    port = serve_once(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{\"id\"")
    with pytest.raises(ConnectionError):
        http_json("POST", f"http://127.0.0.1:{port}/api/x", {"amount": "1.00"}, timeout=5)


def test_a_whole_answer_is_parsed():
    body = b'{"status": "committed"}'
    port = serve_once(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: "
                      + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert http_json("POST", f"http://127.0.0.1:{port}/api/x", {"a": 1}, timeout=5) == (201, {"status": "committed"})
