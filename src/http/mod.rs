//! HTTP as every outgoing request of the connector speaks it, Graph's and the
//! token endpoint's alike.
//!
//! [`build_client`] makes the one reqwest client of a run from the asset
//! (rustls, HTTP/2 by ALPN, gzip, timeouts, proxy, same-origin redirects);
//! [`describe_reqwest`] puts a transport failure in words; [`retry`] says when
//! to try again and how long to wait ([`retry::RetryBudget`]). Above this are
//! `auth` (the token endpoint) and `graph`; below it only the asset.

pub mod retry;

use std::time::Duration;

use secrecy::ExposeSecret;

use crate::asset::Asset;
use crate::error::{Error, Result};

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("msgraph-connector/", env!("CARGO_PKG_VERSION"));

/// Our one reqwest client: rustls, HTTP/2 by ALPN, gzip, the asset's timeouts and proxy,
/// and redirects followed only within the same origin (the bearer token stays with Graph).
/// Errors point into the asset (`/http_proxy`).
/// The certificates of an asset's `ca_file` (at most 1 MiB of PEM).
fn extra_authorities(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>> {
    let refuse = |why: String| Error::invalid("/ca_file", why);
    let meta = std::fs::metadata(path)
        .map_err(|e| refuse(format!("cannot be read ({}): {e}", path.display())))?;
    if !meta.is_file() || meta.len() > 1 << 20 {
        return Err(refuse(format!(
            "must be a PEM file of at most 1 MiB ({})",
            path.display()
        )));
    }
    let pem = std::fs::read(path)
        .map_err(|e| refuse(format!("cannot be read ({}): {e}", path.display())))?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        _ => Err(refuse(format!(
            "holds no PEM certificate ({})",
            path.display()
        ))),
    }
}

pub fn build_client(asset: &Asset) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(asset.timeout)
        .connect_timeout(asset.timeout.min(Duration::from_secs(10)))
        .gzip(true)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let same_origin = attempt
                .previous()
                .first()
                .is_some_and(|first| first.origin() == attempt.url().origin());
            if attempt.previous().len() >= 5 || !same_origin {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }));
    if asset.graph_url.scheme() == "http" && asset.token_url.scheme() == "http" {
        // Plain http is allowed only on loopback (the emulator), and redirects stay
        // on the same origin, so this client never speaks TLS: skip loading the
        // platform's root store, about two thirds of a short run's CPU.
        builder = builder.tls_certs_only([]);
    }
    if let Some(path) = &asset.ca_file {
        builder = builder.tls_certs_merge(extra_authorities(path)?);
    }
    if !asset.verify_ssl {
        // Said once per asset by the Graph client (`graph::client`), which knows the state dir.
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    if let Some(proxy) = &asset.http_proxy {
        let proxy = reqwest::Proxy::all(proxy.expose_secret()).map_err(|_| {
            Error::invalid(
                "/http_proxy",
                "is not a usable proxy URL (e.g. http://proxy.corp:3128)",
            )
        })?;
        builder = builder.proxy(proxy);
    }
    builder
        .build()
        .map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))
}

/// A reqwest error in words, without the URL (which is ours, but may carry a query).
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "the answer was cut short"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut chain = Vec::new();
    while let Some(s) = source {
        chain.push(s.to_string());
        source = s.source();
    }
    match chain.last() {
        Some(root) => format!("{what} ({root})"),
        None => what.to_string(),
    }
}
