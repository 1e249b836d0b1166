//! The tenant fixture: everything the fake tenant knows, as one serde document.
//!
//! A fixture is JSON or YAML (picked by file extension). Top-level keys are
//! snake_case (they describe the emulator), while the Graph objects inside
//! (`users`, `sign_ins`, presence, groups) use Graph's own camelCase property
//! names so that a record can be copied from a real Graph answer.
//!
//! ```yaml
//! tenant_id: 6f1d2c3b-0000-4000-8000-00000000c0de
//! display_name: Contoso Test
//! domain: contoso.example
//! premium: true                # false (no P1): /auditLogs/signIns and signInActivity answer 403
//! premium_p2: true             # false (P1 only): identityProtection/riskyUsers answers 403
//! offices:
//!   - { name: Berlin, time_zone: Europe/Berlin, cidrs: [198.51.100.0/25, "2001:db8:100::/48"] }
//! users:
//!   - id: 9a1f...                # object id (GUID)
//!     userPrincipalName: ada@contoso.example
//!     displayName: Ada Lovelace
//!     presence: { availability: Available, activity: Available }
//!     photo: { content_base64: /9j/4AAQ..., width: 96, height: 96 }
//! groups: [ { id: ..., displayName: Tier 1, members: [9a1f...] } ]
//! apps:
//!   - client_id: ...
//!     client_secret: s3cret
//!     permissions: [User.Read.All, Presence.Read.All]
//! delegated_users:
//!   - { user_principal_name: ada@contoso.example, password: pw, mfa_required: false }
//! sign_ins:
//!   - { id: ..., createdDateTime: 2025-06-02T08:01:02Z, visible_at: 2025-06-02T08:20:00Z,
//!       userId: 9a1f..., appId: ..., appDisplayName: Microsoft Teams, ipAddress: 198.51.100.7 }
//! risky_users:
//!   - { id: 9a1f..., riskLevel: high, riskState: atRisk, riskDetail: none }
//! faults: "signins:429=0.1"      # optional, same syntax as `--faults`
//! ```
//!
//! `Tenant::json_schema()` gives the full JSON Schema.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;

use crate::error::EmulatorError;
use crate::faults::FaultPlan;

/// A string that is usually a shared constant (generated tenants) and sometimes owned (fixtures).
pub type Text = Cow<'static, str>;

fn yes() -> bool {
    true
}

/// The whole fake tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// Directory (tenant) id; the token endpoint also accepts `domain` in its place.
    #[serde(with = "guid")]
    #[schemars(with = "String")]
    pub tenant_id: Uuid,
    /// Organization display name (`GET /organization`).
    pub display_name: Text,
    /// Default verified domain, e.g. `contoso.example`.
    pub domain: Text,
    /// Entra ID P1/P2 tenant: sign-in logs and users' `signInActivity` are readable. Default true.
    #[serde(default = "yes")]
    pub premium: bool,
    /// Entra ID P2 as well: Identity Protection (`riskyUsers`) is readable. Default true;
    /// only counts with `premium` (P2 includes P1).
    #[serde(default = "yes")]
    pub premium_p2: bool,
    /// Office catalogue: where sign-in addresses come from (used by `demo` to build IP ranges).
    #[serde(default)]
    pub offices: Vec<Office>,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub groups: Vec<DirectoryObject>,
    #[serde(default)]
    pub directory_roles: Vec<DirectoryObject>,
    #[serde(default)]
    pub administrative_units: Vec<DirectoryObject>,
    /// App registrations that may ask for tokens.
    #[serde(default)]
    pub apps: Vec<AppRegistration>,
    /// Users that may sign in with a password (ROPC) and their account state.
    #[serde(default)]
    pub delegated_users: Vec<DelegatedUser>,
    /// Sign-in log records, any order.
    #[serde(default)]
    pub sign_ins: Vec<SignIn>,
    /// Identity Protection's risky users (users never at risk are not listed).
    #[serde(default)]
    pub risky_users: Vec<RiskyUser>,
    /// Fault specification applied at start (same syntax as `FaultPlan::parse`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<String>,
}

