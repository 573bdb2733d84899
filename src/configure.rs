//! `configure`: point docker's `config.json` and the containers tools' `auth.json` at this
//! helper, editing only the keys we own, crash-safe, and byte-for-byte idempotent.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::{Map, Value};

use crate::atomic_file;
use crate::config::Environment;
use crate::host::{RegistryHost, DOCKER_HUB_KEY};

pub const HELPER_NAME: &str = "slothbox";
const SECRET_FIELDS: &[&str] = &["auth", "password", "identitytoken", "registrytoken"];

/// Which client reads the file decides how Docker Hub is named in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `~/.docker/config.json`: docker asks for `https://index.docker.io/v1/`, and
    /// containers/image, which reads this file too, for `docker.io`.
    Docker,
    /// `auth.json` of skopeo, podman and buildah: `docker.io`.
    Containers,
}

/// What to do to one file.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub registries: Vec<RegistryHost>,
    /// Also route every other registry through us (`credsStore`).
    pub all: bool,
    pub remove_plaintext: bool,
    pub undo: bool,
}

/// What an edit did, for the person running it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub changes: Vec<String>,
    pub warnings: Vec<String>,
}

fn keys_for(registry: &RegistryHost, flavor: Flavor) -> Vec<String> {
    match (registry.is_docker_hub(), flavor) {
        (true, Flavor::Docker) => vec![DOCKER_HUB_KEY.to_string(), "docker.io".to_string()],
        (true, Flavor::Containers) => vec!["docker.io".to_string()],
        (false, _) => vec![registry.as_str().to_string()],
    }
}

/// Applies `request` to a parsed config object. Pure: the caller reads and writes files.
pub fn apply(
    doc: &mut Map<String, Value>,
    request: &Request,
    flavor: Flavor,
) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    if request.undo {
        undo(doc, &mut outcome);
        return Ok(outcome);
    }
    let helpers = match doc
        .entry("credHelpers")
        .or_insert_with(|| Value::Object(Map::new()))
    {
        Value::Object(map) => map,
        _ => bail!("\"credHelpers\" is not an object; fix it by hand first"),
    };
    for registry in &request.registries {
        for key in keys_for(registry, flavor) {
            match helpers.get(&key) {
                Some(Value::String(name)) if name == HELPER_NAME => {}
                Some(other) => outcome.warnings.push(format!(
                    "credHelpers[{key:?}] is {other}; left alone (remove it by hand to use slothbox for {registry})"
                )),
                None => {
                    helpers.insert(key.clone(), Value::from(HELPER_NAME));
                    outcome
                        .changes
                        .push(format!("credHelpers[{key:?}] = \"{HELPER_NAME}\""));
                }
            }
        }
    }
    if helpers.is_empty() {
        doc.remove("credHelpers");
    }
    if request.all {
        match doc.get("credsStore") {
            Some(Value::String(name)) if name == HELPER_NAME => {}
            Some(other) => bail!(
                "credsStore is already {other}; --all would replace it. Use credHelpers for each registry instead (configure without --all)"
            ),
            None => {
                doc.insert("credsStore".into(), Value::from(HELPER_NAME));
                outcome.changes.push(format!("credsStore = \"{HELPER_NAME}\""));
            }
        }
    }
    plaintext(doc, request, &mut outcome);
    Ok(outcome)
}

/// Secrets `docker login` left in `auths` for registries we now serve.
fn plaintext(doc: &mut Map<String, Value>, request: &Request, outcome: &mut Outcome) {
    let Some(Value::Object(auths)) = doc.get_mut("auths") else {
        return;
    };
    for (key, entry) in auths.iter_mut() {
        let Ok(host) = RegistryHost::parse(key) else {
            continue;
        };
        let served = request.registries.contains(&host) || request.all;
        let Value::Object(fields) = entry else {
            continue;
        };
        let holds_secret = SECRET_FIELDS.iter().any(|f| {
            fields
                .get(*f)
                .and_then(Value::as_str)
                .is_some_and(|v| !v.is_empty())
        });
        if !served || !holds_secret {
            continue;
        }
        if request.remove_plaintext {
            for field in SECRET_FIELDS {
                fields.remove(*field);
            }
            outcome
                .changes
                .push(format!("removed the plaintext secret in auths[{key:?}]"));
        } else {
            outcome.warnings.push(format!(
                "auths[{key:?}] still holds a plaintext secret; run `docker-credential-slothbox configure --remove-plaintext` (or docker logout) to delete it"
            ));
        }
    }
}

