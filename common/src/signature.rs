//! Verification of GitHub's `X-Hub-Signature-256` header.
//!
//! GitHub signs the raw request body with HMAC-SHA256 and sends `sha256=<64 hex digits>`.
//! Several secrets may be accepted at once so a secret can be rotated without dropping
//! deliveries. The comparison is constant-time ([`hmac::Mac::verify_slice`]).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header GitHub sends the signature in.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

const PREFIX: &str = "sha256=";
const DIGEST_HEX_LEN: usize = 64;

/// Why a signature was refused. The messages never contain the secret or the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("signature does not start with \"sha256=\"")]
    MissingPrefix,
    #[error("signature has {0} hex digits, expected 64")]
    WrongLength(usize),
    #[error("signature contains non-hex characters")]
    NotHex,
    #[error("signature does not match any configured secret")]
    Mismatch,
    #[error("no webhook secret is configured")]
    NoSecret,
}

/// The set of accepted webhook secrets (more than one while rotating).
#[derive(Clone)]
pub struct WebhookSecrets {
    keys: Vec<Vec<u8>>,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookSecrets({} redacted)", self.keys.len())
    }
}

impl WebhookSecrets {
    /// Accepts every non-empty secret given; fails when none is left.
    pub fn new<I, S>(secrets: I) -> Result<Self, SignatureError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let keys: Vec<Vec<u8>> = secrets
            .into_iter()
            .map(|s| s.as_ref().to_vec())
            .filter(|k| !k.is_empty())
            .collect();
        if keys.is_empty() {
            return Err(SignatureError::NoSecret);
        }
        Ok(Self { keys })
    }

    /// Parses a comma-separated list (`WEBHOOK_SECRET=new,old`), trimming blanks around each.
    pub fn from_comma_separated(list: &str) -> Result<Self, SignatureError> {
        Self::new(list.split(',').map(str::trim))
    }

    /// How many secrets are accepted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a `WebhookSecrets` holds at least one secret.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies `header` (the `X-Hub-Signature-256` value, if any) over `body`.
    pub fn verify(&self, body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
        let digest = parse_header(header)?;
        for key in &self.keys {
            if mac(key).chain_update(body).verify_slice(&digest).is_ok() {
                return Ok(());
            }
        }
        Err(SignatureError::Mismatch)
    }
}

/// Computes the `X-Hub-Signature-256` value GitHub would send for `body` signed with `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let tag = mac(secret).chain_update(body).finalize().into_bytes();
    format!("{PREFIX}{}", hex::encode(tag))
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC is defined for keys of any length; `new_from_slice` only fails for fixed-size MACs.
    <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

