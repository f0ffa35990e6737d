//! Domain names of instances: validation and normalisation (spec instances 2.2).

use std::fmt;

/// A validated, normalised domain: Unicode form (IDNA-decoded), trimmed, lowercase,
/// with its port if it has one (`alice.localhost:8080`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

/// Why a domain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Domain name contains illegal characters")]
pub struct IllegalDomain;

const FORBIDDEN: &[char] = &[
    ' ', '/', ',', ';', '&', '?', '#', '@', '|', '=', '\'', '"', '\t', '\r', '\n', '\0',
];

impl Domain {
    /// Validates and normalises a domain as typed by an operator or sent in `Host`.
    pub fn parse(input: &str) -> Result<Self, IllegalDomain> {
        let trimmed = input.trim();
        if trimmed.is_empty() || trimmed == "." || trimmed == ".." || trimmed.starts_with('.') {
            return Err(IllegalDomain);
        }
        if trimmed.contains(FORBIDDEN) || trimmed.chars().any(char::is_control) {
            return Err(IllegalDomain);
        }
        // The port is not part of IDNA processing.
        let (host, port) = match trimmed.rsplit_once(':') {
            Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
            Some(_) => return Err(IllegalDomain),
            None => (trimmed, None),
        };
        if host.is_empty() || host.contains(':') {
            return Err(IllegalDomain);
        }
        let (unicode, result) = idna::domain_to_unicode(host);
        if result.is_err() || unicode.is_empty() || unicode.starts_with('.') {
            return Err(IllegalDomain);
        }
        // Stricter than the original (spec 2.2 checks no label): a name DNS cannot
        // carry (an empty label, a label over 63 bytes, over 253 in all) is refused
        // rather than creating an instance nobody can reach.
        if host.len() > 253
            || host
                .split('.')
                .any(|label| label.is_empty() || label.len() > 63)
        {
            return Err(IllegalDomain);
        }
        let mut out = unicode.to_lowercase();
        if let Some(p) = port {
            out.push(':');
            out.push_str(p);
        }
        Ok(Self(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host without its port (used for the passphrase salt `me@<host>`).
    pub fn host(&self) -> &str {
        self.0.rsplit_once(':').map_or(&self.0, |(h, _)| h)
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        let cases = [
            ("alice.example.net", "alice.example.net"),
            ("  Alice.Example.NET ", "alice.example.net"),
            ("alice.localhost:8080", "alice.localhost:8080"),
            ("xn--caf-dma.example", "café.example"),
            ("CAFÉ.example", "café.example"),
        ];
        for (input, expect) in cases {
            assert_eq!(
                Domain::parse(input).map(|d| d.0),
                Ok(expect.to_owned()),
                "{input}"
            );
        }
        assert_eq!(
            Domain::parse("alice.localhost:8080").unwrap().host(),
            "alice.localhost"
        );
    }

    #[test]
    fn refuses_illegal() {
        for bad in [
            "",
            " ",
            ".",
            "..",
            ".alice",
            "a b.c",
            "a/b",
            "a?b",
            "a#b",
            "me@x.y",
            "a;b",
            "a\nb",
            "a:b:c",
            "a.b:",
            "a.b:x",
            ":80",
            "xn--a.b",
            "bad..domain",
            "a..b:8080",
        ] {
            assert_eq!(Domain::parse(bad), Err(IllegalDomain), "{bad:?}");
        }
        assert_eq!(Domain::parse("alice.example."), Err(IllegalDomain));
        let long_label = format!("{}.example", "a".repeat(64));
        assert_eq!(Domain::parse(&long_label), Err(IllegalDomain));
        let ok_label = format!("{}.example", "a".repeat(63));
        assert!(Domain::parse(&ok_label).is_ok());
    }
}