fn undo(doc: &mut Map<String, Value>, outcome: &mut Outcome) {
    if let Some(Value::Object(helpers)) = doc.get_mut("credHelpers") {
        let ours: Vec<String> = helpers
            .iter()
            .filter(|(_, v)| v.as_str() == Some(HELPER_NAME))
            .map(|(k, _)| k.clone())
            .collect();
        for key in ours {
            helpers.remove(&key);
            outcome
                .changes
                .push(format!("removed credHelpers[{key:?}]"));
        }
        if helpers.is_empty() {
            doc.remove("credHelpers");
        }
    }
    if doc.get("credsStore").and_then(Value::as_str) == Some(HELPER_NAME) {
        doc.remove("credsStore");
        outcome.changes.push("removed credsStore".into());
    }
}

/// How the file was laid out, so a rewrite looks like its owner's (or docker's) writing.
#[derive(Debug, PartialEq, Eq)]
struct Layout {
    indent: String,
    crlf: bool,
    final_newline: bool,
}

impl Layout {
    fn of(text: &str) -> Layout {
        let indent = text
            .lines()
            .skip(1)
            .find_map(|line| {
                let width = line.len() - line.trim_start_matches([' ', '\t']).len();
                (width > 0).then(|| line[..width].to_string())
            })
            .unwrap_or_else(|| "\t".to_string());
        Layout {
            indent,
            crlf: text.contains("\r\n"),
            final_newline: text.is_empty() || text.ends_with('\n'),
        }
    }

    fn render(&self, doc: &Map<String, Value>) -> anyhow::Result<String> {
        use serde::Serialize;
        let mut out = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(self.indent.as_bytes());
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
        doc.serialize(&mut serializer)?;
        let mut text = String::from_utf8(out)?;
        if self.final_newline {
            text.push('\n');
        }
        if self.crlf {
            text = text.replace('\n', "\r\n");
        }
        Ok(text)
    }
}

/// Reads, edits and (only when something changed) rewrites one file.
pub fn edit_file(path: &Path, request: &Request, flavor: Flavor) -> anyhow::Result<Outcome> {
    let _lock = atomic_file::lock_for_edit(path, 0o700)?;
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let before: Map<String, Value> = if text.trim().is_empty() {
        Map::new()
    } else {
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a JSON object; it was left untouched, fix it by hand and run configure again",
                path.display()
            )
        })?
    };
    let mut doc = before.clone();
    let outcome =
        apply(&mut doc, request, flavor).with_context(|| format!("{}", path.display()))?;
    if doc != before {
        let rendered = Layout::of(&text).render(&doc)?;
        atomic_file::replace(path, rendered.as_bytes(), 0o600)?;
    }
    Ok(outcome)
}

/// Where docker keeps its config: `--docker-config`, else `$DOCKER_CONFIG`, else `~/.docker`.
pub fn docker_config_path(
    explicit: Option<&Path>,
    env_dir: Option<&Path>,
    home: Option<&Path>,
) -> Option<PathBuf> {
    explicit
        .or(env_dir)
        .map(Path::to_path_buf)
        .or_else(|| home.map(|h| h.join(".docker")))
        .map(|dir| dir.join("config.json"))
}

pub const USAGE: &str = "\
Usage: docker-credential-slothbox configure [--registry HOST]... [--all] [--remove-plaintext]
                                            [--docker-config DIR] [--auth-file PATH] [--undo]

Maps each registry of the credentials file (or each --registry) to slothbox under
credHelpers in docker's config.json ($DOCKER_CONFIG, else ~/.docker) and in the containers
tools' auth file ($XDG_RUNTIME_DIR/containers/auth.json when it exists, or --auth-file).
  --all               also set credsStore, so every registry is asked of slothbox first
  --remove-plaintext  delete secrets `docker login` left in auths for those registries
  --undo              remove only the entries slothbox owns
";

#[derive(Debug, Default)]
struct Args {
    registries: Vec<String>,
    all: bool,
    remove_plaintext: bool,
    undo: bool,
    docker_config: Option<PathBuf>,
    auth_file: Option<PathBuf>,
    help: bool,
}

fn parse_args(args: &[String]) -> anyhow::Result<Args> {
    let mut parsed = Args::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut value = |name: &str| {
            rest.next()
                .cloned()
                .with_context(|| format!("{name} needs a value; see configure --help"))
        };
        match arg.as_str() {
            "--registry" => parsed.registries.push(value("--registry")?),
            "--docker-config" => parsed.docker_config = Some(value("--docker-config")?.into()),
            "--auth-file" => parsed.auth_file = Some(value("--auth-file")?.into()),
            "--all" => parsed.all = true,
            "--remove-plaintext" => parsed.remove_plaintext = true,
            "--undo" => parsed.undo = true,
            "-h" | "--help" => parsed.help = true,
            other => bail!("configure: unknown option {other:?}; see configure --help"),
        }
    }
    Ok(parsed)
}

