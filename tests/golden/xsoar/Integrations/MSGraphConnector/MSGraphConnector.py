"""Microsoft Graph Connector for Cortex XSOAR: runs the msgraph-connector binary."""

import json
import os
import shutil
import subprocess

BINARY = "msgraph-connector"


class ConnectorError(Exception):
    """The connector's error object ({"kind", "message", ...}), or the wrapper's own refusal."""

    def __init__(self, error):
        self.error = error
        super().__init__(error.get("message") or "msgraph-connector failed")


def find_binary():
    """$MSGRAPH_CONNECTOR, else the binary bundled beside this file, else PATH."""
    here = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else ""
    candidates = [os.environ.get("MSGRAPH_CONNECTOR"), here and os.path.join(here, BINARY), shutil.which(BINARY)]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise ConnectorError({"kind": "internal", "message": BINARY + " not found beside the wrapper or on PATH"})


def child_env():
    # Secrets reach the binary only on stdin. Its environment is built, not inherited:
    # a platform's environment can hold credentials (proxy URLs with passwords, tokens).
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "XDG_STATE_HOME")
    return {name: os.environ[name] for name in keep if name in os.environ}


def run_connector(command, envelope, state_dir=None):
    """Run `msgraph-connector COMMAND` with ENVELOPE on stdin; its result object, or ConnectorError."""
    argv = [find_binary()]
    if state_dir:
        argv += ["--state-dir", state_dir]
    argv += command
    proc = subprocess.run(
        argv,
        input=json.dumps(envelope).encode(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
        check=False,
    )
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        tail = proc.stderr.decode(errors="replace").strip()[-500:]
        raise ConnectorError({"kind": "internal", "message": "%s exited %d without a result: %s" % (BINARY, proc.returncode, tail)})
    if proc.returncode != 0 or not isinstance(result, dict) or "error" in result:
        error = result.get("error") if isinstance(result, dict) else None
        raise ConnectorError(error or {"kind": "internal", "message": "%s exited %d" % (BINARY, proc.returncode)})
    return result


def refuse(name, why):
    pointer = "/inputs/" + name
    return ConnectorError({"kind": "invalid_input", "message": "invalid input at %s: %s" % (pointer, why), "details": [{"path": pointer, "message": why}]})


def coerce(kind, value, name):
    """A platform's argument value (often text: "true", "5", "a,b", JSON) as our schema type."""
    if kind.startswith("array:"):
        item = kind[len("array:"):]
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except ValueError as e:
                    raise refuse(name, "is not a JSON array: %s" % e)
            else:
                value = [part.strip() for part in text.split(",") if part.strip()]
        if not isinstance(value, list):
            value = [value]
        return [coerce(item, v, "%s/%d" % (name, i)) for i, v in enumerate(value)]
    if kind == "json":
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError as e:
                raise refuse(name, "is not JSON: %s" % e)
        return value
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "1"):
            return True
        if text in ("false", "no", "0"):
            return False
        raise refuse(name, "must be true or false")
    if kind == "integer":
        if isinstance(value, bool):
            raise refuse(name, "must be a whole number")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise refuse(name, "must be a whole number")
    if kind == "number":
        try:
            return float(value) if not isinstance(value, (int, float)) or isinstance(value, bool) else value
        except ValueError:
            raise refuse(name, "must be a number")
    return value if isinstance(value, str) else str(value)


def coerce_inputs(kinds, args):
    """Our inputs from a platform's arguments: unset ones (None, "") left out, the rest coerced."""
    inputs = {}
    for name, value in sorted((args or {}).items()):
        if value is None or (isinstance(value, str) and value.strip() == ""):
            continue
        if name not in kinds:
            raise refuse(name, "is not an input of this action")
        inputs[name] = coerce(kinds[name], value, name)
    return inputs


def truthy(value):
    return value is True or str(value).strip().lower() in ("true", "yes", "1")


def without_empty(fields):
    return {k: v for k, v in fields.items() if v is not None and v != ""}

