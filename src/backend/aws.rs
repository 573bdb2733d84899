//! Shared AWS plumbing: one runtime per fetch, region and credentials resolved once, every
//! call bounded by timeouts and by the overall deadline.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

use crate::error::one_line_chain as error_chain;
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
    F: FnOnce(SdkConfig, Attempts) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let attempts = Attempts::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime
        .block_on(async {
            let left = deadline.at.saturating_duration_since(std::time::Instant::now());
            let work = async {
                operation(load_sdk_config(region, left).await, attempts.clone()).await
            };
            match tokio::time::timeout(left, work).await {
                Ok(result) => result,
                Err(_) => Err(match attempts.summary() {
                    Some((last, code)) => anyhow!(
                        "{service} did not succeed within {:.1}s (deadline) {last}; {}",
                        deadline.total.as_secs_f64(),
                        match code {
                            Some(code) => common_hint(service, Some(&code)).unwrap_or_else(|| {
                                "retry later, or raise deadline_seconds".to_string()
                            }),
                            None => format!(
                                "check that this machine can reach {}",
                                endpoint_hint(service)
                            ),
                        },
                    ),
                    None => anyhow!(
                        "no answer from {service} within {:.1}s (deadline); check that this machine can reach {} and that IMDS answers, or raise deadline_seconds",
                        deadline.total.as_secs_f64(),
                        endpoint_hint(service),
                    ),
                }),
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
    Ok(SharedCredentialsProvider::new(credentials(sdk).await?))
}

async fn credentials(sdk: &SdkConfig) -> anyhow::Result<aws_credential_types::Credentials> {
    let provider = sdk.credentials_provider().ok_or_else(|| {
        anyhow!("no AWS credentials provider is configured; run on a box with an instance profile or set AWS_PROFILE")
    })?;
    let credentials = provider.provide_credentials().await.map_err(|e| {
        let cause = error_chain(&e);
        // aws-config speaks IMDSv2 only; an instance that refuses the token request allows
        // only IMDSv1, which needs a different fix than a missing role.
        let fix = if cause.contains("IMDS session token") {
            "this instance seems to refuse IMDSv2 tokens: enable them with `aws ec2 modify-instance-metadata-options --http-tokens required --http-put-response-hop-limit 2`"
        } else {
            "on a box, check that an instance profile is attached and IMDS answers (hop limit 2 inside containers); elsewhere set AWS_PROFILE or AWS_ACCESS_KEY_ID"
        };
        anyhow!("no AWS credentials ({cause}); {fix}")
    })?;
    tracing::debug!(access_key_id = %credentials.access_key_id(), "resolved AWS credentials");
    Ok(credentials)
}

/// The access key id and region the default chain resolves, for `doctor`.
pub(super) fn identity(deadline: super::Deadline) -> anyhow::Result<super::AwsIdentity> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let left = deadline.at.saturating_duration_since(std::time::Instant::now());
        let work = async {
            let sdk = load_sdk_config(None, left).await;
            let credentials = credentials(&sdk).await?;
            Ok(super::AwsIdentity {
                access_key_id: credentials.access_key_id().to_string(),
                region: sdk.region().map(|r| r.to_string()),
            })
        };
        tokio::time::timeout(left, work).await.unwrap_or_else(|_| {
            Err(anyhow!(
                "no AWS credentials within {:.1}s; check that IMDS answers (hop limit 2 inside containers)",
                deadline.total.as_secs_f64()
            ))
        })
    })
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

/// The service's own message, when it answered.
pub(super) fn error_message<E, R>(
    err: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> &str
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    match err {
        SdkError::ServiceError(service) => service.err().message().unwrap_or(""),
        _ => "",
    }
}

/// The fix for failures every service shares: the caller's credentials, throttling, an
/// outage. `None` when the service-specific hint should decide.
pub(super) fn common_hint(service: &str, code: Option<&str>) -> Option<String> {
    let code = code?;
    Some(match code {
        "ExpiredTokenException" | "ExpiredToken" | "RequestExpired" => {
            "the AWS credentials have expired; on a box IMDS renews them, so check that IMDS answers and the clock is right (chronyd); elsewhere refresh AWS_SESSION_TOKEN or the profile".to_string()
        }
        "UnrecognizedClientException" | "InvalidClientTokenId" | "InvalidSignatureException"
        | "SignatureDoesNotMatch" => {
            "AWS does not accept these credentials; check the instance profile, or AWS_PROFILE / AWS_ACCESS_KEY_ID".to_string()
        }
        "ThrottlingException" | "Throttling" | "TooManyRequestsException" => format!(
            "AWS is throttling this account's {service} calls; keep the cache on, raise deadline_seconds, and for large fleets enable SSM's higher-throughput setting"
        ),
        "InternalServerError" | "InternalFailure" | "ServerException" | "ServiceUnavailable"
        | "ServiceUnavailableException" => {
            format!("{service} is having trouble on AWS's side; retry the pull shortly")
        }
        _ => return None,
    })
}

/// What the attempts of one operation ended with, so that running out of time can still
/// say why (throttled six times, a 503…) instead of only "timed out".
#[derive(Clone, Default, Debug)]
pub(super) struct Attempts(Arc<Mutex<AttemptLog>>);

#[derive(Default, Debug)]
struct AttemptLog {
    failed: u32,
    last: Option<String>,
    last_code: Option<String>,
}

impl Attempts {
    /// An interceptor for a client whose operation errors are `E`.
    pub(super) fn recorder<E>(&self) -> AttemptRecorder<E> {
        AttemptRecorder {
            attempts: self.clone(),
            error: PhantomData,
        }
    }

    /// "after N failed attempts, the last: …" and the last AWS error code, if any failed.
    fn summary(&self) -> Option<(String, Option<String>)> {
        let log = self.0.lock().ok()?;
        let last = log.last.as_ref()?;
        let text = format!(
            "after {} failed attempt{}, the last: {last}",
            log.failed,
            if log.failed == 1 { "" } else { "s" }
        );
        Some((text, log.last_code.clone()))
    }
}

pub(super) struct AttemptRecorder<E> {
    attempts: Attempts,
    error: PhantomData<fn() -> E>,
}

impl<E> std::fmt::Debug for AttemptRecorder<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AttemptRecorder")
    }
}

/// What every SDK operation error is: it has a code and message, and can cross threads.
pub(super) trait OperationError:
    aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static
{
}

impl<E> OperationError for E where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata
        + std::error::Error
        + Send
        + Sync
        + 'static
{
}

impl<E: OperationError> aws_smithy_runtime_api::client::interceptors::Intercept
    for AttemptRecorder<E>
{
    fn name(&self) -> &'static str {
        "slothbox-attempt-recorder"
    }

    fn read_after_attempt(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let Some(Err(error)) = context.output_or_error() else {
            return Ok(());
        };
        let status = context
            .response()
            .map(|r| format!("HTTP {} ", r.status().as_u16()))
            .unwrap_or_default();
        let operation_error = error
            .as_operation_error()
            .and_then(|e| e.downcast_ref::<E>());
        let what = match operation_error {
            Some(e) => format!(
                "{}: {}",
                e.code().unwrap_or("UnknownError"),
                e.message().unwrap_or("no message")
            ),
            None => error_chain(error),
        };
        if let Ok(mut log) = self.attempts.0.lock() {
            log.failed += 1;
            log.last = Some(format!("{status}{what}"));
            log.last_code = operation_error.and_then(|e| e.code()).map(str::to_string);
        }
        Ok(())
    }
}