/// The `configure` command: returns the lines to print and the warnings.
pub fn run(env: &Environment, args: &[String]) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let args = parse_args(args)?;
    if args.help {
        return Ok((vec![USAGE.trim_end().to_string()], Vec::new()));
    }
    let registries = if !args.registries.is_empty() {
        args.registries
            .iter()
            .map(|r| RegistryHost::parse(r).map_err(|e| anyhow::anyhow!("--registry {r:?} {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?
    } else {
        env.load_config()?
            .credentials
            .into_iter()
            .map(|c| c.registry)
            .collect()
    };
    if registries.is_empty() && !args.all && !args.undo {
        bail!(
            "no registries to configure: add credentials to {} or pass --registry HOST",
            env.edit_target()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "the credentials file".into())
        );
    }
    let request = Request {
        registries,
        all: args.all,
        remove_plaintext: args.remove_plaintext,
        undo: args.undo,
    };
    let docker = docker_config_path(
        args.docker_config.as_deref(),
        env.docker_config_dir.as_deref(),
        env.home.as_deref(),
    )
    .context("cannot find docker's config: set HOME or DOCKER_CONFIG, or pass --docker-config")?;
    let mut files = vec![(docker, Flavor::Docker)];
    match (&args.auth_file, &env.runtime_dir) {
        (Some(path), _) => files.push((path.clone(), Flavor::Containers)),
        (None, Some(runtime)) => {
            let path = runtime.join("containers/auth.json");
            if path.exists() {
                files.push((path, Flavor::Containers));
            }
        }
        (None, None) => {}
    }
    let (mut lines, mut warnings) = (Vec::new(), Vec::new());
    for (path, flavor) in files {
        let outcome = edit_file(&path, &request, flavor)?;
        if outcome.changes.is_empty() {
            lines.push(format!("{}: nothing to change", path.display()));
        } else {
            lines.push(format!(
                "{}: {}",
                path.display(),
                outcome.changes.join(", ")
            ));
        }
        warnings.extend(
            outcome
                .warnings
                .into_iter()
                .map(|w| format!("warning: {}: {w}", path.display())),
        );
    }
    Ok((lines, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(names: &[&str]) -> Vec<RegistryHost> {
        names
            .iter()
            .map(|n| RegistryHost::parse(n).unwrap())
            .collect()
    }

    fn request(names: &[&str]) -> Request {
        Request {
            registries: hosts(names),
            ..Request::default()
        }
    }

    fn run(text: &str, request: &Request, flavor: Flavor) -> (String, Outcome) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, text).unwrap();
        let outcome = edit_file(&path, request, flavor).unwrap();
        (std::fs::read_to_string(&path).unwrap(), outcome)
    }

    #[test]
    fn adds_helpers_keeping_everything_else_in_docker_style() {
        let original = "{\n\t\"auths\": {\n\t\t\"quay.io\": {\n\t\t\t\"auth\": \"eDp5\"\n\t\t}\n\t},\n\t\"proxies\": {\n\t\t\"default\": {\n\t\t\t\"httpProxy\": \"http://proxy:3128\"\n\t\t}\n\t},\n\t\"psFormat\": \"table {{.ID}}\"\n}";
        let (text, outcome) = run(
            original,
            &request(&["ghcr.io", "docker.io"]),
            Flavor::Docker,
        );
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["credHelpers"]["ghcr.io"], "slothbox");
        assert_eq!(
            doc["credHelpers"]["https://index.docker.io/v1/"],
            "slothbox"
        );
        assert_eq!(doc["credHelpers"]["docker.io"], "slothbox");
        assert_eq!(
            doc["auths"]["quay.io"]["auth"], "eDp5",
            "an unserved login stays"
        );
        assert_eq!(doc["proxies"]["default"]["httpProxy"], "http://proxy:3128");
        assert!(text.starts_with("{\n\t\"auths\""), "{text}");
        assert!(!text.ends_with('\n'), "docker writes no final newline");
        assert_eq!(outcome.changes.len(), 3);
        // Idempotent to the byte.
        let (again, outcome) = run(&text, &request(&["ghcr.io", "docker.io"]), Flavor::Docker);
        assert_eq!(again, text);
        assert!(outcome.changes.is_empty());
    }

    #[test]
    fn containers_files_name_docker_hub_docker_io() {
        let (text, _) = run(
            "",
            &request(&["https://index.docker.io/v1/"]),
            Flavor::Containers,
        );
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({"credHelpers": {"docker.io": "slothbox"}})
        );
    }

    #[test]
    fn keeps_indentation_crlf_and_unknown_keys() {
        let original = "{\r\n  \"x-custom\": [1, 2],\r\n  \"credHelpers\": {\r\n    \"gcr.io\": \"gcloud\"\r\n  }\r\n}\r\n";
        let (text, _) = run(original, &request(&["ghcr.io"]), Flavor::Docker);
        assert!(text.contains("\r\n  \"credHelpers\": {\r\n    \"gcr.io\": \"gcloud\",\r\n    \"ghcr.io\": \"slothbox\"\r\n  }"), "{text:?}");
        assert!(text.ends_with("}\r\n"));
        assert!(!text.replace("\r\n", "").contains('\n'));
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["x-custom"], serde_json::json!([1, 2]));
    }

    #[test]
    fn another_helper_or_store_is_never_overwritten() {
        let original = r#"{"credHelpers": {"ghcr.io": "pass"}, "credsStore": "desktop"}"#;
        let (text, outcome) = run(original, &request(&["ghcr.io"]), Flavor::Docker);
        assert_eq!(text, original, "nothing to change means no rewrite");
        assert!(outcome.warnings[0].contains("\"pass\""), "{outcome:?}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, original).unwrap();
        let all = Request {
            all: true,
            ..request(&[])
        };
        let err = edit_file(&path, &all, Flavor::Docker).unwrap_err();
        assert!(format!("{err:#}").contains("credsStore is already \"desktop\""));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
    }

    #[test]
    fn plaintext_logins_are_reported_then_removed_on_request() {
        let original =
            r#"{"auths": {"https://ghcr.io": {"auth": "Ym90OnNlY3JldA==", "email": "a@b"}}}"#;
        let (_, outcome) = run(original, &request(&["ghcr.io"]), Flavor::Docker);
        assert!(outcome.warnings[0].contains("plaintext"), "{outcome:?}");
        let remove = Request {
            remove_plaintext: true,
            ..request(&["ghcr.io"])
        };
        let (text, _) = run(original, &remove, Flavor::Docker);
        assert!(!text.contains("Ym90OnNlY3JldA=="));
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["auths"]["https://ghcr.io"]["email"], "a@b");
    }

    #[test]
    fn undo_removes_only_our_entries() {
        let original =
            "{\n\t\"credHelpers\": {\n\t\t\"gcr.io\": \"gcloud\"\n\t},\n\t\"auths\": {}\n}";
        let (configured, _) = run(
            original,
            &Request {
                all: true,
                ..request(&["ghcr.io"])
            },
            Flavor::Docker,
        );
        assert!(configured.contains("credsStore"));
        let (undone, outcome) = run(
            &configured,
            &Request {
                undo: true,
                ..Request::default()
            },
            Flavor::Docker,
        );
        assert_eq!(undone, original);
        assert_eq!(outcome.changes.len(), 2);
        // A file that had no credHelpers loses the key again.
        let (configured, _) = run("{}", &request(&["ghcr.io"]), Flavor::Docker);
        let (undone, _) = run(
            &configured,
            &Request {
                undo: true,
                ..Request::default()
            },
            Flavor::Docker,
        );
        assert_eq!(undone, "{}");
    }

    #[test]
    fn refuses_what_it_cannot_parse() {
        for bad in ["{\"auths\": ", "[]", "\"text\""] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("config.json");
            std::fs::write(&path, bad).unwrap();
            let err = edit_file(&path, &request(&["ghcr.io"]), Flavor::Docker).unwrap_err();
            assert!(format!("{err:#}").contains("left untouched"), "{err:#}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), bad);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{\"credHelpers\": 3}").unwrap();
        let err = edit_file(&path, &request(&["ghcr.io"]), Flavor::Docker).unwrap_err();
        assert!(format!("{err:#}").contains("not an object"), "{err:#}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"credHelpers\": 3}"
        );
    }

    #[test]
    fn layout_detection() {
        assert_eq!(Layout::of("").indent, "\t");
        assert_eq!(Layout::of("{\n    \"a\": 1\n}\n").indent, "    ");
        assert!(Layout::of("{}\n").final_newline);
        assert!(!Layout::of("{}").final_newline);
    }
}
