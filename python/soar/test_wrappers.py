"""Each generated wrapper, run for real against the emulator through a stand-in for its
platform's runtime, for every action (the first succeeding example of each action page),
answers what `msgraph-connector run` answers; incremental state goes through the
platform's own mechanism; secrets reach the binary on stdin only."""

import json
import subprocess

import pytest

from conftest import (
    Splunk,
    Stackstorm,
    Xsoar,
    as_splunk,
    as_text,
    examples,
    run_direct,
    splunk_config,
    xsoar_params,
)

EXAMPLES = examples()


def same_answer(got, want):
    """Status and body agree (headers carry per-request ids)."""
    assert "error" not in want, want
    assert got["status_code"] == want["status_code"]
    assert got["json_body"] == want["json_body"]


def test_every_action_has_an_example():
    import yaml
    from conftest import REPO

    names = {yaml.safe_load(p.read_text())["name"] for p in (REPO / "actions").glob("*.yaml")}
    assert {name for name, _ in EXAMPLES} == names


@pytest.mark.parametrize("action,inputs", EXAMPLES, ids=[a for a, _ in EXAMPLES])
def test_xsoar_command_answers_like_run(action, inputs, binary, exports, emulator, home, tmp_path):
    want = run_direct(binary, action, emulator, inputs, tmp_path / "direct")
    args = {k: as_text(v) for k, v in inputs.items()}  # XSOAR gives text
    entries = Xsoar(exports).run("msgraph-" + action.replace("_", "-"), xsoar_params(emulator), args)
    [entry] = entries
    assert entry["Type"] == 1, entry
    same_answer(entry["Contents"], want)
    prefix = "MSGraphConnector." + "".join(p.capitalize() for p in action.split("_"))
    if want["json_body"] is not None:
        assert entry["EntryContext"] == {prefix: want["json_body"]}


@pytest.mark.parametrize("action,inputs", EXAMPLES, ids=[a for a, _ in EXAMPLES])
def test_splunk_action_answers_like_run(action, inputs, binary, exports, emulator, home, tmp_path):
    want = run_direct(binary, action, emulator, inputs, tmp_path / "direct")
    param = {k: as_splunk(v) for k, v in inputs.items()}
    result, _ = Splunk(exports).run(action, splunk_config(emulator), param)
    assert result.get_status() is True, result.get_message()
    assert result.get_summary() == {"status_code": want["status_code"]}
    assert result.get_data() == ([] if want["json_body"] is None else [want["json_body"]])


@pytest.mark.parametrize("action,inputs", EXAMPLES, ids=[a for a, _ in EXAMPLES])
def test_stackstorm_action_answers_like_run(action, inputs, binary, exports, emulator, home, tmp_path):
    want = run_direct(binary, action, emulator, inputs, tmp_path / "direct")
    config = splunk_config(emulator)  # same keys: asset field names, `type` as auth_type
    ok, result = Stackstorm(exports).run(action, config, inputs)
    assert ok, result
    same_answer(result, want)
    assert "state" not in result


def test_test_module_and_test_connectivity_run_check(exports, emulator, home):
    assert Xsoar(exports).run("test-module", xsoar_params(emulator)) == ["ok"]
    result, _ = Splunk(exports).run("test_connectivity", splunk_config(emulator), {})
    assert result.get_status() is True, result.get_message()
    ok, out = Stackstorm(exports).run("check", splunk_config(emulator), {})
    assert ok and out["json_body"]["successful"] is True


def test_a_read_only_app_fails_the_test_naming_what_it_lacks(binary, exports, emulator, home):
    # The emulator's second app has only User.Read.All (README, "The fake tenant").
    weak = dict(emulator, client_id="e1ec7a11-0002-4a00-8000-00000000a002", client_secret="emu-read~S3cret.0002")
    [entry] = Xsoar(exports).run("test-module", xsoar_params(weak))
    assert entry["Type"] == 4 and "Presence.Read.All" in entry["Contents"], entry


def test_graph_errors_come_back_as_each_platform_reports_failure(exports, emulator, home):
    inputs = {"id": "nobody@contoso.example"}
    [entry] = Xsoar(exports).run("msgraph-get-presence", xsoar_params(emulator), inputs)
    assert entry["Type"] == 4 and "(graph)" in entry["Contents"]
    result, _ = Splunk(exports).run("get_presence", splunk_config(emulator), inputs)
    assert result.get_status() is False and "(graph)" in result.get_message()
    ok, out = Stackstorm(exports).run("get_presence", splunk_config(emulator), inputs)
    assert not ok and out["error"]["kind"] == "graph" and out["error"]["status_code"] == 404


PULL = {"since": "2025-06-02T00:00:00Z", "max_records": 5}


def direct_chain(binary, emulator, tmp_path):
    first = run_direct(binary, "pull_sign_ins", emulator, PULL, tmp_path / "d")
    second = run_direct(binary, "pull_sign_ins", emulator, PULL, tmp_path / "d", state=first["state"])
    assert first["json_body"] != second["json_body"], "the second pull continues, not repeats"
    return first, second


def test_xsoar_keeps_incremental_state_in_the_integration_context(binary, exports, emulator, home, tmp_path):
    first, second = direct_chain(binary, emulator, tmp_path)
    xsoar, context = Xsoar(exports), {}
    args = {k: as_text(v) for k, v in PULL.items()}
    [e1] = xsoar.run("msgraph-pull-sign-ins", xsoar_params(emulator), args, context)
    assert context == {"pull_sign_ins": first["state"]}
    [e2] = xsoar.run("msgraph-pull-sign-ins", xsoar_params(emulator), args, context)
    same_answer(e1["Contents"], first)
    same_answer(e2["Contents"], second)
    assert context == {"pull_sign_ins": second["state"]}