/// One office (or remote network such as a VPN egress) and its public address blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Office {
    pub name: Text,
    /// IANA time zone of the office, e.g. `Europe/Berlin`.
    pub time_zone: Text,
    /// Public CIDR blocks, IPv4 and IPv6.
    #[schemars(with = "Vec<String>")]
    pub cidrs: Vec<IpNet>,
    /// A match means "Remote" rather than this office (VPN egress, home-office range).
    #[serde(default)]
    pub remote: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<Text>,
}

/// A user object. Field names are Graph's; anything else Graph knows goes in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(with = "guid")]
    #[schemars(with = "String")]
    pub id: Uuid,
    pub user_principal_name: Text,
    pub display_name: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surname: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_title: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub office_location: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_phone: Option<Text>,
    #[serde(default)]
    pub business_phones: Vec<Text>,
    #[serde(default = "yes")]
    pub account_enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_location: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee_id: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_name: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_language: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub created_date_time: Option<Timestamp>,
    /// `extensionAttribute1` .. `extensionAttribute15`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_premises_extension_attributes: Option<BTreeMap<String, Option<String>>>,
    /// Profile photo; none means `/photo` answers 404 with one of the four "no photo"
    /// codes (`ImageNotFound`, ...), fixed per user by its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo: Option<Photo>,
    /// Teams presence; none means `PresenceUnknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<Presence>,
    /// Other Graph user properties (set by fixture or by `PATCH`).
    #[serde(flatten, default)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A user Identity Protection has a risk record for (Graph's `riskyUser`; the user's
/// name and UPN are taken from the user when served).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RiskyUser {
    /// The user's object id.
    #[serde(with = "guid")]
    #[schemars(with = "String")]
    pub id: Uuid,
    /// `none`, `low`, `medium`, `high`, `hidden`.
    pub risk_level: Text,
    /// `none`, `atRisk`, `confirmedCompromised`, `dismissed`, `remediated`, `confirmedSafe`.
    pub risk_state: Text,
    /// e.g. `none`, `adminConfirmedUserCompromised`, `adminDismissedAllRiskForUser`.
    #[serde(default = "risk_detail_none")]
    pub risk_detail: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub risk_last_updated_date_time: Option<Timestamp>,
}

fn risk_detail_none() -> Text {
    Cow::Borrowed("none")
}

/// A profile photo (JPEG bytes, base64).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Photo {
    pub content_base64: Text,
    /// ETag; derived from the bytes when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<Text>,
    #[serde(default = "default_photo_side")]
    pub width: u32,
    #[serde(default = "default_photo_side")]
    pub height: u32,
}

fn default_photo_side() -> u32 {
    96
}

/// Teams presence of a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Presence {
    pub availability: Text,
    pub activity: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<Text>,
    #[serde(default)]
    pub is_out_of_office: bool,
    /// `office`, `remote`, `timeOff` or `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_location_type: Option<Text>,
}

/// A group, directory role or administrative unit with its member user ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DirectoryObject {
    #[serde(with = "guid")]
    #[schemars(with = "String")]
    pub id: Uuid,
    pub display_name: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Text>,
    /// Groups: security group (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<Text>,
    /// Directory roles: the role template id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "guid_opt")]
    #[schemars(with = "Option<String>")]
    pub role_template_id: Option<Uuid>,
    #[serde(default)]
    #[serde(with = "guid_vec")]
    #[schemars(with = "Vec<String>")]
    pub members: Vec<Uuid>,
}

/// An app registration that can get tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppRegistration {
    #[serde(with = "guid")]
    #[schemars(with = "String")]
    pub client_id: Uuid,
    pub display_name: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Text>,
    /// The secret exists but has expired (AADSTS7000222).
    #[serde(default)]
    pub client_secret_expired: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<AppCertificate>,
    /// Public client: delegated grants need no client credential.
    #[serde(default)]
    pub public_client: bool,
    /// Granted permissions, e.g. `Presence.Read.All`: `roles` in app-only tokens,
    /// `scp` in delegated ones. (`User-PasswordProfile.ReadWrite.All` is delegated-only.)
    #[serde(default)]
    pub permissions: Vec<Text>,
    /// Entra directory roles held by the app's service principal, by name, e.g.
    /// `User Administrator`: app-only `passwordProfile` changes need one, and
    /// sensitive changes to a user holding a directory role need a higher one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directory_roles: Vec<Text>,
}

