//! The claims of an access token, read without verifying its signature: only
//! to tell an administrator which permissions the token carries. Nothing is
//! ever authorised on the strength of this.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// Whether a token acts as the app itself or on behalf of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    App,
    Delegated,
}

impl TokenType {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::App => "app",
            TokenType::Delegated => "delegated",
        }
    }
}

/// The permissions granted in a token: `roles` (app) or `scp` (delegated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub token_type: TokenType,
    pub permissions: Vec<String>,
}

/// Decode the payload of a JWT and read `roles` / `scp`. `None` when the token
/// is not a readable JWT (Entra may issue opaque tokens to some resources).
pub fn granted(token: &str, delegated_hint: bool) -> Option<Granted> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let scp: Vec<String> = claims
        .get("scp")
        .and_then(Value::as_str)
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let roles: Vec<String> = claims
        .get("roles")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let delegated = claims.get("scp").is_some() || (roles.is_empty() && delegated_hint);
    Some(if delegated {
        Granted {
            token_type: TokenType::Delegated,
            permissions: scp,
        }
    } else {
        Granted {
            token_type: TokenType::App,
            permissions: roles,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    #[test]
    fn app_roles_and_delegated_scopes() {
        let g = granted(
            &jwt(r#"{"roles":["User.Read.All","Presence.Read.All"]}"#),
            false,
        )
        .unwrap();
        assert_eq!(g.token_type, TokenType::App);
        assert_eq!(g.permissions, ["User.Read.All", "Presence.Read.All"]);
        let g = granted(&jwt(r#"{"scp":"User.Read Presence.Read.All"}"#), true).unwrap();
        assert_eq!(g.token_type, TokenType::Delegated);
        assert_eq!(g.permissions, ["User.Read", "Presence.Read.All"]);
        assert!(granted("opaque", false).is_none());
    }
}
