//! Passphrases: the client-side PBKDF2 the Cozy clients do, emulated when an operator
//! gives a clear-text passphrase, and the server-side scrypt hash of its result
//! (spec instances 1.4).

use base64::Engine;
use sha2::Sha256;

/// Iterations used when the server emulates the client's hashing.
pub const EMULATED_ITERATIONS: u32 = 650_000;

/// The cost of the server-side scrypt hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScryptCost {
    /// log2(N).
    pub log_n: u8,
    pub r: u32,
    pub p: u32,
}

impl ScryptCost {
    /// The Cozy stack's strength: N=32768, r=8, p=1.
    pub const PRODUCTION: Self = Self {
        log_n: 15,
        r: 8,
        p: 1,
    };
    /// For tests and benchmarks that create many instances.
    pub const FAST: Self = Self {
        log_n: 4,
        r: 8,
        p: 1,
    };
}

impl Default for ScryptCost {
    fn default() -> Self {
        Self::PRODUCTION
    }
}

/// What a Cozy client sends for a password: PBKDF2-SHA256(password, `salt`,
/// `iterations`) gives the master key; one more round with the password as salt gives
/// the login hash, base64.
pub fn client_hash(password: &str, salt: &str, iterations: u32) -> String {
    let mut master = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(
        password.as_bytes(),
        salt.as_bytes(),
        iterations,
        &mut master,
    );
    let mut login = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(&master, password.as_bytes(), 1, &mut login);
    base64::engine::general_purpose::STANDARD.encode(login)
}

/// The stored hash: `scrypt$<N>$<r>$<p>$<salt hex>$<key hex>`.
pub fn hash(client_hash: &str, cost: ScryptCost) -> Result<String, String> {
    let salt = crate::model::random_bytes(16);
    let key = derive(client_hash, &salt, cost.log_n, cost.r, cost.p)?;
    Ok(format!(
        "scrypt${}${}${}${}${}",
        1u64 << cost.log_n,
        cost.r,
        cost.p,
        hex(&salt),
        hex(&key)
    ))
}

/// Checks a client hash against a stored hash (any scrypt parameters).
pub fn verify(client_hash: &str, stored: &str) -> bool {
    let parts: Vec<&str> = stored.split('$').collect();
    let [kind, n, r, p, salt, key] = parts.as_slice() else {
        return false;
    };
    let (Ok(n), Ok(r), Ok(p), Some(salt), Some(key)) = (
        n.parse::<u64>(),
        r.parse::<u32>(),
        p.parse::<u32>(),
        unhex(salt),
        unhex(key),
    ) else {
        return false;
    };
    if *kind != "scrypt" || !n.is_power_of_two() || n < 2 {
        return false;
    }
    let Ok(derived) = derive(client_hash, &salt, n.trailing_zeros() as u8, r, p) else {
        return false;
    };
    constant_time_eq(&derived, &key)
}

fn derive(password: &str, salt: &[u8], log_n: u8, r: u32, p: u32) -> Result<Vec<u8>, String> {
    let params = scrypt::Params::new(log_n, r, p, 32).map_err(|e| e.to_string())?;
    let mut out = vec![0u8; 32];
    scrypt::scrypt(password.as_bytes(), salt, &params, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Compares without an early exit, so timing tells nothing about where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let client = client_hash("cozy", "me@alice.localhost", 1000);
        let stored = hash(&client, ScryptCost::FAST).unwrap();
        assert!(stored.starts_with("scrypt$16$8$1$"));
        assert!(verify(&client, &stored));
        assert!(!verify(
            &client_hash("other", "me@alice.localhost", 1000),
            &stored
        ));
        assert!(!verify(&client, "garbage"));
    }

    #[test]
    fn client_hash_known_answer() {
        // From an independent PBKDF2 (Python's hashlib); the browser tests check the
        // pages' script against the same value.
        assert_eq!(
            client_hash("cozy", "me@alice.localhost", 1000),
            "nuAQOk1HLaeQTZb1cJ4IKjGxIpo/b6EOHVf+X5ognDk="
        );
    }

    #[test]
    fn client_hash_is_deterministic_and_salted() {
        let a = client_hash("cozy", "me@a", 10);
        assert_eq!(a, client_hash("cozy", "me@a", 10));
        assert_ne!(a, client_hash("cozy", "me@b", 10));
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(a)
                .unwrap()
                .len(),
            32
        );
    }
}
