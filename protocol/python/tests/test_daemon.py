"""The API against a real daemon: set FLOTILLA_SOCKET (the daemon), FLOTILLA_CLI (a `flotilla`
binary, for `ps --json`) and FLOTILLAD (a `flotillad` binary, for starting one on demand);
`cargo test -p flotilla-e2e --test python_api` does. Skipped when FLOTILLA_CLI is not set."""

import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
from unittest import mock
import urllib.request
from typing import Any, Callable, List

from flotilla.api import (
    BackendType,
    Client,
    ConfigurationError,
    ConnectionLostError,
    DaemonNotRunningError,
    DaemonShuttingDownError,
    DevEnvironment,
    ProtocolMismatchError,
    Resources,
    RetryPolicy,
    Run,
    RunStatus,
    Service,
    Task,
)

CLI = os.environ.get("FLOTILLA_CLI")
WAIT = 60.0
# dstack's defaults (2 CPUs, 8GB, 100GB disk) do not fit a small test machine.
SMALL = Resources(cpu="1..", memory="1GB..", disk="1GB..")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        return bytes(r.read())


def eventually(what: str, f: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        try:
            value = f()
            if value:
                return value
        except (OSError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {WAIT}s")
        time.sleep(0.1)


def finished(run: Run) -> Run:
    def done() -> bool:
        run.refresh()
        return run.status.is_finished()

    eventually(f"run {run.name} finished", done)
    return run


def serve(directory: str, port: int, body: str) -> str:
    """A job command that serves `body` as `/` from `directory` on 127.0.0.1:port."""
    with open(os.path.join(directory, "index.html"), "w") as f:
        f.write(body)
    return f"{sys.executable} -m http.server --bind 127.0.0.1 --directory {directory} {port}"


@unittest.skipUnless(CLI, "set FLOTILLA_SOCKET and FLOTILLA_CLI (cargo test -p flotilla-e2e --test python_api)")
class DaemonTest(unittest.TestCase):
    client: Client

    @classmethod
    def setUpClass(cls) -> None:
        cls.client = Client.from_config()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.client.close()

    def ps_json(self, *args: str) -> List[Any]:
        """`ps --json` without the `cost` the command line computes for each run."""
        out = subprocess.run([str(CLI), "ps", *args, "--json"], check=True, stdout=subprocess.PIPE)
        runs = list(json.loads(out.stdout))
        for r in runs:
            r.pop("cost", None)
        return runs

    def test_dstacks_usage_example_prints_the_tasks_output_byte_exact(self) -> None:
        # dstack's Python API example, adapted to a small local task (no image, no GPU).
        stdout = io.BytesIO()
        client = Client.from_config()
        task = Task(
            env={"GREETING": "héllo"},
            commands=[
                "echo \"$GREETING from $DSTACK_RUN_NAME\"",
                "sleep 1",
                "printf 'not utf-8: \\377\\376, split: \\303\\251\\n'",
                "printf 'no newline at the end'",
            ],
            resources=SMALL,
        )
        run = client.runs.submit(
            run_name="my-awesome-run",  # If not specified, a random name is assigned
            configuration=task,
            repo=None,
        )
        run.attach()
        try:
            for log in run.logs():
                stdout.write(log)
        except KeyboardInterrupt:
            run.stop(abort=True)
        finally:
            run.detach()
        want = "héllo from my-awesome-run\n".encode() + b"not utf-8: \xff\xfe, split: \xc3\xa9\nno newline at the end"
        self.assertEqual(stdout.getvalue(), want)
        cli = subprocess.run([str(CLI), "logs", "my-awesome-run"], check=True, stdout=subprocess.PIPE)
        self.assertEqual(cli.stdout, want)
        self.assertEqual(finished(run).status, RunStatus.DONE)
        self.assertEqual(run.backend, BackendType.LOCAL)
        self.assertEqual(run.hostname, socket.gethostname())
        client.close()

    def test_stop_abort_ends_a_sleeping_task_and_its_logs(self) -> None:
        run = self.client.runs.submit(configuration=Task(commands=["echo asleep", "sleep 600"], resources=SMALL))
        self.assertTrue(run.attach(), "the task never ran")
        seen = io.BytesIO()
        follower = threading.Thread(target=lambda: [seen.write(b) for b in run.logs()], daemon=True)
        follower.start()
        eventually("the first line", lambda: seen.getvalue() == b"asleep\n")
        run.stop(abort=True)
        self.assertIsNone(run.ports)
        follower.join(WAIT)
        self.assertFalse(follower.is_alive(), "logs() did not end with the job")
        finished(run)
        self.assertEqual(run.status, RunStatus.TERMINATED)
        self.assertEqual(run.jobs[0].termination_reason, "aborted_by_user")

    def test_attach_makes_the_port_answer_on_localhost_and_detach_closes_it(self) -> None:
        port = free_port()
        with tempfile.TemporaryDirectory() as www:
            run = self.client.runs.submit(
                configuration=Task(commands=[serve(www, port, "from the job\n")], ports=[f"*:{port}"], resources=SMALL)
            )
            idle = free_port()  # nothing listens there in the job
            self.assertTrue(run.attach(ports_overrides=[f"*:{idle}"]))
            ports = run.ports
            assert ports is not None
            self.assertEqual(sorted(ports), sorted([port, idle]))
            local = ports[port]
            self.assertNotEqual(local, port)
            self.assertEqual(eventually("the forwarded port", lambda: http_get(local)), b"from the job\n")
            # Each connection gets its own tunnel.
            self.assertEqual(http_get(local), b"from the job\n")
            # A job port that refuses: the local connection closes, the daemon's words are kept.
            with self.assertLogs("flotilla.api", "WARNING"):
                with socket.create_connection(("127.0.0.1", ports[idle]), timeout=5) as s:
                    self.assertEqual(s.recv(1), b"")
                errors = eventually("the forward's error", lambda: run.forward_errors)
            self.assertIn(f"port {idle}", errors[0])
            self.assertIn("listening", errors[0])
            run.detach()
            self.assertIsNone(run.ports)
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", local), timeout=5).close()
            run.stop(abort=True)
            finished(run)

    def test_a_services_url_answers_while_attached(self) -> None:
        port = free_port()
        with tempfile.TemporaryDirectory() as www:
            run = self.client.runs.submit(
                configuration=Service(commands=[serve(www, port, "a service\n")], port=f"*:{port}", resources=SMALL)
            )
            with self.assertRaises(ValueError):
                _ = run.service_url
            self.assertTrue(run.attach())
            url = run.service_url

            def get() -> bytes:
                with urllib.request.urlopen(url, timeout=5) as r:
                    return bytes(r.read())

            self.assertEqual(eventually("the service", get), b"a service\n")
            run.stop(abort=True)
            finished(run)

    def test_an_attached_dev_environment_is_not_inactive(self) -> None:
        run = self.client.runs.submit(configuration=DevEnvironment(
            ide="vscode", inactivity_duration="3s", init=["echo ready"], resources=SMALL))
        self.assertTrue(run.attach())
        time.sleep(5)  # past its inactivity_duration, attached all along
        run.refresh()
        self.assertEqual(run.status, RunStatus.RUNNING)
        run.detach()
        finished(run)
        self.assertEqual(run.jobs[0].termination_reason, "inactivity_duration_exceeded")

    def test_a_bad_configuration_raises_with_every_field_path(self) -> None:
        bad = Task(commands=["true"], nodes=0, resources=Resources(cpu="lots", memory="1GB.."))
        for call in (lambda: self.client.runs.submit(configuration=bad),
                     lambda: self.client.runs.get_plan(bad)):
            with self.assertRaises(ConfigurationError) as caught:
                call()
            e = caught.exception
            self.assertEqual(e.code, -32002)
            self.assertEqual(sorted(e.paths), ["nodes", "resources.cpu"])
            self.assertIn("resources.cpu", e.message)
            self.assertTrue(all(x.line and x.column for x in e.errors))

    def test_plan_then_apply(self) -> None:
        plan = self.client.runs.get_plan(Task(commands=["echo planned"], resources=SMALL), max_offers=1)
        self.assertEqual(plan.configuration_type, "task")
        self.assertEqual(len(plan.job_plans), 1)
        self.assertLessEqual(len(plan.job_plans[0]["offers"]), 1)
        run = self.client.runs.apply_plan(plan)
        self.assertEqual(b"".join(run.logs()), b"planned\n")
        run = self.client.runs.apply_configuration(Task(name="applied", commands=["echo applied"], resources=SMALL))
        self.assertEqual(run.name, "applied")
        self.assertEqual(b"".join(run.logs()), b"applied\n")

    def test_submits_keyword_arguments_override_the_configuration(self) -> None:
        # Without the override the defaults (2 CPUs, 8GB, 100GB) would apply.
        # A bare `KEY` of env takes its value from this process, as `flotilla apply` does.
        with mock.patch.dict(os.environ, {"FROM_CALLER": "from the caller"}):
            run = self.client.runs.submit(
                configuration=Task(commands=["echo overridden $FROM_CALLER"], max_duration="2h",
                                   env=["FROM_CALLER"]),
                resources=SMALL, max_duration="1h", spot_policy="auto", working_dir="/tmp",
                retry_policy=RetryPolicy(retry=False), run_name="overridden",
            )
        config = run.configuration
        self.assertEqual(run.name, "overridden")
        self.assertEqual((config["max_duration"], config["spot_policy"], config["working_dir"]),
                         (3600, "auto", "/tmp"))
        self.assertEqual(config["resources"]["memory"], {"min": 1.0, "max": None})
        self.assertEqual(b"".join(run.logs()), b"overridden from the caller\n")

    def test_list_and_get_agree_with_ps_json(self) -> None:
        names = [self.client.runs.submit(configuration=Task(commands=[f"echo {i}"], resources=SMALL)).name
                 for i in range(2)]
        for name in names:
            r = self.client.runs.get(name)
            assert r is not None
            finished(r)
        self.assertEqual([r.data for r in self.client.runs.list(all=True)], self.ps_json("-a"))
        self.assertEqual([r.data for r in self.client.runs.list()], self.ps_json())
        for entry in self.ps_json("-a"):
            got = self.client.runs.get(entry["name"])
            assert got is not None
            self.assertEqual(got.data, entry)
        self.assertIsNone(self.client.runs.get("no-such-run"))

    def test_a_daemon_started_on_demand_stopped_and_a_protocol_mismatch(self) -> None:
        with tempfile.TemporaryDirectory(prefix="flpy", dir="/tmp") as d:
            sock = os.path.join(d, "s")
            with self.assertRaises(DaemonNotRunningError) as caught:
                Client.from_config(socket=sock)
            self.assertIn("flotilla daemon start", str(caught.exception))
            c = Client.from_config(socket=sock, data_dir=os.path.join(d, "data"), start_daemon=True,
                                   daemon_binary=os.environ.get("FLOTILLAD"))
            self.assertEqual(c.call("daemon.status")["socket"], sock)
            c.call("daemon.stop")
            with self.assertRaises((ConnectionLostError, DaemonShuttingDownError)):
                eventually("the daemon's end", lambda: c.call("run.list") and False)
            deadline = time.monotonic() + WAIT
            while True:  # a daemon that is still closing may take the connection and drop it
                try:
                    Client.from_config(socket=sock).close()
                except DaemonNotRunningError:
                    break
                except (ConnectionLostError, DaemonShuttingDownError):
                    pass
                self.assertLess(time.monotonic(), deadline, "the stopped daemon still answers")
                time.sleep(0.05)
        from flotilla.api import _rpc

        ours = _rpc.PROTOCOL_VERSION
        _rpc.PROTOCOL_VERSION = "2.0"
        try:
            with self.assertRaises(ProtocolMismatchError) as mismatch:
                Client.from_config()
        finally:
            _rpc.PROTOCOL_VERSION = ours
        self.assertEqual(mismatch.exception.code, -32003)
        self.assertIn("2.0", mismatch.exception.message)


if __name__ == "__main__":
    unittest.main()
