"""Swimlane Turbine round trip with Swimlane's own runtime helper, swimlane-core 1.1.1.

The exported connector folder (`msgraph-connector export turbine DIR`) is loaded with
`swimlane_core.InputHandler` exactly as Turbine's runtime does it: the action name as the
first argument, one flat JSON object on stdin, ASSET_KEYS in the environment, and the asset
and action manifests found by globbing the folder for `schema` + `name`. The real binary is
then driven the same way (its container entry point `run --turbine ACTION`) against the
emulator, for every documented example of every action, and its `::set-output` /
`::set-error` lines are parsed and checked against the example's result.
"""

import io
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import pytest
import yaml
from swimlane_core import InputHandler, OutputHandler

BIN = os.environ["MSGRAPH_CONNECTOR"]
REPO = pathlib.Path(__file__).resolve().parents[2]
# The examples of actions/*.yaml are written against this tenant.
TENANT = "users=1000,sign_ins=10000,seed=1"
ENTRYPOINT = [BIN, "run", "--turbine"]


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "msgraph_connector"
    done = subprocess.run([BIN, "export", "turbine", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    log = tmp_path_factory.mktemp("emu") / "requests.jsonl"
    proc = subprocess.Popen(
        [BIN, "emulator", "--generate", TENANT, "--listen", "127.0.0.1:0",
         "--print-asset", "client_credentials", "--request-log", str(log)],
        stdout=subprocess.PIPE, stderr=open(log.with_suffix(".stderr"), "w"), text=True,
    )
    asset = json.loads(proc.stdout.readline())
    yield asset, log
    proc.terminate()
    proc.wait(timeout=10)


def turbine_asset(asset):
    """The asset as a Turbine asset holds it: our fields, no `type` (inferred from the keys)."""
    return {k: v for k, v in asset.items() if k != "type"}


def load_like_turbine(monkeypatch, package, action, flat, asset_keys):
    """swimlane-core's InputHandler, run as in Turbine: argv, stdin, ASSET_KEYS, cwd."""
    monkeypatch.setattr(sys, "argv", ["connector", action])
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(flat)))
    monkeypatch.setenv("ASSET_KEYS", asset_keys)
    monkeypatch.chdir(package)
    return InputHandler()


def run_binary(action, stdin, asset_keys, state_dir, extra_env=None):
    env = {k: v for k, v in os.environ.items() if k not in ("ASSET_KEYS", "RUST_LOG", "http_proxy")}
    env["MSGRAPH_CONNECTOR_STATE_DIR"] = state_dir
    if asset_keys is not None:
        env["ASSET_KEYS"] = asset_keys
    env.update(extra_env or {})
    # The repository is the working directory: examples name config files relative to it.
    return subprocess.run(ENTRYPOINT + [action], input=stdin, capture_output=True,
                          env=env, cwd=REPO, timeout=120)


def parse(done):
    """(exit status, result or error) from the `::set-output` / `::set-error` line."""
    out, err = done.stdout.decode(), done.stderr.decode()
    if done.returncode == 0:
        lines = out.splitlines()
        assert len(lines) == 1 and lines[0].startswith("::set-output "), out
        return 0, json.loads(lines[0][len("::set-output "):])
    assert out == "", out
    # Log lines (retries, warnings) may precede it; the error is exactly one line.
    lines = [line for line in err.splitlines() if line.startswith("::set-error ")]
    assert len(lines) == 1, err
    return done.returncode, json.loads(lines[0][len("::set-error "):])


