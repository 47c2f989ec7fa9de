"""Ports forwarded from this machine to a job through the daemon (``tunnel.open`` with a port):
one socket connection to the daemon per forwarded TCP connection, as ``flotilla attach`` does."""

import logging
import socket
import threading
from typing import Dict, List, Optional, Tuple

from ._rpc import open_tunnel
from .errors import PortUsedError

log = logging.getLogger("flotilla.api")


def listen(bind_address: str, port: int, remote: int, run: str, accept: bool = True) -> socket.socket:
    """A TCP socket bound to ``bind_address:port`` (0: any free port) and, with ``accept``,
    listening; a port in use is :class:`PortUsedError`."""
    family = socket.AF_INET6 if ":" in bind_address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((bind_address, port))
        if accept:
            sock.listen(64)
    except OSError as e:
        sock.close()
        raise PortUsedError(
            f"cannot listen on local port {port} for port {remote} of {run}: {e.strerror or e}; "
            f"choose another with ports_overrides=['LOCAL:{remote}']"
        ) from e
    return sock


class Forwarder:
    """Accepts connections on each listener and pipes each to the job's port through the daemon."""

    def __init__(self, socket_path: str, run: str, replica: int, job: int,
                 listeners: Dict[int, socket.socket]) -> None:
        self._path = socket_path
        self._run = run
        self._replica = replica
        self._job = job
        self._listeners = dict(listeners)
        self._lock = threading.Lock()
        self._open: List[socket.socket] = []
        self._closed = False
        self.errors: List[str] = []
        """What went wrong on forwarded connections (a job port that refused, say), newest last."""
        self.ports: Dict[int, int] = {
            remote: sock.getsockname()[1] for remote, sock in self._listeners.items()
        }
        for remote, sock in self._listeners.items():
            threading.Thread(target=self._accept, args=(sock, remote), daemon=True,
                             name=f"flotilla-forward-{remote}").start()

    def _track(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._open.append(sock)
            return True

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            if sock in self._open:
                self._open.remove(sock)
        try:
            sock.close()
        except OSError:
            pass

    def _accept(self, listener: socket.socket, remote: int) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed by close()
            if not self._track(conn):
                conn.close()
                return
            threading.Thread(target=self._serve, args=(conn, remote), daemon=True).start()

    def _serve(self, conn: socket.socket, remote: int) -> None:
        tunnel: Optional[socket.socket] = None
        try:
            tunnel, pending, _ = open_tunnel(self._path, self._run, self._replica, self._job, remote)
            if not self._track(tunnel):
                return
            if pending:
                conn.sendall(pending)
            other = threading.Thread(target=_copy, args=(tunnel, conn), daemon=True)
            other.start()
            _copy(conn, tunnel)
            other.join()
        except Exception as e:  # noqa: BLE001 - reported on the forwarder, the connection is closed
            if not self._closed:
                message = f"forwarding port {self.ports.get(remote)} -> {self._run} port {remote}: {e}"
                self.errors.append(message)
                log.warning("%s", message)
        finally:
            self._forget(conn)
            if tunnel is not None:
                self._forget(tunnel)

    def close(self) -> None:
        """Stops listening and closes every forwarded connection."""
        with self._lock:
            self._closed = True
            socks = list(self._open)
            self._open.clear()
        for listener in self._listeners.values():
            _shut(listener)
        for s in socks:
            _shut(s)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _copy(src: socket.socket, dst: socket.socket) -> None:
    """Copies until ``src`` ends, then ends ``dst``'s writing side."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def parse_port(spec: object) -> Tuple[Optional[int], int]:
    """``(local, remote)`` of a port mapping as the daemon normalises it (``{"local", "container"}``)
    or as dstack writes it (``8080``, ``"8080"``, ``"18080:8080"``, ``"*:8080"``); ``local`` is
    ``None`` for any free port."""
    if isinstance(spec, dict):
        local = spec.get("local")
        return (int(local) if local is not None else None, int(spec["container"]))
    if isinstance(spec, tuple) and len(spec) == 2:
        return (None if spec[0] is None else int(spec[0]), int(spec[1]))
    if hasattr(spec, "local_port") and hasattr(spec, "container_port"):
        lp = getattr(spec, "local_port")
        return (None if lp is None else int(lp), int(getattr(spec, "container_port")))
    text = str(spec).strip()
    if ":" in text:
        local, remote = text.split(":", 1)
        return (None if local.strip() == "*" else int(local), int(remote))
    return (int(text), int(text))
