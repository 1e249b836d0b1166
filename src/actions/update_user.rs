//! `update_user`: change properties of one user.
//!
//! Graph: `PATCH /users/{id or UPN}` with only the properties to change
//! (User.ReadWrite.All; `passwordProfile`, and the sensitive properties of a user
//! who holds an admin role, also need a directory role on the app's service
//! principal: see [`crate::users`], which sends the change and explains a 403
//! `Authorization_RequestDenied` by naming the missing role). Success is
//! `204 No Content` with an empty body, so `json_body` is `null`.
//!
//! The properties are a typed subset of the v1.0 user: those an app-only token
//! may change and a playbook has reason to (account, names, job and org fields,
//! contact fields, usage location, employee fields, on-premises extension
//! attributes, password profile), plus directory extension properties
//! `extension_{appId}_{name}`. Anything else is exit 2 at its pointer; so is a
//! change that names nothing. `null` clears an optional text property.
//!
//! The new password is a [`SecretString`]: redacted in `Debug`, `writeOnly` in
//! the schema, and only exposed when the request body is built.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::get_user::is_extension_property;
use super::http_style::{Grouped, HttpStyle, UserPath};
use super::{Action, ActionMeta, Context, DirectoryRole, LocalWrites, Reply};
use crate::error::{Error, Result, pointer_token};
use crate::graph::{ApiFamily, GraphPath, GraphRequest, Method};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The user's object id (GUID) or user principal name.
    #[schemars(length(min = 1, max = 1024))]
    /// No control characters (CR, LF, NUL, ...): they have no place in an id,
    /// a UPN or a filter, and could split a request or a log line.
    #[schemars(extend("pattern" = "^[^\\u0000-\\u001F\\u007F]*$"))]
    pub id: String,
    /// The properties to change, with Graph's names; `null` clears an optional text property.
    pub properties: UserChanges,
}

/// The same input in Swimlane's HTTP-style grouping: `PATCH /users/{id}` with the
/// changes as the JSON body.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpInput {
    pub path_parameters: UserPath,
    /// The properties to change, with Graph's names (the PATCH body).
    #[schemars(with = "UserChanges")]
    pub json_body: Value,
}

impl Grouped for HttpInput {
    const PLACES: &'static [(&'static str, &'static str)] = &[
        ("/id", "/path_parameters/id"),
        ("/properties", "/json_body"),
    ];
    fn into_plain(self) -> Value {
        serde_json::json!({ "id": self.path_parameters.id, "properties": self.json_body })
    }
}

