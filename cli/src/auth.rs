//! `tasker auth`: key pairs and tokens for the REST API, and what a credential may do.
//!
//! Keys are generated locally (nothing is fetched): ES256 (P-256) by default, RS256 (2048-bit
//! RSA) on request, or an HS256 secret. Tokens carry `sub`, `permissions`, `iat`, `nbf`, `exp`
//! and, when given, `iss` and `aud` — what the server checks.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use tasker_server::auth::{self, IssuedClaims};
use tasker_server::{JwtConfig, ServerConfig};

#[derive(Subcommand)]
pub enum AuthCommand {
    /// Write a JWT signing key pair (private and public PEM), or print an HS256 secret.
    GenerateKeys {
        /// ES256, RS256 or HS256.
        #[arg(long, default_value = "ES256")]
        algorithm: String,
        /// Where to write jwt-private.pem and jwt-public.pem.
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Sign a token for the API.
    GenerateToken(TokenArgs),
    /// Check a token as the server would (its [auth.jwt] configuration), and show who it is.
    ValidateToken {
        token: String,
        /// The API configuration [default: $TASKER_API_CONFIG].
        #[arg(long, env = "TASKER_API_CONFIG")]
        api_config: PathBuf,
        /// Print JSON ({"subject", "permissions", "grants"}).
        #[arg(long)]
        json: bool,
    },
    /// List the permission vocabulary, or what the given permissions (wildcards) expand to.
    ShowPermissions {
        /// Comma-separated, e.g. `tasks:*,dlq:read`.
        #[arg(long, value_delimiter = ',')]
        permissions: Vec<String>,
        /// Print JSON (an array of permissions).
        #[arg(long)]
        json: bool,
    },
    /// Print the SHA-256 of an API key, for `key_sha256` in the API configuration.
    HashKey { key: String },
}

#[derive(Args)]
pub struct TokenArgs {
    /// Comma-separated permissions, e.g. `tasks:read,tasks:list` or `*`.
    #[arg(long, value_delimiter = ',', required = true)]
    permissions: Vec<String>,
    /// Who the token is (recorded as the operator of its actions).
    #[arg(long)]
    subject: String,
    #[arg(long, default_value_t = 24)]
    expiry_hours: i64,
    /// ES256, RS256 or HS256.
    #[arg(long, default_value = "ES256")]
    algorithm: String,
    /// PEM private key (ES256/RS256).
    #[arg(long, default_value = "jwt-private.pem")]
    private_key: PathBuf,
    /// HS256 secret [default: $TASKER_JWT_SECRET].
    #[arg(long, env = "TASKER_JWT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    #[arg(long)]
    issuer: Option<String>,
    #[arg(long)]
    audience: Option<String>,
    /// Key id (`kid`), for servers that read a JWKS file.
    #[arg(long)]
    kid: Option<String>,
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

fn write_new(path: &Path, text: &str, force: bool) -> Result<(), String> {
    if path.exists() && !force {
        return Err(format!("{} exists (use --force to replace it)", path.display()));
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn random_secret() -> String {
    use base64::Engine;
    use rand_core::RngCore;
    let mut bytes = [0u8; 48];
    rand_core::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn generate_pair(algorithm: &str) -> Result<(String, String), String> {
    match algorithm {
        "ES256" => {
            use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
            let secret = p256::SecretKey::random(&mut rand_core::OsRng);
            let private = secret.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string())?;
            let public = secret
                .public_key()
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| e.to_string())?;
            Ok((private.to_string(), public))
        }
        "RS256" => {
            use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
            let private = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).map_err(|e| e.to_string())?;
            let public = rsa::RsaPublicKey::from(&private);
            Ok((
                private
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| e.to_string())?
                    .to_string(),
                public.to_public_key_pem(LineEnding::LF).map_err(|e| e.to_string())?,
            ))
        }
        other => Err(format!("algorithm '{other}': use ES256, RS256 or HS256")),
    }
}

pub fn run(cmd: AuthCommand) -> ExitCode {
    match cmd {
        AuthCommand::GenerateKeys {
            algorithm,
            out_dir,
            force,
        } => {
            let algorithm = algorithm.to_ascii_uppercase();
            if algorithm == "HS256" {
                println!("{}", random_secret());
                eprintln!("put it in [auth.jwt] as secret = \"${{TASKER_JWT_SECRET}}\" and export TASKER_JWT_SECRET");
                return ExitCode::SUCCESS;
            }
            let (private, public) = match generate_pair(&algorithm) {
                Ok(p) => p,
                Err(e) => return fail(e),
            };
            let private_path = out_dir.join("jwt-private.pem");
            let public_path = out_dir.join("jwt-public.pem");
            if let Err(e) = write_new(&private_path, &private, force) {
                return fail(e);
            }
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&private_path, std::fs::Permissions::from_mode(0o600));
            }
            if let Err(e) = write_new(&public_path, &public, force) {
                return fail(e);
            }
            println!(
                "wrote {} (keep it secret) and {}",
                private_path.display(),
                public_path.display()
            );
            println!(
                "server configuration:\n[auth]\nenabled = true\n[auth.jwt]\nalgorithm = \"{algorithm}\"\npublic_key_path = \"{}\"",
                public_path.display()
            );
            ExitCode::SUCCESS
        }
        AuthCommand::GenerateToken(args) => {
            for p in &args.permissions {
                if !auth::is_valid_permission(p) {
                    return fail(format!(
                        "unknown permission '{p}' (known: {}, or resource:* and *)",
                        auth::PERMISSIONS.join(", ")
                    ));
                }
            }
            if args.expiry_hours < 1 || args.expiry_hours > 24 * 366 {
                return fail("--expiry-hours must be 1–8784");
            }
            let algorithm = match auth::parse_algorithm(&args.algorithm) {
                Ok(a) => a,
                Err(e) => return fail(e),
            };
            let key = if algorithm == jsonwebtoken::Algorithm::HS256 {
                match args.secret {
                    Some(s) => s.into_bytes(),
                    None => return fail("HS256 needs --secret or TASKER_JWT_SECRET"),
                }
            } else {
                match std::fs::read(&args.private_key) {
                    Ok(k) => k,
                    Err(e) => return fail(format!("{}: {e}", args.private_key.display())),
                }
            };
            let now = chrono::Utc::now().timestamp();
            let claims = IssuedClaims {
                sub: args.subject,
                permissions: args.permissions,
                iat: now,
                nbf: now,
                exp: now + args.expiry_hours * 3600,
                iss: args.issuer,
                aud: args.audience,
            };
            match auth::issue_token(algorithm, &key, &claims, args.kid) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(format!("cannot sign: {e}")),
            }
        }
        AuthCommand::ValidateToken {
            token,
            api_config,
            json,
        } => {
            let config = match ServerConfig::load(&api_config) {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            let Some(jwt): Option<JwtConfig> = config.auth.jwt else {
                return fail(format!("{} has no [auth.jwt] section", api_config.display()));
            };
            match auth::validate_token(&jwt, &token) {
                Ok(p) if json => {
                    let body = serde_json::json!({
                        "subject": p.subject,
                        "permissions": p.permissions,
                        "grants": auth::expand(&p.permissions),
                    });
                    println!("{body}");
                    ExitCode::SUCCESS
                }
                Ok(p) => {
                    println!("valid: subject {}", p.subject);
                    println!("permissions: {}", p.permissions.join(", "));
                    println!("grants: {}", auth::expand(&p.permissions).join(", "));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(format!("invalid token: {e}")),
            }
        }
        AuthCommand::ShowPermissions { permissions, json } => {
            if json {
                for p in &permissions {
                    if !auth::is_valid_permission(p) {
                        return fail(format!("unknown permission '{p}'"));
                    }
                }
                let list: Vec<String> = if permissions.is_empty() {
                    auth::PERMISSIONS.iter().map(|p| p.to_string()).collect()
                } else {
                    auth::expand(&permissions).into_iter().map(|p| p.to_string()).collect()
                };
                println!("{}", serde_json::Value::from(list));
                return ExitCode::SUCCESS;
            }
            if permissions.is_empty() {
                for p in auth::PERMISSIONS {
                    println!("{p}");
                }
                println!("(wildcards: resource:* such as tasks:*, and *)");
            } else {
                for p in &permissions {
                    if !auth::is_valid_permission(p) {
                        return fail(format!("unknown permission '{p}'"));
                    }
                }
                for p in auth::expand(&permissions) {
                    println!("{p}");
                }
            }
            ExitCode::SUCCESS
        }
        AuthCommand::HashKey { key } => {
            println!("{}", auth::hash_key(&key));
            ExitCode::SUCCESS
        }
    }
}
