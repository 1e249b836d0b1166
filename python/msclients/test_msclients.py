"""Microsoft's Python libraries (msal, azure-identity, msgraph-sdk) against `emulator --tls`.

The test runs examples/msclients.py, the script README shows playbook authors, against a
fresh emulator over HTTPS, and checks what the libraries asked for in the request log:
instance discovery, the OpenID configuration, the token endpoint, then Graph, including
presence publishing, a group's users and a photo $batch as Microsoft's SDK sends them.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARY = os.environ.get("MSGRAPH_CONNECTOR", str(ROOT / "target/debug/msgraph-connector"))


def load_example():
    spec = importlib.util.spec_from_file_location("msclients", ROOT / "examples/msclients.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def emulator(tmp_path):
    log = tmp_path / "requests.jsonl"
    proc = subprocess.Popen(
        [
            BINARY, "emulator", "--tls", "--listen", "127.0.0.1:0",
            "--generate", "users=30,sign_ins=300,seed=3,day=today",
            "--throttle", "off",
            "--print-asset", "client_credentials",
            "--ca-file", str(tmp_path / "ca.pem"),
            "--request-log", str(log),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        asset = json.loads(line)
        yield asset, log
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_microsoft_libraries_work_against_the_tls_emulator(emulator, monkeypatch):
    asset, log = emulator
    assert asset["url"].startswith("https://127.0.0.1:")
    assert pathlib.Path(asset["ca_file"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    for var in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(var, raising=False)

    seen = load_example().main(asset)

    assert seen["msal_token_type"] == "Bearer"
    assert seen["azure_identity_token"]
    assert seen["users"] == 30
    assert seen["presence"]
    assert seen["batch_presences"] == 10
    assert seen["member_of"] > 3, "more than one page, through the PageIterator"
    assert seen["member_of"] == seen["member_of_distinct"]
    assert seen["sign_ins"] > 0
    assert seen["photo_is_jpeg"]
    assert seen["patched_job_title"] == "Playbook tester"

    paths = [json.loads(l)["path"] for l in log.read_text().splitlines()]
    tenant = asset["tenant_id"]
    assert "/common/discovery/instance" in paths, paths
    assert f"/{tenant}/v2.0/.well-known/openid-configuration" in paths, paths
    assert f"/{tenant}/oauth2/v2.0/token" in paths, paths
    assert any(p.startswith("/v1.0/communications/getPresencesByUserId") for p in paths), paths

    # Presence publishing through the SDK's request builders (what the connector's
    # set_presence, set_user_preferred_presence, set_status_message and clear_* send):
    # the app's session, then the user's preference over it, then each cleared.
    assert seen["timedelta_duration_refused"] == 400, "str(timedelta) is not ISO 8601"
    assert seen["after_set_presence"] == ["Busy", "InACall"]
    assert seen["after_preferred"] == ["DoNotDisturb", "DoNotDisturb"]
    assert seen["status_message"] == "In the lab until 3"
    assert seen["after_clear_preferred"] == ["Busy", "InACall"]
    assert seen["after_clear_presence"] != ["Busy", "InACall"], "the session is gone"
    for action in ("setPresence", "setUserPreferredPresence", "setStatusMessage",
                   "clearUserPreferredPresence", "clearPresence"):
        assert any(p.endswith(f"/presence/{action}") for p in paths), (action, paths)
    # A group's users (sync_profile_photos' and watch's group selection), cast as the
    # SDK spells it, /graph.user.
    assert seen["group_users"] > 0 and seen["group_users_are_users"]
    assert any(p.endswith("/transitiveMembers/graph.user") for p in paths), paths
    # Photo metadata in one $batch: absolute item URLs refused item by item, relative
    # ones answered (404 for a user without a photo).
    assert seen["photo_batch_absolute_statuses"] == [400]
    assert seen["photo_batch_statuses"] == [200, 404]
    assert seen["photo_batch_found"] > 0
    assert paths.count("/v1.0/$batch") == 2, paths


def test_the_connector_trusts_the_emulator_through_the_asset_ca_file(emulator, tmp_path):
    asset, _ = emulator
    asset["max_attempts"] = 1

    def check(a):
        path = tmp_path / "asset.json"
        path.write_text(json.dumps(a))
        return subprocess.run(
            [BINARY, "check", "--asset", str(path), "--state-dir", str(tmp_path / "state")],
            capture_output=True, text=True,
        )

    out = check(asset)
    assert out.returncode == 0, out.stdout + out.stderr
    body = json.loads(out.stdout)["json_body"]
    assert body["graph"]["status"] == 200 and body["successful"], body
    # Without the CA the handshake is refused: a network error, exit 5.
    del asset["ca_file"]
    out = check(asset)
    assert out.returncode == 5, out.stdout + out.stderr
