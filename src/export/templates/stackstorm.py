from st2common.runners.base_action import Action

STATE_KEY = "state."


class MsgraphConnectorAction(Action):
    """One Python action for every catalog action: `msgraph_action` (immutable) names it."""

    def _asset(self):
        config = self.config or {}
        return without_empty({field: config.get(name) for name, field in CONFIG.items()})

    def run(self, **parameters):
        name = parameters.pop("msgraph_action")
        try:
            if name == "check":
                result = run_connector(["check"], {"asset": self._asset()})
                return (bool((result.get("json_body") or {}).get("successful")), result)
            action = ACTIONS[name]
            envelope = {"asset": self._asset(), "inputs": coerce_inputs(action["inputs"], parameters)}
            if action["incremental"]:
                # Incremental state in the datastore, scoped to this pack (local=True).
                saved = self.action_service.get_value(STATE_KEY + name, local=True)
                if saved:
                    envelope["state"] = json.loads(saved)
            result = run_connector(["run", name], envelope)
            state = result.pop("state", None)
            if action["incremental"] and state is not None:
                self.action_service.set_value(STATE_KEY + name, json.dumps(state), local=True)
            return (True, result)
        except ConnectorError as e:
            return (False, {"error": e.error})
