"""A minimal stand-in for Cortex XSOAR's `demisto` object: what the generated
integration calls (params, args, command, results, integration context)."""

_params = {}
_args = {}
_command = ""
_context = {}
entries = []


def setup(command, params, args=None, context=None):
    global _params, _args, _command, _context
    _params, _args, _command = params, dict(args or {}), command
    _context = context if context is not None else {}
    entries.clear()


def params():
    return _params


def args():
    return _args


def command():
    return _command


def results(entry):
    entries.append(entry)


def getIntegrationContext():
    return dict(_context)


def setIntegrationContext(context):
    _context.clear()
    _context.update(context)


def context():
    return _context
