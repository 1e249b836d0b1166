#!/usr/bin/env python3
"""Write the `$select`-able properties of the Graph v1.0 `user` from Microsoft's metadata.

The authority is `schemas/v1.0-Prod.csdl` in the public repository
https://github.com/microsoftgraph/msgraph-metadata. A property `$select` accepts is a
structural `<Property>` of `microsoft.graph.user` or of a type it derives from
(`directoryObject`, `entity`); navigation properties (`manager`, `memberOf`) need
`$expand` or a path of their own and are left out.

Offline, standard library only:

    python3 scripts/user-properties.py PATH/TO/v1.0-Prod.csdl > data/graph-user-properties.v1.0.json

`cargo test` then checks that `USER_PROPERTIES` in `src/actions/get_user.rs` equals the
file (`user_properties_match_the_published_metadata`).
"""

import json
import sys
import xml.etree.ElementTree as ET

EDM = "{http://docs.oasis-open.org/odata/ns/edm}"


def selectable(csdl_path, type_name="user", namespace="microsoft.graph"):
    root = ET.parse(csdl_path).getroot()
    schema = next(
        s for s in root.iter(EDM + "Schema") if s.get("Namespace") == namespace
    )
    alias = schema.get("Alias") or namespace
    types = {t.get("Name"): t for t in schema.findall(EDM + "EntityType")}
    names, chain = [], []
    name = type_name
    while name:
        entity = types[name]
        chain.append(name)
        names.extend(p.get("Name") for p in entity.findall(EDM + "Property"))
        base = entity.get("BaseType")
        name = None
        if base:
            prefix, _, short = base.rpartition(".")
            if prefix in (alias, namespace):
                name = short
    return chain, sorted(set(names), key=str.lower)


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    chain, props = selectable(argv[1])
    json.dump(
        {
            "source": "microsoftgraph/msgraph-metadata schemas/v1.0-Prod.csdl",
            "type": "microsoft.graph." + chain[0],
            "inherits": ["microsoft.graph." + c for c in chain[1:]],
            "properties": props,
        },
        sys.stdout,
        indent=2,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv)
