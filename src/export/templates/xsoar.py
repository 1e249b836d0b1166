# Cortex XSOAR runs this file with a `demisto` object in its globals; locally (tests,
# demisto-sdk) the module `demistomock` stands in for it.
try:
    demisto  # noqa: B018
except NameError:
    import demistomock as demisto  # noqa: F401


def asset_from_params(params):
    """Our asset from the instance's parameters (PARAMS maps each to asset fields)."""
    asset = {}
    for param, field in PARAMS.items():
        value = params.get(param)
        if isinstance(field, dict):
            value = value if isinstance(value, dict) else {}
            for part, name in field.items():
                asset[name] = value.get(part)
        else:
            asset[field] = value
    asset["verify_ssl"] = not truthy(params.get("insecure", False))
    if truthy(params.get("proxy", False)):
        # XSOAR's "Use system proxy settings": the engine's proxy variables
        # (CommonServerPython's handle_proxy reads the same ones).
        for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
            if os.environ.get(name):
                asset["http_proxy"] = os.environ[name]
                break
    return without_empty(asset)


def entry(result, action, prefix):
    body = result.get("json_body")
    text = json.dumps(body, indent=2, sort_keys=True)
    if len(text) > 20000:
        text = text[:20000] + "\n... (truncated; the whole answer is in the context)"
    human = "### %s\nStatus %s %s\n```json\n%s\n```" % (action, result.get("status_code"), result.get("reason", ""), text)
    out = {"Type": 1, "ContentsFormat": "json", "Contents": result, "HumanReadable": human, "ReadableContentsFormat": "markdown"}
    if body is not None:
        out["EntryContext"] = {prefix: body}
    return out


def error_entry(error):
    message = error.error.get("message") or str(error)
    kind = error.error.get("kind")
    return {"Type": 4, "ContentsFormat": "text", "Contents": "msgraph-connector (%s): %s" % (kind, message)}


def test_module(asset):
    body = run_connector(["check"], {"asset": asset}).get("json_body") or {}
    if body.get("successful"):
        return "ok"
    missing = ["%s needs %s" % (a.get("name"), ", ".join(a.get("missing") or [])) for a in body.get("actions", []) if not a.get("ok")]
    raise ConnectorError({"kind": "auth", "message": "the app lacks permissions: " + "; ".join(missing)})


def run_command(command, asset, args):
    spec = COMMANDS[command]
    name = spec["action"]
    action = ACTIONS[name]
    envelope = {"asset": asset, "inputs": coerce_inputs(action["inputs"], args)}
    context = None
    if action["incremental"]:
        # Incremental state through XSOAR's integration context, one key per action.
        context = demisto.getIntegrationContext() or {}
        if context.get(name) is not None:
            envelope["state"] = context[name]
    result = run_connector(["run", name], envelope)
    if context is not None and result.get("state") is not None:
        context[name] = result["state"]
        demisto.setIntegrationContext(context)
    return entry(result, name, spec["context"])


def main():
    command = demisto.command()
    try:
        asset = asset_from_params(demisto.params())
        if command == "test-module":
            demisto.results(test_module(asset))
        elif command in COMMANDS:
            demisto.results(run_command(command, asset, demisto.args()))
        else:
            raise ConnectorError({"kind": "invalid_input", "message": "unknown command " + command})
    except ConnectorError as e:
        demisto.results(error_entry(e))


if __name__ in ("__main__", "__builtin__", "builtins"):
    main()
