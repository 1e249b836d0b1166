//! The parsed asset: the connection profile every layer above works from
//! (Graph URL and API version, token endpoint, credentials, proxy, timeouts,
//! retry and pacing settings).
//!
//! [`AssetSpec::into_asset`] applies the per-type rules the schema cannot say
//! (which fields each `type` needs, `https://` unless loopback) and yields an
//! [`Asset`] whose [`Flow`] holds exactly the credentials that flow uses.
//! Pointers in its errors are relative to the asset (`/tenant_id`).

use std::net::IpAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::spec::{
    ApiVersion, AssetSpec, AssetType, DEFAULT_GRAPH_URL, DEFAULT_LOGIN_URL, RateLimits,
};
use crate::error::{Detail, Error};

/// The credentials of one flow, with the token endpoint already resolved.
#[derive(Debug)]
pub enum Flow {
    ClientSecret {
        secret: SecretString,
    },
    ClientCertificate {
        certificate_pem: String,
        private_key_pem: SecretString,
    },
    Password {
        username: String,
        password: SecretString,
        client_secret: Option<SecretString>,
    },
    RefreshToken {
        refresh_token: SecretString,
        client_secret: Option<SecretString>,
    },
}

/// A validated asset.
#[derive(Debug)]
pub struct Asset {
    pub asset_type: AssetType,
    /// Graph base URL without the version, e.g. `https://graph.microsoft.com/`.
    pub graph_url: Url,
    pub api_version: ApiVersion,
    pub token_url: Url,
    pub client_id: String,
    pub scope: Vec<String>,
    pub flow: Flow,
    pub verify_ssl: bool,
    /// Extra certificate authorities (a PEM file), read when the HTTP client is built.
    pub ca_file: Option<std::path::PathBuf>,
    pub http_proxy: Option<SecretString>,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub max_retry_time: Duration,
    pub rate_limits: RateLimits,
}

impl Asset {
    /// Host of the Graph base URL: the only host a bearer token is ever sent to.
    pub fn graph_host(&self) -> &str {
        self.graph_url.host_str().unwrap_or_default()
    }
}

impl AssetSpec {
    /// Apply the per-type rules. Pointers in errors are relative to the asset (`/tenant_id`).
    pub fn into_asset(self) -> Result<Asset, Error> {
        let t = self.asset_type;
        let mut problems = Vec::new();
        let missing = |field: &str, problems: &mut Vec<Detail>| {
            problems.push(Detail::new(
                format!("/{field}"),
                format!("required for type {}", t.as_str()),
            ))
        };

        let graph_url = parse_endpoint(
            "/url",
            self.url.as_deref().unwrap_or(DEFAULT_GRAPH_URL),
            Trailing::Slash,
            &mut problems,
        );
        let login_url = parse_endpoint(
            "/login_url",
            self.login_url.as_deref().unwrap_or(DEFAULT_LOGIN_URL),
            Trailing::Slash,
            &mut problems,
        );

        let tenant = match (t, self.tenant_id.as_deref()) {
            (AssetType::RefreshToken, None) => Some("organizations"),
            (AssetType::Oauth2ClientCredentials, _) => None,
            (_, None) => {
                missing("tenant_id", &mut problems);
                None
            }
            (_, Some(id)) => Some(id),
        };
        if t == AssetType::Password
            && let Some(id) = tenant
            && (id.eq_ignore_ascii_case("common") || id.eq_ignore_ascii_case("consumers"))
        {
            problems.push(Detail::new(
                "/tenant_id",
                "the password grant needs a tenant id or domain, not common/consumers",
            ));
        }
        if let Some(id) = tenant
            && !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            problems.push(Detail::new(
                "/tenant_id",
                "must be a tenant GUID or domain name (letters, digits, '-', '.', '_')",
            ));
        }

        let token_url = match (t, self.token_url.as_deref()) {
            (AssetType::Oauth2ClientCredentials, Some(u)) => {
                // Used exactly as given, also as the client assertion's `aud`: Entra's token
                // endpoint is `.../oauth2/v2.0/token` and answers `.../token/` with 404
                // (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow).
                parse_endpoint("/token_url", u, Trailing::AsGiven, &mut problems)
            }
            (AssetType::Oauth2ClientCredentials, None) => {
                missing("token_url", &mut problems);
                None
            }
            (_, Some(_)) => {
                problems.push(Detail::new(
                    "/token_url",
                    "only for type oauth2_client_credentials; other types use login_url and tenant_id",
                ));
                None
            }
            (_, None) => match (&login_url, tenant) {
                (Some(login), Some(tenant)) => {
                    login.join(&format!("{tenant}/oauth2/v2.0/token")).ok()
                }
                _ => None,
            },
        };

