//! The owner's passphrase: registration with the register token (spec instances 3.3),
//! changes and forced resets (3.6), checks at login, and the KDF iterations browsers
//! hash with (1.5).
//!
//! The iterations live where the Cozy stack keeps them, in the instance's
//! `io.cozy.settings.bitwarden` document (`passphrase_kdf_iterations`); creation
//! writes it, so the registration page already uses the `KdfIterations` given then.
//! An instance without it uses [`DEFAULT_KDF_ITERATIONS`].

use hearth_core::{JsonMap, new_doc_id};
use hearth_store::{GetOptions, StoreError};
use serde_json::Value;

use crate::{
    Instance, InstanceError, InstanceResult, Instances, doctype, model::random_b64, passphrase,
};

/// Iterations when nothing else is known (the Cozy stack's default).
pub const DEFAULT_KDF_ITERATIONS: u32 = passphrase::EMULATED_ITERATIONS;
/// The allowed range of client iterations (0 means "the default").
pub const KDF_ITERATIONS_RANGE: std::ops::RangeInclusive<u32> = 50_000..=5_000_000;

const SETTINGS: &str = "io.cozy.settings";
const BITWARDEN_SETTINGS: &str = "io.cozy.settings.bitwarden";

/// Why a passphrase was not set. The messages are the Cozy stack's (spec 3.3).
#[derive(Debug, thiserror::Error)]
pub enum PassphraseError {
    /// The register token is not hexadecimal (the message is the decoder's).
    #[error("{0}")]
    MalformedRegisterToken(String),
    #[error("Missing new passphrase")]
    MissingPassphrase,
    /// The instance has no register token any more: the password was registered.
    #[error("Empty register token")]
    EmptyRegisterToken,
    #[error("Invalid register token")]
    InvalidRegisterToken,
    #[error("The KdfIterations number is too low")]
    IterationsTooLow,
    #[error("The KdfIterations number is too high")]
    IterationsTooHigh,
    /// The current passphrase given for a change is wrong.
    #[error("Invalid passphrase")]
    WrongPassphrase,
    #[error(transparent)]
    Instance(#[from] InstanceError),
}

impl From<StoreError> for PassphraseError {
    fn from(e: StoreError) -> Self {
        Self::Instance(e.into())
    }
}

/// Checks client iterations: 0 (the default) or within [`KDF_ITERATIONS_RANGE`].
pub fn check_iterations(iterations: u32) -> Result<(), PassphraseError> {
    match iterations {
        0 => Ok(()),
        n if n < *KDF_ITERATIONS_RANGE.start() => Err(PassphraseError::IterationsTooLow),
        n if n > *KDF_ITERATIONS_RANGE.end() => Err(PassphraseError::IterationsTooHigh),
        _ => Ok(()),
    }
}

/// Decodes a register token as the Cozy stack's hex decoder does, with its messages.
pub fn decode_register_token(hex: &str) -> Result<Vec<u8>, PassphraseError> {
    if let Some(c) = hex.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(PassphraseError::MalformedRegisterToken(format!(
            "encoding/hex: invalid byte: U+{:04X} {c:?}",
            u32::from(c)
        )));
    }
    passphrase::unhex(hex).ok_or_else(|| {
        PassphraseError::MalformedRegisterToken("encoding/hex: odd length hex string".into())
    })
}

/// Whether `hex` is this instance's register token (constant time).
pub fn register_token_matches(instance: &Instance, hex: &str) -> bool {
    let (Some(expected), Ok(given)) = (
        instance.register_token_hex(),
        decode_register_token(hex.trim()),
    ) else {
        return false;
    };
    passphrase::unhex(&expected)
        .is_some_and(|expected| passphrase::constant_time_eq(&expected, &given))
}

/// `POST /settings/passphrase`, as the service sees it.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    /// The register token, in hex.
    pub register_token: String,
    /// The client hash of the password; clear text when `iterations` is 0.
    pub passphrase: String,
    pub iterations: u32,
    pub hint: Option<String>,
}

/// What a new passphrase is.
#[derive(Debug, Clone, Copy)]
enum Given<'a> {
    /// A client hash made with these iterations.
    Hash(&'a str, u32),
    /// Clear text: hashed here as a client would, with [`passphrase::EMULATED_ITERATIONS`].
    Clear(&'a str),
}

/// How a passphrase change treats the register token and onboarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Onboarding {
    /// Registration: the token must match; onboarding is finished.
    Register,
    /// Forced by an operator: the token is consumed and onboarding finished (spec 3.1).
    Finish,
    /// A change by the logged-in owner: onboarding is already behind.
    Keep,
}

