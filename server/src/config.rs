//! The API's configuration: authentication (API keys, JWT) and the limits that keep a saturated
//! server answering (body size, request timeout, in-flight bound, per-credential rate limit).
//!
//! It is one TOML file (`tasker serve --http ADDR --api-config FILE`, or `TASKER_API_CONFIG`),
//! strict like the engine's configuration: unknown keys are errors. It lives beside the engine's
//! layered tree rather than in it because API keys are a list of tables, which that tree's flat
//! keys cannot express. Secrets may be given as `${VAR}` references, read from the environment
//! when the file loads.
//!
//! ```toml
//! [auth]
//! enabled = true
//!
//! [[auth.api_keys]]
//! subject = "ops-dashboard"
//! key_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! permissions = ["tasks:read", "tasks:list", "dlq:*"]
//!
//! [auth.jwt]
//! algorithm = "RS256"
//! public_key_path = "keys/jwt-public.pem"
//! issuer = "tasker"
//! audience = "tasker-api"
//!
//! [limits]
//! max_body_bytes = 1048576
//! request_timeout_ms = 10000
//! max_in_flight = 256
//! rate_limit_per_second = 0
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Everything [`crate::router`] needs besides the engine.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// Who may call the API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Off by default: every request then acts as `anonymous` with every permission. The CLI
    /// refuses to serve a non-loopback address this way unless told `--insecure`.
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    pub jwt: Option<JwtConfig>,
}

/// One API key (sent as `X-API-Key`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who this key is: recorded as the operator of the actions it takes.
    pub subject: String,
    /// The key itself. Prefer `key_sha256`, so the file holds no usable secret.
    pub key: Option<String>,
    /// Hex SHA-256 of the key (`tasker auth hash-key` / `sha256sum`).
    pub key_sha256: Option<String>,
    pub permissions: Vec<String>,
    /// This key's own requests per second (0: none), instead of `limits.rate_limit_per_second`.
    pub rate_limit_per_second: Option<u32>,
}

/// JWT bearer tokens (`Authorization: Bearer …`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// `RS256`, `ES256` or `HS256`.
    pub algorithm: String,
    /// PEM public key (RS256/ES256).
    pub public_key_path: Option<PathBuf>,
    /// A JWKS file (RS256/ES256); the token's `kid` picks the key.
    pub jwks_path: Option<PathBuf>,
    /// The shared secret (HS256); `${VAR}` reads it from the environment.
    pub secret: Option<String>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds (at most 300).
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// The claim holding the permission list.
    #[serde(default = "default_permissions_claim")]
    pub permissions_claim: String,
}

fn default_leeway() -> u64 {
    30
}

fn default_permissions_claim() -> String {
    "permissions".into()
}

/// The bounds that make a saturated server answer 503 with `Retry-After` instead of queueing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Request bodies above this answer 413.
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    /// A request still running after this answers 503 (its database work is abandoned).
    #[serde(default = "default_timeout")]
    pub request_timeout_ms: u64,
    /// Requests under way at once under `/v1`; one more answers 503 at once.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// Requests per second per credential (0: no limit); over it answers 429.
    #[serde(default)]
    pub rate_limit_per_second: u32,
    /// Requests a credential may make at once above its rate (the token bucket's size).
    #[serde(default = "default_burst")]
    pub rate_limit_burst: u32,
}

fn default_body() -> usize {
    1024 * 1024
}
fn default_timeout() -> u64 {
    10_000
}
fn default_in_flight() -> usize {
    256
}
fn default_burst() -> u32 {
    50
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: default_body(),
            request_timeout_ms: default_timeout(),
            max_in_flight: default_in_flight(),
            rate_limit_per_second: 0,
            rate_limit_burst: default_burst(),
        }
    }
}

/// A problem with the API configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("auth configuration: {0}")]
    Auth(String),
}

impl ServerConfig {
    /// Reads a TOML file, expanding `${VAR}` and `${VAR:-default}` in string values.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses TOML text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let expanded = expand_vars(text).map_err(|reason| ConfigError::Parse {
            path: origin.to_owned(),
            reason,
        })?;
        toml::from_str(&expanded).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Whether a request to this server needs a credential.
    pub fn auth_enabled(&self) -> bool {
        self.auth.enabled
    }
}

/// `${VAR}` → the variable (an error when unset), `${VAR:-default}` → it or the default.
fn expand_vars(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| "unterminated ${".to_owned())?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match (std::env::var(name).ok().filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_errors() {
        let e = ServerConfig::parse("[auth]\nenabeld = true\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("enabeld"), "{e}");
    }

    #[test]
    fn variables_are_expanded() {
        std::env::set_var("TASKER_TEST_SECRET_X", "s3cret");
        let c = ServerConfig::parse(
            "[auth]\nenabled = true\n[auth.jwt]\nalgorithm = \"HS256\"\nsecret = \"${TASKER_TEST_SECRET_X}\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.auth.jwt.unwrap().secret.as_deref(), Some("s3cret"));
        assert!(ServerConfig::parse("[limits]\nmax_in_flight = ${NOPE_NOT_SET_Y:-7}\n", "t").is_ok());
    }
}
