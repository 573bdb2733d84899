//! Amazon ECR: a 12-hour token for the registry's account, from the caller's role.

use std::time::SystemTime;

use anyhow::{anyhow, Context};
use aws_config::SdkConfig;

use super::aws::{describe, error_code, resolved_credentials, Attempts};
use super::Fetched;
use crate::host::EcrRegistry;
use crate::secret::Secret;

pub(super) async fn authorization_token(
    sdk: &SdkConfig,
    attempts: &Attempts,
    registry: &EcrRegistry,
) -> anyhow::Result<Fetched> {
    use aws_sdk_ecr::operation::get_authorization_token::GetAuthorizationTokenError;
    let credentials = resolved_credentials(sdk).await?;
    let mut config = aws_sdk_ecr::config::Builder::from(sdk)
        .credentials_provider(credentials)
        .interceptor(attempts.recorder::<GetAuthorizationTokenError>());
    if registry.fips {
        config = config.use_fips(true);
    }
    let client = aws_sdk_ecr::Client::from_conf(config.build());
    let account = &registry.account;
    let region = &registry.region;
    tracing::debug!(%account, %region, "GetAuthorizationToken");
    #[allow(deprecated)] // registryIds is deprecated but still picks the account's token.
    let answer = client
        .get_authorization_token()
        .registry_ids(account)
        .send()
        .await
        .map_err(|err| {
            let code = error_code(&err);
            let hint = super::aws::common_hint("ECR", code).unwrap_or_else(|| match code {
                Some("AccessDeniedException") => {
                    "allow the instance role ecr:GetAuthorizationToken (resource \"*\"), and ecr:BatchGetImage and ecr:GetDownloadUrlForLayer on the repositories; check the host's account and region match the image".to_string()
                }
                Some(_) => "see the AWS error above".to_string(),
                None => format!(
                    "check that this machine can reach {}",
                    super::aws::endpoint_hint("ECR")
                ),
            });
            anyhow!(
                "ECR GetAuthorizationToken for account {account} in {region} failed: {}; {hint}",
                describe(&err)
            )
        })?;
    let data = answer
        .authorization_data
        .unwrap_or_default()
        .into_iter()
        .next()
        .ok_or_else(|| {
            anyhow!("ECR returned no authorization data for account {account} in {region}")
        })?;
    let expires_at = data.expires_at.and_then(|t| SystemTime::try_from(t).ok());
    let token = data
        .authorization_token
        .ok_or_else(|| anyhow!("ECR returned an empty token for account {account} in {region}"))?;
    let (username, password) = decode_token(Secret::new(token))
        .with_context(|| format!("ECR token for account {account} in {region}"))?;
    Ok(Fetched {
        username,
        secret: password,
        expires_at,
        warning: None,
    })
}

/// An ECR token is base64 of `AWS:<password>`.
fn decode_token(token: Secret<String>) -> anyhow::Result<(String, Secret<String>)> {
    let bytes = aws_smithy_types::base64::decode(token.expose())
        .map_err(|_| anyhow!("is not valid base64"))?;
    let text = String::from_utf8(bytes).map_err(|_| anyhow!("is not UTF-8"))?;
    let (username, password) = text
        .split_once(':')
        .ok_or_else(|| anyhow!("is not of the form user:password"))?;
    if username.is_empty() || password.is_empty() {
        return Err(anyhow!("has an empty user or password"));
    }
    Ok((username.to_string(), Secret::new(password.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_aws_user_and_password() {
        let token = aws_smithy_types::base64::encode("AWS:eyJwYXlsb2FkIjoi");
        let (user, password) = decode_token(Secret::new(token)).unwrap();
        assert_eq!(user, "AWS");
        assert_eq!(password.expose(), "eyJwYXlsb2FkIjoi");
    }

    #[test]
    fn malformed_tokens_are_errors_without_the_value() {
        for bad in ["not base64!!", &aws_smithy_types::base64::encode("nocolon")] {
            let err = decode_token(Secret::new(bad.to_string())).unwrap_err();
            assert!(!err.to_string().contains(bad));
        }
    }
}
