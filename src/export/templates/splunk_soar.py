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
