"""Fixtures for the SOAR export suite: the binary, the three generated packages, an
emulator with the tenant the action pages' examples run against, and one runner per
platform that drives the generated wrapper through a minimal stand-in for that
platform's runtime object (XSOAR's `demisto`, Splunk SOAR's BaseConnector from
splunk-soar-sdk's shims, StackStorm's `Action`)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
STANDINS = HERE / "standins"
BINARY = os.environ.get("MSGRAPH_CONNECTOR") or str(REPO / "target/debug/msgraph-connector")

# The examples' tenant (actions/*.yaml): `emulator --generate users=1000,sign_ins=10000,seed=1`.
TENANT = "users=1000,sign_ins=10000,seed=1"


def pytest_configure(config):
    sys.path.insert(0, str(STANDINS))


@pytest.fixture(scope="session")
def binary():
    assert os.access(BINARY, os.X_OK), "set MSGRAPH_CONNECTOR to the built binary"
    return BINARY


@pytest.fixture(scope="session")
def exports(binary, tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    out = {}
    for platform in ("xsoar", "splunk-soar", "stackstorm"):
        out[platform] = root / platform
        subprocess.run([binary, "export", platform, str(out[platform])], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def emulator(binary):
    proc = subprocess.Popen(
        [binary, "emulator", "--generate", TENANT, "--listen", "127.0.0.1:0", "--print-asset", "client_credentials"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    asset = json.loads(proc.stdout.readline())
    yield asset
    proc.terminate()
    proc.wait(timeout=10)


def examples():
    """(action, inputs) of the first example of each action page that succeeds."""
    out = []
    for page in sorted((REPO / "actions").glob("*.yaml")):
        doc = yaml.safe_load(page.read_text())
        ok = [e for e in doc.get("examples", []) if "error" not in (e.get("result") or {})]
        if ok:
            out.append((doc["name"], ok[0]["inputs"] or {}))
    return out


def run_direct(binary, action, asset, inputs, state_dir, state=None):
    """`msgraph-connector run ACTION`, as the wrappers' results are compared with."""
    envelope = {"asset": asset, "inputs": inputs}
    if state is not None:
        envelope["state"] = state
    proc = subprocess.run(
        [binary, "--state-dir", str(state_dir), "run", action],
        input=json.dumps(envelope).encode(),
        capture_output=True,
        cwd=REPO,
    )
    return json.loads(proc.stdout)


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- Cortex XSOAR -------------------------------------------------------------------------


def xsoar_params(asset):
    """An instance's parameters for our emulator asset, as XSOAR hands them over."""
    return {
        "asset_type": asset["type"],
        "credentials": {"identifier": asset["client_id"], "password": asset["client_secret"]},
        "tenant_id": asset.get("tenant_id", ""),
        "url": asset.get("url", ""),
        "login_url": asset.get("login_url", ""),
        "token_url": "",
        "insecure": False,
        "proxy": False,
    }


def as_text(value):
    """An argument value as XSOAR gives it: text; lists comma-separated; objects as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        return ",".join(str(v) for v in value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


class Xsoar:
    def __init__(self, exports):
        self.path = exports["xsoar"] / "Integrations/MSGraphConnector/MSGraphConnector.py"
        import demistomock

        self.demisto = demistomock

    def module(self):
        self.demisto.setup("", {})
        return load_module(self.path, "MSGraphConnector")

    def run(self, command, params, args=None, context=None):
        import runpy

        self.demisto.setup(command, params, args, context)
        cwd = os.getcwd()
        os.chdir(REPO)
        try:
            runpy.run_path(str(self.path), run_name="__main__")
        finally:
            os.chdir(cwd)
        return list(self.demisto.entries)


# --- Splunk SOAR --------------------------------------------------------------------------


def install_phantom_shims():
    """`phantom.*` as splunk-soar-sdk's shims define them outside a SOAR host."""
    import types

    from soar_sdk.shims.phantom import action_result, app, base_connector

    pkg = types.ModuleType("phantom")
    pkg.__path__ = []
    sys.modules.setdefault("phantom", pkg)
    sys.modules.setdefault("phantom.app", app)
    sys.modules.setdefault("phantom.action_result", action_result)
    sys.modules.setdefault("phantom.base_connector", base_connector)


class Splunk:
    def __init__(self, exports):
        install_phantom_shims()
        self.module = load_module(exports["splunk-soar"] / "msgraphconnector_connector.py", "msgraphconnector_connector")

    def run(self, identifier, config, param, state=None):
        """One action run as SOAR does it: initialize, _handle_action, finalize. Returns
        (action result, state saved)."""
        connector = self.module.MsgraphConnectorConnector()
        connector.state = dict(state or {})
        assert connector.initialize()
        cwd = os.getcwd()
        os.chdir(REPO)
        try:
            connector._handle_action(json.dumps({"identifier": identifier, "config": config, "parameters": [param]}), None)
        finally:
            os.chdir(cwd)
        connector.finalize()
        [result] = connector.get_action_results()
        return result, connector.state


def splunk_config(asset):
    return {
        "auth_type": asset["type"],
        "client_id": asset["client_id"],
        "client_secret": asset["client_secret"],
        "tenant_id": asset.get("tenant_id"),
        "url": asset.get("url"),
        "login_url": asset.get("login_url"),
        "verify_ssl": True,
    }


def as_splunk(value):
    """A parameter as SOAR gives it: numbers, booleans and strings; lists and objects as text."""
    if isinstance(value, (list, dict)):
        return as_text(value)
    return value


# --- StackStorm ---------------------------------------------------------------------------


class Stackstorm:
    def __init__(self, exports):
        self.dir = exports["stackstorm"]
        self.module = load_module(self.dir / "actions/msgraph_connector.py", "msgraph_connector_action")
        from st2common.runners.base_action import DatastoreService

        self.datastore = DatastoreService()

    def run(self, action, config, parameters):
        meta = yaml.safe_load((self.dir / "actions" / (action + ".yaml")).read_text())
        # st2 fills in parameter defaults (the immutable msgraph_action among them).
        params = {k: v["default"] for k, v in meta["parameters"].items() if "default" in v}
        params.update(parameters)
        instance = self.module.MsgraphConnectorAction(config=config, action_service=self.datastore)
        cwd = os.getcwd()
        os.chdir(REPO)
        try:
            return instance.run(**params)
        finally:
            os.chdir(cwd)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A HOME of the test's own: the wrappers' runs keep their state dir under it."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    (tmp_path / "home").mkdir()
    return tmp_path / "home"
