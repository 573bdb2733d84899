//! Shared AWS plumbing: one runtime per fetch, region and credentials resolved once, every
//! call bounded by timeouts and by the overall deadline.

use std::time::Duration;

use anyhow::{anyhow, Context};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

use crate::host::RegistryHost;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(4);
const MAX_ATTEMPTS: u32 = 10;
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Runs one AWS operation on a fresh current-thread runtime (one request needs no
/// parallelism, and such a runtime starts in microseconds), bounded by the deadline.
pub(super) fn run_with_deadline<T, F, Fut>(
    deadline: super::Deadline,
    registry: &RegistryHost,
    service: &str,
    region: Option<String>,
    operation: F,
) -> anyhow::Result<T>
where
    F: FnOnce(SdkConfig) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime
        .block_on(async {
            let left = deadline.at.saturating_duration_since(std::time::Instant::now());
            let work = async { operation(load_sdk_config(region, left).await).await };
            match tokio::time::timeout(left, work).await {
                Ok(result) => result,
                Err(_) => Err(anyhow!(
                    "no answer from {service} within {:.1}s (deadline); check that this machine can reach {} and that IMDS answers, or raise deadline_seconds",
                    deadline.total.as_secs_f64(),
                    endpoint_hint(service),
                )),
            }
        })
        .with_context(|| registry.to_string())
}

/// The endpoint a person should check when the network is the problem.
pub(super) fn endpoint_hint(service: &str) -> String {
    let specific = format!("AWS_ENDPOINT_URL_{}", service.to_ascii_uppercase());
    std::env::var(&specific)
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|_| format!("the {service} endpoint of the region"))
}

async fn load_sdk_config(region: Option<String>, left: Duration) -> SdkConfig {
    let left = left.max(Duration::from_millis(1));
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT.min(left))
        .operation_attempt_timeout(ATTEMPT_TIMEOUT.min(left))
        .operation_timeout(left)
        .build();
    // A fleet booting together gets throttled: keep retrying with jittered exponential
    // backoff, capped, for as long as the deadline allows, rather than giving up after the
    // SDK's default three attempts. Non-retryable errors still fail at once.
    let retries = RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(INITIAL_BACKOFF)
        .with_max_backoff(MAX_BACKOFF);
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .retry_config(retries);
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    loader.load().await
}

/// Resolves credentials once, up front, so a missing instance role is reported as such
/// rather than as a failed SSM or ECR call, and IMDS is asked only once per fetch.
pub(super) async fn resolved_credentials(
    sdk: &SdkConfig,
) -> anyhow::Result<SharedCredentialsProvider> {
    let provider = sdk.credentials_provider().ok_or_else(|| {
        anyhow!("no AWS credentials provider is configured; run on a box with an instance profile or set AWS_PROFILE")
    })?;
    let credentials = provider.provide_credentials().await.map_err(|e| {
        anyhow!(
            "no AWS credentials ({}); on a box, check that an instance profile is attached and IMDS answers (hop limit 2 inside containers); elsewhere set AWS_PROFILE or AWS_ACCESS_KEY_ID",
            error_chain(&e)
        )
    })?;
    tracing::debug!(access_key_id = %credentials.access_key_id(), "resolved AWS credentials");
    Ok(SharedCredentialsProvider::new(credentials))
}

/// One line for an AWS error: its code and message when the service answered, the cause
/// chain otherwise (network, timeouts).
pub(super) fn describe<E, R>(err: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> String
where
    E: std::error::Error + aws_smithy_types::error::metadata::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug + 'static,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            format!(
                "{}: {}",
                e.code().unwrap_or("UnknownError"),
                e.message().unwrap_or("no message")
            )
        }
        SdkError::TimeoutError(_) => "the request timed out".to_string(),
        other => error_chain(other),
    }
}

pub(super) fn error_code<E, R>(
    err: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> Option<&str>
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

/// An error and its causes on one line, each said once. The SDK's own display adds a
/// Debug dump of the whole chain, which nobody can read in a docker error message.
pub(super) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(err) = next {
        let text = crate::protocol::one_line(&err.to_string());
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}
