"""dstack's configuration classes: ``Task``, ``Service``, ``DevEnvironment`` and their parts.

They take dstack's field names and serialise to the JSON (valid YAML) that the daemon parses
itself, so every rule (the resources grammar, defaults, errors with field paths) is the daemon's:
nothing is checked here but Python's types. A field left ``None`` is left out of the file.
"""

import dataclasses
import enum
import json
from typing import Any, ClassVar, Dict, List, Optional, Union


class BackendType(str, enum.Enum):
    """Backend names (dstack's, plus flotilla's own ``local``, ``ssh`` and ``pool``)."""

    LOCAL = "local"
    SSH = "ssh"
    POOL = "pool"
    REMOTE = "remote"
    AWS = "aws"
    AZURE = "azure"
    CUDO = "cudo"
    DATACRUNCH = "datacrunch"
    DSTACK = "dstack"
    GCP = "gcp"
    KUBERNETES = "kubernetes"
    LAMBDA = "lambda"
    RUNPOD = "runpod"
    TENSORDOCK = "tensordock"
    VASTAI = "vastai"


class SpotPolicy(str, enum.Enum):
    """``spot_policy``: spot, on-demand or auto."""

    SPOT = "spot"
    ONDEMAND = "on-demand"
    AUTO = "auto"


def to_value(v: Any) -> Any:
    """A configuration value as plain JSON data (nested configuration objects included)."""
    if isinstance(v, enum.Enum):
        return v.value
    if hasattr(v, "to_value") and callable(v.to_value):
        return v.to_value()
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: to_value(getattr(v, f.name)) for f in dataclasses.fields(v) if getattr(v, f.name) is not None}
    if isinstance(v, dict):
        return {str(k): to_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_value(x) for x in v]
    return v


@dataclasses.dataclass
class Range:
    """A range of counts or sizes, written ``min..max`` (either end may be open)."""

    min: Optional[Union[int, float, str]] = None
    max: Optional[Union[int, float, str]] = None

    def to_value(self) -> str:
        lo = "" if self.min is None else str(self.min)
        hi = "" if self.max is None else str(self.max)
        if lo and lo == hi:
            return lo
        return f"{lo}..{hi}"


RangeLike = Union[int, float, str, Range]


@dataclasses.dataclass
class CPU:
    """``resources.cpu``: ``arch`` (``x86``, ``arm``) and ``count`` (a number or a range)."""

    count: Optional[RangeLike] = None
    arch: Optional[str] = None


@dataclasses.dataclass
class GPU:
    """``resources.gpu``: vendor, name(s), count, memory per GPU, total memory, compute capability."""

    name: Optional[Union[str, List[str]]] = None
    count: Optional[RangeLike] = None
    memory: Optional[RangeLike] = None
    total_memory: Optional[RangeLike] = None
    compute_capability: Optional[Union[str, float]] = None
    vendor: Optional[str] = None


@dataclasses.dataclass
class Disk:
    """``resources.disk``: its ``size`` (``100GB``, ``100GB..``)."""

    size: Optional[RangeLike] = None


@dataclasses.dataclass
class Resources:
    """``resources``: cpu, memory, shm_size, gpu and disk, each as dstack writes them
    (``Resources(cpu=2, memory="8GB..", gpu=GPU(memory="24GB"), disk="100GB..")``)."""

    cpu: Optional[Union[RangeLike, CPU]] = None
    memory: Optional[RangeLike] = None
    shm_size: Optional[Union[str, float]] = None
    gpu: Optional[Union[RangeLike, GPU]] = None
    disk: Optional[Union[RangeLike, Disk]] = None


@dataclasses.dataclass
class RegistryAuth:
    """``registry_auth``: credentials for pulling a private image."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"RegistryAuth(username={self.username!r}, password='***')"


@dataclasses.dataclass
class Scaling:
    """``scaling`` of a service: ``metric`` (``rps``), ``target`` and the delays in seconds."""

    metric: str = "rps"
    target: Optional[float] = None
    scale_up_delay: Optional[Union[int, str]] = None
    scale_down_delay: Optional[Union[int, str]] = None


@dataclasses.dataclass
class Retry:
    """``retry``: the events that resubmit a job (``no-capacity``, ``interruption``, ``error``)
    and for how long."""

    on_events: Optional[List[str]] = None
    duration: Optional[Union[int, str]] = None


@dataclasses.dataclass
class RetryPolicy:
    """dstack's older ``retry_policy`` (``retry``, ``duration``), written as ``retry``."""

    retry: bool = True
    duration: Optional[Union[int, str]] = None

    def to_value(self) -> Any:
        if not self.retry:
            return False
        return True if self.duration is None else {"duration": to_value(self.duration)}


# The field of the configuration classes: what run.plan / run.apply take for every run type.
Env = Union[Dict[str, str], List[str]]


