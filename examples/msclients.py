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
patches a user. Then it publishes presence as an app would (setPresence, setUserPreferredPresence,
setStatusMessage, clearUserPreferredPresence, clearPresence), reads a group's transitive members
cast to users, and reads photo metadata through the SDK's JSON batching ($batch), the requests
sync_profile_photos makes. It prints what it saw as one JSON object.
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


async def publisher_tour(client, app_id):
    """Presence publishing, a group's users and a photo batch, through the SDK's builders."""
    from datetime import timedelta

    from msgraph.generated.models.body_type import BodyType
    from msgraph.generated.models.item_body import ItemBody
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError
    from msgraph.generated.models.presence_status_message import PresenceStatusMessage
    from msgraph.generated.users.item.presence.clear_presence.clear_presence_post_request_body import (
        ClearPresencePostRequestBody,
    )
    from msgraph.generated.users.item.presence.set_presence.set_presence_post_request_body import (
        SetPresencePostRequestBody,
    )
    from msgraph.generated.users.item.presence.set_status_message.set_status_message_post_request_body import (
        SetStatusMessagePostRequestBody,
    )
    from msgraph.generated.users.item.presence.set_user_preferred_presence.set_user_preferred_presence_post_request_body import (
        SetUserPreferredPresencePostRequestBody,
    )
    # The SDK's batch classes import `deprecated`, which msgraph-core does not declare
    # (microsoftgraph/msgraph-sdk-python-core#1030): pinned beside it.
    from msgraph_core.requests.batch_request_content import BatchRequestContent
    from msgraph_core.requests.batch_request_item import BatchRequestItem

    seen = {}
    users = (await client.users.get()).value
    me = client.users.by_user_id(users[1].id).presence

    async def availability():
        p = await me.get()
        return [p.availability, p.activity]

    # A `timedelta` is written as str(timedelta), "1:00:00", not the ISO 8601 duration
    # Graph's Edm.Duration needs, and Graph answers 400
    # (microsoftgraph/msgraph-sdk-python#1262); an ISO 8601 string goes through as given.
    try:
        await me.set_presence.post(
            SetPresencePostRequestBody(
                session_id=app_id,
                availability="Busy",
                activity="InACall",
                expiration_duration=timedelta(hours=1),
            )
        )
        seen["timedelta_duration_refused"] = None
    except ODataError as e:
        seen["timedelta_duration_refused"] = e.response_status_code
    await me.set_presence.post(
        SetPresencePostRequestBody(
            session_id=app_id,
            availability="Busy",
            activity="InACall",
            expiration_duration="PT1H",
        )
    )
    seen["after_set_presence"] = await availability()
    await me.set_user_preferred_presence.post(
        SetUserPreferredPresencePostRequestBody(
            availability="DoNotDisturb",
            activity="DoNotDisturb",
            expiration_duration="PT2H",
        )
    )
    seen["after_preferred"] = await availability()
    await me.set_status_message.post(
        SetStatusMessagePostRequestBody(
            status_message=PresenceStatusMessage(
                message=ItemBody(content="In the lab until 3", content_type=BodyType.Text)
            )
        )
    )
    seen["status_message"] = (await me.get()).status_message.message.content
    await me.clear_user_preferred_presence.post()
    seen["after_clear_preferred"] = await availability()
    await me.clear_presence.post(ClearPresencePostRequestBody(session_id=app_id))
    seen["after_clear_presence"] = await availability()

    groups = (await client.users.by_user_id(users[0].id).member_of.get()).value
    group = next(g for g in groups if g.odata_type == "#microsoft.graph.group")
    members = await client.groups.by_group_id(group.id).transitive_members.graph_user.get()
    seen["group_users"] = len(members.value)
    seen["group_users_are_users"] = all(m.odata_type == "#microsoft.graph.user" for m in members.value)

    # Photo metadata of ten users in one $batch, as sync_profile_photos asks for it. The
    # SDK's batch items keep the request's absolute URL, which Graph refuses item by item
    # (400; microsoftgraph/msgraph-sdk-python#1015, msgraph-sdk-python-core#1116): made
    # relative to the version root here, as those threads do.
    def photo_items(relative):
        items = []
        for u in users[:10]:
            item = BatchRequestItem(
                request_information=client.users.by_user_id(u.id).photo.to_get_request_information()
            )
            if relative:
                item.url = "/" + item.url.split("/v1.0/", 1)[1]
            items.append(item)
        return BatchRequestContent({i.id: i for i in items})

    answer = await client.batch.post(photo_items(relative=False))
    seen["photo_batch_absolute_statuses"] = sorted(set(answer.get_response_status_codes().values()))
    answer = await client.batch.post(photo_items(relative=True))
    statuses = list(answer.get_response_status_codes().values())
    seen["photo_batch_statuses"] = sorted(set(statuses))
    seen["photo_batch_found"] = statuses.count(200)
    return seen


def main(asset):
    trust(asset["ca_file"])
    seen = {"msal_token_type": msal_token(asset).get("token_type")}
    cred = credential(asset)
    token = cred.get_token(f"{asset['url'].rstrip('/')}/.default")
    seen["azure_identity_token"] = bool(token.token)
    seen.update(asyncio.run(graph_tour(graph_client(asset, cred))))
    seen.update(asyncio.run(publisher_tour(graph_client(asset, cred), asset["client_id"])))
    return seen


if __name__ == "__main__":
    with open(sys.argv[1] if len(sys.argv) > 1 else "asset.json") as f:
        print(json.dumps(main(json.load(f)), indent=2))
