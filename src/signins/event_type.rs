//! [`EventType`]: which sign-ins a listing reads, and where Graph lists them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which sign-ins: Graph's `signInEventType`. Only interactive user sign-ins are in
/// `GET /v1.0/auditLogs/signIns` ("interactive sign-ins ... and successful federated
/// sign-ins", https://learn.microsoft.com/graph/api/resources/signin?view=graph-rest-1.0);
/// the others are listed by `beta` with
/// `$filter=signInEventTypes/any(t: t eq 'nonInteractiveUser')`
/// (https://learn.microsoft.com/graph/api/signin-list?view=graph-rest-beta), a filter v1.0
/// refuses with 400 "Invalid filter clause"
/// (https://github.com/MicrosoftDocs/SupportArticles-docs/issues/668).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum EventType {
    /// A person signing in (v1.0).
    InteractiveUser,
    /// A client signing in for a user without asking them: token refreshes, background
    /// sync (beta). The bulk of a working day.
    NonInteractiveUser,
    /// An app signing in as itself (beta).
    ServicePrincipal,
    /// An Azure managed identity (beta).
    ManagedIdentity,
}

impl EventType {
    pub const ALL: [EventType; 4] = [
        EventType::InteractiveUser,
        EventType::NonInteractiveUser,
        EventType::ServicePrincipal,
        EventType::ManagedIdentity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::InteractiveUser => "interactiveUser",
            EventType::NonInteractiveUser => "nonInteractiveUser",
            EventType::ServicePrincipal => "servicePrincipal",
            EventType::ManagedIdentity => "managedIdentity",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}