        let take = |field: &str, value: Option<SecretString>, problems: &mut Vec<Detail>| {
            if value.is_none() {
                missing(field, problems);
            }
            value
        };
        let flow = match t {
            AssetType::ClientCredentials | AssetType::Oauth2ClientCredentials => {
                take("client_secret", self.client_secret, &mut problems)
                    .map(|secret| Flow::ClientSecret { secret })
            }
            AssetType::ClientCertificate => {
                let cert = self.certificate;
                if cert.is_none() {
                    missing("certificate", &mut problems);
                }
                let key = take("private_key", self.private_key, &mut problems);
                cert.zip(key).map(
                    |(certificate_pem, private_key_pem)| Flow::ClientCertificate {
                        certificate_pem,
                        private_key_pem,
                    },
                )
            }
            AssetType::Password => {
                let user = self.username;
                if user.is_none() {
                    missing("username", &mut problems);
                }
                let password = take("password", self.password, &mut problems);
                user.zip(password)
                    .map(|(username, password)| Flow::Password {
                        username,
                        password,
                        client_secret: self.client_secret,
                    })
            }
            AssetType::RefreshToken => take("refresh_token", self.refresh_token, &mut problems)
                .map(|refresh_token| Flow::RefreshToken {
                    refresh_token,
                    client_secret: self.client_secret,
                }),
        };
        if let Some(proxy) = &self.http_proxy {
            check_proxy(proxy.expose_secret(), &mut problems);
        }
        if self.client_id.trim().is_empty() {
            problems.push(Detail::new("/client_id", "must not be empty"));
        }
        if let Some(scope) = &self.scope
            && scope.is_empty()
        {
            problems.push(Detail::new(
                "/scope",
                "must name at least one scope; omit it for the default",
            ));
        }

        match (graph_url, token_url, flow) {
            (Some(graph_url), Some(token_url), Some(flow)) if problems.is_empty() => {
                remember_secrets(&flow, self.http_proxy.as_ref());
                let scope = self.scope.unwrap_or_else(|| default_scope(&graph_url, t));
                Ok(Asset {
                    asset_type: t,
                    graph_url,
                    api_version: self.api_version,
                    token_url,
                    client_id: self.client_id,
                    scope,
                    flow,
                    verify_ssl: self.verify_ssl,
                    ca_file: self.ca_file.map(std::path::PathBuf::from),
                    http_proxy: self.http_proxy,
                    timeout: Duration::from_secs(self.timeout_seconds.into()),
                    max_attempts: self.max_attempts,
                    max_retry_time: Duration::from_secs(self.max_retry_seconds.into()),
                    rate_limits: self.rate_limits,
                })
            }
            _ => Err(Error::invalid_details(problems)),
        }
    }
}

/// The asset's secrets, known from now on to [`crate::redact`], so that server text
/// echoing one of them is scrubbed before it reaches an error or a log line.
fn remember_secrets(flow: &Flow, proxy: Option<&SecretString>) {
    use crate::redact::remember;
    let mut secrets: Vec<&SecretString> = Vec::new();
    match flow {
        Flow::ClientSecret { secret } => secrets.push(secret),
        Flow::ClientCertificate {
            private_key_pem, ..
        } => secrets.push(private_key_pem),
        Flow::Password {
            password,
            client_secret,
            ..
        } => secrets.extend(
            [Some(password), client_secret.as_ref()]
                .into_iter()
                .flatten(),
        ),
        Flow::RefreshToken {
            refresh_token,
            client_secret,
        } => secrets.extend(
            [Some(refresh_token), client_secret.as_ref()]
                .into_iter()
                .flatten(),
        ),
    }
    for s in secrets {
        remember(s.expose_secret());
    }
    // A proxy's password, not its URL (whose host is no secret).
    if let Some(password) = proxy
        .and_then(|p| Url::parse(p.expose_secret()).ok())
        .and_then(|u| u.password().map(str::to_string))
    {
        remember(&password);
    }
}

fn default_scope(graph_url: &Url, t: AssetType) -> Vec<String> {
    let resource = graph_url.as_str().trim_end_matches('/');
    let mut scope = vec![format!("{resource}/.default")];
    if t.is_delegated() {
        scope.push("offline_access".to_string());
    }
    scope
}