/// `Some(None)` for an explicit `null`, `None` when absent.
fn nullable<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The user properties this action may change. Unknown names are refused by the
/// schema (`additionalProperties: false`); `extension_*` names go to `extensions`.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend(
    "additionalProperties" = false,
    "minProperties" = 1,
    "patternProperties" = {
        "^extension_[0-9a-fA-F]{32}_[A-Za-z0-9_]+$": {
            "description": "A directory extension property (string, number, boolean, date string, a list of them, or null to clear).",
            "type": ["string", "number", "integer", "boolean", "array", "null"]
        }
    }
))]
pub struct UserChanges {
    /// `false` blocks sign-in (the usual containment step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub display_name: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[schemars(length(max = 64))]
    pub given_name: Option<Option<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[schemars(length(max = 64))]
    pub surname: Option<Option<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[schemars(length(max = 128))]
    pub job_title: Option<Option<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[schemars(length(max = 64))]
    pub department: Option<Option<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[schemars(length(max = 64))]
    pub company_name: Option<Option<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[schemars(length(max = 128))]
    pub office_location: Option<Option<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[schemars(length(max = 16))]
    pub employee_id: Option<Option<String>>,
    /// e.g. Employee, Contractor, Consultant, Vendor.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[schemars(length(max = 64))]
    pub employee_type: Option<Option<String>>,
    /// ISO 8601 date and time, e.g. `2024-03-01T00:00:00Z`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[schemars(length(max = 64))]
    pub employee_hire_date: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "EmployeeOrgData")]
    pub employee_org_data: Option<EmployeeOrgData>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[schemars(length(max = 128))]
    pub city: Option<Option<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[schemars(length(max = 128))]
    pub state: Option<Option<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[schemars(length(max = 128))]
    pub country: Option<Option<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[schemars(length(max = 40))]
    pub postal_code: Option<Option<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[schemars(length(max = 1024))]
    pub street_address: Option<Option<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[schemars(length(max = 64))]
    pub mobile_phone: Option<Option<String>>,
    /// Graph keeps one business phone; `[]` clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1), inner(length(min = 1, max = 64)))]
    pub business_phones: Option<Vec<String>>,
    /// The primary SMTP address (also updates proxyAddresses).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[schemars(length(min = 3, max = 256))]
    pub mail: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub mail_nickname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 250), inner(length(min = 3, max = 256)))]
    pub other_mails: Option<Vec<String>>,
    /// Two-letter country code (ISO 3166), required before licences can be assigned.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[schemars(regex(pattern = r"^[A-Za-z]{2}$"))]
    pub usage_location: Option<Option<String>>,
    /// ISO 639-1 language and region, e.g. `en-US`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[schemars(regex(pattern = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$"))]
    pub preferred_language: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "ExtensionAttributes")]
    pub on_premises_extension_attributes: Option<ExtensionAttributes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "PasswordProfile")]
    pub password_profile: Option<PasswordProfile>,
    /// Directory extension properties `extension_{appId without dashes}_{name}`.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extensions: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("minProperties" = 1))]
pub struct EmployeeOrgData {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[schemars(length(max = 64))]
    pub division: Option<Option<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[schemars(length(max = 64))]
    pub cost_center: Option<Option<String>>,
}

/// A new password. Never logged, printed or returned.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("minProperties" = 1))]
pub struct PasswordProfile {
    /// The new password (write-only; it must satisfy the tenant's password policy).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_password"
    )]
    #[schemars(with = "Option<String>", length(min = 1, max = 256), extend("writeOnly" = true))]
    pub password: Option<SecretString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_change_password_next_sign_in: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_change_password_next_sign_in_with_mfa: Option<bool>,
}

fn expose_password<S: Serializer>(
    password: &Option<SecretString>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match password {
        Some(p) => s.serialize_str(p.expose_secret()),
        None => s.serialize_none(),
    }
}

macro_rules! extension_attributes {
    ($($field:ident),*) => {
        /// `extensionAttribute1` to `extensionAttribute15` (Exchange custom attributes); `null` clears one.
        #[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        #[schemars(extend("minProperties" = 1))]
        pub struct ExtensionAttributes {
            $(
                #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
                #[schemars(length(max = 1024))]
                pub $field: Option<Option<String>>,
            )*
        }
    };
}

extension_attributes!(
    extension_attribute1,
    extension_attribute2,
    extension_attribute3,
    extension_attribute4,
    extension_attribute5,
    extension_attribute6,
    extension_attribute7,
    extension_attribute8,
    extension_attribute9,
    extension_attribute10,
    extension_attribute11,
    extension_attribute12,
    extension_attribute13,
    extension_attribute14,
    extension_attribute15
);

pub struct UpdateUser;

impl Action for UpdateUser {
    type Input = Input;
    /// Graph answers 204 with no body: `json_body` is `null`.
    type Output = ();
    const DIRECTORY_ROLES: &'static [DirectoryRole] = crate::users::UPDATE_ROLES;
    const META: ActionMeta = ActionMeta {
        name: "update_user",
        title: "Update user",
        description: "Change properties of one user (e.g. accountEnabled: false, job and contact fields, extension attributes, a new password); Graph answers 204 and json_body is null.",
        permissions: &[&["User.ReadWrite.All"]],
        changes_data: true,
        needs_graph: true,
        incremental: false,
        writes_local_state: LocalWrites::Nothing,
    };
    const HTTP_STYLE: Option<HttpStyle> = Some(HttpStyle::of::<HttpInput>());

