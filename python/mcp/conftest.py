"""Shared fixtures: the connector binary, a fake tenant with a request log, and helpers
that read that log, so a test can say "no request reached Graph"."""

import json
import os
import subprocess
from pathlib import Path

import pytest

BINARY = os.environ.get("MSGRAPH_CONNECTOR", "")


def binary() -> str:
    if not BINARY or not Path(BINARY).is_file():
        pytest.fail("MSGRAPH_CONNECTOR must name the built msgraph-connector binary (see python/README.md)")
    return BINARY


class Emulator:
    def __init__(self, tmp: Path):
        self.log = tmp / "requests.jsonl"
        self.proc = subprocess.Popen(
            [binary(), "emulator", "--generate", "users=1000,sign_ins=300,seed=1",
             "--listen", "127.0.0.1:0", "--print-asset", "client_credentials",
             "--request-log", str(self.log), "--throttle", "off"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.kill()
            pytest.fail("the emulator did not start")
        self.asset = json.loads(line)
        self.asset_path = tmp / "asset.json"
        self.asset_path.write_text(json.dumps(self.asset))
        self.asset_path.chmod(0o600)
        self.secret = self.asset["client_secret"]

    def requests(self) -> list[dict]:
        """Every request the tenant has answered so far (token requests included)."""
        if not self.log.exists():
            return []
        return [json.loads(l) for l in self.log.read_text().splitlines() if l.strip()]

    def graph_requests(self) -> list[dict]:
        return [r for r in self.requests() if r.get("family") != "token"]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    emu = Emulator(tmp_path_factory.mktemp("tenant"))
    yield emu
    emu.stop()


@pytest.fixture
def state_dir(tmp_path):
    d = tmp_path / "state"
    d.mkdir(mode=0o700)
    return d


def catalog() -> list[dict]:
    return json.loads(subprocess.run([binary(), "actions"], check=True, capture_output=True, text=True).stdout)


def schema(name: str, output: bool = False) -> dict:
    args = [binary(), "schema", name] + (["--output"] if output else [])
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