/// A proxy URL we can use: `http://` or `https://` (a CONNECT tunnel either way).
/// Anything else is refused here, before any request, never echoing the value (it may
/// hold credentials): reqwest speaks SOCKS only with its `socks` feature, which this
/// build leaves out, and would fail every request at run time (reqwest's Cargo
/// features, https://docs.rs/crate/reqwest/latest/features, and
/// https://github.com/seanmonstar/reqwest/discussions/1720); an `ftp://` or
/// `gopher://` proxy was silently ignored (issue 19, item 10).
fn check_proxy(raw: &str, problems: &mut Vec<Detail>) {
    const HINT: &str = "use an http:// or https:// proxy, e.g. http://proxy.corp:3128";
    match Url::parse(raw) {
        Err(_) => problems.push(Detail::new("/http_proxy", format!("is not a URL; {HINT}"))),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            // The scheme is not echoed: `user:pw@host` parses with the user as scheme.
            let what = if u.scheme().starts_with("socks") {
                "SOCKS proxies are not supported by this build"
            } else {
                "this proxy scheme is not supported"
            };
            problems.push(Detail::new("/http_proxy", format!("{what}; {HINT}")));
        }
        Ok(u) if u.host_str().is_none_or(str::is_empty) => {
            problems.push(Detail::new("/http_proxy", format!("names no host; {HINT}")))
        }
        Ok(_) => {}
    }
}

/// What [`parse_endpoint`] does with the end of the path.
#[derive(Clone, Copy, PartialEq)]
enum Trailing {
    /// A base URL that relative paths are joined to: made to end with `/`, so that
    /// joining keeps any path prefix.
    Slash,
    /// An endpoint used as it is (the token URL): never changed.
    AsGiven,
}

/// Parse a service URL: `https://`, or `http://` only on loopback.
fn parse_endpoint(
    pointer: &str,
    raw: &str,
    trailing: Trailing,
    problems: &mut Vec<Detail>,
) -> Option<Url> {
    let mut url = match Url::parse(raw) {
        Ok(u) => u,
        Err(e) => {
            problems.push(Detail::new(pointer, format!("not a URL: {e}")));
            return None;
        }
    };
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            problems.push(Detail::new(
                pointer,
                "http:// is accepted only for loopback hosts (127.0.0.0/8, ::1, localhost); use https://",
            ));
            return None;
        }
        other => {
            problems.push(Detail::new(
                pointer,
                format!("unsupported scheme {other:?}; use https://"),
            ));
            return None;
        }
    }
    // A user name or password here would be sent nowhere useful, logged with the
    // URL and kept in cache keys: refuse it, never echoing the value.
    if !url.username().is_empty() || url.password().is_some() {
        problems.push(Detail::new(
            pointer,
            "must not carry credentials (user name or password); credentials go in their own fields",
        ));
        return None;
    }
    if url.query().is_some() || url.fragment().is_some() {
        problems.push(Detail::new(pointer, "must not carry a query or fragment"));
        return None;
    }
    if trailing == Trailing::Slash && !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Some(url)
}

/// A URL as it may be logged or shown: scheme, host, port and path, never the
/// user name, password, query or fragment.
pub fn url_for_display(url: &Url) -> String {
    format!("{}{}", url.origin().ascii_serialization(), url.path())
}

