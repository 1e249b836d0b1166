//! `get_user`: one user's profile.
//!
//! Graph: `GET /users/{id or UPN}?$select=...` (User.Read.All for applications;
//! User.ReadBasic.All serves only delegated tokens, with the basic fields). Without
//! `$select` Graph returns only its default properties. The select list is checked against the v1.0 user
//! properties before any request, so a typo is exit 2 with the pointer of the
//! bad entry instead of a Graph 400 after a token round trip.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::http_style::{Grouped, HttpStyle, SelectList, UserPath};
use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::{Detail, Error, Result};
use crate::graph::{ApiFamily, GraphPath, GraphRequest};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The user's object id (GUID) or user principal name.
    #[schemars(length(min = 1, max = 1024))]
    /// No control characters (CR, LF, NUL, ...): they have no place in an id,
    /// a UPN or a filter, and could split a request or a log line.
    #[schemars(extend("pattern" = "^[^\\u0000-\\u001F\\u007F]*$"))]
    pub id: String,
    /// Properties to return (Graph `$select`), e.g. `["displayName", "jobTitle", "onPremisesExtensionAttributes"]`.
    /// Names of the v1.0 user resource, case-insensitive, or directory extensions
    /// `extension_{appId without dashes}_{name}`. Empty or absent: Graph's default set.
    #[serde(default)]
    #[schemars(length(max = 100), inner(length(min = 1, max = 200)))]
    pub select: Vec<String>,
}

/// The same input in Swimlane's HTTP-style grouping: `GET /users/{id}?$select=...`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpInput {
    pub path_parameters: UserPath,
    #[serde(default)]
    pub parameters: HttpParameters,
}

/// The query options of `GET /users/{id}`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpParameters {
    /// Properties to return: `displayName,jobTitle` or a list.
    #[serde(rename = "$select", default)]
    pub select: Option<SelectList>,
}

impl Grouped for HttpInput {
    const PLACES: &'static [(&'static str, &'static str)] = &[
        ("/id", "/path_parameters/id"),
        ("/select", "/parameters/$select"),
    ];
    fn into_plain(self) -> Value {
        let select = self
            .parameters
            .select
            .map(SelectList::names)
            .unwrap_or_default();
        serde_json::json!({ "id": self.path_parameters.id, "select": select })
    }
}

/// The user object as Graph returns it: the selected properties (plus `@odata.context`).
pub type User = Map<String, Value>;

pub struct GetUser;

impl Action for GetUser {
    type Input = Input;
    type Output = User;
    const META: ActionMeta = ActionMeta {
        name: "get_user",
        title: "Get user",
        description: "Get one user's profile by object id or UPN, with the properties named in select (checked against the Graph user properties).",
        // App-only: User.Read.All is the least privileged; User.ReadBasic.All is not
        // accepted (https://learn.microsoft.com/graph/api/user-get#permissions).
        permissions: &[&["User.Read.All"]],
        changes_data: false,
        needs_graph: true,
        incremental: false,
        writes_local_state: LocalWrites::Nothing,
    };
    const HTTP_STYLE: Option<HttpStyle> = Some(HttpStyle::of::<HttpInput>());

    async fn run(ctx: &Context, input: Input) -> Result<Reply<User>> {
        let request = user_request(&input)?;
        let graph = ctx.graph()?;
        let response = graph.send(request).await?;
        Ok(Reply::from_response(&response, response.json()?))
    }
}

/// The request for `input`, or exit 2 naming each unknown property.
pub fn user_request(input: &Input) -> Result<GraphRequest> {
    let select = select_list(&input.select, "/inputs/select")?;
    let mut request = GraphRequest::get(GraphPath::user(&input.id), ApiFamily::Directory);
    if !select.is_empty() {
        request = request.query("$select", select);
    }
    Ok(request)
}

/// The `$select` value for `names` (canonical spelling, duplicates dropped), or
/// an error per unknown name at `{pointer}/{index}`.
pub fn select_list(names: &[String], pointer: &str) -> Result<String> {
    let mut out = String::new();
    let mut seen: Vec<&str> = Vec::with_capacity(names.len());
    let mut bad = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let canonical = if is_extension_property(name) {
            Some(name.as_str())
        } else {
            USER_PROPERTIES
                .iter()
                .find(|p| p.eq_ignore_ascii_case(name))
                .copied()
        };
        match canonical {
            Some(c) if seen.contains(&c) => {}
            Some(c) => {
                seen.push(c);
                if !out.is_empty() {
                    out.push(',');
                }
                out.push_str(c);
            }
            None => bad.push(Detail::new(
                format!("{pointer}/{i}"),
                "is not a property of the Graph user (v1.0); see the user resource type, or use extension_{appId}_{name}",
            )),
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(Error::invalid_details(bad))
    }
}

