"""`msgraph-connector mcp` driven by the official MCP Python SDK, over stdio and over
streamable HTTP, against the fake tenant: tools and their annotations and schemas,
calls that succeed, calls that fail, progress, and no secret in any message."""

import json
import subprocess
import uuid

import anyio
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from conftest import binary, catalog, schema

# What each tool promises an agent, as the issue states it and README's table shows:
# (readOnlyHint, destructiveHint, idempotentHint, openWorldHint).
EXPECTED_HINTS = {
    "get_presence": (True, False, True, True),
    "get_presences": (True, False, True, True),
    "get_presence_changes": (True, False, True, True),
    "set_presence": (False, True, True, True),
    "clear_presence": (False, True, True, True),
    "set_user_preferred_presence": (False, True, True, True),
    "clear_user_preferred_presence": (False, True, True, True),
    "set_status_message": (False, True, True, True),
    "get_user": (True, False, True, True),
    "list_memberships": (True, False, True, True),
    "update_user": (False, True, True, True),
    "get_user_photo": (False, False, True, True),
    "sync_profile_photos": (False, False, False, True),
    "get_user_status": (True, False, True, True),
    "revoke_sign_in_sessions": (False, True, True, True),
    "disable_user": (False, True, True, True),
    "confirm_compromised": (False, True, True, True),
    "dismiss_risky_user": (False, True, True, True),
    "pull_sign_ins": (False, False, False, True),
    "evaluate_ip_presence": (True, False, True, False),
    "sync_ip_presence": (False, False, False, True),
    "get_office_presence": (True, False, True, False),
    "set_office_presence": (False, True, True, False),
    "clear_office_presence": (False, True, True, False),
}

ADELE = "adele.vance@contoso.example"


class Recorder:
    """Every message the server sent outside results (notifications, logs)."""

    def __init__(self):
        self.messages = []

    async def __call__(self, message):
        self.messages.append(message)

    def text(self) -> str:
        return "\n".join(repr(m) for m in self.messages)


def stdio(emulator, state_dir, tmp_path, *extra, mode="auto", recorder=None):
    params = StdioServerParameters(
        command=binary(),
        args=["--state-dir", str(state_dir), "mcp", "--asset", str(emulator.asset_path), *extra],
    )
    errlog = open(tmp_path / "server-stderr.txt", "w")
    return Client(stdio_client(params, errlog=errlog), mode=mode, message_handler=recorder)


def assert_own_shape(served, published):
    """The tool's input schema is the published one, or, for an action that also takes
    Swimlane's HTTP-style grouping (published as `oneOf` [ours, grouped]), its first
    alternative: MCP needs an object schema, and agents use our own shape. Each
    definition the tool carries is the published definition of that name."""
    if "oneOf" not in published:
        assert served == published
        return
    ours = published["oneOf"][0]
    body = {k: v for k, v in served.items() if k not in ("$defs", "$schema", "title", "description")}
    assert body == {k: v for k, v in ours.items() if k not in ("$defs", "title", "description")}
    assert served["type"] == "object"
    for name, definition in served.get("$defs", {}).items():
        assert definition == published["$defs"][name], name


def spelt_out(schema):
    """Our schema with `true` property schemas written `{}` (equal in JSON Schema; the
    TypeScript SDK refuses the boolean form), as the server lists them."""
    if isinstance(schema, dict):
        out = {k: spelt_out(v) for k, v in schema.items()}
        if isinstance(out.get("properties"), dict):
            out["properties"] = {k: ({} if v is True else v) for k, v in out["properties"].items()}
        return out
    if isinstance(schema, list):
        return [spelt_out(v) for v in schema]
    return schema


def body(result):
    assert not result.is_error, result.content
    return result.structured_content


def error_of(result) -> dict:
    assert result.is_error
    return json.loads(result.content[0].text)["error"]