def test_splunk_keeps_incremental_state_with_save_state(binary, exports, emulator, home, tmp_path):
    first, second = direct_chain(binary, emulator, tmp_path)
    splunk = Splunk(exports)
    r1, state = splunk.run("pull_sign_ins", splunk_config(emulator), PULL)
    assert state == {"pull_sign_ins": first["state"]}
    r2, state = splunk.run("pull_sign_ins", splunk_config(emulator), PULL, state)
    assert r1.get_data() == [first["json_body"]] and r2.get_data() == [second["json_body"]]
    assert state == {"pull_sign_ins": second["state"]}


def test_stackstorm_keeps_incremental_state_in_the_datastore(binary, exports, emulator, home, tmp_path):
    first, second = direct_chain(binary, emulator, tmp_path)
    st2 = Stackstorm(exports)
    _, r1 = st2.run("pull_sign_ins", splunk_config(emulator), PULL)
    assert json.loads(st2.datastore.values[(True, "state.pull_sign_ins")]) == first["state"]
    _, r2 = st2.run("pull_sign_ins", splunk_config(emulator), PULL)
    same_answer(r1, first)
    same_answer(r2, second)


@pytest.mark.parametrize("platform", ["xsoar", "splunk-soar", "stackstorm"])
def test_secrets_reach_the_binary_on_stdin_only(platform, exports, emulator, home, monkeypatch):
    secret = emulator["client_secret"]
    monkeypatch.setenv("HTTPS_PROXY_PASSWORD_FOR_TEST", secret)  # a secret in the platform's env
    seen = []
    real_run = subprocess.run

    def spy(argv, **kw):
        seen.append((list(argv), dict(kw.get("env") or {}), kw.get("input") or b""))
        return real_run(argv, **kw)

    monkeypatch.setattr(subprocess, "run", spy)
    inputs = {"id": "adele.vance@contoso.example"}
    if platform == "xsoar":
        out = Xsoar(exports).run("msgraph-get-presence", xsoar_params(emulator), inputs)
    elif platform == "splunk-soar":
        result, state = Splunk(exports).run("get_presence", splunk_config(emulator), inputs)
        out = [result.get_data(), result.get_message(), result.get_param(), state]
    else:
        out = Stackstorm(exports).run("get_presence", splunk_config(emulator), inputs)
    [(argv, env, stdin)] = seen
    assert secret.encode() in stdin
    assert not any(secret in a for a in argv)
    assert env and not any(secret in v for v in env.values())
    assert secret not in json.dumps(out, default=str)


def test_xsoar_coerces_text_arguments_to_schema_types(exports):
    m = Xsoar(exports).module()
    kinds = m.ACTIONS["list_memberships"]["inputs"]
    got = m.coerce_inputs(kinds, {"id": "u", "top": "5", "count": "True", "select": "id, displayName", "filter": ""})
    assert got == {"id": "u", "top": 5, "count": True, "select": ["id", "displayName"]}
    assert m.coerce_inputs(kinds, {"select": '["a","b"]'}) == {"select": ["a", "b"]}
    kinds = m.ACTIONS["update_user"]["inputs"]
    assert m.coerce_inputs(kinds, {"properties": '{"jobTitle": "x"}'}) == {"properties": {"jobTitle": "x"}}
    for args, pointer in [
        ({"top": "five"}, "/inputs/top"),
        ({"count": "maybe"}, "/inputs/count"),
        ({"nope": "1"}, "/inputs/nope"),
    ]:
        with pytest.raises(m.ConnectorError) as e:
            m.coerce_inputs(m.ACTIONS["list_memberships"]["inputs"], args)
        assert e.value.error["details"][0]["path"] == pointer
    with pytest.raises(m.ConnectorError) as e:
        m.coerce_inputs(m.ACTIONS["update_user"]["inputs"], {"properties": "{not json"})
    assert e.value.error["details"][0]["path"] == "/inputs/properties"


def test_a_bad_argument_is_refused_before_the_binary_runs(exports, emulator, home, monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    [entry] = Xsoar(exports).run("msgraph-list-memberships", xsoar_params(emulator), {"id": "u", "top": "lots"})
    assert entry["Type"] == 4 and "/inputs/top" in entry["Contents"]
    assert calls == []


def test_splunk_numbers_and_text_lists_are_coerced(exports):
    m = Splunk(exports).module
    kinds = m.ACTIONS["get_presences"]["inputs"]
    assert m.coerce_inputs(kinds, {"ids": "a, b,,c"}) == {"ids": ["a", "b", "c"]}
    kinds = m.ACTIONS["list_memberships"]["inputs"]
    assert m.coerce_inputs(kinds, {"top": 5.0, "count": False}) == {"top": 5, "count": False}


def test_the_wrapper_finds_the_binary_bundled_beside_it(binary, emulator, home, tmp_path, monkeypatch):
    out = tmp_path / "pack"
    subprocess.run([binary, "export", "xsoar", str(out), "--bundle"], check=True, capture_output=True)
    monkeypatch.delenv("MSGRAPH_CONNECTOR")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # not on PATH either
    [entry] = Xsoar({"xsoar": out}).run("msgraph-get-presence", xsoar_params(emulator), {"id": "adele.vance@contoso.example"})
    assert entry["Type"] == 1, entry
    monkeypatch.setattr("os.path.isfile", lambda p: False)  # nowhere: a clear error, not a crash
    [entry] = Xsoar({"xsoar": out}).run("msgraph-get-presence", xsoar_params(emulator), {"id": "x"})
    assert entry["Type"] == 4 and "not found beside the wrapper or on PATH" in entry["Contents"]
