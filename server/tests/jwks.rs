//! ES256 tokens checked against a JWKS file (the token's `kid` picks the key) and against a PEM
//! public key, through a real bound server.

mod common;

use common::{send, Db, TestServer};
use jsonwebtoken::Algorithm;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use tasker_server::auth::{issue_token, IssuedClaims};
use tasker_server::{AuthConfig, JwtConfig, ServerConfig};

fn jwt_config(public_key_path: Option<std::path::PathBuf>, jwks_path: Option<std::path::PathBuf>) -> ServerConfig {
    ServerConfig {
        auth: AuthConfig {
            enabled: true,
            api_keys: Vec::new(),
            jwt: Some(JwtConfig {
                algorithm: "ES256".into(),
                public_key_path,
                jwks_path,
                secret: None,
                issuer: None,
                audience: None,
                leeway_seconds: 0,
                permissions_claim: "scope".into(),
            }),
        },
        ..ServerConfig::default()
    }
}

fn token(private_pem: &str, kid: Option<&str>) -> String {
    let now = chrono::Utc::now().timestamp();
    issue_token(
        Algorithm::ES256,
        private_pem.as_bytes(),
        &IssuedClaims {
            sub: "svc".into(),
            permissions: vec![],
            iat: now,
            nbf: now,
            exp: now + 600,
            iss: None,
            aud: None,
        },
        kid.map(str::to_owned),
    )
    .expect("sign")
}

/// `issue_token` writes `permissions`; this server reads an OAuth-style `scope` string, so the
/// token is signed here with that claim instead.
fn scoped_token(private_pem: &str, kid: Option<&str>, scope: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    let key = jsonwebtoken::EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(
        &header,
        &serde_json::json!({"sub": "svc", "scope": scope, "exp": now + 600, "nbf": now}),
        &key,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_with_jwks_and_pem() {
    let dir = tempfile::tempdir().unwrap();
    let secret = p256::SecretKey::random(&mut rand_core::OsRng);
    let private_pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let public_pem = secret.public_key().to_public_key_pem(LineEnding::LF).unwrap();
    let mut jwk: serde_json::Value = serde_json::from_str(&secret.public_key().to_jwk_string()).unwrap();
    jwk["kid"] = "k1".into();
    jwk["alg"] = "ES256".into();
    jwk["use"] = "sig".into();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, serde_json::json!({ "keys": [jwk] }).to_string()).unwrap();
    let pem = dir.path().join("public.pem");
    std::fs::write(&pem, public_pem).unwrap();

    let s = TestServer::start(Db::Sqlite, jwt_config(None, Some(jwks))).await;
    let get = |t: String| s.client.get(s.url("/v1/workers")).bearer_auth(t);
    assert_eq!(
        send(get(scoped_token(&private_pem, Some("k1"), "workers:read tasks:read")))
            .await
            .0,
        200
    );
    assert_eq!(
        send(get(scoped_token(&private_pem, Some("k1"), "tasks:read"))).await.0,
        403
    );
    assert_eq!(
        send(get(scoped_token(&private_pem, Some("other"), "workers:read")))
            .await
            .0,
        401
    );
    assert_eq!(send(get(scoped_token(&private_pem, None, "workers:read"))).await.0, 401);
    // Another key pair's signature is refused.
    let stranger = p256::SecretKey::random(&mut rand_core::OsRng)
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap()
        .to_string();
    assert_eq!(
        send(get(scoped_token(&stranger, Some("k1"), "workers:read"))).await.0,
        401
    );
    s.stop().await;

    let s = TestServer::start(Db::Sqlite, jwt_config(Some(pem), None)).await;
    let get = |t: String| s.client.get(s.url("/v1/workers")).bearer_auth(t);
    assert_eq!(send(get(scoped_token(&private_pem, None, "*"))).await.0, 200);
    // No permission claim at all: authenticated, allowed nothing.
    assert_eq!(send(get(token(&private_pem, None))).await.0, 403);
    s.stop().await;
}
