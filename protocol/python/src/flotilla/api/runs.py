"""Runs: ``RunCollection`` (``client.runs``), ``Run``, ``Job``, ``RunPlan`` and the statuses."""

import base64
import enum
import json
import os
import socket
import threading
import time
import warnings
from datetime import datetime
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ._forward import Forwarder, listen, parse_port
from ._rpc import Connection
from .configurations import AnyRunConfiguration, Resources, RetryPolicy, to_value
from .errors import ClientError, ConnectionLostError, ForbiddenError, NotFoundError, RpcError

if TYPE_CHECKING:
    from .client import Client

PathLike = Union[str, "os.PathLike[str]"]

ATTACH_POLL_SECS = 0.5
"""How often ``attach()`` looks at the run while it waits for the job to run."""


class RunStatus(str, enum.Enum):
    """A run's status: ``pending -> submitted -> provisioning -> running -> terminating ->
    terminated | failed | done``."""

    PENDING = "pending"
    SUBMITTED = "submitted"
    PROVISIONING = "provisioning"
    RUNNING = "running"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    FAILED = "failed"
    DONE = "done"

    def is_finished(self) -> bool:
        """Terminated, failed or done."""
        return self in (RunStatus.TERMINATED, RunStatus.FAILED, RunStatus.DONE)


class JobStatus(str, enum.Enum):
    """A job's status (its current submission's)."""

    SUBMITTED = "submitted"
    PROVISIONING = "provisioning"
    PULLING = "pulling"
    RUNNING = "running"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    ABORTED = "aborted"
    FAILED = "failed"
    DONE = "done"

    def is_finished(self) -> bool:
        """Terminated, aborted, failed or done."""
        return self in (JobStatus.TERMINATED, JobStatus.ABORTED, JobStatus.FAILED, JobStatus.DONE)


class Job:
    """One job of a run (its current submission), as ``flotilla ps --json`` shows it in ``jobs``."""

    def __init__(self, data: Dict[str, Any]) -> None:
        self.data: Dict[str, Any] = data
        """The job as the daemon sent it."""

    @property
    def replica_num(self) -> int:
        return int(self.data.get("replica_num", 0))

    @property
    def job_num(self) -> int:
        return int(self.data.get("job_num", 0))

    @property
    def job_name(self) -> str:
        return str(self.data.get("job_name", ""))

    @property
    def status(self) -> JobStatus:
        return JobStatus(self.data.get("status"))

    @property
    def termination_reason(self) -> Optional[str]:
        return self.data.get("termination_reason")

    @property
    def exit_code(self) -> Optional[int]:
        return self.data.get("exit_code")

    @property
    def instance(self) -> Optional[str]:
        """``fleet/instance`` names of where it runs, when placed (``instance`` only)."""
        return self.data.get("instance")

    @property
    def fleet(self) -> Optional[str]:
        return self.data.get("fleet")

    def __repr__(self) -> str:
        return f"<Job {self.job_name!r} {self.data.get('status')}>"


class RunPlan:
    """What applying a configuration would do (``run.plan``): the run's name (empty when the
    daemon picks it at apply) and each job's best offers. Pass it to ``apply_plan``."""

    def __init__(self, data: Dict[str, Any], configuration: str, file_name: Optional[str],
                 env: Dict[str, str], run_name: Optional[str], ports: Optional[List[Any]] = None) -> None:
        self.data: Dict[str, Any] = data
        self.run_name: str = str(data.get("run_name", ""))
        self.configuration_type: str = str(data.get("configuration_type", ""))
        self.user: str = str(data.get("user", ""))
        self.current_run_status: Optional[str] = data.get("current_run_status")
        self.job_plans: List[Dict[str, Any]] = list(data.get("jobs") or [])
        self._configuration = configuration
        self._file_name = file_name
        self._env = env
        self._name = run_name
        self._ports: List[Any] = list(ports or [])

    @property
    def jobs(self) -> List[Dict[str, Any]]:
        """Each job's plan: ``replica_num``, ``job_num``, ``job_name``, ``offers``, ``total_offers``, ``max_price``."""
        return self.job_plans

    def _params(self) -> Dict[str, Any]:
        return {"configuration": self._configuration, "file_name": self._file_name,
                "env": self._env, "name": self._name}

    def __repr__(self) -> str:
        return f"<RunPlan {self.run_name or '(name at apply)'} {self.configuration_type}, {len(self.job_plans)} job(s)>"


