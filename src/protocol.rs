//! The docker-credential-helpers wire protocol: what a client writes on our stdin and what
//! it reads back from our stdout. Pure: readers and writers come in as parameters.
//!
//! Clients compare some answers byte for byte, so the texts below are exact.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// Clients match this to fall back to the next credential source or an anonymous pull.
pub const NOT_FOUND: &str = "credentials not found in native keychain";
/// Clients map this to their "missing server URL" error.
pub const NO_SERVER_URL: &str = "no credentials server URL";
/// Clients map this to their "missing username" error.
pub const NO_USERNAME: &str = "no credentials username";

pub const PROGRAM: &str = "docker-credential-slothbox";
pub const USAGE: &str = "Usage: docker-credential-slothbox <get|store|erase|list|version>";

/// A server URL is a host name; a store request a few kilobytes at most (a Google service
/// account key is the largest secret we expect). Anything bigger is refused, not read.
const MAX_SERVER_URL: usize = 4 * 1024;
const MAX_STORE_REQUEST: usize = 64 * 1024;

/// What could not be read from stdin.
#[derive(Debug, PartialEq, Eq)]
pub enum InputError {
    MissingServerUrl,
    MissingUsername,
    MissingSecret,
    TooLarge {
        limit: usize,
    },
    NotUtf8,
    /// Invalid JSON; the parser's position, never the input, since it may hold the secret.
    InvalidJson {
        line: usize,
        column: usize,
    },
    Io(String),
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputError::MissingServerUrl => f.write_str(NO_SERVER_URL),
            InputError::MissingUsername => f.write_str(NO_USERNAME),
            InputError::MissingSecret => f.write_str("no credentials secret"),
            InputError::TooLarge { limit } => {
                write!(f, "input on stdin is larger than {limit} bytes")
            }
            InputError::NotUtf8 => f.write_str("input on stdin is not UTF-8"),
            InputError::InvalidJson { line, column } => write!(
                f,
                "input on stdin is not a JSON object with ServerURL, Username and Secret \
                 (invalid at line {line}, column {column})"
            ),
            InputError::Io(err) => write!(f, "could not read stdin: {err}"),
        }
    }
}

impl std::error::Error for InputError {}

fn read_limited(input: impl Read, limit: usize) -> Result<String, InputError> {
    let mut bytes = Vec::new();
    input
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| InputError::Io(e.kind().to_string()))?;
    if bytes.len() > limit {
        return Err(InputError::TooLarge { limit });
    }
    String::from_utf8(bytes).map_err(|_| InputError::NotUtf8)
}

/// `get` and `erase` receive the bare server URL, usually without a newline.
pub fn read_server_url(input: impl Read) -> Result<String, InputError> {
    let url = read_limited(input, MAX_SERVER_URL)?;
    let url = url.trim();
    if url.is_empty() {
        return Err(InputError::MissingServerUrl);
    }
    Ok(url.to_string())
}

/// A `store` request as docker and skopeo send it after a successful login.
#[derive(Debug)]
pub struct StoreRequest {
    pub server_url: String,
    pub username: String,
    pub secret: Secret<String>,
}

#[derive(Deserialize)]
struct StoreWire {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

pub fn read_store_request(input: impl Read) -> Result<StoreRequest, InputError> {
    let text = read_limited(input, MAX_STORE_REQUEST)?;
    let wire: StoreWire = serde_json::from_str(&text).map_err(|e| InputError::InvalidJson {
        line: e.line(),
        column: e.column(),
    })?;
    let request = StoreRequest {
        server_url: wire.server_url.trim().to_string(),
        username: wire.username,
        secret: Secret::new(wire.secret),
    };
    if request.server_url.is_empty() {
        return Err(InputError::MissingServerUrl);
    }
    if request.username.is_empty() {
        return Err(InputError::MissingUsername);
    }
    if request.secret.is_empty() {
        return Err(InputError::MissingSecret);
    }
    Ok(request)
}

/// The answer to `get`.
#[derive(Debug)]
pub struct Credential {
    pub server_url: String,
    pub username: String,
    pub secret: Secret<String>,
}

#[derive(Serialize)]
struct CredentialWire<'a> {
    #[serde(rename = "ServerURL")]
    server_url: &'a str,
    #[serde(rename = "Username")]
    username: &'a str,
    #[serde(rename = "Secret")]
    secret: &'a str,
}

