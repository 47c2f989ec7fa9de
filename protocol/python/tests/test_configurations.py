"""The client's own parts, without a daemon: configurations as the daemon reads them, port
mappings, errors by code, and where the socket is looked for."""

import json
import os
import unittest
from unittest import mock

from flotilla.api import (
    CPU,
    GPU,
    ConfigurationError,
    Disk,
    NotFoundError,
    ProtocolMismatchError,
    Range,
    RegistryAuth,
    Resources,
    RetryPolicy,
    RpcError,
    Service,
    Task,
    default_socket_path,
)
from flotilla.api._forward import parse_port
from flotilla.api.errors import rpc_error


class ConfigurationTest(unittest.TestCase):
    def test_a_task_is_the_file_dstack_would_write(self) -> None:
        task = Task(
            image="ghcr.io/huggingface/text-generation-inference:latest",
            env={"MODEL_ID": "TheBloke/Llama-2-13B-chat-GPTQ"},
            commands=["text-generation-launcher --trust-remote-code --quantize gptq"],
            ports=["80"],
            resources=Resources(gpu=GPU(memory="24GB")),
        )
        self.assertEqual(
            json.loads(task.to_json()),
            {
                "type": "task",
                "image": "ghcr.io/huggingface/text-generation-inference:latest",
                "env": {"MODEL_ID": "TheBloke/Llama-2-13B-chat-GPTQ"},
                "resources": {"gpu": {"memory": "24GB"}},
                "commands": ["text-generation-launcher --trust-remote-code --quantize gptq"],
                "ports": ["80"],
            },
        )

    def test_nested_parts_and_ranges(self) -> None:
        r = Resources(cpu=CPU(count=Range(2, 8), arch="arm"), memory=Range(min="8GB"),
                      gpu=GPU(name=["A100", "H100"], count=Range(1, 1)), disk=Disk(size="100GB.."))
        self.assertEqual(
            Service(port=8000, commands=["serve"], resources=r, retry=RetryPolicy(duration="1h")).to_dict(),
            {
                "type": "service",
                "resources": {
                    "cpu": {"count": "2..8", "arch": "arm"},
                    "memory": "8GB..",
                    "gpu": {"name": ["A100", "H100"], "count": "1"},
                    "disk": {"size": "100GB.."},
                },
                "retry": {"duration": "1h"},
                "commands": ["serve"],
                "port": 8000,
            },
        )
        self.assertEqual(Range(max=4).to_value(), "..4")
        self.assertEqual(Range().to_value(), "..")

    def test_a_registry_password_is_not_in_the_repr(self) -> None:
        self.assertNotIn("s3cret", repr(RegistryAuth(username="ana", password="s3cret")))


class PortsTest(unittest.TestCase):
    def test_port_mappings_as_dstack_and_the_daemon_write_them(self) -> None:
        self.assertEqual(parse_port("8080"), (8080, 8080))
        self.assertEqual(parse_port(8080), (8080, 8080))
        self.assertEqual(parse_port("18080:8080"), (18080, 8080))
        self.assertEqual(parse_port("*:8080"), (None, 8080))
        self.assertEqual(parse_port({"local": None, "container": 8080}), (None, 8080))
        self.assertEqual(parse_port({"local": 9000, "container": 8080}), (9000, 8080))


class ErrorsTest(unittest.TestCase):
    def test_each_code_has_its_exception(self) -> None:
        self.assertIsInstance(rpc_error({"code": -32000, "message": "run x not found"}), NotFoundError)
        self.assertIsInstance(rpc_error({"code": -32003, "message": "m"}), ProtocolMismatchError)
        other = rpc_error({"code": -32603, "message": "boom"})
        self.assertIs(type(other), RpcError)
        self.assertEqual((other.code, other.message), (-32603, "boom"))

    def test_a_configuration_error_keeps_every_field_path(self) -> None:
        e = rpc_error({
            "code": -32002,
            "message": "configuration:3:3: comands: unknown field",
            "data": {"errors": [
                {"file": "configuration", "line": 3, "column": 3, "path": "comands", "message": "unknown field"},
                {"file": "configuration", "line": 7, "column": 12, "path": "resources.cpu", "message": "bad"},
            ]},
        })
        self.assertIsInstance(e, ConfigurationError)
        assert isinstance(e, ConfigurationError)
        self.assertEqual(e.paths, ["comands", "resources.cpu"])
        self.assertEqual((e.errors[1].line, e.errors[1].column), (7, 12))


class LocalFilesTest(unittest.TestCase):
    def test_files_and_local_repos_are_refused_until_this_client_uploads_them(self) -> None:
        from flotilla.api.errors import ClientError
        from flotilla.api.runs import _refuse_local_files

        for config in ({"files": ["data"]}, {"repos": ["."]}, {"repos": [{"local_path": ".."}]}):
            with self.assertRaises(ClientError) as caught:
                _refuse_local_files(config)
            self.assertIn("flotilla apply", str(caught.exception))
        for config in ({}, {"repos": ["https://github.com/dstackai/dstack"]},
                       {"repos": ["git@github.com:dstackai/dstack.git"]}, {"repos": [{"url": "x"}]}):
            _refuse_local_files(config)


class SocketPathTest(unittest.TestCase):
    def test_the_socket_is_looked_for_as_the_command_line_does(self) -> None:
        env = {"FLOTILLA_SOCKET": "", "XDG_RUNTIME_DIR": "", "XDG_STATE_HOME": "", "HOME": "/home/ana"}
        with mock.patch.dict(os.environ, env):
            self.assertEqual(str(default_socket_path()), "/home/ana/.local/state/flotilla/flotilla.sock")
            os.environ["XDG_STATE_HOME"] = "/st"
            self.assertEqual(str(default_socket_path()), "/st/flotilla/flotilla.sock")
            os.environ["XDG_RUNTIME_DIR"] = "/run/user/1000"
            self.assertEqual(str(default_socket_path()), "/run/user/1000/flotilla/flotilla.sock")
            os.environ["FLOTILLA_SOCKET"] = "/tmp/x.sock"
            self.assertEqual(str(default_socket_path()), "/tmp/x.sock")


if __name__ == "__main__":
    unittest.main()
