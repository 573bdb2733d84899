//! Where secrets come from and go to. This is the only code that builds AWS clients or
//! starts an async runtime, and it does so only when a registry we serve needs it.

mod aws;
mod ecr;
mod ssm;

use std::time::{Duration, Instant, SystemTime};

use crate::config::{CredentialSource, SsmParameter};
use crate::host::RegistryHost;
use crate::secret::Secret;

/// A username and secret as fetched, with the time they stop working when the source says.
#[derive(Debug)]
pub struct Fetched {
    pub username: String,
    pub secret: Secret<String>,
    pub expires_at: Option<SystemTime>,
    /// Something the person should know although the answer is good (a stale token).
    pub warning: Option<String>,
}

/// Where one registry's secret is kept in SSM.
#[derive(Clone, Debug)]
pub struct SsmLocation {
    pub parameter: SsmParameter,
    /// The credential's region; the parameter's ARN region wins over it.
    pub region: Option<String>,
}

impl SsmLocation {
    /// Where a credential's secret is, when it has one in SSM.
    pub fn of(source: &CredentialSource) -> Option<SsmLocation> {
        match source {
            CredentialSource::Ssm {
                parameter, region, ..
            } => Some(SsmLocation {
                parameter: parameter.clone(),
                region: region.clone(),
            }),
            CredentialSource::Ecr(_) => None,
        }
    }

    fn effective_region(&self) -> Option<String> {
        self.parameter
            .arn_region
            .clone()
            .or_else(|| self.region.clone())
    }
}

/// How a new secret is written.
#[derive(Clone, Debug, Default)]
pub struct PutOptions {
    /// A customer-managed KMS key; SSM's default key when `None`.
    pub kms_key_id: Option<String>,
}

/// The AWS operations the verbs need. An error is a real failure, never "not found".
pub trait CredentialBackend {
    fn fetch(&self, registry: &RegistryHost, source: &CredentialSource) -> anyhow::Result<Fetched>;
    fn put_secret(
        &self,
        registry: &RegistryHost,
        location: &SsmLocation,
        secret: &Secret<String>,
        options: &PutOptions,
    ) -> anyhow::Result<()>;
    /// Deletes the parameter; one that is already gone is not an error.
    fn delete_secret(&self, registry: &RegistryHost, location: &SsmLocation) -> anyhow::Result<()>;
}

/// Who we are to AWS, as far as the default chain tells without another API call.
#[derive(Debug)]
pub struct AwsIdentity {
    pub access_key_id: String,
    pub region: Option<String>,
}

pub fn resolve_identity(deadline: Deadline) -> anyhow::Result<AwsIdentity> {
    aws::identity(deadline)
}

/// The real backend: SSM for stored secrets, ECR for instance-role tokens. Building one
/// costs nothing: clients and the runtime start only when an operation runs.
pub struct AwsBackend {
    deadline: Deadline,
}

/// The one overall deadline of this process's work, and how long it was, for messages.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    pub at: Instant,
    pub total: Duration,
}

impl Deadline {
    pub fn from_now(total: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + total,
            total,
        }
    }
}

impl AwsBackend {
    pub fn new(deadline: Deadline) -> AwsBackend {
        AwsBackend { deadline }
    }
}

impl CredentialBackend for AwsBackend {
    fn fetch(&self, registry: &RegistryHost, source: &CredentialSource) -> anyhow::Result<Fetched> {
        match source {
            CredentialSource::Ssm {
                username,
                parameter,
                region,
            } => {
                let location = SsmLocation {
                    parameter: parameter.clone(),
                    region: region.clone(),
                };
                let secret = self.in_ssm(registry, &location, |sdk, attempts| async move {
                    ssm::get_secret(&sdk, &attempts, parameter).await
                })?;
                Ok(Fetched {
                    username: username.clone(),
                    secret,
                    expires_at: None,
                    warning: None,
                })
            }
            CredentialSource::Ecr(ecr) => aws::run_with_deadline(
                self.deadline,
                registry,
                "ECR",
                Some(ecr.region.clone()),
                |sdk, attempts| async move { ecr::authorization_token(&sdk, &attempts, ecr).await },
            ),
        }
    }

    fn put_secret(
        &self,
        registry: &RegistryHost,
        location: &SsmLocation,
        secret: &Secret<String>,
        options: &PutOptions,
    ) -> anyhow::Result<()> {
        self.in_ssm(registry, location, |sdk, attempts| async move {
            let parameter = &location.parameter;
            ssm::put_secret(&sdk, &attempts, registry, parameter, secret, options).await
        })
    }

    fn delete_secret(&self, registry: &RegistryHost, location: &SsmLocation) -> anyhow::Result<()> {
        self.in_ssm(registry, location, |sdk, attempts| async move {
            ssm::delete_secret(&sdk, &attempts, &location.parameter).await
        })
    }
}

impl AwsBackend {
    /// One SSM operation in the parameter's region, within the deadline.
    fn in_ssm<T, F, Fut>(
        &self,
        registry: &RegistryHost,
        location: &SsmLocation,
        operation: F,
    ) -> anyhow::Result<T>
    where
        F: FnOnce(aws_config::SdkConfig, aws::Attempts) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<T>>,
    {
        let region = location.effective_region();
        aws::run_with_deadline(self.deadline, registry, "SSM", region, operation)
    }
}
