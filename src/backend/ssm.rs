//! SSM Parameter Store: the secret of a token credential, read, written and deleted with the
//! caller's role.

use anyhow::{anyhow, bail};
use aws_config::SdkConfig;
use aws_sdk_ssm::types::{ParameterType, Tag};

use super::aws::{
    describe, endpoint_hint, error_code, error_message, resolved_credentials, Attempts,
};
use super::PutOptions;
use crate::config::SsmParameter;
use crate::host::RegistryHost;
use crate::secret::Secret;

async fn client<E>(
    sdk: &SdkConfig,
    attempts: &Attempts,
    parameter: &SsmParameter,
) -> anyhow::Result<(aws_sdk_ssm::Client, String)>
where
    E: super::aws::OperationError,
{
    let Some(region) = sdk.region() else {
        bail!(
            "no AWS region for SSM parameter {parameter}; set \"region\" on the credential, AWS_REGION, or run on EC2 where IMDS tells it"
        );
    };
    let credentials = resolved_credentials(sdk).await?;
    let config = aws_sdk_ssm::config::Builder::from(sdk)
        .credentials_provider(credentials)
        .interceptor(attempts.recorder::<E>())
        .build();
    Ok((aws_sdk_ssm::Client::from_conf(config), region.to_string()))
}

/// What to do about a failed call, in the words an operator needs.
fn hint(
    code: Option<&str>,
    message: &str,
    action: &str,
    parameter: &SsmParameter,
    region: &str,
) -> String {
    let kms_action = if action == "GetParameter" {
        "kms:Decrypt"
    } else {
        "kms:Encrypt"
    };
    // SSM reports a refused KMS key as its own AccessDenied or as a Kms* error; the message
    // names KMS either way.
    let about_kms = message.to_ascii_lowercase().contains("kms")
        || code.is_some_and(|c| c.to_ascii_lowercase().contains("kms"));
    if let Some(common) = super::aws::common_hint("SSM", code) {
        return common;
    }
    match code {
        Some("ParameterNotFound") => format!(
            "create it with `aws ssm put-parameter --type SecureString --name {parameter}` in {region}, or fix \"parameter\" in the credentials file"
        ),
        Some(_) if about_kms => format!(
            "KMS refused the parameter's key: allow the instance role {kms_action} on that key (and check the key policy)"
        ),
        Some("AccessDeniedException") => {
            format!("allow the instance role ssm:{action} on {parameter} in {region}")
        }
        Some(_) => "see the AWS error above".to_string(),
        None => format!("check that this machine can reach {}", endpoint_hint("SSM")),
    }
}

pub(super) async fn get_secret(
    sdk: &SdkConfig,
    attempts: &Attempts,
    parameter: &SsmParameter,
) -> anyhow::Result<Secret<String>> {
    use aws_sdk_ssm::operation::get_parameter::GetParameterError;
    let (client, region) = client::<GetParameterError>(sdk, attempts, parameter).await?;
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
                hint(
                    error_code(&err),
                    error_message(&err),
                    "GetParameter",
                    parameter,
                    &region
                )
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
    attempts: &Attempts,
    registry: &RegistryHost,
    parameter: &SsmParameter,
    secret: &Secret<String>,
    options: &PutOptions,
) -> anyhow::Result<()> {
    use aws_sdk_ssm::operation::put_parameter::PutParameterError;
    let (client, region) = client::<PutParameterError>(sdk, attempts, parameter).await?;
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
            hint(
                error_code(&err),
                error_message(&err),
                "PutParameter",
                parameter,
                &region
            )
        )
    })
}

pub(super) async fn delete_secret(
    sdk: &SdkConfig,
    attempts: &Attempts,
    parameter: &SsmParameter,
) -> anyhow::Result<()> {
    use aws_sdk_ssm::operation::delete_parameter::DeleteParameterError;
    let (client, region) = client::<DeleteParameterError>(sdk, attempts, parameter).await?;
    tracing::debug!(%parameter, %region, "DeleteParameter");
    match client.delete_parameter().name(&parameter.name).send().await {
        Ok(_) => Ok(()),
        Err(err) if error_code(&err) == Some("ParameterNotFound") => Ok(()),
        Err(err) => Err(anyhow!(
            "SSM DeleteParameter {parameter} in {region} failed: {}; {}",
            describe(&err),
            hint(
                error_code(&err),
                error_message(&err),
                "DeleteParameter",
                parameter,
                &region
            )
        )),
    }
}
