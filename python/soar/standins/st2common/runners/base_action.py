"""A minimal stand-in for StackStorm's Python runner base class: the pack config in
`self.config`, the datastore behind `self.action_service` (pack-local keys)."""


class DatastoreService:
    def __init__(self):
        self.values = {}

    def get_value(self, name, local=True, scope=None, decrypt=False):
        return self.values.get((local, name))

    def set_value(self, name, value, ttl=None, local=True, scope=None, encrypt=False):
        assert isinstance(value, str), "the datastore holds strings"
        self.values[(local, name)] = value
        return True


class Action:
    def __init__(self, config=None, action_service=None):
        self.config = config or {}
        self.action_service = action_service or DatastoreService()

    def run(self, **kwargs):
        raise NotImplementedError
