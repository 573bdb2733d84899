//! Where secrets come from. This is the only code that builds AWS clients or starts an
//! async runtime, and it does so only when a registry we serve actually needs a fetch.

mod aws;
mod ecr;
mod ssm;

use std::time::{Duration, SystemTime};

use crate::config::CredentialSource;
use crate::host::RegistryHost;
use crate::secret::Secret;

/// A username and secret as fetched, with the time they stop working when the source says.
#[derive(Debug)]
pub struct Fetched {
    pub username: String,
    pub secret: Secret<String>,
    pub expires_at: Option<SystemTime>,
}

/// Fetches the credential for one registry; an error is a real failure, never "not found".
pub trait CredentialFetcher {
    fn fetch(&self, registry: &RegistryHost, source: &CredentialSource) -> anyhow::Result<Fetched>;
}

/// The AWS-backed fetcher: SSM for stored secrets, ECR for instance-role tokens.
pub struct AwsFetcher {
    deadline: Duration,
}

impl AwsFetcher {
    pub fn new(deadline: Duration) -> AwsFetcher {
        AwsFetcher { deadline }
    }
}

impl CredentialFetcher for AwsFetcher {
    fn fetch(&self, registry: &RegistryHost, source: &CredentialSource) -> anyhow::Result<Fetched> {
        aws::run_with_deadline(self.deadline, registry, source)
    }
}