@dataclasses.dataclass
class _RunConfiguration:
    """The fields every run configuration takes, with the meanings of dstack's files (the
    repository's README, "Configuration files", says what flotilla does with each):

    Attributes:
        name: the run name (``submit(run_name=...)`` overrides it).
        image, user, privileged, entrypoint, registry_auth, python, nvcc, docker, shell:
            how the job runs (in a container when ``image``, ``python``, ``nvcc`` or ``docker``).
        working_dir, home_dir, env, setup, volumes, files, repos, single_branch: the job's
            environment and files.
        resources: the requirements (:class:`Resources`, or dstack's strings).
        priority, backends, regions, availability_zones, instance_types, reservation,
        spot_policy, retry, max_duration, stop_duration, max_price, creation_policy,
        idle_duration, utilization_policy, startup_order, stop_criteria, schedule, fleets, tags:
            the profile: where and how long it may run.
    """

    TYPE: ClassVar[str] = ""

    name: Optional[str] = None
    image: Optional[str] = None
    user: Optional[str] = None
    privileged: Optional[bool] = None
    entrypoint: Optional[str] = None
    working_dir: Optional[str] = None
    home_dir: Optional[str] = None
    registry_auth: Optional[Union[RegistryAuth, Dict[str, str]]] = None
    python: Optional[str] = None
    nvcc: Optional[bool] = None
    docker: Optional[bool] = None
    single_branch: Optional[bool] = None
    env: Optional[Env] = None
    shell: Optional[str] = None
    resources: Optional[Union[Resources, Dict[str, Any]]] = None
    priority: Optional[int] = None
    volumes: Optional[List[Any]] = None
    files: Optional[List[Any]] = None
    repos: Optional[List[Any]] = None
    setup: Optional[List[str]] = None
    backends: Optional[List[Union[str, BackendType]]] = None
    regions: Optional[List[str]] = None
    availability_zones: Optional[List[str]] = None
    instance_types: Optional[List[str]] = None
    reservation: Optional[str] = None
    spot_policy: Optional[Union[str, SpotPolicy]] = None
    retry: Optional[Union[bool, Retry, RetryPolicy, Dict[str, Any]]] = None
    max_duration: Optional[Union[int, str, bool]] = None
    stop_duration: Optional[Union[int, str, bool]] = None
    max_price: Optional[float] = None
    creation_policy: Optional[str] = None
    idle_duration: Optional[Union[int, str]] = None
    utilization_policy: Optional[Dict[str, Any]] = None
    startup_order: Optional[str] = None
    stop_criteria: Optional[str] = None
    schedule: Optional[Dict[str, Any]] = None
    fleets: Optional[List[str]] = None
    tags: Optional[Dict[str, str]] = None

    @property
    def type(self) -> str:
        """``task``, ``service`` or ``dev-environment``."""
        return self.TYPE

    def to_dict(self) -> Dict[str, Any]:
        """The configuration as the file's mapping: ``type`` first, unset fields left out."""
        out: Dict[str, Any] = {"type": self.TYPE}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = to_value(value)
        return out

    def to_json(self) -> str:
        """The configuration file's text (JSON, which the daemon reads as YAML), one field a line."""
        return json.dumps(self.to_dict(), indent=2)


@dataclasses.dataclass
class Task(_RunConfiguration):
    """A task: ``commands`` run to completion on ``nodes`` nodes, with ``ports`` to forward."""

    TYPE: ClassVar[str] = "task"

    commands: Optional[List[str]] = None
    ports: Optional[List[Union[int, str]]] = None
    nodes: Optional[int] = None
    groups: Optional[List[Dict[str, Any]]] = None


@dataclasses.dataclass
class Service(_RunConfiguration):
    """A service: ``commands`` that serve on ``port``, with ``replicas`` and ``scaling``."""

    TYPE: ClassVar[str] = "service"

    commands: Optional[List[str]] = None
    port: Optional[Union[int, str]] = None
    replicas: Optional[Union[int, str, Range, List[Dict[str, Any]]]] = None
    scaling: Optional[Scaling] = None
    auth: Optional[bool] = None
    model: Optional[Union[str, Dict[str, Any]]] = None
    probes: Optional[List[Dict[str, Any]]] = None
    gateway: Optional[Union[bool, str]] = None
    https: Optional[Union[bool, str]] = None
    strip_prefix: Optional[bool] = None
    rate_limits: Optional[List[Dict[str, Any]]] = None
    router: Optional[Dict[str, Any]] = None


@dataclasses.dataclass
class DevEnvironment(_RunConfiguration):
    """A dev environment: ``init`` commands, then up until stopped or inactive."""

    TYPE: ClassVar[str] = "dev-environment"

    ide: Optional[str] = None
    version: Optional[str] = None
    init: Optional[List[str]] = None
    ports: Optional[List[Union[int, str]]] = None
    inactivity_duration: Optional[Union[int, str, bool]] = None


AnyRunConfiguration = Union[Task, Service, DevEnvironment]

# dstack's other names for the same classes.
TaskConfiguration = Task
ServiceConfiguration = Service
DevEnvironmentConfiguration = DevEnvironment
ResourcesSpec = Resources
GPUSpec = GPU
DiskSpec = Disk
CPUSpec = CPU
ScalingSpec = Scaling