def subset(expected, actual, at=""):
    """The examples' matcher (tests/cli/examples.rs): keys stated must hold; arrays item for
    item; {starts_with: [...]} is a prefix."""
    if isinstance(expected, dict) and list(expected) == ["starts_with"] and isinstance(actual, list):
        assert len(actual) >= len(expected["starts_with"]), at
        for i, e in enumerate(expected["starts_with"]):
            subset(e, actual[i], f"{at}/{i}")
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), at
        for k, v in expected.items():
            assert k in actual, f"{at}/{k} is missing"
            subset(v, actual[k], f"{at}/{k}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), at
        for i, (e, a) in enumerate(zip(expected, actual)):
            subset(e, a, f"{at}/{i}")
    else:
        assert expected == actual, f"{at}: expected {expected!r}, got {actual!r}"


def catalog():
    return [a["name"] for a in json.loads(subprocess.check_output([BIN, "actions"]))]


def test_every_action_example_runs_under_turbine(package, emulator, monkeypatch):
    asset, _ = emulator
    tasset = turbine_asset(asset)
    keys = ",".join(tasset)
    ran = set()
    for action in catalog():
        page = yaml.safe_load((REPO / "actions" / f"{action}.yaml").read_text())
        for example in page["examples"]:
            flat = dict(tasset, **example["inputs"])
            if "state" in example:
                flat["state"] = example["state"]
            handler = load_like_turbine(monkeypatch, package, action, flat, keys)
            # Turbine finds our manifests by schema and name, and splits as we do.
            assert handler.action_schema["schema"] == "action/1"
            assert handler.action_schema["name"] == action
            assert handler.asset_schema["schema"] == "asset/1"
            assert handler.asset_schema["name"] == "oauth2_client_credentials"
            assert set(handler.asset) == set(tasset)
            assert handler.inputs == {k: v for k, v in flat.items() if k not in tasset}
            with tempfile.TemporaryDirectory() as state_dir:
                code, body = parse(run_binary(action, json.dumps(flat).encode(), keys, state_dir))
            expected = dict(example["result"])
            want = expected.pop("exit", 4) if "error" in expected else 0
            label = f"{action}: {example['name']}"
            assert code == want, f"{label}: {body}"
            subset(expected, body, label)
            # swimlane-core renders the same object as the same kind of line.
            rendered = (OutputHandler.get_output(body) if code == 0 else OutputHandler.get_error(body))
            assert json.loads(rendered.split(" ", 1)[1]) == body
            ran.add(action)
    assert ran == set(catalog())


def test_incremental_state_is_fed_back_by_the_playbook(emulator):
    asset, _ = emulator
    tasset = turbine_asset(asset)
    keys = ",".join(tasset)
    flat = dict(tasset, since="2025-06-02T09:00:00Z", until="2025-06-02T10:00:00Z", max_records=2)
    with tempfile.TemporaryDirectory() as state_dir:
        code, first = parse(run_binary("pull_sign_ins", json.dumps(flat).encode(), keys, state_dir))
        assert code == 0 and first["state"]
        again = dict(tasset, until="2025-06-02T10:00:00Z", max_records=2, state=first["state"])
        code, second = parse(run_binary("pull_sign_ins", json.dumps(again).encode(), keys, state_dir))
    assert code == 0
    ids = lambda r: {s["id"] for s in r["json_body"]["value"]}
    assert not ids(first) & ids(second), "no sign-in twice across runs"


def test_swimlane_http_style_inputs_run_unchanged(package, emulator, monkeypatch):
    asset, _ = emulator
    tasset = turbine_asset(asset)
    keys = ",".join(tasset)
    grouped = {
        "get_presence": {"path_parameters": {"id": "adele.vance@contoso.example"}},
        "get_user": {"path_parameters": {"id": "adele.vance@contoso.example"},
                     "parameters": {"$select": "id,displayName,jobTitle"}},
        "list_memberships": {"path_parameters": {"id": "megan.bowen@contoso.example"},
                             "parameters": {"$select": "id,displayName", "$top": 10}},
        "update_user": {"path_parameters": {"id": "adele.vance@contoso.example"},
                        "json_body": {"officeLocation": "Berlin HQ"}},
    }
    for action, inputs in grouped.items():
        flat = dict(tasset, **inputs)
        handler = load_like_turbine(monkeypatch, package, action, flat, keys)
        assert handler.inputs == inputs
        with tempfile.TemporaryDirectory() as state_dir:
            code, body = parse(run_binary(action, json.dumps(flat).encode(), keys, state_dir))
        assert code == 0, f"{action}: {body}"
        assert set(body) >= {"status_code", "reason", "response_headers", "json_body"}
    with tempfile.TemporaryDirectory() as state_dir:
        flat = dict(tasset, id="adele.vance@contoso.example", select=["officeLocation"])
        _, body = parse(run_binary("get_user", json.dumps(flat).encode(), keys, state_dir))
    assert body["json_body"]["officeLocation"] == "Berlin HQ"


def requests_logged(log):
    return log.read_text().count("\n") if log.exists() else 0


@pytest.mark.parametrize("case", ["unknown key", "absent asset key", "no ASSET_KEYS", "not JSON",
                                  "mixed shapes"])
def test_bad_input_is_one_set_error_line_and_no_request(emulator, case):
    asset, log = emulator
    tasset = turbine_asset(asset)
    keys = ",".join(tasset)
    flat = dict(tasset, id="adele.vance@contoso.example")
    stdin, asset_keys, pointer = json.dumps(flat).encode(), keys, None
    if case == "unknown key":
        stdin, pointer = json.dumps(dict(flat, colour="blue")).encode(), "/inputs/colour"
    elif case == "absent asset key":
        asset_keys, pointer = keys + ",refresh_token", "/asset/refresh_token"
    elif case == "no ASSET_KEYS":
        asset_keys, pointer = None, ""
    elif case == "not JSON":
        stdin, pointer = b'{"id": ', ""
    elif case == "mixed shapes":
        stdin = json.dumps(dict(flat, path_parameters={"id": "x@contoso.example"})).encode()
        pointer = "/inputs/id"
    before = requests_logged(log)
    with tempfile.TemporaryDirectory() as state_dir:
        done = run_binary("get_presence", stdin, asset_keys, state_dir)
    code, body = parse(done)
    assert code == 2
    assert body["error"]["kind"] == "invalid_input"
    assert body["error"]["details"][0]["path"] == pointer
    assert requests_logged(log) == before, "no request may leave on bad input"
    assert asset["client_secret"] not in (done.stdout + done.stderr).decode()
