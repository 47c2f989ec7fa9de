"""The exceptions of the flotilla Python API.

Every error the daemon answers becomes a :class:`RpcError` (or one of its subclasses, chosen by the
error's code) carrying the daemon's ``code``, ``message`` and ``data``. Failures to reach or keep
talking to the daemon have their own classes, each saying what to do.
"""

from typing import Any, Dict, List, Optional


class ClientError(Exception):
    """The base of every error raised by ``flotilla.api`` (dstack's name for it)."""


FlotillaError = ClientError


class DaemonNotRunningError(ClientError):
    """Nothing answers on the daemon's socket."""

    def __init__(self, socket: str, cause: str) -> None:
        self.socket = socket
        super().__init__(
            f"the flotilla daemon is not running at {socket} ({cause}); start it with "
            "`flotilla daemon start`, or call Client.from_config(start_daemon=True)"
        )


class PermissionDeniedError(ClientError):
    """The socket exists but this user may not open it."""

    def __init__(self, socket: str) -> None:
        self.socket = socket
        super().__init__(
            f"cannot connect to the flotilla daemon at {socket}: permission denied; ask an admin "
            "to add you to the daemon's socket group (flotillad --socket-group GROUP, config socket_group)"
        )


class DaemonStartError(ClientError):
    """``flotillad`` could not be started on demand."""


class ConnectionLostError(ClientError):
    """The daemon closed the connection (it stopped or restarted) before answering."""

    def __init__(self, socket: str, during: str) -> None:
        self.socket = socket
        super().__init__(
            f"lost the connection to the flotilla daemon at {socket} during {during}; check "
            "`flotilla daemon status` and retry (a new Client call reconnects)"
        )


class RpcError(ClientError):
    """An error answered by the daemon: its JSON-RPC ``code``, ``message`` and ``data``."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        self.code = code
        self.message = message
        self.data = data
        super().__init__(f"{message} (code {code})")


class ProtocolMismatchError(RpcError):
    """The daemon speaks another major version of the protocol (code -32003)."""


class NotFoundError(RpcError):
    """The run (or other resource) does not exist (code -32000)."""


ResourceNotExistsError = NotFoundError


class ConflictError(RpcError):
    """The request conflicts with the current state (code -32001)."""


class ForbiddenError(RpcError):
    """The caller may not do this (code -32006)."""


class DaemonShuttingDownError(RpcError):
    """The daemon is stopping (code -32007)."""


class ConfigurationFieldError:
    """One problem of a configuration: where (``path``, ``line``, ``column``) and what."""

    def __init__(self, raw: Dict[str, Any]) -> None:
        self.file: Optional[str] = raw.get("file")
        self.line: Optional[int] = raw.get("line")
        self.column: Optional[int] = raw.get("column")
        self.path: str = raw.get("path") or ""
        self.message: str = raw.get("message") or ""

    def __repr__(self) -> str:
        return f"ConfigurationFieldError(path={self.path!r}, message={self.message!r})"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigurationError(RpcError):
    """The configuration is invalid (code -32002): ``errors`` lists every problem with its field path."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(code, message, data)
        raw = data.get("errors") if isinstance(data, dict) else None
        self.errors: List[ConfigurationFieldError] = [
            ConfigurationFieldError(e) for e in (raw or []) if isinstance(e, dict)
        ]

    @property
    def paths(self) -> List[str]:
        """The field path of every error, in the daemon's order."""
        return [e.path for e in self.errors]


class PortUsedError(ClientError):
    """A local port to forward is in use (dstack's name)."""


_BY_CODE = {
    -32000: NotFoundError,
    -32001: ConflictError,
    -32002: ConfigurationError,
    -32003: ProtocolMismatchError,
    -32006: ForbiddenError,
    -32007: DaemonShuttingDownError,
}


def rpc_error(error: Dict[str, Any]) -> RpcError:
    """The exception for a JSON-RPC ``error`` object."""
    code = error.get("code")
    code = code if isinstance(code, int) else -32603
    message = str(error.get("message") or "the daemon answered an error without a message")
    cls = _BY_CODE.get(code, RpcError)
    return cls(code, message, error.get("data"))
