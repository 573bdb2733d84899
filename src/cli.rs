//! The verbs, wired to stdin, stdout and stderr passed in, so tests can drive them in memory.

use std::io::{Read, Write};
use std::process::ExitCode;

use crate::backend::{AwsBackend, CredentialBackend, Deadline};
use crate::cache::{Cache, CachingBackend};
use crate::config::{Config, CredentialSource, Environment};
use crate::error::HelperError;
use crate::host::{EcrRegistry, HostError, RegistryHost};
use crate::protocol::{self, Credential};

const HELP: &str = "\
docker-credential-slothbox: a Docker credential helper that serves registry secrets from
AWS SSM Parameter Store and Amazon ECR tokens from the instance role.

Usage: docker-credential-slothbox <get|store|erase|list|version>

  get       read a registry address on stdin, print its credential as JSON
  list      print every configured registry and its username
  version   print the version
  cache clear  forget every cached answer (SLOTHBOX_CACHE=off skips the cache for one run)
  configure    point docker's and the containers tools' configs at this helper (configure --help)
  doctor       check the whole chain down to a real registry login (doctor --help)
  store     read the JSON `docker login` sends on stdin:
            the secret goes to SSM, the username to the credentials file
  erase     read a registry address: delete its SSM parameter and its entry

Examples:
  echo ghcr.io | docker-credential-slothbox get
  SLOTHBOX_LOG=debug docker-credential-slothbox get <<< ghcr.io

Configuration: $SLOTHBOX_CONFIG, else ~/.config/slothbox/credentials.json,
else /etc/slothbox/credentials.json. Logging to stderr: SLOTHBOX_LOG=debug.
";

