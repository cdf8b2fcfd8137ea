//! Authentication (API keys, JWT bearer tokens) and permissions.
//!
//! A request carries at most one credential: `X-API-Key: KEY` or `Authorization: Bearer JWT`.
//! Either resolves to a [`Principal`]: a subject (recorded as the operator of the actions it
//! takes) and a permission list. Handlers call [`Principal::require`] with the permission their
//! route needs; `*` and `resource:*` are wildcards.
//!
//! API keys are compared as SHA-256 digests in constant time, so neither the comparison's
//! duration nor a stored digest tells an attacker anything about a key.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use jsonwebtoken::{errors::ErrorKind, jwk::JwkSet, Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AuthConfig, ConfigError, JwtConfig};
use crate::error::ApiError;

/// Every permission there is.
pub const PERMISSIONS: &[&str] = &[
    "tasks:create",
    "tasks:read",
    "tasks:list",
    "tasks:cancel",
    "tasks:retry",
    "tasks:context_read",
    "steps:read",
    "steps:resolve",
    "templates:read",
    "templates:write",
    "templates:validate",
    "dlq:read",
    "dlq:update",
    "dlq:stats",
    "workers:read",
    "events:read",
    "system:read",
];

/// The most a JWT's clock skew allowance may be: a larger one would keep expired tokens alive.
pub const MAX_LEEWAY_SECONDS: u64 = 300;

/// Whether `granted` (a permission, `resource:*` or `*`) covers `needed`.
pub fn grants(granted: &str, needed: &str) -> bool {
    granted == "*"
        || granted == needed
        || granted
            .strip_suffix(":*")
            .is_some_and(|resource| needed.split(':').next() == Some(resource))
}

/// Whether `p` is a known permission or a wildcard over known ones.
pub fn is_valid_permission(p: &str) -> bool {
    p == "*"
        || PERMISSIONS.contains(&p)
        || p.strip_suffix(":*")
            .is_some_and(|r| PERMISSIONS.iter().any(|k| k.split(':').next() == Some(r)))
}

/// Every concrete permission `granted` expands to (for `tasker auth show-permissions`).
pub fn expand(granted: &[String]) -> Vec<&'static str> {
    PERMISSIONS
        .iter()
        .copied()
        .filter(|p| granted.iter().any(|g| grants(g, p)))
        .collect()
}

/// How a request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Auth is off: everything is allowed.
    Anonymous,
    ApiKey,
    Jwt,
}

/// Who is calling, and what they may do.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: String,
    pub permissions: Vec<String>,
    pub method: Method,
    /// This credential's own rate limit (requests per second), over `limits.rate_limit_per_second`.
    pub rate_limit_per_second: Option<u32>,
}

impl Principal {
    pub fn anonymous() -> Self {
        Self {
            subject: "anonymous".into(),
            permissions: vec!["*".into()],
            method: Method::Anonymous,
            rate_limit_per_second: None,
        }
    }

    pub fn allows(&self, permission: &str) -> bool {
        self.permissions.iter().any(|g| grants(g, permission))
    }

    /// `Ok` when the principal holds `permission`, else 403 naming it.
    pub fn require(&self, permission: &str) -> Result<(), ApiError> {
        if self.allows(permission) {
            Ok(())
        } else {
            crate::metrics::auth_failure("forbidden");
            tracing::info!(subject = %self.subject, permission, "permission denied");
            Err(ApiError::forbidden(permission))
        }
    }

    /// Whether task contexts and step results may be shown unredacted.
    pub fn reads_context(&self) -> bool {
        self.allows("tasks:context_read")
    }
}

/// The principal that the auth middleware put in the request's extensions.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::unauthenticated("no credential"))
    }
}

struct StoredKey {
    subject: String,
    digest: [u8; 32],
    permissions: Vec<String>,
    rate_limit_per_second: Option<u32>,
}

struct Jwt {
    keys: JwtKeys,
    validation: Validation,
    permissions_claim: String,
}

enum JwtKeys {
    One(DecodingKey),
    /// By `kid`, from a JWKS file.
    Set(HashMap<String, DecodingKey>),
}

