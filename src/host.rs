//! Registry addresses as clients send them, folded to one canonical host.
//!
//! Clients disagree on how they name a registry: docker sends `https://index.docker.io/v1/`
//! for Docker Hub and `host[:port]` otherwise, skopeo sends `docker.io`, people type
//! `https://GHCR.io/v2/`. Everything here is pure so the folding can be tested exhaustively;
//! matching is always equality on the folded host, never a prefix or suffix test.

use std::fmt;

/// The one name Docker Hub is known by once folded.
const DOCKER_HUB: &str = "docker.io";
/// The key the docker CLI uses for Docker Hub in `credHelpers` and when it asks a helper.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
const DOCKER_HUB_ALIASES: &[&str] = &[
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];
/// Paths a registry address may carry that still mean "the registry itself".
const API_PATHS: &[&str] = &["", "/", "/v1", "/v1/", "/v2", "/v2/"];
const MAX_ADDRESS_LEN: usize = 1024;

/// A registry, named by its folded `host[:port]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistryHost(String);

/// Why an address does not name a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostError {
    Empty,
    TooLong,
    UnsupportedScheme,
    /// `user@host` or `user:password@host`. Never echoed: the part before `@` may be a password.
    UserInfo,
    /// A path other than the registry API root, such as Docker Hub's `…/v1/refresh-token` key.
    Path,
    InvalidPort,
    InvalidCharacter,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostError::Empty => "is empty",
            HostError::TooLong => "is longer than 1024 characters",
            HostError::UnsupportedScheme => "has a scheme other than https:// or http://",
            HostError::UserInfo => "contains user information (user@host); give the host alone",
            HostError::Path => "has a path; give the host alone, like ghcr.io",
            HostError::InvalidPort => "has a port that is not a number from 1 to 65535",
            HostError::InvalidCharacter => "contains a character not allowed in a host name",
        })
    }
}

impl std::error::Error for HostError {}

impl RegistryHost {
    /// Folds an address: scheme, API path, trailing slash, default port and case go; Docker
    /// Hub's names become one; explicit ports and IPv6 literals stay.
    pub fn parse(address: &str) -> Result<RegistryHost, HostError> {
        let address = address.trim();
        if address.is_empty() {
            return Err(HostError::Empty);
        }
        if address.len() > MAX_ADDRESS_LEN {
            return Err(HostError::TooLong);
        }
        let rest = strip_scheme(address)?;
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(HostError::UserInfo);
        }
        if !API_PATHS.contains(&path) {
            return Err(HostError::Path);
        }
        let (host, port) = split_port(authority)?;
        let host = host.to_ascii_lowercase();
        let host = host.strip_suffix('.').unwrap_or(&host);
        validate_host(host)?;
        let host = if DOCKER_HUB_ALIASES.contains(&host) {
            DOCKER_HUB
        } else {
            host
        };
        Ok(RegistryHost(match port {
            None | Some(443) => host.to_string(),
            Some(port) => format!("{host}:{port}"),
        }))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_docker_hub(&self) -> bool {
        self.0 == DOCKER_HUB
    }

    /// The name docker itself uses for this registry, as `list` should report it.
    pub fn docker_key(&self) -> &str {
        if self.is_docker_hub() {
            DOCKER_HUB_KEY
        } else {
            &self.0
        }
    }
}

impl fmt::Display for RegistryHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn strip_scheme(address: &str) -> Result<&str, HostError> {
    match address.find("://") {
        None => Ok(address),
        Some(at) => {
            let scheme = &address[..at];
            if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http") {
                Ok(&address[at + 3..])
            } else {
                Err(HostError::UnsupportedScheme)
            }
        }
    }
}

/// Splits `host[:port]` and `[v6]:port`; the brackets stay on an IPv6 host.
fn split_port(authority: &str) -> Result<(&str, Option<u16>), HostError> {
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']').ok_or(HostError::InvalidCharacter)?;
        let (host, after) = authority.split_at(close + 1);
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(after.strip_prefix(':').ok_or(HostError::InvalidCharacter)?),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(port) => {
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HostError::InvalidPort);
            }
            match port.parse::<u16>() {
                Ok(0) | Err(_) => return Err(HostError::InvalidPort),
                Ok(port) => Some(port),
            }
        }
    };
    Ok((host, port))
}

