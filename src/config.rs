//! The credentials file: which registries we serve and where each one's secret lives.
//!
//! It mirrors Slothbox's registry-credential objects (id, type, label, registry, username)
//! plus the SSM parameter that holds the secret. This is also the one place that reads
//! environment variables and picks paths, so everything else takes plain values.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::host::{EcrRegistry, RegistryHost};

pub const SYSTEM_CONFIG: &str = "/etc/slothbox/credentials.json";
pub const DEFAULT_PARAMETER_PREFIX: &str = "/slothbox/registry-credentials";
const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// Larger than any real credentials file; a bigger one is a mistake, not a config.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// What the process environment says about where things are and how long to wait.
#[derive(Clone, Debug, Default)]
pub struct Environment {
    /// `$SLOTHBOX_CONFIG`: an explicit credentials file, which must then exist.
    pub config_override: Option<PathBuf>,
    /// The per-user credentials file (`~/.config/slothbox/credentials.json` on Linux).
    pub user_config: Option<PathBuf>,
    pub system_config: PathBuf,
    /// `$SLOTHBOX_DEADLINE_SECONDS`: overrides the file's `deadline_seconds`.
    pub deadline_override: Option<String>,
    /// `$SLOTHBOX_CACHE`: `off`, `auto`, `keyring` or `runtime-dir`, for this run only.
    pub cache_override: Option<String>,
    /// `$XDG_RUNTIME_DIR`: a per-user, memory-backed directory on most Linux desktops and
    /// servers with logind.
    pub runtime_dir: Option<PathBuf>,
    /// Everything in the environment that decides which AWS identity and endpoints answer
    /// us, so a cached answer is never served to a different identity. No secret is in it.
    pub aws_identity: String,
    /// `$DOCKER_CONFIG`: docker's config directory when not `~/.docker`.
    pub docker_config_dir: Option<PathBuf>,
    pub home: Option<PathBuf>,
}

/// The variables that pick the AWS principal, region or endpoint. Secret keys are
/// deliberately absent: the access key id already names the principal.
const AWS_IDENTITY_VARIABLES: &[&str] = &[
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_SSM",
    "AWS_ENDPOINT_URL_ECR",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_EC2_METADATA_DISABLED",
];

impl Environment {
    pub fn from_process() -> Environment {
        let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        Environment {
            config_override: non_empty("SLOTHBOX_CONFIG").map(PathBuf::from),
            user_config: directories::ProjectDirs::from("dev", "slothbox", "slothbox")
                .map(|dirs| dirs.config_dir().join("credentials.json")),
            system_config: PathBuf::from(SYSTEM_CONFIG),
            deadline_override: non_empty("SLOTHBOX_DEADLINE_SECONDS")
                .map(|v| v.to_string_lossy().into_owned()),
            cache_override: non_empty("SLOTHBOX_CACHE").map(|v| v.to_string_lossy().into_owned()),
            runtime_dir: non_empty("XDG_RUNTIME_DIR").map(PathBuf::from),
            docker_config_dir: non_empty("DOCKER_CONFIG").map(PathBuf::from),
            home: directories::BaseDirs::new().map(|dirs| dirs.home_dir().to_path_buf()),
            aws_identity: AWS_IDENTITY_VARIABLES
                .iter()
                .filter_map(|name| {
                    non_empty(name).map(|v| format!("{name}={}", v.to_string_lossy()))
                })
                .collect::<Vec<_>>()
                .join(";"),
        }
    }

    /// `$SLOTHBOX_CONFIG`, else the user's file, else the system file. `None` when no file
    /// exists: then we serve ECR registries only.
    pub fn locate_config(&self) -> Option<PathBuf> {
        if let Some(path) = &self.config_override {
            return Some(path.clone());
        }
        // A file we cannot even look at (permissions) counts as present, so that loading it
        // fails loudly instead of every registry silently becoming "not found".
        self.user_config
            .iter()
            .chain(std::iter::once(&self.system_config))
            .find(|path| !matches!(path.try_exists(), Ok(false)))
            .cloned()
    }

