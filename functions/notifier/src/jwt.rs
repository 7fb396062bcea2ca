//! The GitHub App's JSON Web Token: RS256 over `iat`, `exp` and `iss`.
//!
//! GitHub accepts an App JWT for at most 10 minutes and checks `iat` against its own clock, so
//! the token is dated a minute back (clock drift) and expires nine minutes on.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::config::{AppCredentials, ConfigError};

/// How far back `iat` is set, in seconds (GitHub's advice for clock drift).
pub const BACKDATE_SECS: i64 = 60;
/// How long the JWT is valid after now, in seconds (GitHub's limit is 10 minutes).
pub const LIFETIME_SECS: i64 = 9 * 60;

/// The claims GitHub reads from an App JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claims {
    pub iat: i64,
    pub exp: i64,
    /// The App id, as a string.
    pub iss: String,
}

impl Claims {
    /// The claims for a JWT made at `now` (seconds since the epoch).
    pub fn at(app_id: &str, now: i64) -> Self {
        Self {
            iat: now - BACKDATE_SECS,
            exp: now + LIFETIME_SECS,
            iss: app_id.to_owned(),
        }
    }
}

/// The App's id and signing key, parsed once at cold start.
pub struct AppKey {
    app_id: String,
    key: EncodingKey,
}

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppKey")
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

impl AppKey {
    /// Parses the PEM key (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`) and signs a token
    /// once, so a key that cannot sign fails the cold start rather than every message.
    pub fn new(credentials: &AppCredentials) -> Result<Self, ConfigError> {
        let key = EncodingKey::from_rsa_pem(credentials.private_key.as_bytes())
            .map_err(|e| ConfigError::BadPrivateKey(e.to_string()))?;
        let app = Self {
            app_id: credentials.app_id.clone(),
            key,
        };
        app.jwt(0)
            .map_err(|e| ConfigError::BadPrivateKey(e.to_string()))?;
        Ok(app)
    }

    /// The App's id.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// A JWT made at `now` (seconds since the epoch).
    pub fn jwt(&self, now: i64) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &Claims::at(&self.app_id, now),
            &self.key,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};
    use serde::Deserialize;

    const PKCS8: &str = include_str!("../../../tests/fixtures/github-app/test-app-private-key.pem");
    const PUBLIC: &str = include_str!("../../../tests/fixtures/github-app/test-app-public-key.pem");
    const OTHER: &str = include_str!("../../../tests/fixtures/github-app/other-private-key.pem");
    /// The same key as `PKCS8`, as GitHub hands it out (`openssl pkey -traditional`).
    const PKCS1: &str = include_str!("../testdata/test-app-private-key-pkcs1.pem");

    #[derive(Debug, Deserialize)]
    struct Decoded {
        iat: i64,
        exp: i64,
        iss: String,
    }

    fn creds(pem: &str) -> AppCredentials {
        AppCredentials {
            app_id: "123456".into(),
            private_key: pem.into(),
        }
    }

    fn verify(token: &str) -> Result<Decoded, jsonwebtoken::errors::Error> {
        let key = DecodingKey::from_rsa_pem(PUBLIC.as_bytes())?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["iat", "exp", "iss"]);
        Ok(jsonwebtoken::decode::<Decoded>(token, &key, &validation)?.claims)
    }

    #[test]
    fn claims_are_backdated_a_minute_and_last_under_ten_minutes() {
        let c = Claims::at("42", 1_000_000);
        assert_eq!(c.iat, 999_940);
        assert_eq!(c.exp, 1_000_540);
        assert!(c.exp - c.iat <= 600, "GitHub refuses JWTs over 10 minutes");
        assert_eq!(c.iss, "42");
        let json = serde_json::to_value(&c).unwrap();
        assert!(json["iss"].is_string(), "iss is a string: {json}");
    }

    #[test]
    fn pkcs8_and_pkcs1_keys_sign_tokens_the_public_key_verifies() {
        let now = 1_800_000_000;
        for pem in [PKCS8, PKCS1] {
            let key = AppKey::new(&creds(pem)).unwrap();
            let token = key.jwt(now).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.alg, Algorithm::RS256);
            let claims = verify(&token).unwrap();
            assert_eq!((claims.iat, claims.exp), (now - 60, now + 540));
            assert_eq!(claims.iss, "123456");
        }
    }

    #[test]
    fn a_token_signed_with_another_key_does_not_verify() {
        let token = AppKey::new(&creds(OTHER)).unwrap().jwt(1).unwrap();
        assert!(verify(&token).is_err());
    }

    #[test]
    fn a_key_that_is_not_an_rsa_pem_fails_the_cold_start() {
        for pem in ["", "not a key", PUBLIC] {
            assert!(
                matches!(AppKey::new(&creds(pem)), Err(ConfigError::BadPrivateKey(_))),
                "{pem}"
            );
        }
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let key = AppKey::new(&creds(PKCS8)).unwrap();
        assert_eq!(format!("{key:?}"), r#"AppKey { app_id: "123456", .. }"#);
    }
}
