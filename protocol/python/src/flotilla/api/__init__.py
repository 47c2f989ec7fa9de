"""dstack's Python API, served by the flotilla daemon.

A dstack script runs on flotilla by changing its import::

    from flotilla.api import Client, Task, Resources

    client = Client.from_config()
    run = client.runs.submit(configuration=Task(commands=["echo hi"], resources=Resources(cpu="1..")))
    for log in run.logs():
        print(log.decode(), end="")
"""

from ._rpc import PROTOCOL_VERSION
from .client import Client, default_socket_path, default_state_dir
from .configurations import (
    CPU,
    GPU,
    AnyRunConfiguration,
    BackendType,
    CPUSpec,
    DevEnvironment,
    DevEnvironmentConfiguration,
    Disk,
    DiskSpec,
    GPUSpec,
    Range,
    RegistryAuth,
    Resources,
    ResourcesSpec,
    Retry,
    RetryPolicy,
    Scaling,
    ScalingSpec,
    Service,
    ServiceConfiguration,
    SpotPolicy,
    Task,
    TaskConfiguration,
)
from .errors import (
    ClientError,
    ConfigurationError,
    ConfigurationFieldError,
    ConflictError,
    ConnectionLostError,
    DaemonNotRunningError,
    DaemonShuttingDownError,
    DaemonStartError,
    FlotillaError,
    ForbiddenError,
    NotFoundError,
    PermissionDeniedError,
    PortUsedError,
    ProtocolMismatchError,
    ResourceNotExistsError,
    RpcError,
)
from .runs import Job, JobStatus, Run, RunCollection, RunPlan, RunStatus

__all__ = [
    "PROTOCOL_VERSION",
    "AnyRunConfiguration",
    "BackendType",
    "CPU",
    "CPUSpec",
    "Client",
    "ClientError",
    "ConfigurationError",
    "ConfigurationFieldError",
    "ConflictError",
    "ConnectionLostError",
    "DaemonNotRunningError",
    "DaemonShuttingDownError",
    "DaemonStartError",
    "DevEnvironment",
    "DevEnvironmentConfiguration",
    "Disk",
    "DiskSpec",
    "FlotillaError",
    "ForbiddenError",
    "GPU",
    "GPUSpec",
    "Job",
    "JobStatus",
    "NotFoundError",
    "PermissionDeniedError",
    "PortUsedError",
    "ProtocolMismatchError",
    "Range",
    "RegistryAuth",
    "ResourceNotExistsError",
    "Resources",
    "ResourcesSpec",
    "Retry",
    "RetryPolicy",
    "RpcError",
    "Run",
    "RunCollection",
    "RunPlan",
    "RunStatus",
    "Scaling",
    "ScalingSpec",
    "Service",
    "ServiceConfiguration",
    "SpotPolicy",
    "Task",
    "TaskConfiguration",
    "default_socket_path",
    "default_state_dir",
]