/// Whether a URL's host is on this machine: 127.0.0.0/8, `::1` or `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn spec(v: Value) -> Result<Asset, Error> {
        serde_json::from_value::<AssetSpec>(v).unwrap().into_asset()
    }

    #[test]
    fn client_credentials_builds_token_url_and_default_scope() {
        let a = spec(json!({"type":"client_credentials","tenant_id":"contoso.com","client_id":"c","client_secret":"s"}))
            .unwrap();
        assert_eq!(
            a.token_url.as_str(),
            "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token"
        );
        assert_eq!(a.scope, vec!["https://graph.microsoft.com/.default"]);
        assert_eq!(a.graph_url.as_str(), "https://graph.microsoft.com/");
    }

    #[test]
    fn delegated_default_scope_adds_offline_access() {
        let a = spec(json!({"type":"refresh_token","client_id":"c","refresh_token":"r"})).unwrap();
        assert!(a.token_url.as_str().contains("/organizations/"));
        assert_eq!(
            a.scope,
            vec!["https://graph.microsoft.com/.default", "offline_access"]
        );
    }

    #[test]
    fn only_http_and_https_proxies_are_accepted() {
        let base = json!({"type":"client_credentials","tenant_id":"t","client_id":"c","client_secret":"s"});
        for good in ["http://proxy.corp:3128", "https://u:p@proxy.corp"] {
            let mut a = base.clone();
            a["http_proxy"] = json!(good);
            assert!(spec(a).is_ok(), "{good}");
        }
        for bad in [
            "socks5://pw-secret@127.0.0.1:1080",
            "socks5h://127.0.0.1:1080",
            "ftp://proxy.corp",
            "gopher://proxy.corp",
            "proxy.corp:3128",
            "http://",
        ] {
            let mut a = base.clone();
            a["http_proxy"] = json!(bad);
            let e = spec(a).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert_eq!(e.details[0].path, "/http_proxy", "{bad}");
            assert!(!e.message.contains("pw-secret"), "{}", e.message);
        }
    }

    #[test]
    fn missing_fields_are_named_by_pointer() {
        let e = spec(json!({"type":"password","client_id":"c"})).unwrap_err();
        let paths: Vec<_> = e.details.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["/tenant_id", "/username", "/password"]);
    }

    /// Issue 11, item 1: `.../token` became `.../token/`, which Entra answers 404.
    #[test]
    fn token_url_is_used_exactly_as_given() {
        let a = spec(
            json!({"type":"oauth2_client_credentials","client_id":"c","client_secret":"s",
            "token_url":"https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token"}),
        )
        .unwrap();
        assert_eq!(
            a.token_url.as_str(),
            "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token"
        );
        let a = spec(
            json!({"type":"oauth2_client_credentials","client_id":"c","client_secret":"s",
            "token_url":"https://idp.example.com/token/"}),
        )
        .unwrap();
        assert_eq!(a.token_url.as_str(), "https://idp.example.com/token/");
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let base = json!({"type":"client_credentials","tenant_id":"t","client_id":"c","client_secret":"s"});
        let mut ok = base.clone();
        ok["url"] = json!("http://127.0.0.1:8080");
        ok["login_url"] = json!("http://localhost:8080/login");
        let a = spec(ok).unwrap();
        assert_eq!(
            a.token_url.as_str(),
            "http://localhost:8080/login/t/oauth2/v2.0/token"
        );
        let mut bad = base;
        bad["url"] = json!("http://graph.example.com");
        assert_eq!(spec(bad).unwrap_err().details[0].path, "/url");
    }

    /// Issue 19, item 6: `http://:pw@host` passed (only the user name was tested)
    /// and the password was logged. Every URL field refuses credentials, unechoed.
    #[test]
    fn credentials_in_any_url_field_are_refused_unechoed() {
        let cc = json!({"type":"client_credentials","tenant_id":"t","client_id":"c","client_secret":"s"});
        let oauth = json!({"type":"oauth2_client_credentials","token_url":"https://login.example.com/token",
                           "client_id":"c","client_secret":"s"});
        for (base, field) in [
            (&cc, "url"),
            (&cc, "login_url"),
            (&oauth, "url"),
            (&oauth, "token_url"),
        ] {
            for userinfo in [":pw-Xy7q@", "user@", "user:pw-Xy7q@"] {
                let mut v = base.clone();
                v[field] = json!(format!("http://{userinfo}127.0.0.1:8080/x"));
                let e = spec(v).unwrap_err();
                assert_eq!(e.details.len(), 1, "{field} {userinfo}: {:?}", e.details);
                assert_eq!(e.details[0].path, format!("/{field}"));
                assert!(e.details[0].message.contains("credentials"));
                let shown = format!("{e:?} {}", e.message);
                assert!(
                    !shown.contains("pw-Xy7q") && !shown.contains("user@"),
                    "{shown}"
                );
            }
        }
    }

    #[test]
    fn urls_are_displayed_without_userinfo() {
        let u = Url::parse("https://u:pw@login.example.com:8443/t/token?q=1#f").unwrap();
        assert_eq!(
            url_for_display(&u),
            "https://login.example.com:8443/t/token"
        );
    }

    #[test]
    fn password_grant_refuses_common_tenant() {
        let e = spec(json!({"type":"password","tenant_id":"common","client_id":"c","username":"u","password":"p"}))
            .unwrap_err();
        assert_eq!(e.details[0].path, "/tenant_id");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let a = spec(json!({"type":"client_credentials","tenant_id":"t","client_id":"c","client_secret":"hunter2-secret"}))
            .unwrap();
        assert!(!format!("{a:?}").contains("hunter2-secret"));
    }
}
