//! `doctor`: the "Test connection" button of the command line. Each check says what it
//! looked at, and each failure says what to do, in the words of the troubleshooting guide.

mod login;

use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::backend::{resolve_identity, AwsBackend, CredentialBackend, Deadline};
use crate::config::{Config, CredentialSource, Environment};
use crate::configure::{docker_config_path, HELPER_NAME};
use crate::host::{EcrRegistry, RegistryHost};
use login::LoginResult;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub check: String,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn check(name: impl Into<String>, status: Status, detail: impl Into<String>) -> Check {
    Check {
        check: name.into(),
        status,
        detail: detail.into(),
        fix: None,
    }
}

impl Check {
    fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }
}

pub const USAGE: &str = "\
Usage: docker-credential-slothbox doctor [HOST] [--json] [--ca-file PATH]

Checks the credentials file and its permissions, docker's config, the AWS credentials,
and for each registry (or HOST) that its secret can be read or its ECR token obtained,
then logs in to the registry's /v2/ endpoint with it. Never prints a secret.
Exit status 0 only when nothing failed. --ca-file adds a CA for the login check (docker's
/etc/docker/certs.d/HOST/*.crt is used as well).";

#[derive(Debug, Default)]
struct Args {
    host: Option<String>,
    json: bool,
    ca_files: Vec<PathBuf>,
    help: bool,
}

fn parse_args(args: &[String]) -> anyhow::Result<Args> {
    let mut parsed = Args::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--json" => parsed.json = true,
            "--ca-file" => parsed.ca_files.push(
                rest.next()
                    .context("--ca-file needs a path; see doctor --help")?
                    .into(),
            ),
            "-h" | "--help" => parsed.help = true,
            other if other.starts_with('-') => {
                bail!("doctor: unknown option {other:?}; see doctor --help")
            }
            other if parsed.host.is_none() => parsed.host = Some(other.to_string()),
            other => bail!("doctor: one HOST at most, got {other:?} too"),
        }
    }
    Ok(parsed)
}

/// Runs the checks and renders them; the exit is a failure when any check failed.
pub fn run(env: &Environment, args: &[String]) -> anyhow::Result<(String, bool)> {
    let args = parse_args(args)?;
    if args.help {
        return Ok((format!("{USAGE}\n"), true));
    }
    let checks = checks(env, &args);
    let ok = checks.iter().all(|c| c.status != Status::Fail);
    let text = if args.json {
        let mut text =
            serde_json::to_string_pretty(&serde_json::json!({"ok": ok, "checks": checks}))?;
        text.push('\n');
        text
    } else {
        table(&checks, std::io::stdout().is_terminal())
    };
    Ok((text, ok))
}

fn checks(env: &Environment, args: &Args) -> Vec<Check> {
    let mut checks = vec![helper_on_path()];
    let (config, config_check) = credentials_file(env);
    checks.push(config_check);
    let config = config.unwrap_or_default();

    let registries: Vec<(RegistryHost, Option<CredentialSource>)> = match &args.host {
        Some(host) => match RegistryHost::parse(host) {
            Ok(registry) => {
                let source = config
                    .find(&registry)
                    .map(|c| c.source.clone())
                    .or_else(|| EcrRegistry::from_host(&registry).map(CredentialSource::Ecr));
                vec![(registry, source)]
            }
            Err(e) => {
                checks.push(check(
                    format!("registry {host}"),
                    Status::Fail,
                    format!("the address {e}"),
                ));
                Vec::new()
            }
        },
        None => config
            .credentials
            .iter()
            .map(|c| (c.registry.clone(), Some(c.source.clone())))
            .collect(),
    };
    checks.push(docker_config(env, &registries));

    let deadline = Deadline::from_now(config.deadline);
    let aws_ok = match resolve_identity(deadline) {
        Ok(identity) => {
            checks.push(check(
                "AWS credentials",
                Status::Pass,
                format!(
                    "{} credentials from {}, access key {}, region {}",
                    if identity.access_key_id.starts_with("ASIA") {
                        "temporary"
                    } else {
                        "long-term"
                    },
                    credential_source(),
                    identity.access_key_id,
                    identity
                        .region
                        .as_deref()
                        .unwrap_or("(none: set it per credential or AWS_REGION)")
                ),
            ));
            true
        }
        Err(err) => {
            checks.push(check("AWS credentials", Status::Fail, format!("{err:#}")));
            false
        }
    };

    for (registry, source) in registries {
        let Some(source) = source else {
            checks.push(
                check(format!("registry {registry}"), Status::Fail, "not in the credentials file and not an ECR registry, so docker would pull anonymously")
                    .fix("add a credential for it (a private image without a credential shows up as \"not found\")"),
            );
            continue;
        };
        if !aws_ok {
            checks.push(check(
                format!("secret for {registry}"),
                Status::Warn,
                "skipped: no AWS credentials",
            ));
            continue;
        }
        let backend = AwsBackend::new(Deadline::from_now(config.deadline));
        let (what, fix_hint) = match &source {
            CredentialSource::Ssm { parameter, .. } => (
                format!("SSM parameter {parameter}"),
                "update the secret (docker login, or aws ssm put-parameter --overwrite) and check the username in the credentials file",
            ),
            CredentialSource::Ecr(_) => (
                "ECR token".to_string(),
                "check that the box's instance role is allowed to pull from the repository and that the registry host's account and region match it",
            ),
        };
        let fetched = match backend.fetch(&registry, &source) {
            Ok(fetched) => fetched,
            Err(err) => {
                checks.push(check(
                    format!("secret for {registry}"),
                    Status::Fail,
                    format!("{err:#}"),
                ));
                continue;
            }
        };
        checks.push(check(
            format!("secret for {registry}"),
            Status::Pass,
            format!(
                "{what} read, {} characters (not shown)",
                fetched.secret.expose().chars().count()
            ),
        ));
        if fetched.username == "<token>" {
            checks.push(check(
                format!("login to {registry}"),
                Status::Warn,
                "an identity token: the login check is skipped",
            ));
            continue;
        }
        let mut ca_files = args.ca_files.clone();
        ca_files.extend(login::registry_ca_files(&registry));
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
            .and_then(|rt| {
                rt.block_on(login::login(
                    &registry,
                    &fetched.username,
                    &fetched.secret,
                    &ca_files,
                    config.deadline,
                ))
            });
        let name = format!("login to {registry}");
        checks.push(match result {
            Ok(LoginResult::Accepted) => check(name, Status::Pass, format!("the registry accepted {} with this secret", fetched.username)),
            Ok(LoginResult::Anonymous) => check(name, Status::Warn, "the registry answers /v2/ without a login, so the secret was not exercised"),
            Ok(LoginResult::Refused { status }) => check(
                name,
                Status::Fail,
                format!("the registry refused {} with this secret (HTTP {status}): an expired or revoked token, a wrong username, or a registry host that doesn't match where the image lives", fetched.username),
            )
            .fix(fix_hint),
            Ok(LoginResult::Failed { status }) => check(
                name,
                Status::Fail,
                format!("the registry answered HTTP {status} to the login, which says nothing about the secret"),
            )
            .fix("check the registry host and the registry's health; retry later"),
            Err(err) => check(name, Status::Fail, format!("{err:#}"))
                .fix("check network access to the registry, and its CA (--ca-file or /etc/docker/certs.d/HOST/ca.crt)"),
        });
    }
    checks
}

/// Which link of aws-config's default chain answers, in the chain's own order.
fn credential_source() -> &'static str {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if set("AWS_ACCESS_KEY_ID") {
        "the environment"
    } else if set("AWS_PROFILE") {
        "the AWS profile"
    } else if set("AWS_WEB_IDENTITY_TOKEN_FILE") {
        "web identity"
    } else if set("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        || set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
    {
        "the container credentials endpoint"
    } else {
        "the instance role (IMDS) or the default profile"
    }
}

fn helper_on_path() -> Check {
    let name = crate::protocol::PROGRAM;
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    match found {
        Some(path) => check("helper on PATH", Status::Pass, path.display().to_string()),
        None => check(
            "helper on PATH",
            Status::Fail,
            format!("docker runs {name} from PATH and will not find it"),
        )
        .fix("install it with install.sh (into /usr/local/bin by default)"),
    }
}

fn credentials_file(env: &Environment) -> (Option<Config>, Check) {
    let name = "credentials file";
    let Some(path) = env.locate_config() else {
        return (
            None,
            check(
                name,
                Status::Warn,
                "none found; only ECR registries are served",
            )
            .fix(format!(
                "create {} or set SLOTHBOX_CONFIG",
                crate::config::SYSTEM_CONFIG
            )),
        );
    };
    let shown = path.display().to_string();
    let mode = match std::fs::metadata(&path) {
        Ok(meta) => meta.permissions().mode() & 0o777,
        Err(e) => return (None, check(name, Status::Fail, format!("{shown}: {e}"))),
    };
    if mode & 0o022 != 0 {
        return (
            None,
            check(name, Status::Fail, format!("{shown} is group- or world-writable (mode {mode:04o}): someone else could redirect your credentials"))
                .fix(format!("chmod go-w {shown}")),
        );
    }
    match env.load_config() {
        Ok(config) => {
            let detail = format!(
                "{shown} (mode {mode:04o}), {} registr{}",
                config.credentials.len(),
                if config.credentials.len() == 1 {
                    "y"
                } else {
                    "ies"
                }
            );
            (Some(config), check(name, Status::Pass, detail))
        }
        Err(err) => (None, check(name, Status::Fail, format!("{err:#}"))),
    }
}

fn docker_config(
    env: &Environment,
    registries: &[(RegistryHost, Option<CredentialSource>)],
) -> Check {
    let name = "docker config";
    let Some(path) =
        docker_config_path(None, env.docker_config_dir.as_deref(), env.home.as_deref())
    else {
        return check(name, Status::Warn, "no HOME or DOCKER_CONFIG");
    };
    let doc: serde_json::Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let store_is_ours = doc["credsStore"].as_str() == Some(HELPER_NAME);
    let missing: Vec<String> = registries
        .iter()
        .map(|(r, _)| r.docker_key().to_string())
        .filter(|key| !store_is_ours && doc["credHelpers"][key].as_str() != Some(HELPER_NAME))
        .collect();
    if missing.is_empty() {
        check(
            name,
            Status::Pass,
            format!("{} sends these registries to slothbox", path.display()),
        )
    } else {
        check(
            name,
            Status::Warn,
            format!(
                "{} does not send {} to slothbox",
                path.display(),
                missing.join(", ")
            ),
        )
        .fix("run docker-credential-slothbox configure")
    }
}

fn table(checks: &[Check], colour: bool) -> String {
    let paint = |status: Status| {
        let (text, code) = match status {
            Status::Pass => ("PASS", "32"),
            Status::Warn => ("WARN", "33"),
            Status::Fail => ("FAIL", "31"),
        };
        if colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    };
    let width = checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        out.push_str(&format!(
            "{}  {:width$}  {}\n",
            paint(c.status),
            c.check,
            crate::protocol::one_line(&c.detail)
        ));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("      {:width$}  fix: {fix}\n", ""));
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    out.push_str(&if failed == 0 {
        "all checks passed\n".to_string()
    } else {
        format!(
            "{failed} check{} failed\n",
            if failed == 1 { "" } else { "s" }
        )
    });
    out
}