    /// The file `store` and `erase` edit: the one in effect, else where the user's goes.
    pub fn edit_target(&self) -> anyhow::Result<PathBuf> {
        self.locate_config()
            .or_else(|| self.user_config.clone())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no place for a credentials file: HOME is not set; set SLOTHBOX_CONFIG"
                )
            })
    }

    /// Loads the located file, or an empty configuration when there is none.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        let config = match self.locate_config() {
            Some(path) => Config::load(&path)?,
            None => Config::default(),
        };
        self.with_overrides(config)
    }

    /// Applies what the environment overrides in a loaded file.
    pub fn with_overrides(&self, mut config: Config) -> anyhow::Result<Config> {
        if let Some(seconds) = &self.deadline_override {
            config.deadline = parse_deadline(seconds).with_context(|| {
                format!("SLOTHBOX_DEADLINE_SECONDS={seconds:?} is not a number of seconds between 0.1 and 300")
            })?;
        }
        if let Some(mode) = &self.cache_override {
            config.cache.store = CacheStoreChoice::parse(mode).ok_or_else(|| {
                anyhow::anyhow!("SLOTHBOX_CACHE={mode:?} must be off, auto, keyring or runtime-dir")
            })?;
        }
        Ok(config)
    }
}

fn parse_deadline(seconds: &str) -> anyhow::Result<Duration> {
    let value: f64 = seconds.trim().parse()?;
    if !(0.1..=300.0).contains(&value) {
        bail!("out of range");
    }
    Ok(Duration::from_secs_f64(value))
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Where it was read from, for messages; `None` when there was no file.
    pub path: Option<PathBuf>,
    pub credentials: Vec<RegistryCredential>,
    /// How long one `get` may take in all, retries and credential lookups included.
    pub deadline: Duration,
    /// Where `store` puts the secret of a registry the file does not name yet.
    pub parameter_prefix: String,
    /// The KMS key `store` encrypts new secrets with; SSM's default key when `None`.
    pub kms_key_id: Option<String>,
    pub cache: CacheSettings,
}

/// Where answers are cached, and for how long SSM secrets stay there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheSettings {
    pub store: CacheStoreChoice,
    /// How long an SSM secret is served from the cache; zero turns SSM caching off. Short,
    /// so a rotated secret takes effect on a pull soon after even without `store`.
    pub ssm_ttl: Duration,
    /// An explicit directory the user chose, persistent or not. Never picked by default.
    pub directory: Option<PathBuf>,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            store: CacheStoreChoice::Auto,
            ssm_ttl: Duration::from_secs(60),
            directory: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStoreChoice {
    /// The kernel keyring, else the runtime directory, else nothing.
    Auto,
    Keyring,
    RuntimeDir,
    Off,
}

impl CacheStoreChoice {
    pub fn parse(text: &str) -> Option<CacheStoreChoice> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" | "on" => Some(CacheStoreChoice::Auto),
            "keyring" => Some(CacheStoreChoice::Keyring),
            "runtime-dir" => Some(CacheStoreChoice::RuntimeDir),
            "off" | "0" | "false" | "none" => Some(CacheStoreChoice::Off),
            _ => None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: None,
            credentials: Vec::new(),
            deadline: DEFAULT_DEADLINE,
            parameter_prefix: DEFAULT_PARAMETER_PREFIX.to_string(),
            kms_key_id: None,
            cache: CacheSettings::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryCredential {
    pub id: String,
    pub label: Option<String>,
    pub registry: RegistryHost,
    pub source: CredentialSource,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// A username kept here and a secret kept in SSM.
    Ssm {
        username: String,
        parameter: SsmParameter,
        region: Option<String>,
    },
    /// Nothing kept: the instance role asks ECR for a token.
    Ecr(EcrRegistry),
}

/// An SSM parameter, by name or by ARN (then its region and account win).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsmParameter {
    /// Passed to GetParameter as is: a name, or the full ARN of a shared parameter.
    pub name: String,
    pub arn_region: Option<String>,
}