pub fn write_credential(mut out: impl Write, credential: &Credential) -> io::Result<()> {
    let wire = CredentialWire {
        server_url: &credential.server_url,
        username: &credential.username,
        secret: credential.secret.expose(),
    };
    serde_json::to_writer(&mut out, &wire)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// The answer to `list`: server URL to username, never a secret.
pub fn write_list(mut out: impl Write, entries: &BTreeMap<String, String>) -> io::Result<()> {
    serde_json::to_writer(&mut out, entries)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Every error answer is one line on stdout: clients read it from there, and a second line
/// would be glued into their message.
pub fn write_error(mut out: impl Write, message: &str) -> io::Result<()> {
    writeln!(out, "{}", one_line(message))?;
    out.flush()
}

pub fn version_line() -> String {
    format!("{PROGRAM} (slothbox) {}", env!("CARGO_PKG_VERSION"))
}

/// Collapses whitespace runs (newlines included) into single spaces.
pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_answer_is_byte_exact() {
        let mut out = Vec::new();
        let credential = Credential {
            server_url: "https://ghcr.io".into(),
            username: "acme-bot".into(),
            secret: Secret::new("ghp_x\"y".into()),
        };
        write_credential(&mut out, &credential).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"ServerURL\":\"https://ghcr.io\",\"Username\":\"acme-bot\",\"Secret\":\"ghp_x\\\"y\"}\n"
        );
    }

    #[test]
    fn error_answers_are_one_line() {
        let mut out = Vec::new();
        write_error(&mut out, "first\nsecond\r\n  third").unwrap();
        assert_eq!(out, b"first second third\n");
        let mut out = Vec::new();
        write_error(&mut out, NOT_FOUND).unwrap();
        assert_eq!(out, b"credentials not found in native keychain\n");
    }

    #[test]
    fn list_answer_maps_url_to_username() {
        let mut out = Vec::new();
        let entries = BTreeMap::from([
            ("ghcr.io".to_string(), "acme-bot".to_string()),
            (
                "https://index.docker.io/v1/".to_string(),
                "acme".to_string(),
            ),
        ]);
        write_list(&mut out, &entries).unwrap();
        assert_eq!(
            out,
            b"{\"ghcr.io\":\"acme-bot\",\"https://index.docker.io/v1/\":\"acme\"}\n"
        );
        let mut out = Vec::new();
        write_list(&mut out, &BTreeMap::new()).unwrap();
        assert_eq!(out, b"{}\n");
    }

    #[test]
    fn server_url_is_trimmed_and_required() {
        assert_eq!(read_server_url(&b"ghcr.io"[..]).unwrap(), "ghcr.io");
        assert_eq!(read_server_url(&b" ghcr.io\n"[..]).unwrap(), "ghcr.io");
        assert_eq!(
            read_server_url(&b" \n"[..]),
            Err(InputError::MissingServerUrl)
        );
        assert_eq!(read_server_url(&[0xff, 0xfe][..]), Err(InputError::NotUtf8));
        let huge = vec![b'a'; MAX_SERVER_URL + 1];
        assert!(matches!(
            read_server_url(&huge[..]),
            Err(InputError::TooLarge { .. })
        ));
        assert_eq!(InputError::MissingServerUrl.to_string(), NO_SERVER_URL);
    }

    #[test]
    fn store_request_reads_docker_escapes() {
        let input = br#"{"ServerURL":"ghcr.io","Username":"\u003ctoken\u003e","Secret":"tok"}
"#;
        let request = read_store_request(&input[..]).unwrap();
        assert_eq!(request.server_url, "ghcr.io");
        assert_eq!(request.username, "<token>");
        assert_eq!(request.secret.expose(), "tok");
    }

    #[test]
    fn store_request_errors_name_the_problem_without_the_secret() {
        let cases: [(&[u8], InputError); 4] = [
            (
                br#"{"ServerURL":"","Username":"u","Secret":"s"}"#,
                InputError::MissingServerUrl,
            ),
            (
                br#"{"ServerURL":"h","Username":"","Secret":"s"}"#,
                InputError::MissingUsername,
            ),
            (
                br#"{"ServerURL":"h","Username":"u","Secret":""}"#,
                InputError::MissingSecret,
            ),
            (
                br#"{"ServerURL":"h","Username":"u","Secret":"hunter2"#,
                InputError::InvalidJson {
                    line: 1,
                    column: 49,
                },
            ),
        ];
        for (input, want) in cases {
            let err = read_store_request(input).unwrap_err();
            assert!(!err.to_string().contains("hunter2"));
            assert_eq!(err, want);
        }
        assert_eq!(InputError::MissingUsername.to_string(), NO_USERNAME);
    }

    #[test]
    fn version_names_the_program() {
        assert!(version_line().starts_with("docker-credential-slothbox (slothbox) "));
    }
}
