//! What the delegated grants (`password`, `refresh_token`) share: the account
//! checks of the signed-in user, redeeming a refresh token (reusable, as Entra's
//! are, unless `refresh_token_reuse` is off; expiry after `refresh_token_max_inactive`
//! without use), and the answer with access token, scope and a new refresh token.

use jiff::Timestamp;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::access_token::{self, GRAPH_APP_ID, GRAPH_RESOURCE};
use crate::http_error::TokenError;
use crate::request::Ctx;
use crate::state::{Directory, RefreshGrant, Shared};

/// Account checks for a delegated user; with a password, also the password.
pub(super) fn check_user(
    dir: &Directory,
    username: &str,
    password: Option<&str>,
) -> Result<String, TokenError> {
    let Some(user) = dir
        .by_upn
        .get(&username.to_lowercase())
        .map(|i| &dir.tenant.users[*i])
    else {
        return Err(TokenError::new(
            "invalid_grant",
            50034,
            format!(
                "The user account {{EUII Hidden}} does not exist in the {} directory. To sign into this application, the account must be added to the directory.",
                dir.tenant.tenant_id
            ),
        ));
    };
    let creds = dir.tenant.delegated_users.iter().find(|d| {
        d.user_principal_name
            .eq_ignore_ascii_case(&user.user_principal_name)
    });
    let bad_password = || {
        TokenError::new(
            "invalid_grant",
            50126,
            "Error validating credentials due to invalid username or password.",
        )
    };
    let Some(creds) = creds else {
        return Err(bad_password());
    };
    if creds.locked {
        return Err(TokenError::new(
            "invalid_grant",
            50053,
            "The account is locked, you've tried to sign in too many times with an incorrect user ID or password.",
        ));
    }
    if let Some(pw) = password
        && pw != creds.password
    {
        return Err(bad_password());
    }
    if creds.disabled || !user.account_enabled {
        return Err(TokenError::new(
            "invalid_grant",
            50057,
            "The user account is disabled.",
        ));
    }
    if creds.password_expired {
        return Err(TokenError::new(
            "invalid_grant",
            50055,
            "The password is expired.",
        ));
    }
    if password.is_some() && creds.mfa_required {
        return Err(TokenError::new(
            "invalid_grant",
            50076,
            format!(
                "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '{GRAPH_APP_ID}'."
            ),
        ));
    }
    Ok(user.user_principal_name.to_string())
}

pub(super) fn redeem_refresh(
    shared: &Shared,
    token: &str,
    client_id: Uuid,
    now: Timestamp,
) -> Result<RefreshGrant, TokenError> {
    let mut table = shared.refresh.lock().expect("refresh lock");
    let Some((grant, used)) = table.get(token).cloned() else {
        return Err(TokenError::new(
            "invalid_grant",
            9002313,
            "Invalid request. Request is malformed or invalid.",
        ));
    };
    if grant.client_id != client_id {
        return Err(TokenError::new(
            "invalid_grant",
            70000,
            "Provided grant is invalid or malformed.",
        ));
    }
    if used && !shared.settings.refresh_token_reuse {
        return Err(TokenError::new(
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
        ));
    }
    let idle = now.duration_since(grant.issued);
    if idle.as_secs_f64() > shared.settings.refresh_token_max_inactive.as_secs_f64() {
        return Err(TokenError::new(
            "invalid_grant",
            700082,
            format!(
                "The refresh token has expired due to inactivity. The token was issued on {} and was inactive for {:.2} days.",
                grant.issued,
                shared.settings.refresh_token_max_inactive.as_secs_f64() / 86400.0
            ),
        ));
    }
    if let Some(entry) = table.get_mut(token) {
        entry.1 = true;
    }
    Ok(grant)
}

/// The answer of a delegated grant.
pub(super) fn delegated_answer(
    shared: &Shared,
    ctx: &Ctx,
    client_id: Uuid,
    upn: &str,
    scp: &[String],
    oidc: &[String],
    refresh: bool,
) -> Result<Value, TokenError> {
    let dir = shared.dir.read().expect("dir lock");
    let tenant = &dir.tenant;
    let app = dir
        .app(client_id)
        .ok_or_else(|| TokenError::new("invalid_client", 700016, "Application not found."))?;
    let lifetime = shared.settings.token_lifetime;
    let user = dir.user(upn);
    let access = access_token::mint(
        shared,
        tenant,
        app,
        ctx.now,
        lifetime,
        scp,
        user.map(|u| (u.id, upn)),
    );
    let scope = scp
        .iter()
        .chain(oidc)
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    let mut v = json!({
        "token_type": "Bearer",
        "scope": scope,
        "expires_in": lifetime.as_secs(),
        "ext_expires_in": lifetime.as_secs(),
        "access_token": access,
    });
    if refresh {
        let full_scope = scp
            .iter()
            .map(|s| format!("{GRAPH_RESOURCE}/{s}"))
            .chain(oidc.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        v["refresh_token"] =
            json!(shared.issue_refresh_token(client_id, upn, &full_scope, ctx.now));
    }
    Ok(v)
}
