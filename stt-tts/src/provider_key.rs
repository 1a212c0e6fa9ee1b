//! API keys of remote providers: read from config or the environment,
//! never shown by `Debug`, never serialised, never logged.

/// Environment variable the Deepgram adapter reads its key from by default.
pub const DEEPGRAM_API_KEY_ENV: &str = "DEEPGRAM_API_KEY";
/// Environment variable the OpenAI-compatible TTS adapter reads by default.
pub const OPENAI_API_KEY_ENV: &str = "OPENAI_API_KEY";

/// A provider API key. `Debug` prints `<redacted>`; serialising it is
/// impossible (config structs skip it), so a config dump cannot leak it.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct ProviderKey(String);

impl ProviderKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key from config if set, else from the environment variable
    /// `env` (when that is set and not empty).
    pub fn resolve(configured: Option<&ProviderKey>, env: Option<&str>) -> Option<ProviderKey> {
        if let Some(k) = configured.filter(|k| !k.0.trim().is_empty()) {
            return Some(k.clone());
        }
        let value = std::env::var(env?).ok()?;
        let value = value.trim();
        (!value.is_empty()).then(|| ProviderKey(value.to_owned()))
    }

    /// The secret, for building an `Authorization` header. Keep the result
    /// out of logs and errors.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ProviderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProviderKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_wins_and_debug_hides() {
        let k = ProviderKey::new("dg-secret");
        assert_eq!(
            ProviderKey::resolve(Some(&k), Some("VOXGATE_TEST_UNSET_KEY_VAR")),
            Some(k.clone())
        );
        assert_eq!(
            ProviderKey::resolve(None, Some("VOXGATE_TEST_UNSET_KEY_VAR")),
            None
        );
        assert_eq!(
            ProviderKey::resolve(Some(&ProviderKey::new("  ")), None),
            None
        );
        assert!(!format!("{k:?}").contains("dg-secret"));
        let parsed: ProviderKey = serde_json::from_str("\"abc\"").expect("parse");
        assert_eq!(parsed.expose(), "abc");
    }
}
