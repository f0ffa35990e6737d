//! `hearth config show`: the effective configuration as YAML, secrets masked, each value
//! followed by a comment naming its source.

use serde_norway::{Mapping, Value};

use super::{Config, Loaded};

/// What a secret is replaced with.
pub const MASK: &str = "********";

/// Renders the configuration as YAML with a `# source` comment on every value.
pub fn render(loaded: &Loaded) -> Result<String, serde_norway::Error> {
    let mut tree = serde_norway::to_value(&loaded.config)?;
    mask(&mut tree, false);
    let shape = serde_norway::to_value(Config::defaults(&loaded.config.data_dir))?;

    let mut lines = Vec::new();
    walk(&tree, &shape, &mut Vec::new(), loaded, &mut lines)?;

    let mut out = format!(
        "# Effective configuration of hearth {}; each value's source is at the end of its line.\n",
        env!("CARGO_PKG_VERSION")
    );
    match &loaded.file {
        Some(file) => out.push_str(&format!("# Configuration file: {}\n", file.display())),
        None => out
            .push_str("# Configuration file: none found (defaults, environment and flags only)\n"),
    }
    for file in &loaded.extra_files {
        out.push_str(&format!("# Layered over it: {}\n", file.display()));
    }
    out.push_str(&format!("# Secrets are shown as {MASK}.\n"));
    for warning in &loaded.warnings {
        out.push_str(&format!("# Warning: {warning}\n"));
    }
    let width = lines
        .iter()
        .filter(|l| l.source.is_some())
        .map(|l| l.text.chars().count())
        .max()
        .unwrap_or(0)
        .min(56);
    for line in lines {
        out.push_str(&line.text);
        if let Some(source) = line.source {
            let pad = width.saturating_sub(line.text.chars().count()) + 2;
            out.push_str(&" ".repeat(pad));
            out.push_str("# ");
            out.push_str(&source);
        }
        out.push('\n');
    }
    Ok(out)
}

struct Line {
    text: String,
    source: Option<String>,
}

fn walk(
    tree: &Value,
    shape: &Value,
    path: &mut Vec<String>,
    loaded: &Loaded,
    lines: &mut Vec<Line>,
) -> Result<(), serde_norway::Error> {
    let Value::Mapping(map) = tree else {
        return Ok(());
    };
    let indent = "  ".repeat(path.len());
    for (key, value) in map {
        let Some(key) = key.as_str() else { continue };
        let sub_shape = shape.get(key).unwrap_or(&Value::Null);
        path.push(key.to_owned());
        let is_section = matches!(sub_shape, Value::Mapping(m) if !m.is_empty());
        if is_section {
            lines.push(Line {
                text: format!("{indent}{key}:"),
                source: None,
            });
            walk(value, sub_shape, path, loaded, lines)?;
        } else {
            let source = Some(loaded.sources.get(&path.join(".")).label());
            match inline(value)? {
                Some(text) => lines.push(Line {
                    text: format!("{indent}{key}: {text}"),
                    source,
                }),
                None => {
                    lines.push(Line {
                        text: format!("{indent}{key}:"),
                        source,
                    });
                    for body in serde_norway::to_string(value)?.lines() {
                        lines.push(Line {
                            text: format!("{indent}  {body}"),
                            source: None,
                        });
                    }
                }
            }
        }
        path.pop();
    }
    Ok(())
}

/// A value written on its key's line, or `None` for a non-empty mapping or list.
fn inline(value: &Value) -> Result<Option<String>, serde_norway::Error> {
    match value {
        Value::Mapping(m) if !m.is_empty() => Ok(None),
        Value::Sequence(s) if !s.is_empty() => Ok(None),
        Value::Mapping(_) => Ok(Some("{}".into())),
        Value::Sequence(_) => Ok(Some("[]".into())),
        Value::Null => Ok(Some("null".into())),
        other => Ok(Some(serde_norway::to_string(other)?.trim_end().to_owned())),
    }
}

/// Whether a key names a secret: passwords, passphrases, secrets, tokens, keys.
/// Keys naming where a secret is stored (`secret_filename`) are not secrets.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    let names_a_location = ["_filename", "_file", "_path", "_dir"]
        .iter()
        .any(|s| key.ends_with(s));
    let secret = [
        "password",
        "passphrase",
        "secret",
        "token",
        "private_key",
        "api_key",
        "apikey",
    ]
    .iter()
    .any(|s| key.contains(s));
    secret && !names_a_location
}

/// Replaces every set scalar under a secret key (at any depth) with [`MASK`].
fn mask(value: &mut Value, secret: bool) {
    match value {
        Value::Mapping(map) => mask_mapping(map, secret),
        Value::Sequence(items) => items.iter_mut().for_each(|v| mask(v, secret)),
        Value::Tagged(tagged) => mask(&mut tagged.value, secret),
        Value::Null => {}
        Value::String(s) if s.is_empty() => {}
        scalar => {
            if secret {
                *scalar = Value::String(MASK.into());
            }
        }
    }
}

fn mask_mapping(map: &mut Mapping, secret: bool) {
    for (key, value) in map.iter_mut() {
        let key_is_secret = key.as_str().is_some_and(is_secret_key);
        // A URL keeps everything but its password.
        if let (Some("url"), Value::String(url)) = (key.as_str(), &mut *value) {
            *url = super::redact_url(url);
        }
        mask(value, secret || key_is_secret);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::{LoadInput, Overrides, load};

    #[test]
    fn secret_keys() {
        for key in [
            "password",
            "mail_password",
            "client_secret",
            "token",
            "admin_passphrase",
            "api_key",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["secret_filename", "host", "tokenizer_dir", "port"] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn shows_sources_and_masks_secrets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("hearth.yaml");
        std::fs::write(
            &file,
            "mail:\n  password: hunter2\ncontexts:\n  default:\n    oidc:\n      client_secret: s3cr3t\n      client_id: abc\n",
        )
        .expect("write");
        let input = LoadInput {
            file: Some(file.clone()),
            env: vec![("HEARTH_PORT".into(), "9999".into())],
            flags: Overrides {
                data_dir: Some(PathBuf::from("/srv/hearth")),
                ..Overrides::default()
            },
            ..LoadInput::default()
        };
        let text = render(&load(&input).expect("load")).expect("render");
        assert!(
            !text.contains("hunter2") && !text.contains("s3cr3t"),
            "{text}"
        );
        assert!(text.contains("client_id: abc"), "{text}");
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} in\n{text}"))
        };
        assert!(line("port: 9999").ends_with("# env HEARTH_PORT"));
        assert!(line("host: localhost").ends_with("# default"));
        assert!(line("data_dir: /srv/hearth").ends_with("# flag --data-dir"));
        assert!(line("  password: '********'").ends_with(&format!("# file {}", file.display())));
        assert!(line("  url: sqlite:///srv/hearth/db").ends_with("# default"));
        assert!(line("  secret_filename: hearth-admin-passphrase").ends_with("# default"));
        assert!(line("contexts:").ends_with(&format!("# file {}", file.display())));
        assert!(line("  delete_after: 30d").ends_with("# default"));
        // What is printed is YAML that loads back (masks aside).
        let reparsed: Value = serde_norway::from_str(&text).expect("valid YAML");
        assert_eq!(reparsed["port"], Value::Number(9999.into()));
    }
}