class Run:
    """A run (dstack's ``Run``): its state as last fetched, and what can be done with it.

    Attributes:
        name: the run's name.
        status: its status (:class:`RunStatus`).
        jobs: its jobs.
        ports: local port of each forwarded job port (``{remote: local}``) while attached, else ``None``.
        data: the run as the daemon sent it (the same object as in ``flotilla ps --json``).
    """

    def __init__(self, client: "Client", data: Dict[str, Any],
                 reserved: Optional[Dict[int, socket.socket]] = None) -> None:
        self._client = client
        self.data: Dict[str, Any] = data
        self._reserved: Dict[int, socket.socket] = dict(reserved or {})
        self._forwarder: Optional[Forwarder] = None
        self._attached_job: Optional[Tuple[int, int]] = None
        self._presence: Optional[Connection] = None
        self._bind_address = "127.0.0.1"

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def status(self) -> RunStatus:
        return RunStatus(self.data["status"])

    @property
    def jobs(self) -> List[Job]:
        return [Job(j) for j in self.data.get("jobs") or []]

    @property
    def user(self) -> str:
        return str(self.data.get("user", ""))

    @property
    def termination_reason(self) -> Optional[str]:
        return self.data.get("termination_reason")

    @property
    def status_message(self) -> Optional[str]:
        return self.data.get("status_message")

    @property
    def configuration(self) -> Dict[str, Any]:
        """The normalized configuration (defaults resolved), as the daemon keeps it."""
        return dict(self.data.get("configuration") or {})

    @property
    def ports(self) -> Optional[Dict[int, int]]:
        if self._forwarder is None:
            return None
        return dict(self._forwarder.ports)

    def _instance(self) -> Optional[Dict[str, Any]]:
        """The instance the first job runs (or ran) on, from ``instance.list``."""
        jobs = self.jobs
        if not jobs or jobs[0].data.get("instance_id") is None:
            return None
        wanted = jobs[0].data["instance_id"]
        for instance in self._client.call("instance.list") or []:
            if isinstance(instance, dict) and instance.get("id") == wanted:
                return instance
        return None

    @property
    def backend(self) -> Optional[str]:
        """The backend of the first job's instance (``local``, ``ssh``, a configured backend's
        type; compares equal to :class:`BackendType` members), ``None`` before it is placed."""
        instance = self._instance()
        return None if instance is None else instance.get("backend")

    @property
    def hostname(self) -> Optional[str]:
        """The host name of the first job's instance, ``None`` before it is placed."""
        instance = self._instance()
        return None if instance is None else instance.get("hostname")

    @property
    def forward_errors(self) -> List[str]:
        """What went wrong on forwarded connections while attached (a job port nothing listens
        on, say), oldest first; each is also logged on the ``flotilla.api`` logger."""
        return list(self._forwarder.errors) if self._forwarder is not None else []

    @property
    def service_url(self) -> str:
        """The service's URL on this machine: ``http://127.0.0.1:LOCAL`` while attached (flotilla
        has no gateway; ``attach()`` forwards the service's ``port``)."""
        config = self.configuration
        if config.get("type") != "service":
            raise ValueError("The run is not a service")
        port = config.get("port")
        if port is None:
            raise ValueError(f"service {self.name} has no port")
        _, remote = parse_port(port)
        ports = self.ports
        if ports is None or remote not in ports:
            raise ValueError(
                f"service {self.name} is not attached: flotilla has no gateway, call run.attach() "
                "and its port is forwarded to this machine"
            )
        host = self._bind_address if self._bind_address not in ("0.0.0.0", "::", "") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{ports[remote]}"

    def refresh(self) -> None:
        """Fetches the run's current state."""
        self.data = self._client.call("run.get", {"name": self.name})

    def stop(self, abort: bool = False) -> None:
        """Stops the run (SIGTERM, then SIGKILL after ``stop_duration``; ``abort``: at once) and detaches."""
        self.data = self._client.call("run.stop", {"name": self.name, "abort": bool(abort)})
        self.detach()

    def _find_job(self, replica_num: Optional[int], job_num: int) -> Optional[Job]:
        jobs = [j for j in self.jobs if j.job_num == job_num]
        if replica_num is not None:
            return next((j for j in jobs if j.replica_num == replica_num), None)
        running = [j for j in jobs if j.data.get("status") == JobStatus.RUNNING.value]
        return min(running or jobs, key=lambda j: j.replica_num, default=None)

    def logs(self, start_time: Optional[datetime] = None, diagnose: bool = False,
             replica_num: Optional[int] = None, job_num: int = 0) -> Iterator[bytes]:
        """The job's log as it is written: the bytes so far, then live, byte-exact, ending when
        the job ends (``logs.follow``).

        Args:
            start_time: not supported (flotilla's logs carry no timestamps): must be ``None``.
            diagnose: not supported (there are no runner logs): must be ``False``.
            replica_num: the replica (``None``: a running one, else the lowest).
            job_num: the job within the replica.
        """
        if start_time is not None:
            raise ClientError("logs(start_time=...) is not supported: flotilla's logs carry no timestamps; "
                              "omit start_time")
        if diagnose:
            raise ClientError("logs(diagnose=True) is not supported: flotilla has no runner logs; "
                              "the job's log is all there is")
        job = self._find_job(replica_num, job_num)
        if job is None:
            return
        attached = self._attached_job == (job.replica_num, job.job_num)
        conn = self._client.connect()
        try:
            params: Dict[str, Any] = {"run": self.name, "replica": job.replica_num,
                                      "job": job.job_num, "offset": 0}
            if attached:
                params["attach"] = True
            for kind, item in conn.stream("logs.follow", params, "logs.chunk"):
                if kind == "end":
                    return
                if item.get("text") is not None:
                    yield str(item["text"]).encode("utf-8")
                elif item.get("b64") is not None:
                    yield base64.b64decode(item["b64"])
        finally:
            conn.close()

    def attach(self, ssh_identity_file: Optional[PathLike] = None, bind_address: Optional[str] = None,
               ports_overrides: Optional[Sequence[Any]] = None, replica_num: Optional[int] = None,
               job_num: int = 0) -> bool:
        """Waits for the job to run, then forwards the configuration's ``ports`` (and a service's
        ``port``) from ``bind_address`` (default ``127.0.0.1``) to the job through the daemon,
        and returns ``True`` once they listen (``ports`` has the mapping). Returns ``False``
        when the run ends before the job runs.

        Args:
            ssh_identity_file: ignored (the forwards go through the daemon's socket, not SSH).
            bind_address: the local address to listen on.
            ports_overrides: extra or replacing mappings, ``"LOCAL:REMOTE"``, ``"*:REMOTE"``
                (any free port) or ``REMOTE``.
            replica_num: the replica (``None``: a running one, else the lowest).
            job_num: the job within the replica.

        Raises:
            PortUsedError: a local port is in use.
            ForbiddenError: the run is another user's (and this user is no admin).
        """
        if ssh_identity_file is not None:
            warnings.warn("attach(ssh_identity_file=...) is ignored: flotilla forwards ports through its "
                          "socket", stacklevel=2)
        if self._forwarder is not None:
            job = self._find_job(replica_num, job_num)
            if job is not None and self._attached_job == (job.replica_num, job.job_num):
                return True
            raise ClientError("Cannot attach to a different job while attached. Detach first.")
        # Only the run's owner (or an admin) may reach into it; the daemon checks every tunnel,
        # this says so before anything waits.
        if self.user != self._client.user and not self._client.admin:
            raise ForbiddenError(
                -32006,
                f"run {self.name} belongs to {self.user}: only its owner or an admin can attach to it",
            )
        job = self._wait_running(replica_num, job_num)
        if job is None:
            self._release_reserved()
            return False
        bind = bind_address or "127.0.0.1"
        wanted: Dict[int, Optional[int]] = {}
        for spec in self._run_ports():
            local, remote = parse_port(spec)
            wanted.setdefault(remote, local)
        for spec in ports_overrides or []:
            try:
                local, remote = parse_port(spec)
            except (ValueError, KeyError, TypeError) as e:
                raise ClientError(f"ports_overrides: {spec!r} is not a port mapping ({e}); write "
                                  "\"LOCAL:REMOTE\", \"*:REMOTE\" or REMOTE") from e
            wanted[remote] = local
            if remote in self._reserved:
                self._reserved.pop(remote).close()
        listeners: Dict[int, socket.socket] = {}
        try:
            for remote, local in wanted.items():
                reserved = self._reserved.pop(remote, None)
                if reserved is not None and bind == "127.0.0.1":
                    reserved.listen(64)
                    listeners[remote] = reserved
                    continue
                if reserved is not None:
                    reserved.close()
                listeners[remote] = listen(bind, local or 0, remote, self.name)
        except BaseException:
            for s in listeners.values():
                s.close()
            raise
        self._release_reserved()
        self._bind_address = bind
        self._forwarder = Forwarder(self._client.socket, self.name, job.replica_num, job.job_num, listeners)
        self._attached_job = (job.replica_num, job.job_num)
        self._start_presence(job)
        return True

    def detach(self) -> None:
        """Stops forwarding: the local ports close, and so do the connections through them."""
        if self._forwarder is not None:
            self._forwarder.close()
            self._forwarder = None
        if self._presence is not None:
            self._presence.close()
            self._presence = None
        self._attached_job = None
        self._release_reserved()

    def _run_ports(self) -> List[Any]:
        config = self.configuration
        ports = list(config.get("ports") or [])
        if config.get("type") == "service" and config.get("port") is not None:
            ports.append(config["port"])
        return ports

    def _wait_running(self, replica_num: Optional[int], job_num: int) -> Optional[Job]:
        while True:
            job = self._find_job(replica_num, job_num)
            if job is None:
                raise ClientError(
                    f"run {self.name} has no job {job_num} of replica "
                    f"{'<any>' if replica_num is None else replica_num}; run.jobs lists its jobs"
                )
            status = job.data.get("status")
            if status == JobStatus.RUNNING.value:
                return job
            if JobStatus(status).is_finished() or self.status.is_finished():
                return None
            time.sleep(ATTACH_POLL_SECS)
            self.refresh()

    def _start_presence(self, job: Job) -> None:
        """Follows the job's log as an attached client (``logs.follow`` with ``attach``), so that
        a dev environment is not inactive while attached; the bytes are dropped."""
        conn = self._client.connect()
        try:
            size = conn.call("logs.read", {"run": self.name, "replica": job.replica_num,
                                           "job": job.job_num, "offset": 0, "limit": 0}).get("size", 0)
        except BaseException:
            conn.close()
            raise
        self._presence = conn
        params = {"run": self.name, "replica": job.replica_num, "job": job.job_num,
                  "offset": int(size), "attach": True}

        def follow() -> None:
            try:
                for _ in conn.stream("logs.follow", params, "logs.chunk"):
                    pass
            except (ConnectionLostError, RpcError, OSError):
                pass
            finally:
                conn.close()

        threading.Thread(target=follow, daemon=True, name=f"flotilla-attach-{self.name}").start()

    def _release_reserved(self) -> None:
        for s in self._reserved.values():
            s.close()
        self._reserved = {}

    def __del__(self) -> None:
        try:
            self.detach()
        except Exception:  # noqa: BLE001 - nothing to report to at collection time
            pass

    def __str__(self) -> str:
        return f"<Run '{self.name}'>"

    __repr__ = __str__