# Generated from the action list by `msgraph-connector export`; do not edit.
PARAMS = {
    "asset_type": "type",
    "certificate": "certificate",
    "credentials": {
        "identifier": "client_id",
        "password": "client_secret",
    },
    "login_url": "login_url",
    "private_key": "private_key",
    "refresh_token": "refresh_token",
    "tenant_id": "tenant_id",
    "token_url": "token_url",
    "url": "url",
    "user_credentials": {
        "identifier": "username",
        "password": "password",
    },
}
ACTIONS = {
    "clear_office_presence": {
        "incremental": False,
        "inputs": {
            "at": "string",
            "config_path": "string",
            "date": "string",
            "ranges": "json",
            "set_by": "string",
            "settings": "json",
            "user": "string",
            "users": "json",
        },
        "needs_graph": False,
    },
    "clear_presence": {
        "incremental": False,
        "inputs": {
            "id": "string",
            "session_id": "string",
        },
        "needs_graph": True,
    },
    "clear_user_preferred_presence": {
        "incremental": False,
        "inputs": {
            "id": "string",
        },
        "needs_graph": True,
    },
    "confirm_compromised": {
        "incremental": False,
        "inputs": {
            "ids": "array:string",
        },
        "needs_graph": True,
    },
    "disable_user": {
        "incremental": False,
        "inputs": {
            "id": "string",
            "revoke_sessions": "boolean",
        },
        "needs_graph": True,
    },
    "dismiss_risky_user": {
        "incremental": False,
        "inputs": {
            "ids": "array:string",
        },
        "needs_graph": True,
    },
    "evaluate_ip_presence": {
        "incremental": True,
        "inputs": {
            "config_path": "string",
            "late_window_days": "integer",
            "now": "string",
            "output_path": "string",
            "ranges": "json",
            "replay": "boolean",
            "settings": "json",
            "sign_ins": "json",
            "sign_ins_path": "string",
            "users": "json",
        },
        "needs_graph": False,
    },
    "get_office_presence": {
        "incremental": False,
        "inputs": {
            "config_path": "string",
            "date": "string",
            "from": "string",
            "full_view": "boolean",
            "location": "string",
            "ranges": "json",
            "settings": "json",
            "to": "string",
            "user": "string",
            "users": "json",
        },
        "needs_graph": False,
    },
    "get_presence": {
        "incremental": False,
        "inputs": {
            "id": "string",
        },
        "needs_graph": True,
    },
    "get_presence_changes": {
        "incremental": True,
        "inputs": {
            "ids": "array:string",
        },
        "needs_graph": True,
    },
    "get_presences": {
        "incremental": False,
        "inputs": {
            "ids": "array:string",
        },
        "needs_graph": True,
    },
    "get_user": {
        "incremental": False,
        "inputs": {
            "id": "string",
            "select": "array:string",
        },
        "needs_graph": True,
    },
    "get_user_photo": {
        "incremental": False,
        "inputs": {
            "id": "string",
            "output_path": "string",
            "size": "string",
        },
        "needs_graph": True,
    },
    "get_user_status": {
        "incremental": False,
        "inputs": {
            "ids": "array:string",
            "parts": "array:string",
            "recent_days": "integer",
        },
        "needs_graph": True,
    },
    "list_memberships": {
        "incremental": False,
        "inputs": {
            "count": "boolean",
            "filter": "string",
            "id": "string",
            "max_items": "integer",
            "next_link": "string",
            "orderby": "string",
            "search": "string",
            "select": "array:string",
            "top": "integer",
            "type": "string",
        },
        "needs_graph": True,
    },
    "pull_sign_ins": {
        "incremental": True,
        "inputs": {
            "event_types": "array:string",
            "filter": "string",
            "lease_wait_seconds": "integer",
            "lookback_minutes": "integer",
            "max_records": "integer",
            "output_path": "string",
            "since": "string",
            "top": "integer",
            "until": "string",
        },
        "needs_graph": True,
    },
    "revoke_sign_in_sessions": {
        "incremental": False,
        "inputs": {
            "id": "string",
        },
        "needs_graph": True,
    },
    "set_office_presence": {
        "incremental": False,
        "inputs": {
            "at": "string",
            "config_path": "string",
            "date": "string",
            "location": "string",
            "ranges": "json",
            "remote": "boolean",
            "set_by": "string",
            "settings": "json",
            "user": "string",
            "users": "json",
        },
        "needs_graph": False,
    },
    "set_presence": {
        "incremental": False,
        "inputs": {
            "activity": "string",
            "availability": "string",
            "expiration_duration": "string",
            "id": "string",
            "session_id": "string",
        },
        "needs_graph": True,
    },
    "set_status_message": {
        "incremental": False,
        "inputs": {
            "content_type": "string",
            "expires_at": "string",
            "id": "string",
            "message": "string",
        },
        "needs_graph": True,
    },
    "set_user_preferred_presence": {
        "incremental": False,
        "inputs": {
            "activity": "string",
            "availability": "string",
            "expiration_duration": "string",
            "id": "string",
        },
        "needs_graph": True,
    },
    "sync_ip_presence": {
        "incremental": False,
        "inputs": {
            "config_path": "string",
            "event_types": "array:string",
            "late_window_days": "integer",
            "lease_wait_seconds": "integer",
            "lookback_minutes": "integer",
            "now": "string",
            "ranges": "json",
            "settings": "json",
            "since": "string",
            "users": "json",
        },
        "needs_graph": True,
    },
    "sync_profile_photos": {
        "incremental": False,
        "inputs": {
            "group_id": "string",
            "ids": "array:string",
            "max_photos": "integer",
            "output_dir": "string",
        },
        "needs_graph": True,
    },
    "update_user": {
        "incremental": False,
        "inputs": {
            "id": "string",
            "properties": "json",
        },
        "needs_graph": True,
    },
}
COMMANDS = {
    "msgraph-clear-office-presence": {
        "action": "clear_office_presence",
        "context": "MSGraphConnector.ClearOfficePresence",
    },
    "msgraph-clear-presence": {
        "action": "clear_presence",
        "context": "MSGraphConnector.ClearPresence",
    },
    "msgraph-clear-user-preferred-presence": {
        "action": "clear_user_preferred_presence",
        "context": "MSGraphConnector.ClearUserPreferredPresence",
    },
    "msgraph-confirm-compromised": {
        "action": "confirm_compromised",
        "context": "MSGraphConnector.ConfirmCompromised",
    },
    "msgraph-disable-user": {
        "action": "disable_user",
        "context": "MSGraphConnector.DisableUser",
    },
    "msgraph-dismiss-risky-user": {
        "action": "dismiss_risky_user",
        "context": "MSGraphConnector.DismissRiskyUser",
    },
    "msgraph-evaluate-ip-presence": {
        "action": "evaluate_ip_presence",
        "context": "MSGraphConnector.EvaluateIpPresence",
    },
    "msgraph-get-office-presence": {
        "action": "get_office_presence",
        "context": "MSGraphConnector.GetOfficePresence",
    },
    "msgraph-get-presence": {
        "action": "get_presence",
        "context": "MSGraphConnector.GetPresence",
    },
    "msgraph-get-presence-changes": {
        "action": "get_presence_changes",
        "context": "MSGraphConnector.GetPresenceChanges",
    },
    "msgraph-get-presences": {
        "action": "get_presences",
        "context": "MSGraphConnector.GetPresences",
    },
    "msgraph-get-user": {
        "action": "get_user",
        "context": "MSGraphConnector.GetUser",
    },
    "msgraph-get-user-photo": {
        "action": "get_user_photo",
        "context": "MSGraphConnector.GetUserPhoto",
    },
    "msgraph-get-user-status": {
        "action": "get_user_status",
        "context": "MSGraphConnector.GetUserStatus",
    },
    "msgraph-list-memberships": {
        "action": "list_memberships",
        "context": "MSGraphConnector.ListMemberships",
    },
    "msgraph-pull-sign-ins": {
        "action": "pull_sign_ins",
        "context": "MSGraphConnector.PullSignIns",
    },
    "msgraph-revoke-sign-in-sessions": {
        "action": "revoke_sign_in_sessions",
        "context": "MSGraphConnector.RevokeSignInSessions",
    },
    "msgraph-set-office-presence": {
        "action": "set_office_presence",
        "context": "MSGraphConnector.SetOfficePresence",
    },
    "msgraph-set-presence": {
        "action": "set_presence",
        "context": "MSGraphConnector.SetPresence",
    },
    "msgraph-set-status-message": {
        "action": "set_status_message",
        "context": "MSGraphConnector.SetStatusMessage",
    },
    "msgraph-set-user-preferred-presence": {
        "action": "set_user_preferred_presence",
        "context": "MSGraphConnector.SetUserPreferredPresence",
    },
    "msgraph-sync-ip-presence": {
        "action": "sync_ip_presence",
        "context": "MSGraphConnector.SyncIpPresence",
    },
    "msgraph-sync-profile-photos": {
        "action": "sync_profile_photos",
        "context": "MSGraphConnector.SyncProfilePhotos",
    },
    "msgraph-update-user": {
        "action": "update_user",
        "context": "MSGraphConnector.UpdateUser",
    },
}

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