# ---------------------------------------------------------------- stdio


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_tools_carry_catalog_schemas_and_annotations(emulator, state_dir, tmp_path, mode):
    async def main():
        async with stdio(emulator, state_dir, tmp_path, mode=mode) as client:
            caps = client.server_capabilities
            assert caps.tools is not None
            return (await client.list_tools()).tools

    tools = anyio.run(main)
    by_name = {t.name: t for t in tools}
    assert [t.name for t in tools] == [a["name"] for a in catalog()]
    for entry in catalog():
        tool = by_name[entry["name"]]
        assert tool.title == entry["title"]
        assert_own_shape(tool.input_schema, spelt_out(schema(entry["name"])))
        assert tool.output_schema == spelt_out(schema(entry["name"], output=True))
        assert tool.output_schema["properties"]["state"] == {}
        a = tool.annotations
        got = (a.read_only_hint, a.destructive_hint, a.idempotent_hint, a.open_world_hint)
        assert got == EXPECTED_HINTS[entry["name"]], entry["name"]
        # The description ends with the Graph permissions the action needs.
        tail = tool.description.rsplit("Graph permissions", 1)[1]
        for permission in entry["permissions"]:
            assert permission in tail, (entry["name"], permission)
        if not entry["permissions"]:
            assert "none" in tail


def test_get_user_returns_structured_content_and_json_text(emulator, state_dir, tmp_path):
    recorder = Recorder()

    async def main():
        async with stdio(emulator, state_dir, tmp_path, recorder=recorder) as client:
            return await client.call_tool("get_user", {"id": ADELE})

    result = anyio.run(main)
    structured = body(result)
    assert structured["status_code"] == 200
    assert structured["json_body"]["userPrincipalName"] == ADELE
    assert json.loads(result.content[0].text) == structured
    assert emulator.secret not in result.model_dump_json() + recorder.text()
    assert emulator.secret not in (tmp_path / "server-stderr.txt").read_text()


def test_get_presences_reports_progress_per_batch(emulator, state_dir, tmp_path):
    # 1,400 ids make three batches of at most 650; unknown ids come back under not_found.
    ids = [ADELE] + [str(uuid.UUID(int=n + 1)) for n in range(1399)]
    steps = []

    async def on_progress(progress, total, message):
        steps.append((progress, total, message))

    async def main():
        async with stdio(emulator, state_dir, tmp_path) as client:
            return await client.call_tool("get_presences", {"ids": ids}, progress_callback=on_progress)

    structured = body(anyio.run(main))
    assert len(structured["json_body"]["value"]) == 1
    assert len(structured["json_body"]["not_found"]) == 1399
    assert len(steps) == 3, steps
    assert [s[1] for s in steps] == [1400, 1400, 1400]
    assert sorted(s[0] for s in steps)[-1] == 1400
    assert [s[0] for s in steps] == sorted(s[0] for s in steps)


def test_update_user_changes_the_tenant(emulator, state_dir, tmp_path):
    async def main():
        async with stdio(emulator, state_dir, tmp_path) as client:
            changed = await client.call_tool(
                "update_user", {"id": ADELE, "properties": {"jobTitle": "Incident commander"}})
            after = await client.call_tool("get_user", {"id": ADELE, "select": ["jobTitle"]})
            return changed, after

    changed, after = anyio.run(main)
    assert body(changed)["status_code"] == 204
    assert body(after)["json_body"]["jobTitle"] == "Incident commander"
    patches = [r for r in emulator.requests() if r["method"] == "PATCH"]
    assert patches, "the PATCH reached the tenant"


def test_invalid_arguments_are_an_error_result_with_pointers_and_no_request(emulator, state_dir, tmp_path):
    async def main():
        async with stdio(emulator, state_dir, tmp_path) as client:
            before = len(emulator.requests())
            wrong_type = await client.call_tool("get_presences", {"ids": [ADELE, 42]})
            missing = await client.call_tool("get_user", {})
            unknown_field = await client.call_tool("get_user", {"id": ADELE, "asset": {"client_secret": "x"}})
            with pytest.raises(MCPError) as no_such_tool:
                await client.call_tool("delete_tenant", {})
            return before, wrong_type, missing, unknown_field, no_such_tool.value

    before, wrong_type, missing, unknown_field, no_such_tool = anyio.run(main)
    e = error_of(wrong_type)
    assert e["kind"] == "invalid_input"
    assert [d["path"] for d in e["details"]] == ["/inputs/ids/1"]
    assert error_of(missing)["details"][0]["path"] == "/inputs/id"
    assert error_of(unknown_field)["details"][0]["path"] == "/inputs/asset"
    assert no_such_tool.error.code == -32602
    assert "delete_tenant" in no_such_tool.error.message
    assert len(emulator.requests()) == before, "a refused call made no request"