def _caller_env(config: Dict[str, Any]) -> Dict[str, str]:
    """Values from this process's environment for the bare ``KEY`` entries of ``env``."""
    env = config.get("env")
    names: List[str] = []
    if isinstance(env, list):
        names = [str(e) for e in env if isinstance(e, str) and "=" not in e]
    elif isinstance(env, dict):
        names = [str(k) for k, v in env.items() if v is None]
    return {n: os.environ[n] for n in names if n in os.environ}


class RunCollection:
    """Operations with runs (``client.runs``)."""

    def __init__(self, client: "Client") -> None:
        self._client = client

    def get(self, run_name: str) -> Optional[Run]:
        """The run named ``run_name``, or ``None`` when there is none."""
        try:
            return Run(self._client, self._client.call("run.get", {"name": run_name}))
        except NotFoundError:
            return None

    def list(self, all: bool = False, limit: Optional[int] = None) -> List[Run]:
        """Unfinished runs (or the last run when none is), or every run with ``all``; newest
        first, as ``flotilla ps --json`` (``-a``). With ``limit``, the newest ``limit`` of all runs."""
        runs = self._client.call("run.list", {"all": bool(all) or limit is not None})
        if limit is not None:
            runs = runs[:limit]
        return [Run(self._client, r) for r in runs]

    def get_plan(self, configuration: AnyRunConfiguration, repo: Optional[Any] = None,
                 profile: Optional[Any] = None, configuration_path: Optional[str] = None,
                 max_offers: Optional[int] = None, run_name: Optional[str] = None) -> RunPlan:
        """What applying ``configuration`` would do (``run.plan``); configuration errors are raised
        as :class:`ConfigurationError` with every field path."""
        _refuse(repo=repo, profile=profile)
        return self._plan(configuration.to_dict(), configuration_path, run_name, max_offers)

    get_run_plan = get_plan

    def apply_plan(self, run_plan: RunPlan, repo: Optional[Any] = None,
                   reserve_ports: bool = True) -> Run:
        """Submits the plan's configuration (``run.apply``). With ``reserve_ports``, the local
        ports of the configuration's ``ports`` (and a service's ``port``) are bound now and used
        by ``attach()`` (a local port equal to the job's port is bound at ``attach()`` only)."""
        _refuse(repo=repo)
        reserved = _reserve(run_plan) if reserve_ports else {}
        try:
            data = self._client.call("run.apply", run_plan._params())
        except BaseException:
            for s in reserved.values():
                s.close()
            raise
        return Run(self._client, data, reserved)

    def apply_configuration(self, configuration: AnyRunConfiguration, repo: Optional[Any] = None,
                            profile: Optional[Any] = None, configuration_path: Optional[str] = None,
                            reserve_ports: bool = True, run_name: Optional[str] = None) -> Run:
        """``get_plan`` then ``apply_plan``."""
        plan = self.get_plan(configuration, repo=repo, profile=profile,
                             configuration_path=configuration_path, run_name=run_name)
        return self.apply_plan(plan, repo=repo, reserve_ports=reserve_ports)

    def submit(self, configuration: AnyRunConfiguration, configuration_path: Optional[str] = None,
               repo: Optional[Any] = None, backends: Optional[List[Any]] = None,
               regions: Optional[List[str]] = None, instance_types: Optional[List[str]] = None,
               resources: Optional[Union[Resources, Dict[str, Any]]] = None, spot_policy: Optional[Any] = None,
               retry_policy: Optional[Union[RetryPolicy, Any]] = None,
               max_duration: Optional[Union[int, str]] = None, max_price: Optional[float] = None,
               working_dir: Optional[str] = None, run_name: Optional[str] = None,
               reserve_ports: bool = True) -> Run:
        """Submits a run (dstack's ``submit``): the keyword arguments override the configuration's
        fields of the same name (``retry_policy`` its ``retry``); ``run_name`` its ``name`` (by
        default the configuration's, else a name the daemon picks).

        Raises:
            ConfigurationError: the configuration is invalid; ``errors`` has every field path.
        """
        _refuse(repo=repo)
        config = configuration.to_dict()
        overrides = {"backends": backends, "regions": regions, "instance_types": instance_types,
                     "resources": resources, "spot_policy": spot_policy, "retry": retry_policy,
                     "max_duration": max_duration, "max_price": max_price, "working_dir": working_dir}
        for key, value in overrides.items():
            if value is not None:
                config[key] = to_value(value)
        plan = self._plan(config, configuration_path, run_name, None, check=False)
        return self.apply_plan(plan, reserve_ports=reserve_ports)

    def _plan(self, config: Dict[str, Any], configuration_path: Optional[str],
              run_name: Optional[str], max_offers: Optional[int], check: bool = True) -> RunPlan:
        _refuse_local_files(config)
        text = json.dumps(config, indent=2)
        env = _caller_env(config)
        ports = list(config.get("ports") or [])
        if config.get("type") == "service" and config.get("port") is not None:
            ports.append(config["port"])
        data: Dict[str, Any] = {"run_name": run_name or config.get("name") or "",
                                "configuration_type": config.get("type"), "jobs": []}
        plan = RunPlan(data, text, configuration_path, env, run_name, ports)
        if check:
            data = self._client.call("run.plan", plan._params())
            if max_offers is not None:
                for job in data.get("jobs") or []:
                    job["offers"] = (job.get("offers") or [])[:max_offers]
            plan = RunPlan(data, text, configuration_path, env, run_name, ports)
        return plan