/// A certificate credential: the thumbprint the client sends (`x5t#S256` or `x5t`)
/// and the public key that verifies its RS256 client assertion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppCertificate {
    /// base64url SHA-256 thumbprint of the certificate (`x5t#S256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbprint_sha256: Option<Text>,
    /// base64url SHA-1 thumbprint (`x5t`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbprint_sha1: Option<Text>,
    /// `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo) PEM of the RSA key.
    pub public_key_pem: Text,
}

impl AppCertificate {
    /// The DER (SubjectPublicKeyInfo) of `public_key_pem`, as client assertions are
    /// verified against it.
    pub(crate) fn public_key_der(&self) -> Result<Vec<u8>, String> {
        SubjectPublicKeyInfoDer::from_pem_slice(self.public_key_pem.as_bytes())
            .map(|d| d.as_ref().to_vec())
            .map_err(|e| format!("not a PEM public key: {e:?}"))
    }
}

/// Credentials and account state of a user who can sign in with a password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DelegatedUser {
    pub user_principal_name: Text,
    pub password: Text,
    /// AADSTS50076 on ROPC.
    #[serde(default)]
    pub mfa_required: bool,
    /// AADSTS50053.
    #[serde(default)]
    pub locked: bool,
    /// AADSTS50057 (also when the user's `accountEnabled` is false).
    #[serde(default)]
    pub disabled: bool,
    /// AADSTS50055.
    #[serde(default)]
    pub password_expired: bool,
}

/// One sign-in record. Graph's remaining fields (userDisplayName, deviceDetail, ...)
/// are derived when the record is served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignIn {
    #[serde(with = "guid")]
    #[schemars(with = "String")]
    pub id: Uuid,
    #[schemars(with = "String")]
    pub created_date_time: Timestamp,
    /// When the record shows up in `/auditLogs/signIns` (defaults to createdDateTime).
    #[serde(
        rename = "visible_at",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub visible_at: Option<Timestamp>,
    /// Object id of a user of this tenant.
    #[serde(with = "guid")]
    #[schemars(with = "String")]
    pub user_id: Uuid,
    #[serde(with = "guid")]
    #[schemars(with = "String")]
    pub app_id: Uuid,
    pub app_display_name: Text,
    pub ip_address: IpAddr,
    /// 0 = success.
    #[serde(default)]
    pub error_code: u32,
    #[serde(default = "default_client_app")]
    pub client_app_used: Text,
    #[serde(default = "yes")]
    pub is_interactive: bool,
    /// Graph's `signInEventTypes` (beta): `interactiveUser`, `nonInteractiveUser`,
    /// `servicePrincipal`, `managedIdentity`. Absent: `interactiveUser` when
    /// `isInteractive`, else `nonInteractiveUser`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sign_in_event_types: Vec<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_or_region: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_system: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<Text>,
}

fn default_client_app() -> Text {
    Cow::Borrowed("Browser")
}

impl SignIn {
    /// When this record becomes visible in the sign-in log.
    pub fn visible_at(&self) -> Timestamp {
        self.visible_at.unwrap_or(self.created_date_time)
    }

    /// The event types of this record (see `sign_in_event_types`).
    pub fn event_types(&self) -> Vec<&str> {
        if self.sign_in_event_types.is_empty() {
            vec![if self.is_interactive {
                "interactiveUser"
            } else {
                "nonInteractiveUser"
            }]
        } else {
            self.sign_in_event_types
                .iter()
                .map(|t| t.as_ref())
                .collect()
        }
    }

    /// Whether `v1.0`, which lists interactive sign-ins only, shows this record.
    pub fn is_interactive_user(&self) -> bool {
        self.event_types().contains(&"interactiveUser")
    }
}

