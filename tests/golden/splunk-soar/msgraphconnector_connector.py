"""Microsoft Graph Connector for Splunk SOAR: runs the msgraph-connector binary."""

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
CONFIG = {
    "api_version": "api_version",
    "auth_type": "type",
    "certificate": "certificate",
    "client_id": "client_id",
    "client_secret": "client_secret",
    "http_proxy": "http_proxy",
    "login_url": "login_url",
    "password": "password",
    "private_key": "private_key",
    "refresh_token": "refresh_token",
    "tenant_id": "tenant_id",
    "timeout_seconds": "timeout_seconds",
    "token_url": "token_url",
    "url": "url",
    "username": "username",
    "verify_ssl": "verify_ssl",
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

import phantom.app as phantom
from phantom.action_result import ActionResult
from phantom.base_connector import BaseConnector


class MsgraphConnectorConnector(BaseConnector):
    """Runs msgraph-connector for each action; state kept with load_state/save_state."""

    def initialize(self):
        self._state = self.load_state() or {}
        return phantom.APP_SUCCESS

    def finalize(self):
        self.save_state(self._state)
        return phantom.APP_SUCCESS

    def _asset(self):
        config = self.get_config() or {}
        asset = {field: config.get(name) for name, field in CONFIG.items()}
        return without_empty(asset)

    def _state_dir(self):
        # The app's own state directory where the platform gives one (token cache, stores).
        get = getattr(self, "get_state_dir", None)
        return get() if callable(get) else None

    def _test_connectivity(self, action_result):
        self.save_progress("Running msgraph-connector check")
        result = run_connector(["check"], {"asset": self._asset()}, self._state_dir())
        body = result.get("json_body") or {}
        if not body.get("successful"):
            missing = ["%s needs %s" % (a.get("name"), ", ".join(a.get("missing") or [])) for a in body.get("actions", []) if not a.get("ok")]
            return action_result.set_status(phantom.APP_ERROR, "Test Connectivity Failed: the app lacks permissions: " + "; ".join(missing))
        self.save_progress("Test Connectivity Passed")
        return action_result.set_status(phantom.APP_SUCCESS, "Test Connectivity Passed")

    def _run(self, name, param, action_result):
        action = ACTIONS[name]
        args = {k: v for k, v in param.items() if k in action["inputs"]}
        envelope = {"asset": self._asset(), "inputs": coerce_inputs(action["inputs"], args)}
        if action["incremental"] and self._state.get(name) is not None:
            envelope["state"] = self._state[name]
        result = run_connector(["run", name], envelope, self._state_dir())
        if action["incremental"] and result.get("state") is not None:
            self._state[name] = result["state"]
        body = result.get("json_body")
        if body is not None:
            action_result.add_data(body)
        action_result.set_summary({"status_code": result.get("status_code")})
        return action_result.set_status(phantom.APP_SUCCESS, "%s: %s %s" % (name, result.get("status_code"), result.get("reason", "")))

    def handle_action(self, param):
        identifier = self.get_action_identifier()
        action_result = self.add_action_result(ActionResult(dict(param)))
        try:
            if identifier == "test_connectivity":
                return self._test_connectivity(action_result)
            if identifier not in ACTIONS:
                return action_result.set_status(phantom.APP_ERROR, "unknown action " + identifier)
            return self._run(identifier, param, action_result)
        except ConnectorError as e:
            return action_result.set_status(phantom.APP_ERROR, "msgraph-connector (%s): %s" % (e.error.get("kind"), e))


def main():
    # Splunk SOAR's local test harness: `python3 CONNECTOR.py input.json`.
    import sys

    with open(sys.argv[1]) as f:
        in_json = f.read()
    connector = MsgraphConnectorConnector()
    connector.print_progress_message = True
    print(connector._handle_action(in_json, None))


if __name__ == "__main__":
    main()