fn validate_host(host: &str) -> Result<(), HostError> {
    if host.is_empty() {
        return Err(HostError::Empty);
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(HostError::InvalidCharacter)?;
        let ok = !inner.is_empty()
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        return if ok {
            Ok(())
        } else {
            Err(HostError::InvalidCharacter)
        };
    }
    let labels_ok = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if labels_ok {
        Ok(())
    } else {
        Err(HostError::InvalidCharacter)
    }
}

/// A private Amazon ECR registry: its account and region come from the host name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcrRegistry {
    pub account: String,
    pub region: String,
    pub fips: bool,
}

/// Partition suffixes ECR registries live under, after the region label.
const ECR_SUFFIXES: &[&str] = &[
    "amazonaws.com",
    "amazonaws.com.cn",
    "amazonaws.eu",
    "on.aws",
    "on.amazonwebservices.com.cn",
    "sc2s.sgov.gov",
    "c2s.ic.gov",
    "cloud.adc-e.uk",
    "csp.hci.ic.gov",
];

impl EcrRegistry {
    /// Recognises `<12-digit account>.dkr.ecr[-fips].<region>.<partition suffix>` and the
    /// dual-stack `dkr-ecr[-fips]` form, anchored at both ends: anything before or after is
    /// not ECR. A host with an explicit port is not ECR either.
    pub fn from_host(host: &RegistryHost) -> Option<EcrRegistry> {
        let name = host.as_str();
        if name.contains(':') {
            return None;
        }
        let mut labels = name.splitn(4, '.');
        let account = labels.next()?;
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (fips, region, suffix) = match labels.next()? {
            "dkr" => {
                let fips = match labels.next()? {
                    "ecr" => false,
                    "ecr-fips" => true,
                    _ => return None,
                };
                let (region, suffix) = labels.next()?.split_once('.')?;
                (fips, region, suffix)
            }
            service @ ("dkr-ecr" | "dkr-ecr-fips") => {
                let region = labels.next()?;
                let suffix = labels.next()?;
                (service.ends_with("-fips"), region, suffix)
            }
            _ => return None,
        };
        let region_ok = !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok || !ECR_SUFFIXES.contains(&suffix) {
            return None;
        }
        Some(EcrRegistry {
            account: account.to_string(),
            region: region.to_string(),
            fips,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(address: &str) -> Result<String, HostError> {
        RegistryHost::parse(address).map(|h| h.0)
    }

    #[test]
    fn folds_scheme_path_port_and_case() {
        for (input, want) in [
            ("ghcr.io", "ghcr.io"),
            ("https://GHCR.io/v2/", "ghcr.io"),
            ("https://ghcr.io/", "ghcr.io"),
            ("http://ghcr.io", "ghcr.io"),
            ("ghcr.io:443", "ghcr.io"),
            ("HTTPS://ghcr.io:443/v1/", "ghcr.io"),
            ("  ghcr.io\n", "ghcr.io"),
            ("ghcr.io.", "ghcr.io"),
            ("registry.example.com:5000", "registry.example.com:5000"),
            ("localhost:5000/v2", "localhost:5000"),
            ("127.0.0.1:5000", "127.0.0.1:5000"),
            ("[::1]:5000", "[::1]:5000"),
            ("https://[::1]:443/", "[::1]"),
            ("[FE80::1]", "[fe80::1]"),
            ("europe-west1-docker.pkg.dev", "europe-west1-docker.pkg.dev"),
        ] {
            assert_eq!(fold(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn docker_hub_names_are_one_registry() {
        for input in [
            "https://index.docker.io/v1/",
            "index.docker.io",
            "docker.io",
            "registry-1.docker.io",
            "https://registry-1.docker.io/v2/",
            "Docker.IO",
        ] {
            let host = RegistryHost::parse(input).unwrap();
            assert!(host.is_docker_hub(), "{input}");
            assert_eq!(host.docker_key(), DOCKER_HUB_KEY);
        }
        assert!(!RegistryHost::parse("docker.io.evil.example")
            .unwrap()
            .is_docker_hub());
    }

    #[test]
    fn docker_hub_token_keys_are_not_the_registry() {
        for input in [
            "https://index.docker.io/v1/refresh-token",
            "https://index.docker.io/v1/access-token",
        ] {
            assert_eq!(fold(input), Err(HostError::Path), "{input}");
        }
    }

    #[test]
    fn refuses_hostile_and_malformed_addresses() {
        for (input, want) in [
            ("", HostError::Empty),
            ("   ", HostError::Empty),
            ("https://", HostError::Empty),
            ("user@ghcr.io", HostError::UserInfo),
            ("https://user:pass@ghcr.io/", HostError::UserInfo),
            ("ftp://ghcr.io", HostError::UnsupportedScheme),
            ("unix:///var/run/docker.sock", HostError::UnsupportedScheme),
            ("ghcr.io/acme/image", HostError::Path),
            ("ghcr.io?x=1", HostError::Path),
            ("ghcr.io:", HostError::InvalidPort),
            ("ghcr.io:0", HostError::InvalidPort),
            ("ghcr.io:70000", HostError::InvalidPort),
            ("ghcr.io:+80", HostError::InvalidPort),
            ("ghcr io", HostError::InvalidCharacter),
            ("ghcr..io", HostError::InvalidCharacter),
            ("-ghcr.io", HostError::InvalidCharacter),
            ("ghcr.io\u{0}", HostError::InvalidCharacter),
            ("gh\u{0441}r.io", HostError::InvalidCharacter),
            ("[::1", HostError::InvalidCharacter),
            ("[::1]x", HostError::InvalidCharacter),
            ("[zz::1]", HostError::InvalidCharacter),
        ] {
            assert_eq!(fold(input), Err(want), "{input:?}");
        }
        assert_eq!(fold(&"a".repeat(2000)), Err(HostError::TooLong));
    }

    #[test]
    fn error_text_never_echoes_userinfo() {
        let err = RegistryHost::parse("https://bot:hunter2@ghcr.io").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    fn ecr(address: &str) -> Option<EcrRegistry> {
        EcrRegistry::from_host(&RegistryHost::parse(address).ok()?)
    }

    #[test]
    fn recognises_ecr_registries() {
        for (input, region, fips) in [
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                "eu-west-1",
                false,
            ),
            (
                "https://123456789012.dkr.ecr.us-east-1.amazonaws.com/",
                "us-east-1",
                false,
            ),
            (
                "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                "us-gov-west-1",
                true,
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                "cn-north-1",
                false,
            ),
            ("123456789012.dkr-ecr.eu-west-1.on.aws", "eu-west-1", false),
            (
                "123456789012.dkr-ecr-fips.us-east-1.on.aws",
                "us-east-1",
                true,
            ),
            (
                "123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov",
                "us-iso-east-1",
                false,
            ),
            (
                "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu",
                "eusc-de-east-1",
                false,
            ),
            (
                "123456789012.DKR.ECR.eu-west-1.amazonaws.com:443",
                "eu-west-1",
                false,
            ),
        ] {
            let found = ecr(input).unwrap_or_else(|| panic!("{input} is ECR"));
            assert_eq!(found.account, "123456789012");
            assert_eq!(found.region, region, "{input}");
            assert_eq!(found.fips, fips, "{input}");
        }
    }

    #[test]
    fn ecr_pattern_is_anchored_at_both_ends() {
        for input in [
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
            "evil.123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "x123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "12345678901.dkr.ecr.us-east-1.amazonaws.com",
            "1234567890123.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.org",
            "123456789012.dkr.ecr.amazonaws.com",
            "123456789012.dkr.ecs.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:5000",
            "public.ecr.aws",
            "ghcr.io",
        ] {
            assert_eq!(ecr(input), None, "{input}");
        }
    }
}