/// Checks credentials against the configuration; built once when the router is.
pub struct Authenticator {
    enabled: bool,
    keys: Vec<StoredKey>,
    jwt: Option<Jwt>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("enabled", &self.enabled)
            .field("api_keys", &self.keys.len())
            .field("jwt", &self.jwt.is_some())
            .finish()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The hex SHA-256 of an API key, as `key_sha256` holds it.
pub fn hash_key(key: &str) -> String {
    sha256(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The algorithm named in the configuration.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, ConfigError> {
    match name.to_ascii_uppercase().as_str() {
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        "HS256" => Ok(Algorithm::HS256),
        other => Err(ConfigError::Auth(format!(
            "jwt.algorithm '{other}' is not supported: use RS256, ES256 or HS256"
        ))),
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

impl Jwt {
    fn new(c: &JwtConfig) -> Result<Self, ConfigError> {
        let algorithm = parse_algorithm(&c.algorithm)?;
        let bad = |what: &str, e: jsonwebtoken::errors::Error| ConfigError::Auth(format!("{what}: {e}"));
        let keys = match algorithm {
            Algorithm::HS256 => {
                let secret = c
                    .secret
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| ConfigError::Auth("jwt.secret is required for HS256".into()))?;
                if secret.len() < 32 {
                    return Err(ConfigError::Auth(
                        "jwt.secret must be at least 32 bytes for HS256".into(),
                    ));
                }
                JwtKeys::One(DecodingKey::from_secret(secret.as_bytes()))
            }
            _ => match (&c.public_key_path, &c.jwks_path) {
                (Some(path), None) => {
                    let pem = read(path)?;
                    let key = if algorithm == Algorithm::RS256 {
                        DecodingKey::from_rsa_pem(&pem).map_err(|e| bad("jwt.public_key_path", e))?
                    } else {
                        DecodingKey::from_ec_pem(&pem).map_err(|e| bad("jwt.public_key_path", e))?
                    };
                    JwtKeys::One(key)
                }
                (None, Some(path)) => {
                    let set: JwkSet = serde_json::from_slice(&read(path)?)
                        .map_err(|e| ConfigError::Auth(format!("jwt.jwks_path: {e}")))?;
                    let mut keys = HashMap::new();
                    for jwk in &set.keys {
                        let kid = jwk.common.key_id.clone().unwrap_or_default();
                        keys.insert(kid, DecodingKey::from_jwk(jwk).map_err(|e| bad("jwt.jwks_path", e))?);
                    }
                    if keys.is_empty() {
                        return Err(ConfigError::Auth("jwt.jwks_path holds no key".into()));
                    }
                    JwtKeys::Set(keys)
                }
                _ => {
                    return Err(ConfigError::Auth(
                        "give exactly one of jwt.public_key_path and jwt.jwks_path for RS256/ES256".into(),
                    ))
                }
            },
        };
        if c.leeway_seconds > MAX_LEEWAY_SECONDS {
            return Err(ConfigError::Auth(format!(
                "jwt.leeway_seconds must be at most {MAX_LEEWAY_SECONDS}"
            )));
        }
        let mut validation = Validation::new(algorithm);
        validation.leeway = c.leeway_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &c.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &c.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Ok(Self {
            keys,
            validation,
            permissions_claim: c.permissions_claim.clone(),
        })
    }

    fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let invalid = |reason: &'static str, message: &str| {
            crate::metrics::auth_failure(reason);
            tracing::info!(reason, "rejected bearer token");
            ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "invalid_credentials", message)
        };
        let key = match &self.keys {
            JwtKeys::One(k) => k,
            JwtKeys::Set(keys) => {
                let header =
                    jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed_token", "malformed token"))?;
                let kid = header.kid.unwrap_or_default();
                keys.get(&kid)
                    .ok_or_else(|| invalid("unknown_key", "token signed by an unknown key"))?
            }
        };
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => invalid("token_expired", "token expired"),
                ErrorKind::ImmatureSignature => invalid("token_not_yet_valid", "token not valid yet (nbf)"),
                ErrorKind::InvalidAudience => invalid("wrong_audience", "token audience not accepted"),
                ErrorKind::InvalidIssuer => invalid("wrong_issuer", "token issuer not accepted"),
                ErrorKind::InvalidSignature => invalid("bad_signature", "token signature invalid"),
                ErrorKind::InvalidAlgorithm => invalid("wrong_algorithm", "token algorithm not accepted"),
                _ => invalid("invalid_token", "invalid token"),
            },
        )?;
        let claims = data.claims;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("invalid_token", "token has no subject"))?
            .to_owned();
        let permissions = match claims.get(&self.permissions_claim) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            // A space-separated scope string, as OAuth servers issue it.
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        Ok(Principal {
            subject,
            permissions,
            method: Method::Jwt,
            rate_limit_per_second: None,
        })
    }
}