/// Runs one invocation. `args` excludes the program name.
pub fn run(
    args: &[String],
    env: &Environment,
    stdin: impl Read,
    mut stdout: impl Write,
    mut stderr: impl Write,
) -> ExitCode {
    if let [first, rest @ ..] = args {
        if first == "configure" {
            return report(crate::configure::run(env, rest), stdout, stderr);
        }
        if first == "doctor" {
            return match crate::doctor::run(env, rest) {
                Ok((text, ok)) => {
                    let _ = stdout.write_all(text.as_bytes());
                    if ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(err) => report(Err(err), stdout, stderr),
            };
        }
    }
    let action = match args {
        [action] => action.as_str(),
        [cache, clear] if cache == "cache" && clear == "clear" => "cache clear",
        _ => {
            let _ = protocol::write_error(&mut stdout, protocol::USAGE);
            return ExitCode::FAILURE;
        }
    };
    let result = match action {
        "get" => get(env, stdin, &mut stdout, &mut stderr, |config| {
            aws(config, env)
        }),
        "cache clear" => clear_cache(env, &mut stdout),
        "store" => crate::store::store(env, stdin, |config| aws(config, env)),
        "erase" => crate::store::erase(env, stdin, |config| aws(config, env)),
        "list" => list(env, &mut stdout),
        "version" | "--version" | "-v" => {
            writeln!(stdout, "{}", protocol::version_line()).map_err(|e| io_failure(e.into()))
        }
        "--help" | "-h" | "help" => stdout
            .write_all(HELP.as_bytes())
            .map_err(|e| io_failure(e.into())),
        other => Err(HelperError::Failed(anyhow::anyhow!(
            "unknown action {:?}; {}",
            protocol::one_line(other),
            protocol::USAGE
        ))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Clients match the protocol's own texts exactly; everything else says who spoke.
            let line = match &err {
                HelperError::Failed(_) => format!("slothbox: {err}"),
                _ => err.to_string(),
            };
            let _ = protocol::write_error(&mut stdout, &line);
            // docker ignores a helper's stdout during a pull and shows only our stderr, so the
            // person gets the same line there; "not found" is routine and stays quiet.
            if !err.is_not_found() {
                let _ = writeln!(stderr, "{}", protocol::one_line(&line));
            }
            ExitCode::FAILURE
        }
    }
}

/// Prints a command's report on stdout and its warnings on stderr; for commands that are
/// not part of the helper protocol.
fn report(
    result: anyhow::Result<(Vec<String>, Vec<String>)>,
    mut stdout: impl Write,
    mut stderr: impl Write,
) -> ExitCode {
    match result {
        Ok((lines, warnings)) => {
            for line in lines {
                let _ = writeln!(stdout, "{line}");
            }
            for warning in warnings {
                let _ = writeln!(stderr, "{warning}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            let _ = writeln!(
                stderr,
                "slothbox: {}",
                protocol::one_line(&format!("{err:#}"))
            );
            ExitCode::FAILURE
        }
    }
}

/// The AWS backend behind the cache. Cheap: nothing talks to AWS until a fetch misses.
fn aws(config: &Config, env: &Environment) -> CachingBackend<AwsBackend> {
    let deadline = Deadline::from_now(config.deadline);
    CachingBackend::new(
        AwsBackend::new(deadline),
        Cache::open(&config.cache, env),
        env.aws_identity.clone(),
        config.cache.ssm_ttl,
        deadline.at,
    )
}

/// `cache clear`: drop every cached answer of this user.
fn clear_cache(env: &Environment, mut stdout: impl Write) -> Result<(), HelperError> {
    let config = env.load_config()?;
    let removed = Cache::open(&config.cache, env)
        .clear()
        .map_err(|e| anyhow::anyhow!("cannot clear the cache: {e}"))?;
    let line = format!("removed {removed} cached entries");
    writeln!(stdout, "{line}").map_err(|e| io_failure(e.into()))
}

fn io_failure(err: anyhow::Error) -> HelperError {
    HelperError::Failed(err.context("cannot write the answer"))
}

/// `get`: the configured credential for the host, an ECR token for an ECR host, else
/// not-found. The fetcher is built only after we know the host is ours.
pub fn get<B: CredentialBackend>(
    env: &Environment,
    stdin: impl Read,
    stdout: impl Write,
    mut stderr: impl Write,
    make_backend: impl FnOnce(&Config) -> B,
) -> Result<(), HelperError> {
    let server_url = protocol::read_server_url(stdin)?;
    let registry = match RegistryHost::parse(&server_url) {
        Ok(registry) => registry,
        Err(HostError::UserInfo) => {
            return Err(HelperError::Failed(anyhow::anyhow!(
                "the server URL {}",
                HostError::UserInfo
            )))
        }
        // Not a registry address (Docker Hub's token keys among them): nothing of ours.
        Err(_) => return Err(HelperError::NotFound),
    };
    let config = env.load_config()?;
    let source = match config.find(&registry) {
        Some(credential) => credential.source.clone(),
        None => match EcrRegistry::from_host(&registry) {
            Some(ecr) => CredentialSource::Ecr(ecr),
            None => {
                tracing::debug!(%registry, "not a registry we serve");
                return Err(HelperError::NotFound);
            }
        },
    };
    let fetched = make_backend(&config).fetch(&registry, &source)?;
    if let Some(warning) = &fetched.warning {
        let _ = writeln!(stderr, "{}", protocol::one_line(warning));
    }
    let credential = Credential {
        server_url,
        username: fetched.username,
        secret: fetched.secret,
    };
    protocol::write_credential(stdout, &credential).map_err(|e| io_failure(e.into()))
}

/// `list`: from the file alone, no network.
fn list(env: &Environment, stdout: impl Write) -> Result<(), HelperError> {
    let config = env.load_config()?;
    protocol::write_list(stdout, &config.usernames()).map_err(|e| io_failure(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Fetched;
    use crate::secret::Secret;
    use std::cell::Cell;
    use std::path::PathBuf;

    struct FakeFetcher<'a> {
        calls: &'a Cell<usize>,
    }

    impl CredentialBackend for FakeFetcher<'_> {
        fn put_secret(
            &self,
            _: &RegistryHost,
            _: &crate::backend::SsmLocation,
            _: &Secret<String>,
            _: &crate::backend::PutOptions,
        ) -> anyhow::Result<()> {
            unreachable!("get never stores")
        }
        fn delete_secret(
            &self,
            _: &RegistryHost,
            _: &crate::backend::SsmLocation,
        ) -> anyhow::Result<()> {
            unreachable!("get never erases")
        }
        fn fetch(
            &self,
            _registry: &RegistryHost,
            source: &CredentialSource,
        ) -> anyhow::Result<Fetched> {
            self.calls.set(self.calls.get() + 1);
            match source {
                CredentialSource::Ssm { username, .. } => Ok(Fetched {
                    username: username.clone(),
                    secret: Secret::new("s3cret".into()),
                    expires_at: None,
                    warning: None,
                }),
                CredentialSource::Ecr(_) => Err(anyhow::anyhow!("AccessDeniedException")),
            }
        }
    }

    fn env_with(config: &str) -> (tempfile::TempDir, Environment) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        std::fs::write(&path, config).unwrap();
        let env = Environment {
            config_override: Some(path),
            system_config: PathBuf::from("/nonexistent"),
            ..Environment::default()
        };
        (dir, env)
    }

    const CONFIG: &str = r#"{"credentials":[{"id":"rc_1","type":"token","registry":"ghcr.io","username":"acme-bot"}]}"#;

    fn run_get(env: &Environment, input: &str) -> (Result<(), HelperError>, String, usize) {
        let calls = Cell::new(0);
        let mut out = Vec::new();
        let result = get(env, input.as_bytes(), &mut out, std::io::sink(), |_| {
            FakeFetcher { calls: &calls }
        });
        (result, String::from_utf8(out).unwrap(), calls.get())
    }

    #[test]
    fn get_answers_configured_registry() {
        let (_dir, env) = env_with(CONFIG);
        let (result, out, calls) = run_get(&env, "https://GHCR.io/v2/");
        assert!(result.is_ok());
        assert_eq!(
            out,
            "{\"ServerURL\":\"https://GHCR.io/v2/\",\"Username\":\"acme-bot\",\"Secret\":\"s3cret\"}\n"
        );
        assert_eq!(calls, 1);
    }

    #[test]
    fn unknown_hosts_are_not_found_without_a_fetch() {
        let (_dir, env) = env_with(CONFIG);
        for host in [
            "ghcr.io.evil.example",
            "quay.io",
            "https://index.docker.io/v1/refresh-token",
            "ghcr.io/acme",
        ] {
            let (result, out, calls) = run_get(&env, host);
            assert!(result.unwrap_err().is_not_found(), "{host}");
            assert_eq!(out, "");
            assert_eq!(calls, 0, "{host}");
        }
    }

    #[test]
    fn ecr_hosts_are_served_without_config_and_failures_stay_failures() {
        let (_dir, env) = env_with(r#"{"credentials":[]}"#);
        let (result, _, calls) = run_get(&env, "123456789012.dkr.ecr.eu-west-1.amazonaws.com");
        let err = result.unwrap_err();
        assert!(!err.is_not_found());
        assert_eq!(calls, 1);
    }

    #[test]
    fn broken_config_is_a_failure_not_a_miss() {
        let (_dir, env) = env_with("{\"credentials\": [");
        let (result, _, calls) = run_get(&env, "quay.io");
        let err = result.unwrap_err();
        assert!(!err.is_not_found());
        assert!(err.to_string().contains("credentials.json"), "{err}");
        assert_eq!(calls, 0);
    }

    fn run_cli(args: &[&str], env: &Environment, stdin: &str) -> (ExitCode, String, String) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(&args, env, stdin.as_bytes(), &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn list_version_and_usage() {
        let (_dir, env) = env_with(CONFIG);
        let (code, out, _) = run_cli(&["list"], &env, "unused");
        assert_eq!(code, ExitCode::SUCCESS);
        assert_eq!(out, "{\"ghcr.io\":\"acme-bot\"}\n");
        let (code, out, _) = run_cli(&["version"], &env, "");
        assert_eq!(code, ExitCode::SUCCESS);
        assert_eq!(out, format!("{}\n", protocol::version_line()));
        let (code, out, _) = run_cli(&[], &env, "");
        assert_eq!(code, ExitCode::FAILURE);
        assert_eq!(out, format!("{}\n", protocol::USAGE));
        let (code, out, err) = run_cli(&["frobnicate"], &env, "");
        assert_eq!(code, ExitCode::FAILURE);
        assert!(out.contains("unknown action \"frobnicate\""));
        assert_eq!(out, err);
    }

    #[test]
    fn empty_get_input_gets_the_protocol_text() {
        let (_dir, env) = env_with(CONFIG);
        let (code, out, _) = run_cli(&["get"], &env, "\n");
        assert_eq!(code, ExitCode::FAILURE);
        assert_eq!(out, "no credentials server URL\n");
    }

    #[test]
    fn userinfo_is_refused_without_echoing_it() {
        let (_dir, env) = env_with(CONFIG);
        let (code, out, err) = run_cli(&["get"], &env, "https://bot:hunter2@ghcr.io");
        assert_eq!(code, ExitCode::FAILURE);
        assert!(out.contains("user information"), "{out}");
        assert!(!out.contains("hunter2") && !err.contains("hunter2"));
    }
}
