"""``Client``: finds the daemon's socket as the command line does, and starts ``flotillad`` on demand."""

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, Optional, Union

from ._rpc import Connection
from .errors import (
    ClientError,
    ConnectionLostError,
    DaemonNotRunningError,
    DaemonStartError,
)

PathLike = Union[str, "os.PathLike[str]"]


def _env(name: str) -> Optional[str]:
    value = os.environ.get(name)
    return value if value else None


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/flotilla``, else ``~/.local/state/flotilla`` (as ``flotilla`` and ``flotillad``)."""
    state = _env("XDG_STATE_HOME")
    if state:
        return Path(state) / "flotilla"
    return Path(_env("HOME") or "/") / ".local/state/flotilla"


def default_socket_path() -> Path:
    """``$FLOTILLA_SOCKET``, else ``$XDG_RUNTIME_DIR/flotilla/flotilla.sock``, else ``<state dir>/flotilla.sock``."""
    sock = _env("FLOTILLA_SOCKET")
    if sock:
        return Path(sock)
    runtime = _env("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "flotilla/flotilla.sock"
    return default_state_dir() / "flotilla.sock"


class Client:
    """High-level client of the flotilla daemon (dstack's ``Client``).

    Attributes:
        runs: operations with runs (:class:`~flotilla.api.RunCollection`).
        socket: the daemon's socket path.
        user: the user the daemon knows this process as.
        admin: whether that user is an admin of the daemon (root or the daemon's own user).
        daemon_version: the daemon's version.
    """

    def __init__(self, socket: PathLike) -> None:
        from .runs import RunCollection

        self.socket: str = os.fspath(socket)
        self._lock = threading.Lock()
        self._conn: Optional[Connection] = self.connect()
        self.user: str = str(self._conn.hello.get("user", ""))
        self.daemon_version: str = str(self._conn.hello.get("daemon_version", ""))
        self.admin: bool = bool(self._conn.hello.get("admin", False))
        self.runs: RunCollection = RunCollection(self)

    @staticmethod
    def from_config(
        project_name: Optional[str] = None,
        server_url: Optional[str] = None,
        user_token: Optional[str] = None,
        ssh_identity_file: Optional[PathLike] = None,
        *,
        socket: Optional[PathLike] = None,
        data_dir: Optional[PathLike] = None,
        start_daemon: bool = False,
        daemon_binary: Optional[PathLike] = None,
    ) -> "Client":
        """A client of the daemon at ``socket``, by default where ``flotilla`` looks:
        ``$FLOTILLA_SOCKET``, else ``$XDG_RUNTIME_DIR/flotilla/flotilla.sock``, else
        ``<state dir>/flotilla.sock``.

        Args:
            project_name, server_url, user_token, ssh_identity_file: dstack's arguments; flotilla
                has no projects, server URL or tokens (the socket identifies the caller), so a
                value other than ``None`` is refused with :class:`ClientError`.
            socket: the daemon's socket path.
            data_dir: the daemon's state dir when it is started here (default
                ``$FLOTILLA_DATA_DIR``, else the daemon's own default).
            start_daemon: start ``flotillad`` in the background, as the command line does, when
                nothing answers on the socket (never when the socket is someone else's).
            daemon_binary: the ``flotillad`` to start (default: ``flotillad`` on ``PATH``).

        Raises:
            DaemonNotRunningError: nothing answers and ``start_daemon`` is false.
            PermissionDeniedError: the socket belongs to a daemon this user may not use.
            ProtocolMismatchError: the daemon speaks another protocol version.
        """
        for arg, value in (("project_name", project_name), ("server_url", server_url),
                           ("user_token", user_token), ("ssh_identity_file", ssh_identity_file)):
            if value is not None:
                raise ClientError(
                    f"Client.from_config({arg}=...) is dstack's; flotilla has no projects, server URL "
                    "or tokens (its Unix socket identifies you): drop it, or pass socket=PATH"
                )
        path = os.fspath(socket) if socket is not None else str(default_socket_path())
        try:
            return Client(path)
        except DaemonNotRunningError:
            if not start_daemon:
                raise
        data = os.fspath(data_dir) if data_dir is not None else _env("FLOTILLA_DATA_DIR")
        _start_daemon(path, data, os.fspath(daemon_binary) if daemon_binary is not None else None)
        return Client(path)

    def connect(self) -> Connection:
        """A new connection to the daemon, after ``hello`` (streams each take one)."""
        return Connection(self.socket)

    def call(self, method: str, params: Optional[Dict[str, Any]] = None) -> Any:
        """Calls one socket method and returns its result (the README lists them). A lost
        connection is raised as :class:`ConnectionLostError`; the next call reconnects."""
        with self._lock:
            if self._conn is None:
                self._conn = self.connect()
            conn = self._conn
        try:
            return conn.call(method, params or {})
        except ConnectionLostError:
            with self._lock:
                if self._conn is conn:
                    self._conn = None
            conn.close()
            raise

    def close(self) -> None:
        """Closes the client's connection (attached runs keep theirs until ``detach()``)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client socket={self.socket!r} user={self.user!r}>"


def _start_daemon(socket: str, data_dir: Optional[str], binary: Optional[str]) -> None:
    """Starts ``flotillad`` in its own session, its output in ``<state dir>/flotillad.out``, and
    waits until it answers (at most 15 s)."""
    exe = binary or shutil.which("flotillad")
    if exe is None:
        raise DaemonStartError(
            "cannot start the flotilla daemon: `flotillad` is not on PATH; install it "
            "(cargo install --path daemon) or pass daemon_binary=PATH"
        )
    state = Path(data_dir) if data_dir else default_state_dir()
    try:
        state.mkdir(parents=True, exist_ok=True)
        out = open(state / "flotillad.out", "ab")
    except OSError as e:
        raise DaemonStartError(f"cannot create the state dir {state}: {e}") from e
    args = [exe, "--socket", socket]
    if data_dir:
        args += ["--data-dir", data_dir]
    try:
        with out:
            child = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                     start_new_session=True)
    except OSError as e:
        raise DaemonStartError(f"cannot start {exe}: {e}") from e
    deadline = time.monotonic() + 15
    while True:
        try:
            Connection(socket).close()
            # The daemon outlives this process in its own session (init reaps it): forget it, as
            # the command line does, so that it is not reported as a child left running.
            child.returncode = 0
            return
        except DaemonNotRunningError:
            pass
        code = child.poll()
        if code is not None:
            tail = _tail(state / "flotillad.out", 20)
            raise DaemonStartError(f"flotillad exited at start (status {code}):\n{tail}")
        if time.monotonic() > deadline:
            raise DaemonStartError(
                f"flotillad did not answer on {socket} within 15s; see {state / 'flotillad.out'}"
            )
        time.sleep(0.02)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"({path}: {e})"
    return "\n".join(text.splitlines()[-lines:])