impl Authenticator {
    /// Checks the configuration (every key has a digest, every permission exists, the JWT keys
    /// load) and builds the checker.
    pub fn new(config: &AuthConfig) -> Result<Self, ConfigError> {
        let mut keys = Vec::new();
        for k in &config.api_keys {
            let digest = match (&k.key, &k.key_sha256) {
                (Some(key), None) if !key.is_empty() => sha256(key.as_bytes()),
                (None, Some(hex)) => parse_hex32(hex).ok_or_else(|| {
                    ConfigError::Auth(format!("api key '{}': key_sha256 is not 64 hex digits", k.subject))
                })?,
                _ => {
                    return Err(ConfigError::Auth(format!(
                        "api key '{}': give exactly one of key and key_sha256",
                        k.subject
                    )))
                }
            };
            for p in &k.permissions {
                if !is_valid_permission(p) {
                    return Err(ConfigError::Auth(format!(
                        "api key '{}': unknown permission '{p}' (known: {})",
                        k.subject,
                        PERMISSIONS.join(", ")
                    )));
                }
            }
            keys.push(StoredKey {
                subject: k.subject.clone(),
                digest,
                permissions: k.permissions.clone(),
                rate_limit_per_second: k.rate_limit_per_second,
            });
        }
        let jwt = config.jwt.as_ref().map(Jwt::new).transpose()?;
        if config.enabled && keys.is_empty() && jwt.is_none() {
            return Err(ConfigError::Auth(
                "auth is enabled but no api key and no jwt is configured: nothing could ever authenticate".into(),
            ));
        }
        Ok(Self {
            enabled: config.enabled,
            keys,
            jwt,
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The principal of a request's headers, or 401.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        if !self.enabled {
            return Ok(Principal::anonymous());
        }
        if let Some(key) = headers.get("x-api-key") {
            let presented = sha256(key.as_bytes());
            // Every stored key is compared, so the time taken does not say which matched.
            let mut found: Option<&StoredKey> = None;
            for k in &self.keys {
                if bool::from(k.digest.ct_eq(&presented)) {
                    found = Some(k);
                }
            }
            return match found {
                Some(k) => Ok(Principal {
                    subject: k.subject.clone(),
                    permissions: k.permissions.clone(),
                    method: Method::ApiKey,
                    rate_limit_per_second: k.rate_limit_per_second,
                }),
                None => {
                    crate::metrics::auth_failure("bad_api_key");
                    tracing::info!("rejected api key");
                    Err(ApiError::new(
                        axum::http::StatusCode::UNAUTHORIZED,
                        "invalid_credentials",
                        "invalid API key",
                    ))
                }
            };
        }
        if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                .map(str::trim);
            return match (token, &self.jwt) {
                (Some(t), Some(jwt)) => jwt.verify(t),
                (Some(_), None) => {
                    crate::metrics::auth_failure("jwt_not_configured");
                    Err(ApiError::new(
                        axum::http::StatusCode::UNAUTHORIZED,
                        "invalid_credentials",
                        "bearer tokens are not accepted by this server",
                    ))
                }
                (None, _) => {
                    crate::metrics::auth_failure("malformed_authorization");
                    Err(ApiError::new(
                        axum::http::StatusCode::UNAUTHORIZED,
                        "invalid_credentials",
                        "Authorization must be 'Bearer <token>'",
                    ))
                }
            };
        }
        crate::metrics::auth_failure("missing_credentials");
        Err(ApiError::unauthenticated(
            "this server needs a credential: X-API-Key or Authorization: Bearer",
        ))
    }
}

/// Shared handle.
pub type SharedAuthenticator = Arc<Authenticator>;

/// Claims of a token that `tasker auth generate-token` issues.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssuedClaims {
    pub sub: String,
    pub permissions: Vec<String>,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// Signs `claims` with a PEM private key (RS256/ES256) or a secret (HS256).
pub fn issue_token(
    algorithm: Algorithm,
    key: &[u8],
    claims: &IssuedClaims,
    kid: Option<String>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let encoding = match algorithm {
        Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(key)?,
        Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(key)?,
        _ => jsonwebtoken::EncodingKey::from_secret(key),
    };
    let mut header = jsonwebtoken::Header::new(algorithm);
    header.kid = kid;
    jsonwebtoken::encode(&header, claims, &encoding)
}

/// Checks a token as the server configured with `config` would, returning its principal.
pub fn validate_token(config: &JwtConfig, token: &str) -> Result<Principal, String> {
    let jwt = Jwt::new(config).map_err(|e| e.to_string())?;
    jwt.verify(token).map_err(|e| e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(grants("*", "dlq:read"));
        assert!(grants("tasks:*", "tasks:create"));
        assert!(!grants("tasks:*", "steps:read"));
        assert!(!grants("tasks:read", "tasks:list"));
        assert!(is_valid_permission("dlq:*"));
        assert!(!is_valid_permission("dlq:write"));
        assert!(!is_valid_permission("nope:*"));
        assert_eq!(expand(&["steps:*".into()]), vec!["steps:read", "steps:resolve"]);
    }

    #[test]
    fn key_digests() {
        assert_eq!(
            hash_key("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert!(parse_hex32(&hash_key("x")).is_some());
        assert!(parse_hex32("zz").is_none());
    }
}
