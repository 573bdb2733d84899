//! What a client should do next, which is all an answer's error needs to say.

use std::fmt;

use crate::protocol::{InputError, NOT_FOUND};

#[derive(Debug)]
pub enum HelperError {
    /// Not a registry we serve, or nothing stored for it: the client tries its next source
    /// (in the end an anonymous pull). Never used for a failure.
    NotFound,
    /// What the client sent could not be used; some of these texts are matched by clients.
    Input(InputError),
    /// Anything else: the client must stop and show this. The chain is printed on one line,
    /// each layer saying what was being done and the last one what to do about it.
    Failed(anyhow::Error),
}

impl HelperError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, HelperError::NotFound)
    }
}

impl fmt::Display for HelperError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HelperError::NotFound => f.write_str(NOT_FOUND),
            HelperError::Input(err) => write!(f, "{err}"),
            HelperError::Failed(err) => write!(f, "{err:#}"),
        }
    }
}

impl From<InputError> for HelperError {
    fn from(err: InputError) -> Self {
        HelperError::Input(err)
    }
}

impl From<anyhow::Error> for HelperError {
    fn from(err: anyhow::Error) -> Self {
        HelperError::Failed(err)
    }
}

/// An error and its causes on one line, each said once. The SDK's own display adds a
/// Debug dump of the whole chain, which nobody can read in a docker error message.
pub fn one_line_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(err) = next {
        let text = crate::protocol::one_line(&err.to_string());
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::anyhow;

    #[test]
    fn texts_are_what_clients_match() {
        assert_eq!(HelperError::NotFound.to_string(), NOT_FOUND);
        assert_eq!(
            HelperError::from(InputError::MissingServerUrl).to_string(),
            "no credentials server URL"
        );
    }

    #[test]
    fn failures_print_their_whole_chain() {
        let err = HelperError::from(anyhow!("access denied").context("reading ghcr.io"));
        assert_eq!(err.to_string(), "reading ghcr.io: access denied");
        assert!(!err.is_not_found());
    }
}
