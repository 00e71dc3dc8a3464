//! Secrets (the Splunk HEC token) that never show up in logs, errors or `Debug` output.
//!
//! [`Secret`] holds the value and only hands it out through [`Secret::expose`], which the
//! delivery layer calls when it builds the (sensitive-marked) `Authorization` header.
//! `Debug` and `Display` print `[redacted]`; there is deliberately no `Serialize`.

use std::fmt;

/// A credential whose value is never printed.
///
/// ```
/// use podtrace_export::Secret;
/// let token = Secret::new("00000000-1111-2222-3333-444444444444");
/// assert_eq!(format!("{token}"), "[redacted]");
/// assert_eq!(format!("{token:?}"), "Secret([redacted])");
/// assert_eq!(token.expose(), "00000000-1111-2222-3333-444444444444");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The raw value, for building the request that needs it. Do not log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no credential was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_debug_stays_redacted() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            token: Secret,
        }
        let h = Holder {
            token: Secret::new("s3cr3t-token"),
        };
        let printed = format!("{h:?} {h:#?}");
        assert!(!printed.contains("s3cr3t"), "{printed}");
        assert!(printed.contains("[redacted]"));
    }
}