fn parse_header(header: Option<&str>) -> Result<[u8; 32], SignatureError> {
    let value = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(SignatureError::Missing)?;
    let hex_part = value
        .strip_prefix(PREFIX)
        .ok_or(SignatureError::MissingPrefix)?;
    if !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SignatureError::NotHex);
    }
    if hex_part.len() != DIGEST_HEX_LEN {
        return Err(SignatureError::WrongLength(hex_part.len()));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).map_err(|_| SignatureError::NotHex)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // From GitHub's "Validating webhook deliveries" documentation.
    const GH_SECRET: &str = "It's a Secret to Everybody";
    const GH_PAYLOAD: &str = "Hello, World!";
    const GH_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn secrets(list: &[&str]) -> WebhookSecrets {
        WebhookSecrets::new(list.iter().copied()).unwrap()
    }

    #[test]
    fn githubs_published_test_vector_verifies() {
        assert_eq!(
            sign(GH_SECRET.as_bytes(), GH_PAYLOAD.as_bytes()),
            GH_SIGNATURE
        );
        secrets(&[GH_SECRET])
            .verify(GH_PAYLOAD.as_bytes(), Some(GH_SIGNATURE))
            .unwrap();
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let upper = format!("sha256={}", GH_SIGNATURE[7..].to_ascii_uppercase());
        secrets(&[GH_SECRET])
            .verify(GH_PAYLOAD.as_bytes(), Some(&upper))
            .unwrap();
    }

    #[test]
    fn wrong_secret_is_a_mismatch() {
        let r = secrets(&["not the secret"]).verify(GH_PAYLOAD.as_bytes(), Some(GH_SIGNATURE));
        assert_eq!(r, Err(SignatureError::Mismatch));
    }

    #[test]
    fn any_of_several_rotating_secrets_is_accepted() {
        let s = WebhookSecrets::from_comma_separated(" new-secret , It's a Secret to Everybody")
            .unwrap();
        assert_eq!(s.len(), 2);
        s.verify(GH_PAYLOAD.as_bytes(), Some(GH_SIGNATURE)).unwrap();
        let sig = sign(b"new-secret", b"x");
        s.verify(b"x", Some(&sig)).unwrap();
    }

    #[test]
    fn empty_secret_lists_are_refused() {
        assert_eq!(
            WebhookSecrets::from_comma_separated(" , ").unwrap_err(),
            SignatureError::NoSecret
        );
    }

    #[test]
    fn truncated_signature_is_refused() {
        let r = secrets(&[GH_SECRET]).verify(
            GH_PAYLOAD.as_bytes(),
            Some(&GH_SIGNATURE[..GH_SIGNATURE.len() - 2]),
        );
        assert_eq!(r, Err(SignatureError::WrongLength(62)));
    }

    #[test]
    fn missing_prefix_is_refused() {
        let r = secrets(&[GH_SECRET]).verify(GH_PAYLOAD.as_bytes(), Some(&GH_SIGNATURE[7..]));
        assert_eq!(r, Err(SignatureError::MissingPrefix));
        let sha1 = GH_SIGNATURE.replace("sha256=", "sha1=");
        assert_eq!(
            secrets(&[GH_SECRET]).verify(GH_PAYLOAD.as_bytes(), Some(&sha1)),
            Err(SignatureError::MissingPrefix)
        );
    }

    #[test]
    fn non_hex_digits_are_refused() {
        let bad = GH_SIGNATURE.replacen('7', "g", 1);
        assert_eq!(
            secrets(&[GH_SECRET]).verify(GH_PAYLOAD.as_bytes(), Some(&bad)),
            Err(SignatureError::NotHex)
        );
    }

    #[test]
    fn missing_or_blank_header_is_refused() {
        assert_eq!(
            secrets(&[GH_SECRET]).verify(b"", None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            secrets(&[GH_SECRET]).verify(b"", Some("  ")),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn debug_output_redacts_secrets() {
        assert!(!format!("{:?}", secrets(&["hunter2"])).contains("hunter2"));
    }

    proptest! {
        #[test]
        fn signing_then_verifying_accepts(secret in proptest::collection::vec(any::<u8>(), 1..64), body in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let sig = sign(&secret, &body);
            prop_assert!(WebhookSecrets::new([&secret]).unwrap().verify(&body, Some(&sig)).is_ok());
        }

        #[test]
        fn any_changed_body_byte_is_rejected(secret in "[a-z]{1,32}", body in proptest::collection::vec(any::<u8>(), 1..512), idx in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let sig = sign(secret.as_bytes(), &body);
            let mut tampered = body.clone();
            let i = idx.index(tampered.len());
            tampered[i] ^= flip;
            prop_assert_eq!(WebhookSecrets::new([&secret]).unwrap().verify(&tampered, Some(&sig)), Err(SignatureError::Mismatch));
        }

        #[test]
        fn any_changed_signature_digit_is_rejected(body in proptest::collection::vec(any::<u8>(), 0..256), pos in 7usize..71) {
            let sig = sign(b"k", &body);
            let mut chars: Vec<char> = sig.chars().collect();
            chars[pos] = if chars[pos] == '0' { '1' } else { '0' };
            let tampered: String = chars.into_iter().collect();
            prop_assert_eq!(WebhookSecrets::new(["k"]).unwrap().verify(&body, Some(&tampered)), Err(SignatureError::Mismatch));
        }

        #[test]
        fn arbitrary_headers_never_panic(header in ".{0,100}") {
            let _ = WebhookSecrets::new(["k"]).unwrap().verify(b"body", Some(&header));
        }
    }
}
