//! A real login against a registry's `/v2/` endpoint with the credential the helper would
//! hand docker: the one check that proves the secret works, not only that it exists.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::host::RegistryHost;
use crate::secret::Secret;

/// How the registry answered a login.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginResult {
    Accepted,
    /// The registry serves /v2/ without a login, so the credential was not exercised.
    Anonymous,
    /// 401 or 403: the registry does not accept this username and secret.
    Refused {
        status: u16,
    },
    /// Anything else (404, 5xx): the registry or its token service is the problem.
    Failed {
        status: u16,
    },
}

/// Where docker and the containers tools keep a registry's private CA.
pub fn registry_ca_files(registry: &RegistryHost) -> Vec<PathBuf> {
    ["/etc/docker/certs.d", "/etc/containers/certs.d"]
        .iter()
        .map(|base| Path::new(base).join(registry.as_str()))
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flat_map(|entries| entries.flatten().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "crt"))
        .collect()
}

fn tls_config(extra_ca: &[PathBuf]) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    for path in extra_ca {
        for cert in CertificateDer::pem_file_iter(path)
            .with_context(|| format!("cannot read CA file {}", path.display()))?
        {
            let cert = cert.with_context(|| format!("bad certificate in {}", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("unusable certificate in {}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The host that serves the registry API.
fn api_host(registry: &RegistryHost) -> &str {
    if registry.is_docker_hub() {
        "registry-1.docker.io"
    } else {
        registry.as_str()
    }
}

/// `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
fn parse_challenge(header: &str) -> (String, Vec<(String, String)>) {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let mut pairs = Vec::new();
    let mut rest = params;
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_string();
        let (value, tail) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((v, t)) => (v.to_string(), t),
                None => (quoted.to_string(), ""),
            },
            None => match after.split_once(',') {
                Some((v, t)) => (v.trim().to_string(), t),
                None => (after.trim().to_string(), ""),
            },
        };
        pairs.push((key, value));
        rest = tail.trim_start_matches(',');
    }
    (scheme.to_ascii_lowercase(), pairs)
}

pub async fn login(
    registry: &RegistryHost,
    username: &str,
    secret: &Secret<String>,
    extra_ca: &[PathBuf],
    timeout: Duration,
) -> anyhow::Result<LoginResult> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(extra_ca)?)
        .https_only()
        .enable_http1()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    // Identity headers: the secret goes out only in an Authorization header, over TLS.
    // The header carries the secret, so it stays wrapped until it is set on a request.
    let basic = Secret::new(format!(
        "Basic {}",
        aws_smithy_types::base64::encode(format!("{username}:{}", secret.expose()))
    ));
    let get = |uri: String, auth: Option<&Secret<String>>| {
        let mut request = http::Request::get(uri);
        if let Some(auth) = auth {
            request = match http::HeaderValue::from_str(auth.expose()) {
                Ok(mut value) => {
                    // Marked sensitive: HTTP stacks then keep it out of their debug output.
                    value.set_sensitive(true);
                    request.header(http::header::AUTHORIZATION, value)
                }
                // The builder records the error; its text names no value.
                Err(_) => request.header(http::header::AUTHORIZATION, auth.expose().as_str()),
            };
        }
        let request = request.body(Empty::<Bytes>::new());
        let client = &client;
        async move {
            let request = request.context("cannot build the request")?;
            let response = tokio::time::timeout(timeout, client.request(request))
                .await
                .map_err(|_| anyhow!("no answer within {:.1}s", timeout.as_secs_f64()))?
                .map_err(|e| anyhow!("{}", crate::error::one_line_chain(&e)))?;
            Ok::<_, anyhow::Error>(response)
        }
    };
    let base = format!("https://{}/v2/", api_host(registry));
    let first = get(base.clone(), None)
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    if first.status().is_success() {
        return Ok(LoginResult::Anonymous);
    }
    let challenge = first
        .headers()
        .get(http::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (scheme, params) = parse_challenge(&challenge);
    let answer = match scheme.as_str() {
        "bearer" => {
            let param = |name: &str| {
                params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            let realm = param("realm")
                .ok_or_else(|| anyhow!("{base} sent a Bearer challenge without a realm"))?;
            let mut uri = realm.clone();
            if let Some(service) = param("service") {
                uri.push_str(if uri.contains('?') { "&" } else { "?" });
                uri.push_str("service=");
                uri.push_str(&service);
            }
            get(uri, Some(&basic))
                .await
                .with_context(|| format!("cannot reach the token service {realm}"))?
        }
        _ => get(base.clone(), Some(&basic))
            .await
            .with_context(|| format!("cannot reach {base}"))?,
    };
    let status = answer.status().as_u16();
    Ok(match status {
        200..=299 => LoginResult::Accepted,
        401 | 403 => LoginResult::Refused { status },
        _ => LoginResult::Failed { status },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="x""#,
        );
        assert_eq!(scheme, "bearer");
        assert_eq!(
            params[0],
            ("realm".into(), "https://auth.docker.io/token".into())
        );
        assert_eq!(params[1], ("service".into(), "registry.docker.io".into()));
        let (scheme, params) = parse_challenge(r#"Basic realm="slothbox-test-registry""#);
        assert_eq!(scheme, "basic");
        assert_eq!(
            params,
            vec![("realm".into(), "slothbox-test-registry".into())]
        );
    }
}
