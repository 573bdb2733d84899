//! A value that must never be printed: registry passwords, tokens, ECR passwords.
//!
//! `Debug` prints a placeholder and there is no `Display`, so a stray `{:?}`, a `tracing`
//! field or an error message cannot carry the value. The one way out is [`Secret::expose`],
//! and every call of it marks a place where the value leaves our hands on purpose.

use std::fmt;

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The value itself. Call only where it must leave the program: the protocol answer,
    /// the SSM request that stores it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Transform the value without unwrapping it.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Secret<U> {
        Secret(f(self.0))
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret<String> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("ghp_supersecret".to_string());
        let shown = format!("{secret:?} {:#?}", Some(&secret));
        assert!(!shown.contains("ghp_supersecret"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn map_keeps_it_wrapped_and_expose_returns_it() {
        let secret = Secret::new("abc").map(str::to_uppercase);
        assert_eq!(secret.expose(), "ABC");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    }
}
