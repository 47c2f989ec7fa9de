"""JSON-RPC 2.0 over the daemon's Unix socket: one object per ``\\n``-terminated line, ``hello`` first."""

import errno
import json
import socket
import threading
from typing import Any, Dict, Iterator, Optional, Tuple

from .errors import (
    ConnectionLostError,
    DaemonNotRunningError,
    PermissionDeniedError,
    ProtocolMismatchError,
    rpc_error,
)

PROTOCOL_VERSION = "1.0"
"""The protocol version this client speaks (the daemon refuses another major version)."""

MAX_LINE = 16 * 1024 * 1024
"""The longest line the daemon sends or takes."""

CLIENT_NAME = "flotilla-python"


def connect_socket(path: str) -> socket.socket:
    """A connected Unix socket, or the error that says why the daemon cannot be reached."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError) as e:
        sock.close()
        raise DaemonNotRunningError(path, e.strerror or str(e)) from e
    except PermissionError as e:
        sock.close()
        raise PermissionDeniedError(path) from e
    except OSError as e:
        sock.close()
        if e.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
            raise DaemonNotRunningError(path, e.strerror or str(e)) from e
        raise
    return sock


class _LineReader:
    """Reads bounded lines from a socket, keeping what follows the last line for the caller."""

    def __init__(self, sock: socket.socket, path: str) -> None:
        self._sock = sock
        self._path = path
        self.buffer = b""

    def line(self, during: str) -> bytes:
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line, self.buffer = self.buffer[:end], self.buffer[end + 1 :]
                return line
            if len(self.buffer) > MAX_LINE:
                raise ConnectionLostError(self._path, f"{during} (a line longer than 16 MiB)")
            try:
                data = self._sock.recv(65536)
            except OSError as e:
                raise ConnectionLostError(self._path, f"{during} ({e})") from e
            if not data:
                raise ConnectionLostError(self._path, during)
            self.buffer += data


class Connection:
    """One connection to the daemon, after ``hello``. Calls are serialised; streams take their own."""

    def __init__(self, path: str, client: str = CLIENT_NAME) -> None:
        self.path = path
        self._sock = connect_socket(path)
        self._reader = _LineReader(self._sock, path)
        self._lock = threading.Lock()
        self._next_id = 1
        self.hello: Dict[str, Any] = {}
        try:
            self.hello = self.call("hello", {"protocol": PROTOCOL_VERSION, "client": client})
        except ProtocolMismatchError as e:
            self.close()
            raise ProtocolMismatchError(
                e.code,
                f"{e.message}; this Python client speaks protocol {PROTOCOL_VERSION}: install the "
                "one of the daemon's version (pip install ./protocol/python from its checkout)",
                e.data,
            ) from e
        except BaseException:
            self.close()
            raise
        theirs = str(self.hello.get("protocol", ""))
        if theirs.split(".")[0] != PROTOCOL_VERSION.split(".")[0]:
            self.close()
            raise ProtocolMismatchError(
                -32003,
                f"the daemon speaks protocol {theirs}, this client {PROTOCOL_VERSION}; "
                "install the Python client of the daemon's version (pip install ./protocol/python)",
            )

    def close(self) -> None:
        """Closes the connection; a stream read by another thread ends with :class:`ConnectionLostError`."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self._sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, params: Dict[str, Any]) -> int:
        rid = self._next_id
        self._next_id += 1
        line = json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        try:
            self._sock.sendall(line.encode("utf-8") + b"\n")
        except OSError as e:
            raise ConnectionLostError(self.path, f"{method} ({e})") from e
        return rid

    def _message(self, method: str) -> Dict[str, Any]:
        raw = self._reader.line(method)
        try:
            msg = json.loads(raw)
        except ValueError as e:
            raise ConnectionLostError(self.path, f"{method} (an answer that is not JSON: {e})") from e
        if not isinstance(msg, dict):
            raise ConnectionLostError(self.path, f"{method} (an answer that is not an object)")
        return msg

    def call(self, method: str, params: Optional[Dict[str, Any]] = None) -> Any:
        """Sends one request and returns its ``result``; an ``error`` is raised as an :class:`RpcError`."""
        with self._lock:
            rid = self._send(method, params or {})
            while True:
                msg = self._message(method)
                if msg.get("id") != rid:
                    continue
                if "error" in msg and msg["error"] is not None:
                    raise rpc_error(msg["error"])
                return msg.get("result")

    def stream(
        self, method: str, params: Dict[str, Any], item: str
    ) -> Iterator[Tuple[str, Any]]:
        """Opens a stream: yields ``("item", params)`` for each notification ``item``, then
        ``("end", result)``. Errors are raised. The connection is used by nothing else meanwhile."""
        with self._lock:
            rid = self._send(method, params)
            while True:
                msg = self._message(method)
                if msg.get("method") == item:
                    p = msg.get("params")
                    if isinstance(p, dict) and p.get("id") == rid:
                        yield ("item", p)
                    continue
                if msg.get("id") != rid:
                    continue
                if "error" in msg and msg["error"] is not None:
                    raise rpc_error(msg["error"])
                yield ("end", msg.get("result"))
                return


def open_tunnel(
    path: str, run: str, replica: int, job: int, port: Optional[int]
) -> Tuple[socket.socket, bytes, Dict[str, Any]]:
    """``tunnel.open`` on a connection of its own: the socket (now a raw byte pipe to the job's
    ``port``), bytes the daemon already sent past its answer, and the answer."""
    sock = connect_socket(path)
    reader = _LineReader(sock, path)
    try:
        params: Dict[str, Any] = {"run": run, "replica": replica, "job": job}
        if port is not None:
            params["port"] = port
        requests = [
            {"jsonrpc": "2.0", "id": 1, "method": "hello",
             "params": {"protocol": PROTOCOL_VERSION, "client": CLIENT_NAME}},
            {"jsonrpc": "2.0", "id": 2, "method": "tunnel.open", "params": params},
        ]
        sock.sendall(b"".join(json.dumps(r).encode("utf-8") + b"\n" for r in requests))
        info: Dict[str, Any] = {}
        for _ in range(2):
            msg = json.loads(reader.line("tunnel.open"))
            if isinstance(msg, dict) and msg.get("error"):
                raise rpc_error(msg["error"])
            if isinstance(msg, dict) and msg.get("id") == 2:
                info = msg.get("result") or {}
    except BaseException:
        sock.close()
        raise
    return sock, reader.buffer, info
