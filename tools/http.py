"""The one HTTP helper of the tools and tests: JSON over the standard library.

The launcher, the chaos workload, the benchmark, the operator commands and the tests all talk
to banks through ``http_json`` (the launcher must not need ``requests``)."""
from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request


def http_json(method: str, url: str, body: dict | None = None, token: str | None = None,
              headers: dict | None = None, timeout: float = 30) -> tuple[int, dict]:
    """A tiny JSON client on the standard library (the launcher must not need requests).

    A connection that breaks mid-answer (a bank killed with -9 while replying) raises
    ConnectionError, an OSError like every other lost reply, never http.client's own errors."""
    data = json.dumps(body).encode() if body is not None else None
    h = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        h["Authorization"] = f"Bearer {token}"
    h.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else {})
    except urllib.error.HTTPError as e:
        try:
            raw = e.read()
        except http.client.HTTPException as broken:
            raise ConnectionError(f"{url}: the answer broke off ({broken!r})") from broken
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, {"raw": raw.decode(errors="replace")}
    except http.client.HTTPException as e:
        raise ConnectionError(f"{url}: the answer broke off ({e!r})") from e


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.socket_path)
        self.sock = s


def unix_get(socket_path: str, path: str, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` through a bank's operator socket: (status, headers, body)."""
    conn = _UnixConnection(socket_path, timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()
