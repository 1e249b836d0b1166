"""Microsoft's own Python libraries against the fake tenant (`msgraph-connector emulator --tls`).

Start the emulator with HTTPS (the libraries send tokens over https only) and keep the
asset it prints:

    msgraph-connector emulator --tls --generate users=50,sign_ins=500,seed=3,day=today \
        --print-asset client_credentials > asset.json

then, in a venv with the pins of python/msclients/requirements.txt:

    python examples/msclients.py asset.json

It trusts the emulator's certificate authority (the asset's `ca_file`) through
REQUESTS_CA_BUNDLE (msal, azure-identity) and SSL_CERT_FILE (httpx, under msgraph-sdk),
gets a token with msal.ConfidentialClientApplication and with azure-identity's
ClientSecretCredential, and with msgraph-sdk reads users, one presence and a batch of
presences, a user's memberOf with the SDK's PageIterator, sign-ins and a photo, then
patches a user. It prints what it saw as one JSON object.
"""

import asyncio
import json
import os
import sys
from urllib.parse import urlsplit


def trust(ca_file):
    """Make every library here trust the emulator's certificate authority."""
    os.environ["REQUESTS_CA_BUNDLE"] = ca_file
    os.environ["SSL_CERT_FILE"] = ca_file


def msal_token(asset):
    import msal

    base = asset["login_url"].rstrip("/")
    app = msal.ConfidentialClientApplication(
        asset["client_id"],
        client_credential=asset["client_secret"],
        authority=f"{base}/{asset['tenant_id']}",
        # Unknown authority hosts are checked with instance discovery; by default at
        # login.microsoftonline.com, here at the emulator's own endpoint.
        instance_discovery=f"{base}/common/discovery/instance",
    )
    result = app.acquire_token_for_client(scopes=[f"{asset['url'].rstrip('/')}/.default"])
    if "access_token" not in result:
        raise RuntimeError(f"msal: {result.get('error')}: {result.get('error_description')}")
    return result


def credential(asset):
    from azure.identity import ClientSecretCredential

    return ClientSecretCredential(
        asset["tenant_id"],
        asset["client_id"],
        asset["client_secret"],
        authority=asset["login_url"].rstrip("/"),
        # The emulator is not a host Microsoft knows; skip its instance discovery.
        disable_instance_discovery=True,
    )


def graph_client(asset, cred):
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )
    from msgraph import GraphRequestAdapter, GraphServiceClient

    url = asset["url"].rstrip("/")
    auth = AzureIdentityAuthenticationProvider(
        cred, scopes=[f"{url}/.default"], allowed_hosts=[urlsplit(url).hostname]
    )
    adapter = GraphRequestAdapter(auth)
    adapter.base_url = f"{url}/v1.0"
    return GraphServiceClient(request_adapter=adapter)


async def graph_tour(client):
    from msgraph.generated.communications.get_presences_by_user_id.get_presences_by_user_id_post_request_body import (
        GetPresencesByUserIdPostRequestBody,
    )
    from msgraph.generated.models.user import User
    from msgraph.generated.users.item.member_of.member_of_request_builder import (
        MemberOfRequestBuilder,
    )
    from msgraph_core.tasks.page_iterator import PageIterator

    seen = {}
    users = (await client.users.get()).value
    seen["users"] = len(users)
    first = users[0]
    presence = await client.users.by_user_id(first.id).presence.get()
    seen["presence"] = presence.availability
    body = GetPresencesByUserIdPostRequestBody(ids=[u.id for u in users[:10]])
    batch = await client.communications.get_presences_by_user_id.post(body)
    seen["batch_presences"] = len(batch.value)

    config = MemberOfRequestBuilder.MemberOfRequestBuilderGetRequestConfiguration(
        query_parameters=MemberOfRequestBuilder.MemberOfRequestBuilderGetQueryParameters(top=3)
    )
    page = await client.users.by_user_id(first.id).member_of.get(request_configuration=config)
    ids = []

    def keep(item):
        ids.append(item.id)
        return True

    iterator = PageIterator(page, client.request_adapter)
    await iterator.iterate(keep)
    seen["member_of"] = len(ids)
    seen["member_of_distinct"] = len(set(ids))

    sign_ins = await client.audit_logs.sign_ins.get()
    seen["sign_ins"] = len(sign_ins.value)
    photo = await client.users.by_user_id(first.id).photo.content.get()
    seen["photo_bytes"] = len(photo or b"")
    seen["photo_is_jpeg"] = bool(photo) and photo[:2] == b"\xff\xd8"

    await client.users.by_user_id(first.id).patch(User(job_title="Playbook tester"))
    after = await client.users.by_user_id(first.id).get()
    seen["patched_job_title"] = after.job_title
    return seen


def main(asset):
    trust(asset["ca_file"])
    seen = {"msal_token_type": msal_token(asset).get("token_type")}
    cred = credential(asset)
    token = cred.get_token(f"{asset['url'].rstrip('/')}/.default")
    seen["azure_identity_token"] = bool(token.token)
    seen.update(asyncio.run(graph_tour(graph_client(asset, cred))))
    return seen


if __name__ == "__main__":
    with open(sys.argv[1] if len(sys.argv) > 1 else "asset.json") as f:
        print(json.dumps(main(json.load(f)), indent=2))
