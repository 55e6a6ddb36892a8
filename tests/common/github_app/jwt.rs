//! The App's JWT: checked as GitHub checks it (RS256 with the App's public
//! key, `iss`, `iat`, `exp`), and signed on the test side.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaKeyPair, UnparsedPublicKey};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

/// Clock skew allowed on `iat` and `exp`, in seconds.
const SKEW: i64 = 5;
/// The longest a JWT may live from now, in seconds (10 minutes).
const MAX_LIFETIME: i64 = 600;

/// GitHub's messages for a refused JWT.
pub const UNDECODABLE: &str = "A JSON web token could not be decoded";
const EXPIRED: &str = "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
const TOO_LONG: &str = "'Expiration time' claim ('exp') is too far in the future";
const BAD_IAT: &str = "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued";

/// The RSA key pair of a PEM private key: PKCS#1, as GitHub hands App
/// keys out, or PKCS#8.
pub fn key_pair(pem: &str) -> RsaKeyPair {
    match PrivateKeyDer::from_pem_slice(pem.as_bytes()).expect("a PEM private key") {
        PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
        PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
        _ => panic!("not an RSA private key"),
    }
    .expect("a usable RSA key")
}

/// An App JWT as GitHub asks for one: RS256, with `iss`, `iat` and `exp`
/// (Unix seconds). `iss` is sent as a string; GitHub accepts a number too
/// ([`sign_jwt`] makes either).
pub fn app_jwt(key_pem: &str, iss: &str, iat: i64, exp: i64) -> String {
    let claims = json!({"iat": iat, "exp": exp, "iss": iss});
    sign_jwt(key_pem, &json!({"alg": "RS256", "typ": "JWT"}), &claims)
}

/// A JWT of any `header` and `claims`, signed RS256 with `key_pem`
/// whatever the header says, for tests of what the mock refuses.
pub fn sign_jwt(key_pem: &str, header: &Value, claims: &Value) -> String {
    let key = key_pair(key_pem);
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let signed = format!("{}.{}", b64(header), b64(claims));
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signed.as_bytes(),
        &mut sig,
    )
    .expect("RSA signing");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// A refused JWT: why (for the test; never the JWT itself) and GitHub's
/// message (for the client).
pub struct Refusal {
    pub reason: String,
    pub message: &'static str,
}

fn refuse(reason: impl Into<String>, message: &'static str) -> Refusal {
    Refusal {
        reason: reason.into(),
        message,
    }
}

/// Checks JWTs for one App with its public key only.
pub struct Verifier {
    public_key: Vec<u8>,
    app_id: u64,
}

impl Verifier {
    pub fn new(app_id: u64, app_key_pem: &str) -> Verifier {
        let public_key = key_pair(app_key_pem).public().as_ref().to_vec();
        Verifier { public_key, app_id }
    }

    /// Checks an `Authorization` value at Unix time `now`.
    pub fn check(&self, authorization: &str, now: i64) -> Result<(), Refusal> {
        let jwt = authorization
            .strip_prefix("Bearer ")
            .ok_or_else(|| refuse("no `Authorization: Bearer <jwt>`", UNDECODABLE))?;
        let (signed, sig) = jwt
            .rsplit_once('.')
            .ok_or_else(|| refuse("JWT is not three dot-separated parts", UNDECODABLE))?;
        let (header, claims) = signed
            .split_once('.')
            .ok_or_else(|| refuse("JWT is not three dot-separated parts", UNDECODABLE))?;
        let header = decode_json(header).ok_or_else(|| refuse("JWT header", UNDECODABLE))?;
        if header["alg"] != "RS256" {
            return Err(refuse(
                format!("JWT alg is {}, not RS256", header["alg"]),
                UNDECODABLE,
            ));
        }
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| refuse("JWT signature is not base64url", UNDECODABLE))?;
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.public_key)
            .verify(signed.as_bytes(), &sig)
            .map_err(|_| {
                refuse(
                    "JWT signature does not verify with the App's key",
                    UNDECODABLE,
                )
            })?;
        let claims = decode_json(claims).ok_or_else(|| refuse("JWT claims", UNDECODABLE))?;
        self.check_claims(&claims, now)
    }

    fn check_claims(&self, claims: &Value, now: i64) -> Result<(), Refusal> {
        let iss_ok = match &claims["iss"] {
            Value::Number(n) => n.as_u64() == Some(self.app_id),
            Value::String(s) => *s == self.app_id.to_string(),
            _ => false,
        };
        if !iss_ok {
            let why = format!("JWT iss is {}, not app id {}", claims["iss"], self.app_id);
            return Err(refuse(why, UNDECODABLE));
        }
        let iat = claims["iat"].as_i64();
        if iat.is_none_or(|iat| iat > now + SKEW) {
            let why = format!(
                "JWT iat {} is not a time in the past (now {now})",
                claims["iat"]
            );
            return Err(refuse(why, BAD_IAT));
        }
        match claims["exp"].as_i64() {
            Some(exp) if exp <= now => Err(refuse(
                format!("JWT expired (exp {exp}, now {now})"),
                EXPIRED,
            )),
            Some(exp) if exp > now + MAX_LIFETIME + SKEW => Err(refuse(
                format!("JWT exp {exp} more than 10 minutes ahead (now {now})"),
                TOO_LONG,
            )),
            Some(_) => Ok(()),
            None => Err(refuse("JWT exp is not a number", EXPIRED)),
        }
    }
}

fn decode_json(part: &str) -> Option<Value> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}