impl Instances {
    /// The iterations browsers hash this instance's passphrase with.
    pub async fn kdf_iterations(&self, instance: &Instance) -> InstanceResult<u32> {
        Ok(self
            .bitwarden_settings(instance)
            .await?
            .and_then(|d| d.get("passphrase_kdf_iterations").and_then(Value::as_u64))
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_KDF_ITERATIONS))
    }

    async fn bitwarden_settings(&self, instance: &Instance) -> InstanceResult<Option<JsonMap>> {
        match self
            .store
            .get(
                &instance.instance_id(),
                &doctype(SETTINGS),
                BITWARDEN_SETTINGS,
                GetOptions::default(),
            )
            .await
        {
            Ok(d) => Ok(Some(d)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Registers the first password with the register token (spec instances 3.3):
    /// returns the updated instance, whose sessions must be opened anew.
    pub async fn register_passphrase(
        &self,
        domain: &str,
        reg: Registration,
    ) -> Result<Instance, PassphraseError> {
        let token = decode_register_token(reg.register_token.trim())?;
        check_iterations(reg.iterations)?;
        if reg.passphrase.is_empty() {
            return Err(PassphraseError::MissingPassphrase);
        }
        let given = match reg.iterations {
            0 => Given::Clear(&reg.passphrase),
            n => Given::Hash(&reg.passphrase, n),
        };
        self.set_passphrase(
            domain,
            given,
            Onboarding::Register,
            Some(&token),
            reg.hint.as_deref(),
        )
        .await
    }

    /// Changes the password of a logged-in owner: `current` is the client hash of the
    /// current one. `iterations` 0 keeps the current iterations (`new` is hashed with
    /// them). Every session ends; the caller opens a new one.
    pub async fn change_passphrase(
        &self,
        domain: &str,
        current: &str,
        new: &str,
        iterations: u32,
    ) -> Result<Instance, PassphraseError> {
        check_iterations(iterations)?;
        if new.is_empty() {
            return Err(PassphraseError::MissingPassphrase);
        }
        let instance = self.get_str(domain).await?;
        if !self.check_passphrase(&instance, current).await? {
            return Err(PassphraseError::WrongPassphrase);
        }
        let iterations = match iterations {
            0 => self.kdf_iterations(&instance).await?,
            n => n,
        };
        self.set_passphrase(
            domain,
            Given::Hash(new, iterations),
            Onboarding::Keep,
            None,
            None,
        )
        .await
    }

    /// Sets a password without the current one (`hearth instances set-passphrase`,
    /// with a CLI token): clear text when `iterations` is 0, else a client hash made
    /// with them. Consumes the register token and finishes onboarding.
    pub async fn force_passphrase(
        &self,
        domain: &str,
        new: &str,
        iterations: u32,
    ) -> Result<Instance, PassphraseError> {
        check_iterations(iterations)?;
        if new.is_empty() {
            return Err(PassphraseError::MissingPassphrase);
        }
        let given = match iterations {
            0 => Given::Clear(new),
            n => Given::Hash(new, n),
        };
        self.set_passphrase(domain, given, Onboarding::Finish, None, None)
            .await
    }

    /// Checks a client hash against the stored hash (scrypt runs off the async
    /// workers). A hash made with other scrypt parameters than the configured ones is
    /// replaced after a successful check (spec instances 1.4).
    pub async fn check_passphrase(
        &self,
        instance: &Instance,
        client_hash: &str,
    ) -> InstanceResult<bool> {
        let Some(stored) = instance.passphrase_hash.clone() else {
            return Ok(false);
        };
        if client_hash.is_empty() {
            return Ok(false);
        }
        let cost = self.config.scrypt;
        let given = client_hash.to_owned();
        let (ok, rehash) = tokio::task::spawn_blocking(move || {
            let ok = passphrase::verify(&given, &stored);
            let rehash = (ok && !uses_cost(&stored, cost))
                .then(|| passphrase::hash(&given, cost).ok())
                .flatten();
            (ok, rehash)
        })
        .await
        .map_err(InstanceError::internal)?;
        if let Some(hash) = rehash {
            let mut updated = (*self.get_str(&instance.domain).await?).clone();
            if updated.passphrase_hash == instance.passphrase_hash {
                updated.passphrase_hash = Some(hash);
                // Another request may have changed the instance meanwhile: the rehash
                // then waits for the next login.
                match self.save(&mut updated).await {
                    Ok(()) | Err(InstanceError::Store(StoreError::Conflict)) => {}
                    Err(e) => tracing::warn!(error = %e, "passphrase rehash not saved"),
                }
            }
        }
        Ok(ok)
    }

    async fn set_passphrase(
        &self,
        domain: &str,
        given: Given<'_>,
        onboarding: Onboarding,
        token: Option<&[u8]>,
        hint: Option<&str>,
    ) -> Result<Instance, PassphraseError> {
        let salt = self.get_str(domain).await?.passphrase_salt();
        let (client_hash, iterations) = match given {
            Given::Hash(h, n) => (h.to_owned(), n),
            Given::Clear(p) => {
                let p = p.to_owned();
                let salt = salt.clone();
                let n = passphrase::EMULATED_ITERATIONS;
                let h = tokio::task::spawn_blocking(move || passphrase::client_hash(&p, &salt, n))
                    .await
                    .map_err(InstanceError::internal)?;
                (h, n)
            }
        };
        let cost = self.config.scrypt;
        let hash = tokio::task::spawn_blocking(move || passphrase::hash(&client_hash, cost))
            .await
            .map_err(InstanceError::internal)?
            .map_err(InstanceError::internal)?;
        // A concurrent write (another registration with the same token, a rehash)
        // makes the save conflict: read again and decide again, once.
        let mut attempts = 0;
        let instance = loop {
            attempts += 1;
            let mut i = (*self.get_str(domain).await?).clone();
            if onboarding == Onboarding::Register {
                let Some(expected) = i.register_token_hex() else {
                    return Err(PassphraseError::EmptyRegisterToken);
                };
                let matches =
                    token
                        .zip(passphrase::unhex(&expected))
                        .is_some_and(|(given, expected)| {
                            passphrase::constant_time_eq(given, &expected)
                        });
                if !matches {
                    return Err(PassphraseError::InvalidRegisterToken);
                }
            }
            i.passphrase_hash = Some(hash.clone());
            i.session_secret = random_b64(64);
            i.password_defined = Some(true);
            if onboarding != Onboarding::Keep {
                i.register_token = None;
                i.onboarding_finished = true;
            }
            match self.save(&mut i).await {
                Ok(()) => break i,
                Err(InstanceError::Store(StoreError::Conflict)) if attempts < 2 => continue,
                Err(e) => return Err(e.into()),
            }
        };
        self.write_kdf_settings(&instance, iterations, hint).await?;
        self.delete_all_sessions(&instance).await?;
        tracing::info!(domain = %instance.domain, "passphrase set");
        Ok(instance)
    }

    /// Records the iterations (and a new security stamp, and the hint) in the
    /// bitwarden settings document.
    async fn write_kdf_settings(
        &self,
        instance: &Instance,
        iterations: u32,
        hint: Option<&str>,
    ) -> InstanceResult<()> {
        let mut doc = self.bitwarden_settings(instance).await?.unwrap_or_default();
        doc.insert("_id".into(), BITWARDEN_SETTINGS.into());
        doc.insert("passphrase_kdf".into(), 0.into());
        doc.insert("passphrase_kdf_iterations".into(), iterations.into());
        doc.insert("security_stamp".into(), new_doc_id().into());
        if let Some(h) = hint.filter(|h| !h.is_empty()) {
            doc.insert("passphrase_hint".into(), h.into());
        }
        self.store
            .put(&instance.instance_id(), &doctype(SETTINGS), doc)
            .await?;
        Ok(())
    }
}

/// Whether a stored `scrypt$N$r$p$…` hash was made with `cost`.
fn uses_cost(stored: &str, cost: passphrase::ScryptCost) -> bool {
    let mut parts = stored.split('$').skip(1);
    let n = 1u64.checked_shl(u32::from(cost.log_n)).unwrap_or(0);
    parts.next() == Some(n.to_string().as_str())
        && parts.next() == Some(cost.r.to_string().as_str())
        && parts.next() == Some(cost.p.to_string().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use passphrase::ScryptCost;

    #[test]
    fn register_tokens() {
        assert_eq!(decode_register_token("0aff").unwrap(), vec![10, 255]);
        assert_eq!(
            decode_register_token("0g").unwrap_err().to_string(),
            "encoding/hex: invalid byte: U+0067 'g'"
        );
        assert_eq!(
            decode_register_token("abc").unwrap_err().to_string(),
            "encoding/hex: odd length hex string"
        );
        let i = Instance {
            register_token: Some("q83vEjRWeJCrze8SNFZ4kA==".into()),
            ..Default::default()
        };
        let hex = i.register_token_hex().unwrap();
        assert!(register_token_matches(&i, &hex));
        assert!(register_token_matches(&i, &hex.to_uppercase()));
        assert!(!register_token_matches(&i, &hex[2..]));
        assert!(!register_token_matches(&Instance::default(), &hex));
    }

    #[test]
    fn iterations_and_costs() {
        assert!(check_iterations(0).is_ok());
        assert!(check_iterations(50_000).is_ok());
        assert!(matches!(
            check_iterations(49_999),
            Err(PassphraseError::IterationsTooLow)
        ));
        assert!(matches!(
            check_iterations(5_000_001),
            Err(PassphraseError::IterationsTooHigh)
        ));
        let fast = passphrase::hash("x", ScryptCost::FAST).unwrap();
        assert!(uses_cost(&fast, ScryptCost::FAST));
        assert!(!uses_cost(&fast, ScryptCost::PRODUCTION));
    }
}
