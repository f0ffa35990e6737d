//! Permissions: rules on doctypes with verbs and values, parsed from scope strings
//! (spec core-api B.3), and the checks every API route uses.

use serde_json::{Value, json};

/// The HTTP verbs a rule can grant.
pub const VERBS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// One rule: a doctype (or a `prefix.*` family), verbs, and optionally the values of
/// `selector` (ids when absent) the rule is restricted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub doctype: String,
    /// Empty means every verb.
    pub verbs: Vec<String>,
    pub values: Vec<String>,
    pub selector: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scope {0:?}")]
pub struct InvalidScope(pub String);

impl Rule {
    /// Parses `type[:VERBS[:v1,v2[:selector]]]`.
    pub fn parse(s: &str) -> Result<Self, InvalidScope> {
        let bad = || InvalidScope(s.to_owned());
        let mut parts = s.splitn(4, ':');
        let doctype = parts
            .next()
            .filter(|d| !d.is_empty())
            .ok_or_else(bad)?
            .to_owned();
        let valid_type = doctype == "*"
            || doctype.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'*'
            });
        if !valid_type || doctype.starts_with('.') || doctype.contains("..") {
            return Err(bad());
        }
        let verbs = match parts.next() {
            None | Some("") | Some("ALL") => Vec::new(),
            Some(v) => {
                let verbs: Vec<String> = v.split(',').map(|x| x.trim().to_uppercase()).collect();
                if verbs
                    .iter()
                    .any(|v| !VERBS.contains(&v.as_str()) && v != "ALL")
                {
                    return Err(bad());
                }
                if verbs.iter().any(|v| v == "ALL") {
                    Vec::new()
                } else {
                    verbs
                }
            }
        };
        let values = parts
            .next()
            .map(|v| {
                v.split(',')
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let selector = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
        Ok(Self {
            doctype,
            verbs,
            values,
            selector,
        })
    }

    /// Whether this rule covers the doctype (`io.cozy.bank.*` covers `io.cozy.bank`
    /// and its sub-doctypes, for patterns with at least three dots).
    fn covers_type(&self, doctype: &str) -> bool {
        if self.doctype == "*" || self.doctype == doctype {
            return true;
        }
        match self.doctype.strip_suffix(".*") {
            Some(prefix) if self.doctype.matches('.').count() >= 3 => {
                doctype == prefix
                    || doctype
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('.'))
            }
            _ => false,
        }
    }

    fn covers_verb(&self, verb: &str) -> bool {
        let verb = if verb == "HEAD" { "GET" } else { verb };
        self.verbs.is_empty() || self.verbs.iter().any(|v| v == verb)
    }

    /// The rule as `/permissions/self` shows it.
    pub fn to_json(&self) -> Value {
        let mut r = json!({"type": self.doctype});
        if !self.verbs.is_empty() {
            r["verbs"] = json!(self.verbs);
        }
        if !self.values.is_empty() {
            r["values"] = json!(self.values);
        }
        if let Some(s) = &self.selector {
            r["selector"] = json!(s);
        }
        r
    }
}

/// A set of rules, from a token's scope or a permission document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionSet {
    pub rules: Vec<Rule>,
}

impl PermissionSet {
    /// Parses a space-separated scope string.
    pub fn from_scope(scope: &str) -> Result<Self, InvalidScope> {
        Ok(Self {
            rules: scope
                .split_whitespace()
                .map(Rule::parse)
                .collect::<Result<_, _>>()?,
        })
    }

    /// A verb on every document of a doctype (lists, `_find`, `_changes`, indexes).
    pub fn allows_whole_type(&self, verb: &str, doctype: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.covers_type(doctype) && r.covers_verb(verb) && r.values.is_empty())
    }

    /// A verb on one document (its id and, for selector rules, its fields).
    pub fn allows_doc(&self, verb: &str, doctype: &str, id: &str, doc: Option<&Value>) -> bool {
        self.rules
            .iter()
            .filter(|r| r.covers_type(doctype) && r.covers_verb(verb))
            .any(|r| {
                if r.values.is_empty() {
                    return true;
                }
                match (&r.selector, doc) {
                    (None, _) => r.values.iter().any(|v| v == id),
                    (Some(field), Some(doc)) => {
                        let value = field.split('.').try_fold(doc, |v, k| v.get(k));
                        match value {
                            Some(Value::String(s)) => r.values.contains(s),
                            Some(Value::Array(items)) => items.iter().any(|i| {
                                i.as_str().is_some_and(|s| r.values.iter().any(|v| v == s))
                            }),
                            _ => false,
                        }
                    }
                    (Some(_), None) => false,
                }
            })
    }

    /// `{rule0: {...}, rule1: {...}}` as the API shows a set.
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.rules
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("rule{i}"), r.to_json()))
                .collect(),
        )
    }
}

