//! SSM Parameter Store: the secret of a token credential, decrypted with the caller's role.

use anyhow::{anyhow, bail};
use aws_config::SdkConfig;

use super::aws::{describe, error_code, resolved_credentials};
use crate::config::SsmParameter;
use crate::secret::Secret;

pub(super) async fn get_secret(
    sdk: &SdkConfig,
    parameter: &SsmParameter,
) -> anyhow::Result<Secret<String>> {
    let Some(region) = sdk.region() else {
        bail!(
            "no AWS region for SSM parameter {parameter}; set \"region\" on the credential, AWS_REGION, or run on EC2 where IMDS tells it"
        );
    };
    let credentials = resolved_credentials(sdk).await?;
    let config = aws_sdk_ssm::config::Builder::from(sdk)
        .credentials_provider(credentials)
        .build();
    let client = aws_sdk_ssm::Client::from_conf(config);
    tracing::debug!(%parameter, %region, "GetParameter");
    let answer = client
        .get_parameter()
        .name(&parameter.name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|err| {
            let hint = match error_code(&err) {
                Some("ParameterNotFound") => format!(
                    "create it with `aws ssm put-parameter --type SecureString --name {parameter}` in {region}, or fix \"parameter\" in the credentials file"
                ),
                Some("AccessDeniedException") => format!(
                    "allow the instance role ssm:GetParameter on {parameter} in {region}"
                ),
                Some(code) if code.starts_with("KMS") || code.contains("Kms") => {
                    "allow the instance role kms:Decrypt on the parameter's KMS key".to_string()
                }
                Some(_) => "see the AWS error above".to_string(),
                None => format!(
                    "check that this machine can reach {}",
                    super::aws::endpoint_hint("SSM")
                ),
            };
            anyhow!(
                "SSM GetParameter {parameter} in {region} failed: {}; {hint}",
                describe(&err)
            )
        })?;
    let value = answer
        .parameter
        .and_then(|p| p.value)
        .ok_or_else(|| anyhow!("SSM parameter {parameter} in {region} has no value"))?;
    Ok(Secret::new(value))
}