def test_read_only_and_tools_limit_the_list(emulator, state_dir, tmp_path):
    async def names(*extra):
        async with stdio(emulator, state_dir, tmp_path, *extra) as client:
            return [t.name for t in (await client.list_tools()).tools]

    read_only = anyio.run(names, "--read-only")
    assert read_only == [n for n, h in EXPECTED_HINTS.items() if h[0]]
    assert anyio.run(names, "--tools", "get_user,get_presences") == ["get_user", "get_presences"]

    async def hidden():
        async with stdio(emulator, state_dir, tmp_path, "--read-only") as client:
            with pytest.raises(MCPError) as refused:
                await client.call_tool("update_user", {"id": ADELE, "properties": {"jobTitle": "x"}})
            return refused.value

    assert anyio.run(hidden).error.code == -32602


def test_bad_command_lines_exit_2_before_any_protocol(emulator, state_dir):
    def run(*args):
        return subprocess.run([binary(), "--state-dir", str(state_dir), "mcp", *args],
                              capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)

    unknown = run("--asset", str(emulator.asset_path), "--tools", "get_user,nope")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert '"nope" is not an action' in unknown.stderr
    writing = run("--asset", str(emulator.asset_path), "--read-only", "--tools", "update_user")
    assert writing.returncode == 2 and "--read-only" in writing.stderr
    no_asset = run("--tools", "get_user")
    assert no_asset.returncode == 2 and "/asset" in no_asset.stderr
    public = run("--asset", str(emulator.asset_path), "--listen", "0.0.0.0:0")
    assert public.returncode == 2 and "loopback" in public.stderr


# ---------------------------------------------------------------- raw JSON-RPC on stdio


