//! `store` and `erase`: what `docker login` and `docker logout` do through us. The secret
//! goes to SSM, never to a file; our credentials file records only the registry, the
//! username and where the secret is.

use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, Context};
use serde_json::{json, Value};

use crate::atomic_file;
use crate::backend::{CredentialBackend, PutOptions, SsmLocation};
use crate::config::{Config, CredentialSource, Environment, SsmParameter};
use crate::error::HelperError;
use crate::host::{EcrRegistry, RegistryHost};
use crate::protocol;

/// `store`: put the secret in SSM, then record the registry in the credentials file.
pub fn store<B: CredentialBackend>(
    env: &Environment,
    stdin: impl Read,
    make_backend: impl FnOnce(&Config) -> B,
) -> Result<(), HelperError> {
    let request = protocol::read_store_request(stdin)?;
    let registry = store_target(&request.server_url)?;
    let path = env.edit_target()?;
    // ECR tokens come from the instance role: nothing to keep, nothing to lock or write,
    // even where the credentials file is not ours to write.
    let (_, current) = load_for_edit(&path, env)?;
    if is_ecr(&current, &registry) {
        return Ok(());
    }
    // Locked before any AWS call, so an unwritable file fails before SSM changes; read
    // again under the lock, since another store may have just written it.
    let _lock = atomic_file::lock_for_edit(&path, 0o755)?;
    let (mut doc, config) = load_for_edit(&path, env)?;
    let existing = config.find(&registry).map(|c| &c.source);
    let (location, is_new) = match existing.and_then(SsmLocation::of) {
        Some(location) => (location, false),
        None => {
            let id = new_id(&config, &registry);
            (
                SsmLocation {
                    parameter: SsmParameter::under(&config.parameter_prefix, &id),
                    region: None,
                },
                true,
            )
        }
    };
    let options = PutOptions {
        kms_key_id: config.kms_key_id.clone(),
    };
    make_backend(&config).put_secret(&registry, &location, &request.secret, &options)?;
    let recorded = (|| {
        let changed = if is_new {
            add_entry(&mut doc, &registry, &request.username, &location.parameter)?
        } else {
            set_username(&mut doc, &config, &registry, &request.username)?
        };
        if changed {
            write_doc(&path, &doc)?;
        }
        Ok::<_, anyhow::Error>(())
    })();
    recorded.with_context(|| {
        format!(
            "the secret for {registry} is in SSM parameter {}, but the credentials file was not updated",
            location.parameter
        )
    })?;
    Ok(())
}

fn is_ecr(config: &Config, registry: &RegistryHost) -> bool {
    match config.find(registry) {
        Some(credential) => matches!(credential.source, CredentialSource::Ecr(_)),
        None => EcrRegistry::from_host(registry).is_some(),
    }
}

/// The registry a `store` is for. Docker Hub's OAuth keys get their own explanation: a
/// browser sign-in stores tokens this helper does not keep.
fn store_target(server_url: &str) -> anyhow::Result<RegistryHost> {
    RegistryHost::parse(server_url).map_err(|e| {
        let lower = server_url.to_ascii_lowercase();
        if lower.contains("index.docker.io/v1/") && lower.ends_with("-token") {
            anyhow!(
                "cannot store Docker Hub's sign-in tokens ({server_url}); log in with a personal access token instead: docker login -u USER --password-stdin"
            )
        } else {
            anyhow!("cannot store: the server URL {e}")
        }
    })
}

/// `erase`: delete the parameter, then the entry. A registry we do not know is quietly
/// fine: docker's logout erases twice, and skopeo treats "not found" here as a failure.
pub fn erase<B: CredentialBackend>(
    env: &Environment,
    stdin: impl Read,
    make_backend: impl FnOnce(&Config) -> B,
) -> Result<(), HelperError> {
    let server_url = protocol::read_server_url(stdin)?;
    let Ok(registry) = RegistryHost::parse(&server_url) else {
        return Ok(());
    };
    let path = env.edit_target()?;
    // Nothing of ours (an unknown registry, ECR): done, without locking or writing.
    let (_, current) = load_for_edit(&path, env)?;
    if current
        .find(&registry)
        .and_then(|c| SsmLocation::of(&c.source))
        .is_none()
    {
        return Ok(());
    }
    let _lock = atomic_file::lock_for_edit(&path, 0o755)?;
    let (mut doc, config) = load_for_edit(&path, env)?;
    let Some(location) = config
        .find(&registry)
        .and_then(|c| SsmLocation::of(&c.source))
    else {
        return Ok(());
    };
    make_backend(&config).delete_secret(&registry, &location)?;
    let removed = (|| {
        if remove_entry(&mut doc, &config, &registry)? {
            write_doc(&path, &doc)?;
        }
        Ok::<_, anyhow::Error>(())
    })();
    removed.with_context(|| {
        format!(
            "SSM parameter {} for {registry} was deleted, but its entry is still in the credentials file",
            location.parameter
        )
    })?;
    Ok(())
}