impl Tenant {
    /// Load a fixture; `.yaml`/`.yml` is YAML, anything else JSON.
    pub fn load(path: impl AsRef<Path>) -> Result<Tenant, EmulatorError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| EmulatorError::Fixture {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let tenant = if ext == "yaml" || ext == "yml" {
            Tenant::from_yaml(&text)
        } else {
            Tenant::from_json(&text)
        };
        tenant.map_err(|e| match e {
            EmulatorError::Fixture { message, .. } => EmulatorError::Fixture {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parse a YAML fixture and check it.
    pub fn from_yaml(text: &str) -> Result<Tenant, EmulatorError> {
        let tenant: Tenant = serde_norway::from_str(text).map_err(|e| EmulatorError::Fixture {
            path: "<yaml>".into(),
            message: e.to_string(),
        })?;
        tenant.validate()?;
        Ok(tenant)
    }

    /// Parse a JSON fixture and check it.
    pub fn from_json(text: &str) -> Result<Tenant, EmulatorError> {
        let tenant: Tenant = serde_json::from_str(text).map_err(|e| EmulatorError::Fixture {
            path: "<json>".into(),
            message: e.to_string(),
        })?;
        tenant.validate()?;
        Ok(tenant)
    }

    /// JSON Schema of the fixture format.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Tenant)).unwrap_or_default()
    }

    /// The office catalogue (name, time zone, CIDR blocks, remote flag).
    pub fn offices(&self) -> &[Office] {
        &self.offices
    }

    /// Consistency checks a fixture author would want to hear about at load time.
    pub fn validate(&self) -> Result<(), EmulatorError> {
        let bad = |message: String| EmulatorError::Fixture {
            path: "<tenant>".into(),
            message,
        };
        let mut ids = HashMap::with_capacity(self.users.len());
        let mut upns = HashMap::with_capacity(self.users.len());
        for u in &self.users {
            if ids.insert(u.id, ()).is_some() {
                return Err(bad(format!("duplicate user id {}", u.id)));
            }
            if upns
                .insert(u.user_principal_name.to_lowercase(), ())
                .is_some()
            {
                return Err(bad(format!(
                    "duplicate userPrincipalName {}",
                    u.user_principal_name
                )));
            }
        }
        for (kind, list) in [
            ("group", &self.groups),
            ("directory role", &self.directory_roles),
            ("administrative unit", &self.administrative_units),
        ] {
            for o in list {
                if let Some(m) = o.members.iter().find(|m| !ids.contains_key(m)) {
                    return Err(bad(format!(
                        "{kind} {} has unknown member {m}",
                        o.display_name
                    )));
                }
            }
        }
        for d in &self.delegated_users {
            if !upns.contains_key(&d.user_principal_name.to_lowercase()) {
                return Err(bad(format!(
                    "delegated user {} is not among users",
                    d.user_principal_name
                )));
            }
        }
        if let Some(s) = self.sign_ins.iter().find(|s| !ids.contains_key(&s.user_id)) {
            return Err(bad(format!(
                "sign-in {} has unknown userId {}",
                s.id, s.user_id
            )));
        }
        for a in &self.apps {
            if let Some(c) = &a.certificate {
                c.public_key_der().map_err(|e| {
                    bad(format!(
                        "app {}: certificate public_key_pem: {e}",
                        a.client_id
                    ))
                })?;
            }
        }
        if let Some(f) = &self.faults {
            FaultPlan::parse(f).map_err(|e| bad(format!("faults: {e}")))?;
        }
        Ok(())
    }
}

/// serde for `Uuid` as its hyphenated string (the uuid crate is built without serde).
mod guid {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&id.hyphenated())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        Uuid::try_parse(&s)
            .map_err(|e| serde::de::Error::custom(format!("'{s}' is not a GUID: {e}")))
    }
}

mod guid_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Option<Uuid>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => s.collect_str(&id.hyphenated()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Uuid>, D::Error> {
        let s = Option::<std::borrow::Cow<str>>::deserialize(d)?;
        s.map(|s| {
            Uuid::try_parse(&s)
                .map_err(|e| serde::de::Error::custom(format!("'{s}' is not a GUID: {e}")))
        })
        .transpose()
    }
}

mod guid_vec {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(ids: &[Uuid], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(ids.len()))?;
        for id in ids {
            seq.serialize_element(&id.hyphenated().to_string())?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Uuid>, D::Error> {
        let v = Vec::<std::borrow::Cow<str>>::deserialize(d)?;
        v.iter()
            .map(|s| {
                Uuid::try_parse(s)
                    .map_err(|e| serde::de::Error::custom(format!("'{s}' is not a GUID: {e}")))
            })
            .collect()
    }
}
