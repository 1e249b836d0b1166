//! `GET /organization`: the tenant itself.

use serde_json::json;

use super::common::{GResult, context, json_response, require};
use crate::access_token::Caller;
use crate::state::Shared;

pub(crate) fn organization(shared: &Shared, caller: &Caller) -> GResult {
    require(
        caller,
        &[
            "Organization.Read.All",
            "Organization.ReadWrite.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        ],
    )?;
    let dir = shared.dir.read().expect("dir lock");
    let t = &dir.tenant;
    Ok(json_response(&json!({
        "@odata.context": context(shared, "organization"),
        "value": [{
            "id": t.tenant_id.to_string(),
            "displayName": t.display_name,
            "tenantType": "AAD",
            "countryLetterCode": "DE",
            "verifiedDomains": [{
                "capabilities": "Email, OfficeCommunicationsOnline",
                "isDefault": true, "isInitial": true, "name": t.domain, "type": "Managed"
            }],
        }]
    })))
}