def _reserve(plan: RunPlan) -> Dict[int, socket.socket]:
    """Binds the local port of each of the plan's ports on 127.0.0.1 (any free one for
    ``*:PORT``), except a local port equal to the job's port."""
    reserved: Dict[int, socket.socket] = {}
    try:
        for spec in plan._ports:
            try:
                local, remote = parse_port(spec)
            except (ValueError, KeyError, TypeError):
                continue  # the daemon reports it, with its field path
            # A local port equal to the job's is bound at attach only: a job on this machine
            # (host networking) listens on that very port and must not find it taken.
            if local != remote and remote not in reserved:
                reserved[remote] = listen("127.0.0.1", local or 0, remote, plan.run_name or "the run",
                                          accept=False)
    except BaseException:
        for s in reserved.values():
            s.close()
        raise
    return reserved


def _refuse_local_files(config: Dict[str, Any]) -> None:
    """``files`` and local ``repos`` are packed and uploaded by ``flotilla apply`` (the daemon
    needs their archives before ``run.apply``); this client does not upload them yet."""
    def is_url(repo: Any) -> bool:
        if isinstance(repo, dict):
            return repo.get("url") is not None
        text = str(repo)
        return "://" in text or text.split(":", 1)[0].count("@") == 1
    local = [str(r) for r in (config.get("repos") or []) if not is_url(r)]
    if config.get("files") or local:
        raise ClientError(
            "files and local repos are not uploaded by the Python client yet: apply the "
            "configuration with `flotilla apply -f FILE` (which packs and uploads them), or give "
            "the repo as a `url`")


def _refuse(**args: Any) -> None:
    for name, value in args.items():
        if value is not None:
            raise ClientError(
                f"{name}=... is not supported by flotilla yet: pass {name}=None (files reach a job "
                "through its commands, image or working_dir)"
            )