/// `extension_{32 hex digits}_{name}`: a directory extension property.
pub fn is_extension_property(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("extension_") else {
        return false;
    };
    let b = rest.as_bytes();
    b.len() > 33
        && b[..32].iter().all(u8::is_ascii_hexdigit)
        && b[32] == b'_'
        && b[33..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Properties of the v1.0 `user` resource that `$select` accepts (relationships
/// such as `manager` need `$expand` and are not listed). The authority is Microsoft's
/// published metadata (`schemas/v1.0-Prod.csdl` of microsoftgraph/msgraph-metadata):
/// `scripts/user-properties.py` extracts the list into
/// `data/graph-user-properties.v1.0.json`, and a test keeps this list equal to it.
pub const USER_PROPERTIES: &[&str] = &[
    "aboutMe",
    "accountEnabled",
    "ageGroup",
    "assignedLicenses",
    "assignedPlans",
    "authorizationInfo",
    "birthday",
    "businessPhones",
    "city",
    "companyName",
    "consentProvidedForMinor",
    "country",
    "createdDateTime",
    "creationType",
    "customSecurityAttributes",
    "deletedDateTime",
    "department",
    "deviceEnrollmentLimit",
    "displayName",
    "employeeHireDate",
    "employeeId",
    "employeeLeaveDateTime",
    "employeeOrgData",
    "employeeType",
    "externalUserState",
    "externalUserStateChangeDateTime",
    "faxNumber",
    "givenName",
    "hireDate",
    "id",
    "identities",
    "identityParentId",
    "imAddresses",
    "interests",
    "isManagementRestricted",
    "isResourceAccount",
    "jobTitle",
    "lastPasswordChangeDateTime",
    "legalAgeGroupClassification",
    "licenseAssignmentStates",
    "mail",
    "mailboxSettings",
    "mailNickname",
    "mobilePhone",
    "mySite",
    "officeLocation",
    "onPremisesDistinguishedName",
    "onPremisesDomainName",
    "onPremisesExtensionAttributes",
    "onPremisesImmutableId",
    "onPremisesLastSyncDateTime",
    "onPremisesProvisioningErrors",
    "onPremisesSamAccountName",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
    "onPremisesUserPrincipalName",
    "otherMails",
    "passwordPolicies",
    "passwordProfile",
    "pastProjects",
    "postalCode",
    "preferredDataLocation",
    "preferredLanguage",
    "preferredName",
    "print",
    "provisionedPlans",
    "proxyAddresses",
    "responsibilities",
    "schools",
    "securityIdentifier",
    "serviceProvisioningErrors",
    "showInAddressList",
    "signInActivity",
    "signInSessionsValidFromDateTime",
    "skills",
    "state",
    "streetAddress",
    "surname",
    "usageLocation",
    "userPrincipalName",
    "userType",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn input(id: &str, select: &[&str]) -> Input {
        Input {
            id: id.to_string(),
            select: select.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn select_is_canonical_and_deduplicated() {
        let r = user_request(&input(
            "adele@contoso.com",
            &[
                "displayname",
                "jobTitle",
                "displayName",
                "ONPREMISESEXTENSIONATTRIBUTES",
            ],
        ))
        .unwrap();
        assert_eq!(r.path.as_str(), "users/adele@contoso.com");
        assert_eq!(
            r.query,
            vec![(
                "$select".to_string(),
                "displayName,jobTitle,onPremisesExtensionAttributes".to_string()
            )]
        );
    }

    #[test]
    fn no_select_sends_no_query() {
        let r = user_request(&input("$admin@contoso.com", &[])).unwrap();
        assert_eq!(r.path.as_str(), "users('$admin@contoso.com')");
        assert!(r.query.is_empty());
    }

    #[test]
    fn unknown_names_point_at_their_index() {
        let e = user_request(&input("x", &["displayName", "jobtitel", "manager"])).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let paths: Vec<_> = e.details.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["/inputs/select/1", "/inputs/select/2"]);
    }

    #[test]
    fn extension_properties_are_accepted() {
        assert!(is_extension_property(
            "extension_0123456789abcdef0123456789abcdef_costCenter"
        ));
        assert!(!is_extension_property("extension_0123_costCenter"));
        assert!(!is_extension_property(
            "extension_0123456789abcdef0123456789abcdef_"
        ));
    }

    /// Regenerate the file with `python3 scripts/user-properties.py v1.0-Prod.csdl`
    /// (see the script) when Microsoft publishes new properties, then update the list.
    #[test]
    fn user_properties_match_the_published_metadata() {
        let file: Value =
            serde_json::from_str(include_str!("../../data/graph-user-properties.v1.0.json"))
                .unwrap();
        let mut published: Vec<&str> = file["properties"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        let mut ours = USER_PROPERTIES.to_vec();
        published.sort_unstable();
        ours.sort_unstable();
        assert_eq!(ours, published, "USER_PROPERTIES drifted from the metadata");
    }

    #[test]
    fn property_list_has_no_duplicates() {
        for (i, p) in USER_PROPERTIES.iter().enumerate() {
            assert!(
                !USER_PROPERTIES[..i]
                    .iter()
                    .any(|q| q.eq_ignore_ascii_case(p)),
                "{p}"
            );
        }
    }
}
