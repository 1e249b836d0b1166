"""The generated packages pass each platform's published tooling (what runs in CI):

- Splunk SOAR: splunk-soar-sdk's parser for a classic app JSON
  (`soar_sdk.cli.manifests.deserializers.AppMetaDeserializer.from_app_json`, the code
  behind its app conversion) builds the app's pydantic models from our app JSON. The
  SDK has no validator for classic (non-SDK) apps beyond that.
- StackStorm: no registry package ships st2's schemas (`contrib/schemas/*.json` in
  StackStorm/st2), so their rules are restated here from those files: draft 4 (the
  metaschema jsonschema ships) where `required` is a boolean on the property, `secret`,
  `position` and `immutable` are allowed, nothing else is; the action's and pack's
  top-level keys from their lists.
- Cortex XSOAR: demisto-sdk's schema check is heavy (a 340 MB install), so it runs in
  `scripts/validate-exports`; here, the structure the wrapper relies on.
"""

import copy
import json
import re

import jsonschema
import pytest
import yaml

from conftest import REPO


def test_splunk_app_json_parses_with_the_sdk(exports):
    from soar_sdk.cli.manifests.deserializers import AppMetaDeserializer

    app = exports["splunk-soar"] / "msgraphconnector.json"
    meta = AppMetaDeserializer.from_app_json(app).app_meta
    raw = json.loads(app.read_text())
    assert meta.appid == raw["appid"]
    identifiers = [a.identifier for a in meta.actions]
    assert identifiers[0] == "test_connectivity"
    catalog = [p.stem for p in sorted((REPO / "actions").glob("*.yaml"))]
    assert sorted(identifiers[1:]) == catalog
    assert meta.configuration["client_secret"]["data_type"] == "password"
    for action in raw["actions"]:
        for out in action["output"]:
            assert re.fullmatch(r"(action_result\.(status|message|parameter\.\w+|summary\.\w+|data\.\*(\.[\w@.*]+)?)|summary\.total_objects(_successful)?)", out["data_path"]), out


# StackStorm's parameter dialect (contrib/schemas/action.json, "parameters" and
# "output_schema"): draft 4 with a boolean `required` and st2's own flags, no other keyword.
ST2_KEYWORDS = {
    "id", "$schema", "title", "description", "default", "multipleOf", "maximum", "exclusiveMaximum",
    "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern", "additionalItems", "items",
    "maxItems", "minItems", "uniqueItems", "maxProperties", "minProperties", "required", "secret",
    "additionalProperties", "definitions", "properties", "patternProperties", "dependencies", "enum",
    "type", "position", "immutable", "allOf", "anyOf", "oneOf", "not",
}
# contrib/schemas/action.json top-level properties (additionalProperties: false).
ST2_ACTION_KEYS = {
    "id", "ref", "uid", "name", "description", "enabled", "runner_type", "entry_point", "pack",
    "parameters", "output_schema", "tags", "notify", "metadata_file",
}


def st2_metaschema():
    meta = copy.deepcopy(jsonschema.Draft4Validator.META_SCHEMA)
    # Its own document: nested "$ref": "#" must mean this dialect, not draft 4 by its id.
    meta.pop("id", None)
    meta["properties"]["type"] = {"anyOf": [{"$ref": "#/definitions/simpleTypes"}]}
    meta["properties"]["required"] = {"type": "boolean", "default": False}
    for flag in ("secret", "immutable"):
        meta["properties"][flag] = {"type": "boolean", "default": False}
    meta["properties"]["position"] = {"type": "number", "minimum": 0}
    meta["additionalProperties"] = False
    return meta


def test_st2_dialect_check_refuses_2020_12_schemas():
    validator = jsonschema.Draft4Validator(st2_metaschema())
    assert not validator.is_valid({"type": ["string", "null"]})
    assert not validator.is_valid({"$ref": "#/$defs/X"})
    assert not validator.is_valid({"type": "object", "required": ["a"]})
    assert validator.is_valid({"type": "string", "required": True, "secret": True})


