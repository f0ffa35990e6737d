//! [`Mailbox`]: an address with an optional display name, checked when made.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::MailError;

/// A checked mail address with an optional display name. Its JSON shape is the Cozy
/// stack's `{"name": "…", "email": "…"}` (`name` optional).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawMailbox", into = "RawMailbox")]
pub struct Mailbox {
    name: Option<String>,
    email: String,
}

impl Mailbox {
    /// A mailbox from an address and a display name (an empty name counts as none).
    pub fn new(email: &str, name: Option<&str>) -> Result<Self, MailError> {
        let email = email.trim();
        email
            .parse::<lettre::Address>()
            .map_err(|err| MailError::BadAddress {
                address: email.to_owned(),
                reason: err.to_string(),
            })?;
        let name = name
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned);
        if name
            .as_deref()
            .is_some_and(|name| name.contains(['\r', '\n']))
        {
            return Err(MailError::BadAddress {
                address: email.to_owned(),
                reason: "the display name holds a line break".into(),
            });
        }
        Ok(Mailbox {
            name,
            email: email.to_owned(),
        })
    }

    /// A mailbox without a display name.
    pub fn address(email: &str) -> Result<Self, MailError> {
        Mailbox::new(email, None)
    }

    /// The address, `user@domain`.
    pub fn email(&self) -> &str {
        &self.email
    }

    /// The display name, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The same address with another display name.
    pub fn with_name(mut self, name: Option<&str>) -> Self {
        self.name = name
            .map(str::trim)
            .filter(|name| !name.is_empty() && !name.contains(['\r', '\n']))
            .map(str::to_owned);
        self
    }

    pub(crate) fn to_lettre(&self) -> Result<lettre::message::Mailbox, MailError> {
        let email = self
            .email
            .parse::<lettre::Address>()
            .map_err(|err| MailError::BadAddress {
                address: self.email.clone(),
                reason: err.to_string(),
            })?;
        Ok(lettre::message::Mailbox::new(self.name.clone(), email))
    }
}

/// Parses `user@domain` or `Display Name <user@domain>`.
impl FromStr for Mailbox {
    type Err = MailError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = s
            .trim()
            .parse::<lettre::message::Mailbox>()
            .map_err(|err| MailError::BadAddress {
                address: s.to_owned(),
                reason: err.to_string(),
            })?;
        Mailbox::new(parsed.email.as_ref(), parsed.name.as_deref())
    }
}

/// `Display Name <user@domain>` or `user@domain`, unencoded (for logs).
impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{name} <{}>", self.email),
            None => f.write_str(&self.email),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct RawMailbox {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    email: String,
}

impl TryFrom<RawMailbox> for Mailbox {
    type Error = MailError;

    fn try_from(raw: RawMailbox) -> Result<Self, Self::Error> {
        Mailbox::new(&raw.email, raw.name.as_deref())
    }
}

impl From<Mailbox> for RawMailbox {
    fn from(mailbox: Mailbox) -> Self {
        RawMailbox {
            name: mailbox.name,
            email: mailbox.email,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let mailbox: Mailbox = "Alice Martin <alice@example.com>".parse().expect("mailbox");
        assert_eq!(mailbox.email(), "alice@example.com");
        assert_eq!(mailbox.name(), Some("Alice Martin"));
        assert_eq!(mailbox.to_string(), "Alice Martin <alice@example.com>");

        let bare: Mailbox = " bob@example.org ".parse().expect("bare address");
        assert_eq!(bare.name(), None);
        assert_eq!(bare.to_string(), "bob@example.org");
    }

    #[test]
    fn bad_addresses_are_refused() {
        for bad in [
            "",
            "bob",
            "bob@",
            "@example.org",
            "a b@example.org",
            "a@b@c",
        ] {
            let err = Mailbox::address(bad).expect_err(bad);
            assert!(matches!(err, MailError::BadAddress { .. }), "{bad}: {err}");
            assert!(!err.is_transient());
        }
        assert!(Mailbox::new("a@example.org", Some("Evil\r\nBcc: x@y.z")).is_err());
    }

    #[test]
    fn json_shape() {
        let mailbox: Mailbox =
            serde_json::from_str(r#"{"name": "Alice", "email": "alice@example.com"}"#)
                .expect("json");
        assert_eq!(mailbox.name(), Some("Alice"));
        assert_eq!(
            serde_json::to_string(&Mailbox::address("a@example.com").expect("address"))
                .expect("serialize"),
            r#"{"email":"a@example.com"}"#
        );
        assert!(serde_json::from_str::<Mailbox>(r#"{"email": "nope"}"#).is_err());
    }
}