impl Rule {
    /// Reads a rule of a permission document: `{type, verbs?, values?, selector?}`.
    pub fn from_json(v: &Value) -> Result<Self, InvalidScope> {
        let bad = || InvalidScope(v.to_string());
        let doctype = v.get("type").and_then(Value::as_str).ok_or_else(bad)?;
        let mut rule = Rule::parse(doctype)?;
        if let Some(verbs) = v.get("verbs").and_then(Value::as_array) {
            let verbs: Vec<String> = verbs
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_uppercase)
                .collect();
            if verbs
                .iter()
                .any(|v| !VERBS.contains(&v.as_str()) && v != "ALL")
            {
                return Err(bad());
            }
            rule.verbs = if verbs.iter().any(|v| v == "ALL") {
                Vec::new()
            } else {
                verbs
            };
        }
        if let Some(values) = v.get("values").and_then(Value::as_array) {
            rule.values = values
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
        }
        rule.selector = v
            .get("selector")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        Ok(rule)
    }

    /// Whether everything this rule grants, `other` grants too.
    fn within(&self, other: &Rule) -> bool {
        if !other.covers_type(&self.doctype) || self.doctype == "*" && other.doctype != "*" {
            return false;
        }
        let verbs_ok = other.verbs.is_empty()
            || (!self.verbs.is_empty() && self.verbs.iter().all(|v| other.verbs.contains(v)));
        let values_ok = other.values.is_empty()
            || (!self.values.is_empty()
                && self.selector == other.selector
                && self.values.iter().all(|v| other.values.contains(v)));
        verbs_ok && values_ok
    }
}

impl PermissionSet {
    /// Reads `{name: rule, …}` as stored in `io.cozy.permissions` documents.
    pub fn from_json(v: &Value) -> Result<Self, InvalidScope> {
        let map = v.as_object().ok_or_else(|| InvalidScope(v.to_string()))?;
        Ok(Self {
            rules: map
                .values()
                .map(Rule::from_json)
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether this set grants nothing that `parent` does not (share links are made
    /// from a subset of their creator's permissions).
    pub fn is_subset_of(&self, parent: &PermissionSet) -> bool {
        self.rules
            .iter()
            .all(|r| parent.rules.iter().any(|p| r.within(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let p = PermissionSet::from_scope("io.cozy.contacts io.cozy.files:GET:io.cozy.files.music-dir io.cozy.jobs:POST:sendmail:worker io.cozy.bank.*:GET").unwrap();
        assert_eq!(p.rules.len(), 4);
        assert!(p.allows_whole_type("DELETE", "io.cozy.contacts"));
        assert!(
            !p.allows_whole_type("GET", "io.cozy.files"),
            "restricted to values"
        );
        assert!(p.allows_doc("GET", "io.cozy.files", "io.cozy.files.music-dir", None));
        assert!(p.allows_doc("HEAD", "io.cozy.files", "io.cozy.files.music-dir", None));
        assert!(!p.allows_doc("PUT", "io.cozy.files", "io.cozy.files.music-dir", None));
        assert!(!p.allows_doc("GET", "io.cozy.files", "other", None));
        assert!(p.allows_doc(
            "POST",
            "io.cozy.jobs",
            "x",
            Some(&json!({"worker": "sendmail"}))
        ));
        assert!(!p.allows_doc(
            "POST",
            "io.cozy.jobs",
            "x",
            Some(&json!({"worker": "konnector"}))
        ));
        assert!(p.allows_whole_type("GET", "io.cozy.bank.accounts"));
        assert!(p.allows_whole_type("GET", "io.cozy.bank"));
        assert!(!p.allows_whole_type("GET", "io.cozy.banking"));
        assert!(!p.allows_whole_type("GET", "io.cozy.notes"));
        assert_eq!(
            p.to_json()["rule1"],
            json!({"type": "io.cozy.files", "verbs": ["GET"], "values": ["io.cozy.files.music-dir"]})
        );
    }

    #[test]
    fn subsets() {
        let parent = PermissionSet::from_scope("io.cozy.files io.cozy.contacts:GET").unwrap();
        let ok = PermissionSet::from_json(
            &json!({"a": {"type": "io.cozy.files", "verbs": ["GET"], "values": ["dir1"]}}),
        )
        .unwrap();
        assert!(ok.is_subset_of(&parent));
        let wider =
            PermissionSet::from_json(&json!({"a": {"type": "io.cozy.contacts", "verbs": ["ALL"]}}))
                .unwrap();
        assert!(!wider.is_subset_of(&parent));
        let other = PermissionSet::from_json(&json!({"a": {"type": "io.cozy.notes"}})).unwrap();
        assert!(!other.is_subset_of(&parent));
        assert!(PermissionSet::from_json(&json!({"a": {"verbs": ["GET"]}})).is_err());
    }

    #[test]
    fn bad_scopes() {
        for bad in ["IO.cozy", "io.cozy.files:FETCH", ":GET", "io..cozy", ".io"] {
            assert!(PermissionSet::from_scope(bad).is_err(), "{bad}");
        }
        assert_eq!(PermissionSet::from_scope("").unwrap().rules.len(), 0);
    }
}