fn load_for_edit(path: &Path, env: &Environment) -> anyhow::Result<(Value, Config)> {
    // Only a file that is certainly absent counts as empty; one we cannot even look at is
    // an error, never a silent "no credentials".
    if matches!(path.try_exists(), Ok(false)) {
        return Ok((
            json!({ "credentials": [] }),
            env.with_overrides(Config::default())?,
        ));
    }
    let text = crate::config::read_config_text(path)?;
    // Validated first: a file we cannot read is never rewritten.
    let config = env.with_overrides(Config::parse(&text, path)?)?;
    let doc: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    Ok((doc, config))
}

fn write_doc(path: &Path, doc: &Value) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(doc)?;
    text.push('\n');
    atomic_file::replace(path, text.as_bytes(), 0o600)
}

/// An id and parameter leaf from the host: SSM names allow letters, digits and `_.-`.
fn new_id(config: &Config, registry: &RegistryHost) -> String {
    let base: String = registry
        .as_str()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Neither an id nor a parameter another entry already uses: a new login must never
    // overwrite another registry's secret.
    let taken = |id: &str| {
        let parameter = SsmParameter::under(&config.parameter_prefix, id);
        config.credentials.iter().any(|c| {
            c.id == id
                || matches!(&c.source, CredentialSource::Ssm { parameter: p, .. } if p.name == parameter.name)
        })
    };
    let mut id = base.clone();
    let mut n = 2;
    while taken(&id) {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

/// The entries array of a document `Config::parse` accepted.
fn entries(doc: &mut Value) -> anyhow::Result<&mut Vec<Value>> {
    doc.as_object_mut()
        .ok_or_else(|| anyhow!("the credentials file is not a JSON object"))?
        .entry("credentials")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or_else(|| anyhow!("\"credentials\" is not a list"))
}

/// The entry of `registry` as an object, found by the position `Config` saw it at.
fn entry_of<'a>(
    doc: &'a mut Value,
    config: &Config,
    registry: &RegistryHost,
) -> anyhow::Result<Option<(usize, &'a mut Vec<Value>)>> {
    let Some(index) = config
        .credentials
        .iter()
        .position(|c| &c.registry == registry)
    else {
        return Ok(None);
    };
    let list = entries(doc)?;
    if !list.get(index).is_some_and(Value::is_object) {
        anyhow::bail!("credentials entry {index} is not a JSON object; edit the file by hand");
    }
    Ok(Some((index, list)))
}

fn add_entry(
    doc: &mut Value,
    registry: &RegistryHost,
    username: &str,
    parameter: &SsmParameter,
) -> anyhow::Result<bool> {
    let id = parameter.name.rsplit('/').next().unwrap_or_default();
    entries(doc)?.push(json!({
        "id": id,
        "type": "token",
        "label": format!("docker login {registry}"),
        "registry": registry.as_str(),
        "username": username,
        "parameter": parameter.name,
    }));
    Ok(true)
}

fn set_username(
    doc: &mut Value,
    config: &Config,
    registry: &RegistryHost,
    username: &str,
) -> anyhow::Result<bool> {
    let Some((index, list)) = entry_of(doc, config, registry)? else {
        return Ok(false);
    };
    let Some(entry) = list[index].as_object_mut() else {
        return Ok(false);
    };
    if entry.get("username").and_then(Value::as_str) == Some(username) {
        return Ok(false);
    }
    entry.insert("username".into(), Value::from(username));
    Ok(true)
}

fn remove_entry(doc: &mut Value, config: &Config, registry: &RegistryHost) -> anyhow::Result<bool> {
    let Some((index, list)) = entry_of(doc, config, registry)? else {
        return Ok(false);
    };
    list.remove(index);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Fetched;
    use crate::secret::Secret;
    use std::cell::RefCell;
    use std::path::PathBuf;

    #[derive(Default)]
    struct Recorder {
        calls: RefCell<Vec<String>>,
    }

    impl CredentialBackend for &Recorder {
        fn fetch(&self, _: &RegistryHost, _: &CredentialSource) -> anyhow::Result<Fetched> {
            unreachable!("store and erase never fetch")
        }
        fn put_secret(
            &self,
            registry: &RegistryHost,
            location: &SsmLocation,
            secret: &Secret<String>,
            _: &PutOptions,
        ) -> anyhow::Result<()> {
            self.calls.borrow_mut().push(format!(
                "put {registry} {} {}",
                location.parameter,
                secret.expose()
            ));
            Ok(())
        }
        fn delete_secret(
            &self,
            registry: &RegistryHost,
            location: &SsmLocation,
        ) -> anyhow::Result<()> {
            self.calls
                .borrow_mut()
                .push(format!("delete {registry} {}", location.parameter));
            Ok(())
        }
    }

    fn env(dir: &Path) -> Environment {
        Environment {
            config_override: Some(dir.join("credentials.json")),
            system_config: PathBuf::from("/nonexistent"),
            ..Environment::default()
        }
    }

    const EXISTING: &str = r#"{
  "deadline_seconds": 5,
  "credentials": [
    {"id": "rc_1", "type": "token", "registry": "ghcr.io", "username": "old", "label": "kept",
     "parameter": "/custom/ghcr"}
  ]
}"#;

    #[test]
    fn store_keeps_a_configured_parameter_and_updates_the_username() {
        let dir = tempfile::tempdir().unwrap();
        let env = env(dir.path());
        std::fs::write(dir.path().join("credentials.json"), EXISTING).unwrap();
        let recorder = Recorder::default();
        let input = br#"{"ServerURL":"https://ghcr.io","Username":"new","Secret":"tok"}"#;
        store(&env, &input[..], |_| &recorder).unwrap();
        assert_eq!(*recorder.calls.borrow(), ["put ghcr.io /custom/ghcr tok"]);
        let text = std::fs::read_to_string(dir.path().join("credentials.json")).unwrap();
        assert!(!text.contains("tok\""), "{text}");
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["credentials"][0]["username"], "new");
        assert_eq!(doc["credentials"][0]["label"], "kept");
        assert_eq!(doc["deadline_seconds"], 5);
        // Key order survives the edit.
        assert!(text.find("deadline_seconds").unwrap() < text.find("credentials").unwrap());
    }

    #[test]
    fn store_adds_a_new_registry_under_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let env = env(dir.path());
        let recorder = Recorder::default();
        let input =
            br#"{"ServerURL":"127.0.0.1:5000","Username":"\u003ctoken\u003e","Secret":"idtok"}"#;
        store(&env, &input[..], |_| &recorder).unwrap();
        assert_eq!(
            *recorder.calls.borrow(),
            ["put 127.0.0.1:5000 /slothbox/registry-credentials/127.0.0.1_5000 idtok"]
        );
        let config = Config::load(&dir.path().join("credentials.json")).unwrap();
        let entry = config
            .find(&RegistryHost::parse("127.0.0.1:5000").unwrap())
            .unwrap();
        assert_eq!(
            entry.source,
            CredentialSource::Ssm {
                username: "<token>".into(),
                parameter: SsmParameter::parse("/slothbox/registry-credentials/127.0.0.1_5000")
                    .unwrap(),
                region: None,
            }
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("credentials.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn store_for_ecr_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let env = env(dir.path());
        let recorder = Recorder::default();
        let input = br#"{"ServerURL":"123456789012.dkr.ecr.eu-west-1.amazonaws.com","Username":"AWS","Secret":"x"}"#;
        store(&env, &input[..], |_| &recorder).unwrap();
        assert!(recorder.calls.borrow().is_empty());
        assert!(!dir.path().join("credentials.json").exists());
    }

    #[test]
    fn a_new_login_never_takes_another_entrys_parameter() {
        let dir = tempfile::tempdir().unwrap();
        let env = env(dir.path());
        std::fs::write(
            dir.path().join("credentials.json"),
            r#"{"credentials":[{"id":"rc_9","type":"token","registry":"quay.io","username":"q",
                "parameter":"/slothbox/registry-credentials/ghcr.io"}]}"#,
        )
        .unwrap();
        let recorder = Recorder::default();
        let input = br#"{"ServerURL":"ghcr.io","Username":"u","Secret":"s"}"#;
        store(&env, &input[..], |_| &recorder).unwrap();
        assert_eq!(
            *recorder.calls.borrow(),
            ["put ghcr.io /slothbox/registry-credentials/ghcr.io-2 s"]
        );
    }

    #[test]
    fn docker_hub_sign_in_tokens_are_refused_with_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::default();
        let input = br#"{"ServerURL":"https://index.docker.io/v1/refresh-token","Username":"u","Secret":"s"}"#;
        let err = store(&env(dir.path()), &input[..], |_| &recorder).unwrap_err();
        assert!(err.to_string().contains("personal access token"), "{err}");
        assert!(recorder.calls.borrow().is_empty());
    }

    #[test]
    fn ecr_and_unknown_registries_need_no_writable_file() {
        let dir = tempfile::tempdir().unwrap();
        // A file whose directory we may not write into (a file stands where the lock goes).
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("credentials.json"), EXISTING).unwrap();
        std::fs::create_dir(blocked.join(".credentials.json.lock")).unwrap();
        let env = Environment {
            config_override: Some(blocked.join("credentials.json")),
            system_config: PathBuf::from("/nonexistent"),
            ..Environment::default()
        };
        let recorder = Recorder::default();
        let ecr = br#"{"ServerURL":"123456789012.dkr.ecr.eu-west-1.amazonaws.com","Username":"AWS","Secret":"x"}"#;
        store(&env, &ecr[..], |_| &recorder).unwrap();
        erase(&env, &b"quay.io"[..], |_| &recorder).unwrap();
        erase(
            &env,
            &b"123456789012.dkr.ecr.eu-west-1.amazonaws.com"[..],
            |_| &recorder,
        )
        .unwrap();
        let err = erase(&env, &b"ghcr.io"[..], |_| &recorder).unwrap_err();
        assert!(err.to_string().contains("credentials.json"), "{err}");
        assert!(recorder.calls.borrow().is_empty());
    }

    #[test]
    fn store_refuses_a_file_it_cannot_parse() {
        let dir = tempfile::tempdir().unwrap();
        let env = env(dir.path());
        std::fs::write(dir.path().join("credentials.json"), "{ not json").unwrap();
        let recorder = Recorder::default();
        let input = br#"{"ServerURL":"ghcr.io","Username":"u","Secret":"x"}"#;
        let err = store(&env, &input[..], |_| &recorder).unwrap_err();
        assert!(err.to_string().contains("credentials.json"), "{err}");
        assert!(recorder.calls.borrow().is_empty());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("credentials.json")).unwrap(),
            "{ not json"
        );
    }

    #[test]
    fn erase_deletes_then_removes_and_unknown_is_quiet() {
        let dir = tempfile::tempdir().unwrap();
        let env = env(dir.path());
        std::fs::write(dir.path().join("credentials.json"), EXISTING).unwrap();
        let recorder = Recorder::default();
        erase(&env, &b"quay.io"[..], |_| &recorder).unwrap();
        erase(
            &env,
            &b"https://index.docker.io/v1/refresh-token"[..],
            |_| &recorder,
        )
        .unwrap();
        assert!(recorder.calls.borrow().is_empty());
        erase(&env, &b"https://ghcr.io"[..], |_| &recorder).unwrap();
        assert_eq!(*recorder.calls.borrow(), ["delete ghcr.io /custom/ghcr"]);
        let config = Config::load(&dir.path().join("credentials.json")).unwrap();
        assert!(config.credentials.is_empty());
        assert_eq!(config.deadline, std::time::Duration::from_secs(5));
        erase(&env, &b"ghcr.io"[..], |_| &recorder).unwrap();
        assert_eq!(recorder.calls.borrow().len(), 1);
    }
}