    async fn run(ctx: &Context, input: Input) -> Result<Reply<()>> {
        let request = update_request(&input)?;
        let body = request.body.unwrap_or(Value::Null);
        let response = crate::users::update(ctx.graph()?, &input.id, body).await?;
        Ok(Reply::from_response(&response, ()))
    }
}

/// The PATCH for `input`, or exit 2 when it changes nothing or names an unknown property.
pub fn update_request(input: &Input) -> Result<GraphRequest> {
    for name in input.properties.extensions.keys() {
        if !is_extension_property(name) {
            return Err(Error::invalid(
                format!("/inputs/properties/{}", pointer_token(name)),
                "is not a known field",
            ));
        }
    }
    let body = serde_json::to_value(&input.properties)
        .map_err(|_| Error::internal("update_user: the change does not serialise"))?;
    if body.as_object().is_none_or(|o| o.is_empty()) {
        return Err(Error::invalid(
            "/inputs/properties",
            "names no property to change",
        ));
    }
    Ok(GraphRequest::new(
        Method::Patch,
        GraphPath::user(&input.id),
        ApiFamily::Directory,
    )
    .json(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: Value) -> Input {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn body_holds_only_the_changes_and_nulls() {
        let r = update_request(&input(json!({
            "id": "o'brien@contoso.com",
            "properties": {"accountEnabled": false, "jobTitle": null,
                           "onPremisesExtensionAttributes": {"extensionAttribute7": "x"},
                           "extension_0123456789abcdef0123456789abcdef_costCenter": "42"}
        })))
        .unwrap();
        assert_eq!(r.method, Method::Patch);
        assert_eq!(r.path.as_str(), "users/o%27brien@contoso.com");
        assert_eq!(
            r.body.unwrap(),
            json!({"accountEnabled": false, "jobTitle": null,
                   "onPremisesExtensionAttributes": {"extensionAttribute7": "x"},
                   "extension_0123456789abcdef0123456789abcdef_costCenter": "42"})
        );
    }

    #[test]
    fn empty_change_is_refused() {
        let e = update_request(&input(json!({"id": "u", "properties": {}}))).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(e.details[0].path, "/inputs/properties");
    }

    #[test]
    fn unknown_open_property_is_refused() {
        let e = update_request(&input(json!({"id": "u", "properties": {"birthday": "x"}})))
            .unwrap_err();
        assert_eq!(e.details[0].path, "/inputs/properties/birthday");
    }

    #[test]
    fn password_reaches_the_body_but_never_debug() {
        let i = input(json!({"id": "u", "properties": {"passwordProfile": {
            "password": "Sup3r-Secret!", "forceChangePasswordNextSignIn": true}}}));
        assert!(!format!("{i:?}").contains("Sup3r-Secret!"));
        let r = update_request(&i).unwrap();
        assert_eq!(
            r.body.unwrap()["passwordProfile"],
            json!({"password": "Sup3r-Secret!", "forceChangePasswordNextSignIn": true})
        );
    }

    #[test]
    fn schema_refuses_unknown_and_marks_password_write_only() {
        let schema = crate::schema::of::<Input>();
        let e = crate::schema::validate(
            &schema,
            &json!({"id": "u", "properties": {"aboutMe": "x", "extension_0123456789abcdef0123456789abcdef_a": 1}}),
        )
        .unwrap_err()
        .under("/inputs");
        let paths: Vec<_> = e.details.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["/inputs/properties/aboutMe"]);
        assert!(crate::schema::validate(&schema, &json!({"id": "u", "properties": {}})).is_err());
        let text = schema.to_string();
        assert!(text.contains("\"writeOnly\":true"), "{text}");
        let e = crate::schema::validate(
            &schema,
            &json!({"id": "u", "properties": {"passwordProfile": {"password": 5}}}),
        )
        .unwrap_err()
        .under("/inputs");
        assert_eq!(
            e.details[0].path,
            "/inputs/properties/passwordProfile/password"
        );
    }
}