impl SsmParameter {
    pub fn parse(text: &str) -> Result<SsmParameter, String> {
        if text.is_empty() || text.len() > 2048 || text.chars().any(char::is_whitespace) {
            return Err("must be a parameter name or ARN without spaces".into());
        }
        if let Some(rest) = text.strip_prefix("arn:") {
            // arn:PARTITION:ssm:REGION:ACCOUNT:parameter/NAME
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            let well_formed = parts.len() == 5
                && parts[1] == "ssm"
                && !parts[2].is_empty()
                && parts[3].len() == 12
                && parts[4].starts_with("parameter/");
            if !well_formed {
                return Err("is an ARN but not arn:aws:ssm:REGION:ACCOUNT:parameter/NAME".into());
            }
            return Ok(SsmParameter {
                name: text.to_string(),
                arn_region: Some(parts[2].to_string()),
            });
        }
        Ok(SsmParameter {
            name: text.to_string(),
            arn_region: None,
        })
    }

    /// Where a credential's secret is when the file names no parameter.
    pub fn default_for(id: &str) -> SsmParameter {
        SsmParameter::under(DEFAULT_PARAMETER_PREFIX, id)
    }

    pub fn under(prefix: &str, leaf: &str) -> SsmParameter {
        SsmParameter {
            name: format!("{prefix}/{leaf}"),
            arn_region: None,
        }
    }
}

impl fmt::Display for SsmParameter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    credentials: Vec<CredentialEntry>,
    deadline_seconds: Option<f64>,
    parameter_prefix: Option<String>,
    kms_key_id: Option<String>,
    cache: Option<CacheFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheFile {
    store: Option<String>,
    ssm_seconds: Option<u64>,
    directory: Option<PathBuf>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum CredentialType {
    Token,
    Ecr,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialEntry {
    id: String,
    #[serde(rename = "type")]
    kind: CredentialType,
    label: Option<String>,
    registry: String,
    username: Option<String>,
    parameter: Option<String>,
    region: Option<String>,
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = read_config_text(path)?;
        Config::parse(&text, path)
    }

    /// Every problem names the file and the field, so it can be fixed without guessing.
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Config> {
        let where_ = path.display();
        let file: ConfigFile = serde_json::from_str(text)
            .with_context(|| format!("{where_} is not a valid slothbox credentials file"))?;
        let deadline = match file.deadline_seconds {
            None => DEFAULT_DEADLINE,
            Some(s) => parse_deadline(&s.to_string()).with_context(|| {
                format!("{where_}: deadline_seconds must be between 0.1 and 300")
            })?,
        };
        let mut credentials: Vec<RegistryCredential> = Vec::with_capacity(file.credentials.len());
        for (index, entry) in file.credentials.into_iter().enumerate() {
            let field = |name: &str| format!("{where_}: credentials[{index}].{name}");
            let credential = validate_entry(entry, &field)?;
            if let Some(other) = credentials
                .iter()
                .find(|c| c.registry == credential.registry)
            {
                bail!(
                    "{}: registry {} is already served by credential {:?}; keep one entry per registry",
                    field("registry"),
                    credential.registry,
                    other.id
                );
            }
            if let Some(other) = credentials.iter().find(|c| c.id == credential.id) {
                bail!("{}: id {:?} is used twice", field("id"), other.id);
            }
            credentials.push(credential);
        }
        let parameter_prefix = match file.parameter_prefix {
            None => DEFAULT_PARAMETER_PREFIX.to_string(),
            Some(prefix) => {
                let ok = prefix.len() > 1
                    && prefix.starts_with('/')
                    && !prefix.ends_with('/')
                    && prefix
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b));
                if !ok {
                    bail!("{where_}: parameter_prefix {prefix:?} must look like /slothbox/registry-credentials");
                }
                prefix
            }
        };
        if matches!(&file.kms_key_id, Some(k) if k.is_empty() || k.chars().any(char::is_whitespace))
        {
            bail!("{where_}: kms_key_id must be a key id, ARN or alias/NAME");
        }
        let cache = match file.cache {
            None => CacheSettings::default(),
            Some(cache) => CacheSettings {
                store: match &cache.store {
                    None => CacheStoreChoice::Auto,
                    Some(text) => CacheStoreChoice::parse(text).ok_or_else(|| {
                        anyhow::anyhow!(
                            "{where_}: cache.store {text:?} must be auto, keyring, runtime-dir or off"
                        )
                    })?,
                },
                ssm_ttl: match cache.ssm_seconds {
                    Some(s) if s > 3600 => {
                        bail!("{where_}: cache.ssm_seconds must be at most 3600, so rotation takes effect")
                    }
                    Some(s) => Duration::from_secs(s),
                    None => CacheSettings::default().ssm_ttl,
                },
                directory: match cache.directory {
                    Some(dir) if !dir.is_absolute() => {
                        bail!("{where_}: cache.directory must be an absolute path")
                    }
                    other => other,
                },
            },
        };
        Ok(Config {
            path: Some(path.to_path_buf()),
            credentials,
            deadline,
            parameter_prefix,
            kms_key_id: file.kms_key_id,
            cache,
        })
    }

    pub fn find(&self, registry: &RegistryHost) -> Option<&RegistryCredential> {
        self.credentials.iter().find(|c| &c.registry == registry)
    }

    /// What `list` answers: docker's key for each registry to its username.
    pub fn usernames(&self) -> BTreeMap<String, String> {
        self.credentials
            .iter()
            .map(|c| {
                let username = match &c.source {
                    CredentialSource::Ssm { username, .. } => username.clone(),
                    CredentialSource::Ecr(_) => "AWS".to_string(),
                };
                (c.registry.docker_key().to_string(), username)
            })
            .collect()
    }
}