class RawSession:
    """The server on pipes, for what no SDK would send."""

    def __init__(self, emulator, state_dir):
        self.proc = subprocess.Popen(
            [binary(), "--state-dir", str(state_dir), "mcp", "--asset", str(emulator.asset_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def send(self, data: bytes):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def request(self, id_, method, params=None):
        message = {"jsonrpc": "2.0", "id": id_, "method": method}
        if params is not None:
            message["params"] = params
        self.send(json.dumps(message).encode() + b"\n")
        return self.answer(id_)

    def answer(self, id_):
        while True:
            line = self.proc.stdout.readline()
            assert line, "the server closed stdout"
            message = json.loads(line)  # stdout carries nothing but protocol
            if message.get("id") == id_:
                return message

    def close(self):
        self.proc.stdin.close()
        code = self.proc.wait(timeout=20)
        return code, self.proc.stderr.read().decode()


INIT = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}


def test_malformed_oversized_and_early_messages_never_crash_or_reach_graph(emulator, state_dir):
    before = len(emulator.graph_requests())
    raw = RawSession(emulator, state_dir)
    # A call before initialize: refused, and the server keeps listening.
    early = raw.request(1, "tools/call", {"name": "get_user", "arguments": {"id": ADELE}})
    assert "error" in early, early
    raw.send(b"{this is not json\n")
    raw.send(b'{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": "oops"}\n')
    # A line over the 32 MiB limit is dropped without being kept whole.
    raw.send(b'{"jsonrpc": "2.0", "id": 3, "method": "ping", "params": {"pad": "' + b"x" * (33 << 20) + b'"}}\n')
    init = raw.request(4, "initialize", INIT)
    assert init["result"]["capabilities"]["tools"] is not None
    assert "logging" in init["result"]["capabilities"]
    raw.send(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
    # Advertised, so accepted (the MCP Inspector sets a level on connecting).
    assert "result" in raw.request(9, "logging/setLevel", {"level": "info"})
    listed = raw.request(5, "tools/list", {})
    assert len(listed["result"]["tools"]) == len(catalog())
    bad = raw.request(6, "tools/call", {"name": "get_presences", "arguments": {"ids": []}})
    assert bad["result"]["isError"] is True
    error = json.loads(bad["result"]["content"][0]["text"])["error"]
    assert error["details"][0]["path"] == "/inputs/ids"
    unknown = raw.request(7, "tools/call", {"name": "nope", "arguments": {}})
    assert unknown["error"]["code"] == -32602
    no_method = raw.request(8, "resources/delete_everything", {})
    assert "error" in no_method
    assert raw.proc.poll() is None, "the server is still running"
    code, stderr = raw.close()
    assert code == 0, stderr
    assert "panicked" not in stderr and "internal defect" not in stderr
    assert len(emulator.graph_requests()) == before, "nothing reached Graph"


# ---------------------------------------------------------------- streamable HTTP


class HttpServer:
    def __init__(self, emulator, state_dir, *extra):
        self.proc = subprocess.Popen(
            [binary(), "--state-dir", str(state_dir), "mcp", "--asset", str(emulator.asset_path),
             "--listen", "127.0.0.1:0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        self.line = json.loads(self.proc.stdout.readline())
        self.url = self.line["url"]
        self.token = self.line.get("token")

    def client(self, token=None, **kwargs):
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return Client(streamable_http_client(self.url, http_client=create_mcp_http_client(headers=headers)), **kwargs)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        return self.proc.stdout.read() + self.proc.stderr.read()


@pytest.fixture
def http_server(emulator, state_dir):
    server = HttpServer(emulator, state_dir)
    yield server
    server.stop()


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_http_lists_calls_and_reports_progress(emulator, http_server, mode):
    assert http_server.url.startswith("http://127.0.0.1:") and http_server.url.endswith("/mcp")
    assert len(http_server.token) >= 40
    recorder = Recorder()
    steps = []

    async def on_progress(progress, total, message):
        steps.append((progress, total))

    async def main():
        async with http_server.client(mode=mode, message_handler=recorder) as client:
            tools = (await client.list_tools()).tools
            user = await client.call_tool("get_user", {"id": ADELE})
            ids = [ADELE] + [str(uuid.UUID(int=n + 1)) for n in range(700)]
            presences = await client.call_tool("get_presences", {"ids": ids}, progress_callback=on_progress)
            invalid = await client.call_tool("get_user", {"id": ""})
            return tools, user, presences, invalid

    tools, user, presences, invalid = anyio.run(main)
    assert len(tools) == len(catalog())
    update = next(t for t in tools if t.name == "update_user")
    assert update.annotations.destructive_hint and update.annotations.open_world_hint
    assert body(user)["json_body"]["userPrincipalName"] == ADELE
    assert body(presences)["json_body"]["not_found"][0] == str(uuid.UUID(int=1))
    # One step per answered batch (650 and 51 ids, in whichever order they answer).
    assert [t for _, t in steps] == [701, 701]
    assert steps[0][0] in (650, 51) and steps[1][0] == 701
    assert error_of(invalid)["details"][0]["path"] == "/inputs/id"
    everything = recorder.text() + user.model_dump_json() + presences.model_dump_json()
    assert emulator.secret not in everything
    # The token is printed once, at start, and never again.
    rest = http_server.stop()
    assert emulator.secret not in rest and http_server.token not in rest


def test_http_refuses_requests_without_the_token_and_oversized_bodies(emulator, http_server):
    import httpx2

    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INIT}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    before = len(emulator.requests())
    with httpx2.Client(timeout=30) as http:
        none = http.post(http_server.url, json=init, headers=headers)
        assert none.status_code == 401
        assert none.headers["www-authenticate"] == "Bearer"
        wrong = http.post(http_server.url, json=init, headers={**headers, "Authorization": "Bearer " + "A" * 43})
        assert wrong.status_code == 401
        auth = {**headers, "Authorization": f"Bearer {http_server.token}"}
        big = b'{"jsonrpc":"2.0","id":2,"method":"ping","params":{"pad":"' + b"x" * (33 << 20) + b'"}}'
        with httpx2.Client(timeout=30) as once:
            try:
                too_big = once.post(http_server.url, content=big, headers=auth)
                assert too_big.status_code == 413
            except httpx2.RemoteProtocolError:
                pass  # answered 413 and closed before the client finished sending: refused too
        # ... and the server goes on serving (on a new connection).
        with httpx2.Client(timeout=30) as fresh:
            assert fresh.post(http_server.url, json=init, headers=auth).status_code == 200
        garbage = http.post(http_server.url, content=b"{nope", headers=auth)
        assert 400 <= garbage.status_code < 500
    assert len(emulator.requests()) == before

    async def wrong_token():
        async with http_server.client(token="B" * 43) as client:
            await client.list_tools()

    with pytest.raises(BaseException):
        anyio.run(wrong_token)


def test_http_token_from_a_file_is_not_printed(emulator, state_dir, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cr3t-token-for-the-agent-0123456789\n")
    server = HttpServer(emulator, state_dir, "--token-file", str(token_file))
    try:
        assert server.token is None

        async def main():
            async with server.client(token="s3cr3t-token-for-the-agent-0123456789") as client:
                return await client.call_tool("get_user", {"id": ADELE})

        assert body(anyio.run(main))["json_body"]["userPrincipalName"] == ADELE
    finally:
        assert "s3cr3t-token" not in server.stop()