def test_stackstorm_pack_follows_st2_schemas(exports):
    pack_dir = exports["stackstorm"]
    pack = yaml.safe_load((pack_dir / "pack.yaml").read_text())
    assert re.fullmatch(r"^[a-z0-9_]+$", pack["ref"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", pack["version"])
    for key in ("name", "author", "description", "version"):
        assert isinstance(pack[key], str) and pack[key]
    validator = jsonschema.Draft4Validator(st2_metaschema())
    config = yaml.safe_load((pack_dir / "config.schema.yaml").read_text())
    for name, schema in config.items():
        errors = [e.message for e in validator.iter_errors(schema)]
        assert not errors, (name, errors)
    assert config["client_secret"]["secret"] is True
    metas = sorted((pack_dir / "actions").glob("*.yaml"))
    assert len(metas) == len(list((REPO / "actions").glob("*.yaml"))) + 1  # + check
    for path in metas:
        meta = yaml.safe_load(path.read_text())
        assert set(meta) <= ST2_ACTION_KEYS, path.name
        assert meta["runner_type"] == "python-script"
        assert (pack_dir / "actions" / meta["entry_point"]).is_file()
        for name, schema in meta["parameters"].items():
            assert re.fullmatch(r"^\w+$", name)
            errors = [e.message for e in validator.iter_errors(schema)]
            assert not errors, (path.name, name, errors)
        if "output_schema" in meta:
            errors = [e.message for e in validator.iter_errors(meta["output_schema"])]
            assert not errors, (path.name, errors)


def test_stackstorm_parameters_accept_the_examples(exports):
    """The lowered parameter schemas still take what our schemas take."""
    from conftest import examples

    for action, inputs in examples():
        meta = yaml.safe_load((exports["stackstorm"] / "actions" / (action + ".yaml")).read_text())
        params = meta["parameters"]
        for name, value in inputs.items():
            schema = {k: v for k, v in params[name].items() if k not in ("required", "secret", "immutable", "position")}
            jsonschema.Draft4Validator(schema).validate(value)


def test_xsoar_integration_names_every_action_with_its_context(exports):
    base = exports["xsoar"] / "Integrations/MSGraphConnector"
    yml = yaml.safe_load((base / "MSGraphConnector.yml").read_text())
    assert yml["commonfields"] == {"id": "MSGraphConnector", "version": -1}
    assert yml["script"]["type"] == "python" and yml["script"]["subtype"] == "python3"
    types = {p["name"]: p["type"] for p in yml["configuration"]}
    assert types["credentials"] == 9 and types["private_key"] == 14 and types["asset_type"] == 15
    assert types["insecure"] == 8 and types["proxy"] == 8
    names = [c["name"] for c in yml["script"]["commands"]]
    catalog = sorted(p.stem for p in (REPO / "actions").glob("*.yaml"))
    assert sorted(n[len("msgraph-"):].replace("-", "_") for n in names) == catalog
    for cmd in yml["script"]["commands"]:
        for out in cmd["outputs"]:
            assert out["contextPath"].startswith("MSGraphConnector."), out
            assert out["type"] in ("String", "Number", "Boolean", "Date", "Unknown")
    execution = {c["name"] for c in yml["script"]["commands"] if c.get("execution")}
    # The actions whose pages say they change data (actions/<name>.yaml), from the page,
    # not from the code that generated the package.
    changes = {
        "msgraph-" + p.stem.replace("_", "-")
        for p in (REPO / "actions").glob("*.yaml")
        if yaml.safe_load(p.read_text()).get("changes_data")
    }
    assert "msgraph-update-user" in changes and "msgraph-get-user" not in changes
    # An administrator's override changes our store, not the tenant: execution too.
    assert execution == changes | {"msgraph-set-office-presence", "msgraph-clear-office-presence"}
    meta = json.loads((exports["xsoar"] / "pack_metadata.json").read_text())
    assert meta["currentVersion"] and meta["categories"]