pub fn read_config_text(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).with_context(|| {
        format!(
            "cannot open credentials file {}; create it or point SLOTHBOX_CONFIG at one",
            path.display()
        )
    })?;
    trust_file(&file, path)?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read credentials file {}", path.display()))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        bail!(
            "credentials file {} is larger than {MAX_CONFIG_BYTES} bytes",
            path.display()
        );
    }
    Ok(text)
}

/// The file decides which host gets which secret, so, like ssh with its config, we refuse
/// one that another user could have edited: writable by group or others, or owned by
/// someone other than root or us. Checked on the open file, so it cannot be swapped after.
fn trust_file(file: &std::fs::File, path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot inspect credentials file {}", path.display()))?;
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        bail!(
            "credentials file {} is group- or world-writable (mode {mode:04o}), so someone else could redirect your credentials; run chmod go-w {}",
            path.display(),
            path.display()
        );
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    if meta.uid() != 0 && meta.uid() != uid {
        bail!(
            "credentials file {} belongs to uid {}, not to you or root, so it cannot be trusted; chown it or set SLOTHBOX_CONFIG to your own",
            path.display(),
            meta.uid()
        );
    }
    Ok(())
}

fn validate_entry(
    entry: CredentialEntry,
    field: &dyn Fn(&str) -> String,
) -> anyhow::Result<RegistryCredential> {
    let id_ok = !entry.id.is_empty()
        && entry.id.len() <= 128
        && entry
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !id_ok {
        bail!(
            "{}: {:?} must be letters, digits, '_', '.' or '-'",
            field("id"),
            entry.id
        );
    }
    let registry = RegistryHost::parse(&entry.registry).map_err(|e| match e {
        // The part before '@' may be a password: never repeat it.
        crate::host::HostError::UserInfo => {
            anyhow::anyhow!("{}: the address {e}", field("registry"))
        }
        _ => anyhow::anyhow!("{}: {:?} {e}", field("registry"), entry.registry),
    })?;
    if let Some(region) = &entry.region {
        let ok = !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            bail!("{}: {region:?} is not an AWS region", field("region"));
        }
    }
    let source = match entry.kind {
        CredentialType::Token => {
            let username = match entry.username {
                Some(u) if !u.is_empty() => u,
                _ => bail!(
                    "{}: a token credential needs the registry username",
                    field("username")
                ),
            };
            let parameter = match &entry.parameter {
                Some(p) => SsmParameter::parse(p)
                    .map_err(|e| anyhow::anyhow!("{}: {p:?} {e}", field("parameter")))?,
                None => SsmParameter::default_for(&entry.id),
            };
            CredentialSource::Ssm {
                username,
                parameter,
                region: entry.region,
            }
        }
        CredentialType::Ecr => {
            for (name, present) in [
                ("username", entry.username.is_some()),
                ("parameter", entry.parameter.is_some()),
            ] {
                if present {
                    bail!(
                        "{}: an ecr credential has no {name}; the instance role gets a token",
                        field(name)
                    );
                }
            }
            let ecr = EcrRegistry::from_host(&registry).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: {registry} is not an ECR registry (<account>.dkr.ecr.<region>.amazonaws.com)",
                    field("registry")
                )
            })?;
            CredentialSource::Ecr(ecr)
        }
    };
    Ok(RegistryCredential {
        id: entry.id,
        label: entry.label,
        registry,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Config> {
        Config::parse(text, Path::new("/etc/slothbox/credentials.json"))
    }

    fn error(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    const EXAMPLE: &str = r#"{"credentials": [
      {"id": "rc_123", "type": "token", "label": "GHCR (read packages)", "registry": "ghcr.io",
       "username": "acme-bot", "parameter": "/slothbox/registry-credentials/rc_123"},
      {"id": "rc_456", "type": "ecr", "label": "prod", "registry": "123456789012.dkr.ecr.eu-west-1.amazonaws.com"},
      {"id": "rc_789", "type": "token", "registry": "https://index.docker.io/v1/", "username": "acme",
       "region": "eu-central-1"}
    ]}"#;

    #[test]
    fn reads_the_documented_example() {
        let config = parse(EXAMPLE).unwrap();
        assert_eq!(config.credentials.len(), 3);
        assert_eq!(config.deadline, Duration::from_secs(10));
        let ghcr = config
            .find(&RegistryHost::parse("https://GHCR.io/v2/").unwrap())
            .unwrap();
        assert_eq!(ghcr.id, "rc_123");
        let hub = config
            .find(&RegistryHost::parse("docker.io").unwrap())
            .unwrap();
        assert_eq!(
            hub.source,
            CredentialSource::Ssm {
                username: "acme".into(),
                parameter: SsmParameter::default_for("rc_789"),
                region: Some("eu-central-1".into()),
            }
        );
        assert_eq!(
            config.usernames(),
            BTreeMap::from([
                ("ghcr.io".into(), "acme-bot".into()),
                (
                    "123456789012.dkr.ecr.eu-west-1.amazonaws.com".into(),
                    "AWS".into()
                ),
                ("https://index.docker.io/v1/".into(), "acme".into()),
            ])
        );
    }

    #[test]
    fn matching_is_exact_on_the_folded_host() {
        let config = parse(EXAMPLE).unwrap();
        for other in ["ghcr.io.evil.example", "evil-ghcr.io", "ghcr.io:5000"] {
            assert!(config.find(&RegistryHost::parse(other).unwrap()).is_none());
        }
    }

    #[test]
    fn a_typo_names_the_file_and_the_field() {
        let err = error(
            r#"{"credentials":[{"id":"a","type":"token","registy":"ghcr.io","username":"u"}]}"#,
        );
        assert!(err.contains("/etc/slothbox/credentials.json"), "{err}");
        assert!(err.contains("unknown field `registy`"), "{err}");
        let err = error(r#"{"credential":[]}"#);
        assert!(err.contains("unknown field `credential`"), "{err}");
    }

    #[test]
    fn entry_errors_name_the_entry_and_field() {
        for (text, want) in [
            (
                r#"{"credentials":[{"id":"a","type":"token","registry":"ghcr.io"}]}"#,
                "credentials[0].username",
            ),
            (
                r#"{"credentials":[{"id":"a","type":"token","registry":"ghcr.io/acme","username":"u"}]}"#,
                "credentials[0].registry",
            ),
            (
                r#"{"credentials":[{"id":"a","type":"token","registry":"bot:hunter2@ghcr.io","username":"u"}]}"#,
                "credentials[0].registry",
            ),
            (
                r#"{"credentials":[{"id":"a","type":"token","registry":"ghcr.io","username":"u"},
                                   {"id":"b","type":"token","registry":"https://ghcr.io/","username":"v"}]}"#,
                "credentials[1].registry",
            ),
            (
                r#"{"credentials":[{"id":"a","type":"ecr","registry":"ghcr.io"}]}"#,
                "credentials[0].registry",
            ),
            (
                r#"{"credentials":[{"id":"a b","type":"token","registry":"ghcr.io","username":"u"}]}"#,
                "credentials[0].id",
            ),
            (
                r#"{"credentials":[{"id":"a","type":"token","registry":"ghcr.io","username":"u","parameter":"arn:aws:s3:::x"}]}"#,
                "credentials[0].parameter",
            ),
            (
                r#"{"credentials":[{"id":"a","type":"token","registry":"ghcr.io","username":"u","region":"EU WEST"}]}"#,
                "credentials[0].region",
            ),
            (
                r#"{"credentials":[],"deadline_seconds":0}"#,
                "deadline_seconds",
            ),
        ] {
            let err = error(text);
            assert!(err.contains(want), "{text}: {err}");
            assert!(err.contains("credentials.json"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        let err = error(r#"{"credentials":[{"id":"a","type":"password","registry":"ghcr.io"}]}"#);
        assert!(err.contains("unknown variant `password`"), "{err}");
    }

    #[test]
    fn a_file_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        std::fs::write(&path, r#"{"credentials":[]}"#).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Config::load(&path).is_ok());
        for mode in [0o664, 0o646, 0o666] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = format!("{:#}", Config::load(&path).unwrap_err());
            assert!(err.contains("chmod go-w"), "{err}");
            assert!(err.contains(&format!("{mode:04o}")), "{err}");
        }
    }

    #[test]
    fn parameter_arn_carries_its_region() {
        let p = SsmParameter::parse(
            "arn:aws:ssm:eu-west-1:123456789012:parameter/slothbox/registry-credentials/rc_1",
        )
        .unwrap();
        assert_eq!(p.arn_region.as_deref(), Some("eu-west-1"));
        assert!(SsmParameter::parse("arn:aws:ssm:eu-west-1:123:parameter/x").is_err());
        assert!(SsmParameter::parse("/a b").is_err());
        assert_eq!(SsmParameter::parse("/x").unwrap().arn_region, None);
    }

    #[test]
    fn locate_prefers_override_then_user_then_system() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("user.json");
        let system = dir.path().join("system.json");
        let mut env = Environment {
            config_override: None,
            user_config: Some(user.clone()),
            system_config: system.clone(),
            ..Environment::default()
        };
        assert_eq!(env.locate_config(), None);
        std::fs::write(&system, "{}").unwrap();
        assert_eq!(env.locate_config(), Some(system.clone()));
        std::fs::write(&user, "{}").unwrap();
        assert_eq!(env.locate_config(), Some(user));
        env.config_override = Some(dir.path().join("missing.json"));
        let err = format!("{:#}", env.load_config().unwrap_err());
        assert!(err.contains("missing.json"), "{err}");
    }

    #[test]
    fn deadline_override_is_checked() {
        let env = Environment {
            deadline_override: Some("2.5".into()),
            system_config: PathBuf::from("/nonexistent/slothbox.json"),
            ..Environment::default()
        };
        assert_eq!(
            env.load_config().unwrap().deadline,
            Duration::from_millis(2500)
        );
        let env = Environment {
            deadline_override: Some("soon".into()),
            system_config: PathBuf::from("/nonexistent/slothbox.json"),
            ..Environment::default()
        };
        assert!(
            format!("{:#}", env.load_config().unwrap_err()).contains("SLOTHBOX_DEADLINE_SECONDS")
        );
    }
}
