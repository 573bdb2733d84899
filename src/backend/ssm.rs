//! SSM Parameter Store: the secret of a token credential, read, written and deleted with the
//! caller's role.

use anyhow::{anyhow, bail};
use aws_config::SdkConfig;
use aws_sdk_ssm::types::{ParameterType, Tag};

use super::aws::{describe, endpoint_hint, error_code, resolved_credentials};
use super::PutOptions;
use crate::config::SsmParameter;
use crate::host::RegistryHost;
use crate::secret::Secret;

async fn client(
    sdk: &SdkConfig,
    parameter: &SsmParameter,
) -> anyhow::Result<(aws_sdk_ssm::Client, String)> {
    let Some(region) = sdk.region() else {
        bail!(
            "no AWS region for SSM parameter {parameter}; set \"region\" on the credential, AWS_REGION, or run on EC2 where IMDS tells it"
        );
    };
    let credentials = resolved_credentials(sdk).await?;
    let config = aws_sdk_ssm::config::Builder::from(sdk)
        .credentials_provider(credentials)
        .build();
    Ok((aws_sdk_ssm::Client::from_conf(config), region.to_string()))
}

/// What to do about a failed call, in the words an operator needs.
fn hint(code: Option<&str>, action: &str, parameter: &SsmParameter, region: &str) -> String {
    match code {
        Some("ParameterNotFound") => format!(
            "create it with `aws ssm put-parameter --type SecureString --name {parameter}` in {region}, or fix \"parameter\" in the credentials file"
        ),
        Some("AccessDeniedException") => {
            format!("allow the instance role ssm:{action} on {parameter} in {region}")
        }
        Some(code) if code.contains("Kms") || code.contains("KMS") => format!(
            "allow the instance role {} on the parameter's KMS key",
            if action == "GetParameter" { "kms:Decrypt" } else { "kms:Encrypt" }
        ),
        Some(_) => "see the AWS error above".to_string(),
        None => format!("check that this machine can reach {}", endpoint_hint("SSM")),
    }
}

pub(super) async fn get_secret(
    sdk: &SdkConfig,
    parameter: &SsmParameter,
) -> anyhow::Result<Secret<String>> {
    let (client, region) = client(sdk, parameter).await?;
    tracing::debug!(%parameter, %region, "GetParameter");
    let answer = client
        .get_parameter()
        .name(&parameter.name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|err| {
            anyhow!(
                "SSM GetParameter {parameter} in {region} failed: {}; {}",
                describe(&err),
                hint(error_code(&err), "GetParameter", parameter, &region)
            )
        })?;
    let value = answer
        .parameter
        .and_then(|p| p.value)
        .ok_or_else(|| anyhow!("SSM parameter {parameter} in {region} has no value"))?;
    Ok(Secret::new(value))
}

/// Writes the secret as a SecureString. A new parameter is tagged with its registry; an
/// existing one is overwritten (SSM refuses tags together with overwrite).
pub(super) async fn put_secret(
    sdk: &SdkConfig,
    registry: &RegistryHost,
    parameter: &SsmParameter,
    secret: &Secret<String>,
    options: &PutOptions,
) -> anyhow::Result<()> {
    let (client, region) = client(sdk, parameter).await?;
    let put = |overwrite: bool| {
        let mut request = client
            .put_parameter()
            .name(&parameter.name)
            .value(secret.expose())
            .r#type(ParameterType::SecureString)
            .description(format!(
                "Registry secret for {registry}, kept by docker-credential-slothbox"
            ))
            .set_key_id(options.kms_key_id.clone());
        if overwrite {
            request = request.overwrite(true);
        } else {
            for (key, value) in [
                ("slothbox:registry", registry.as_str()),
                ("slothbox:managed-by", "docker-credential-slothbox"),
            ] {
                if let Ok(tag) = Tag::builder().key(key).value(value).build() {
                    request = request.tags(tag);
                }
            }
        }
        request.send()
    };
    tracing::debug!(%parameter, %region, "PutParameter");
    let result = match put(false).await {
        Err(err) if error_code(&err) == Some("ParameterAlreadyExists") => put(true).await,
        other => other,
    };
    result.map(|_| ()).map_err(|err| {
        anyhow!(
            "SSM PutParameter {parameter} in {region} failed: {}; {}",
            describe(&err),
            hint(error_code(&err), "PutParameter", parameter, &region)
        )
    })
}

pub(super) async fn delete_secret(sdk: &SdkConfig, parameter: &SsmParameter) -> anyhow::Result<()> {
    let (client, region) = client(sdk, parameter).await?;
    tracing::debug!(%parameter, %region, "DeleteParameter");
    match client.delete_parameter().name(&parameter.name).send().await {
        Ok(_) => Ok(()),
        Err(err) if error_code(&err) == Some("ParameterNotFound") => Ok(()),
        Err(err) => Err(anyhow!(
            "SSM DeleteParameter {parameter} in {region} failed: {}; {}",
            describe(&err),
            hint(error_code(&err), "DeleteParameter", parameter, &region)
        )),
    }
}
