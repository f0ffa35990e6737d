//! The mail templates: minijinja sources embedded from `templates/<locale>/`, the
//! locale fallback, subjects, and the rendering of one mail's subject, text and HTML.
//!
//! Each locale has a `layout.html` and a `layout.txt` (greeting and footer) that the
//! mails extend, one `<name>.html` and `<name>.txt` per mail, and `subjects.txt`
//! (`name: Subject`, itself a template). HTML is autoescaped; text and subjects are not.

use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use serde_json::{Map, Value as Json};

use crate::MailError;

/// The names of the mails the server sends.
pub const TEMPLATE_NAMES: &[&str] = &[
    "archiver",
    "export_error",
    "import_success",
    "import_error",
    "move_success",
    "move_error",
    "move_confirm",
    "passphrase_reset",
    "test",
];

/// The locales templates exist in; the first is the fallback.
pub const LOCALES: &[&str] = &["en", "fr"];

/// The locale used when the asked one has no templates.
pub const DEFAULT_LOCALE: &str = "en";

macro_rules! embed {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../templates/", $path)))),*]
    };
}

/// Every template file, by its path under `templates/`.
const SOURCES: &[(&str, &str)] = embed![
    "en/layout.html",
    "en/layout.txt",
    "en/subjects.txt",
    "en/archiver.html",
    "en/archiver.txt",
    "en/export_error.html",
    "en/export_error.txt",
    "en/import_success.html",
    "en/import_success.txt",
    "en/import_error.html",
    "en/import_error.txt",
    "en/move_success.html",
    "en/move_success.txt",
    "en/move_error.html",
    "en/move_error.txt",
    "en/move_confirm.html",
    "en/move_confirm.txt",
    "en/passphrase_reset.html",
    "en/passphrase_reset.txt",
    "en/test.html",
    "en/test.txt",
    "fr/layout.html",
    "fr/layout.txt",
    "fr/subjects.txt",
    "fr/archiver.html",
    "fr/archiver.txt",
    "fr/export_error.html",
    "fr/export_error.txt",
    "fr/import_success.html",
    "fr/import_success.txt",
    "fr/import_error.html",
    "fr/import_error.txt",
    "fr/move_success.html",
    "fr/move_success.txt",
    "fr/move_error.html",
    "fr/move_error.txt",
    "fr/move_confirm.html",
    "fr/move_confirm.txt",
    "fr/passphrase_reset.html",
    "fr/passphrase_reset.txt",
    "fr/test.html",
    "fr/test.txt",
];

/// The locale whose templates serve a language tag: the tag itself, else its primary
/// language (`fr-FR`, `fr_CA` → `fr`), else [`DEFAULT_LOCALE`].
pub fn resolve_locale(tag: &str) -> &'static str {
    let tag = tag.trim().to_ascii_lowercase().replace('_', "-");
    let primary = tag.split('-').next().unwrap_or_default();
    LOCALES
        .iter()
        .find(|locale| **locale == tag)
        .or_else(|| LOCALES.iter().find(|locale| **locale == primary))
        .copied()
        .unwrap_or(DEFAULT_LOCALE)
}

/// One rendered mail, before addressing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The locale actually used (after fallback).
    pub locale: &'static str,
    pub subject: String,
    /// The plain-text part: LF line ends, links alone on their lines.
    pub text: String,
    pub html: String,
}

/// The compiled templates. Build once ([`Templates::new`]) and share.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// Compiles every embedded template and subject.
    pub fn new() -> Result<Self, MailError> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|err| template_error("syntax", &err))?;
        env.set_syntax(syntax);
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.set_formatter(format_value);
        for (path, source) in SOURCES {
            if path.ends_with("/subjects.txt") {
                let locale = path.split('/').next().unwrap_or_default();
                for (name, subject) in parse_subjects(source) {
                    let key = subject_key(locale, name);
                    env.add_template_owned(key.clone(), subject)
                        .map_err(|err| template_error(&key, &err))?;
                }
            } else {
                env.add_template(path, source)
                    .map_err(|err| template_error(path, &err))?;
            }
        }
        Ok(Templates { env })
    }

    /// Renders the mail `name` in the locale serving `locale` (falling back to
    /// [`DEFAULT_LOCALE`] for a mail that locale lacks). `vars` are the template
    /// variables, keyed as in the Cozy stack (`PublicName`, `ArchiveLink`…): null
    /// values count as absent, and a list `AppsNotInstalled` is joined with commas.
    pub fn render(
        &self,
        name: &str,
        locale: &str,
        vars: &Map<String, Json>,
    ) -> Result<Rendered, MailError> {
        if !TEMPLATE_NAMES.contains(&name) {
            return Err(MailError::UnknownTemplate(name.to_owned()));
        }
        let wanted = resolve_locale(locale);
        let locale = [wanted, DEFAULT_LOCALE]
            .into_iter()
            .find(|locale| {
                self.env
                    .get_template(&format!("{locale}/{name}.txt"))
                    .is_ok()
                    && self
                        .env
                        .get_template(&format!("{locale}/{name}.html"))
                        .is_ok()
                    && self.env.get_template(&subject_key(locale, name)).is_ok()
            })
            .ok_or_else(|| MailError::UnknownTemplate(name.to_owned()))?;
        let ctx = Value::from(minijinja::value::Serde(prepare_vars(vars)));
        let render = |path: &str| {
            self.env
                .get_template(path)
                .and_then(|template| template.render(&ctx))
                .map_err(|err| render_error(name, path, &err))
        };
        let subject = render(&subject_key(locale, name))?;
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        let text = tidy_text(&render(&format!("{locale}/{name}.txt"))?);
        let html = render(&format!("{locale}/{name}.html"))?;
        Ok(Rendered {
            locale,
            subject,
            text,
            html,
        })
    }
}

fn subject_key(locale: &str, name: &str) -> String {
    format!("{locale}/{name}.subject")
}

/// `name: Subject` lines; blank lines and `#` comments are skipped.
fn parse_subjects(source: &'static str) -> impl Iterator<Item = (&'static str, &'static str)> {
    source
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(name, subject)| (name.trim(), subject.trim()))
}

fn prepare_vars(vars: &Map<String, Json>) -> Map<String, Json> {
    vars.iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(key, value)| match (key.as_str(), value) {
            ("AppsNotInstalled", Json::Array(items)) => {
                let names: Vec<String> = items
                    .iter()
                    .map(|item| match item {
                        Json::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                (key.clone(), Json::String(names.join(", ")))
            }
            _ => (key.clone(), value.clone()),
        })
        .collect()
}

/// Trims trailing spaces, keeps at most one blank line in a row, and ends with exactly
/// one newline, so templates can be written for readability.
fn tidy_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.trim().lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 {
                continue;
            }
        } else {
            blank_run = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// HTML escaping of `& < > " '` only: minijinja's default also escapes `/`, which
/// would turn every link into `https:&#x2f;&#x2f;…`.
fn format_value(
    out: &mut minijinja::Output<'_>,
    state: &mut minijinja::State<'_, '_>,
    value: &Value,
) -> Result<(), minijinja::Error> {
    if *state.auto_escape() == AutoEscape::Html && !value.is_safe() {
        let text = value.to_string();
        let mut escaped = String::with_capacity(text.len());
        for c in text.chars() {
            match c {
                '&' => escaped.push_str("&amp;"),
                '<' => escaped.push_str("&lt;"),
                '>' => escaped.push_str("&gt;"),
                '"' => escaped.push_str("&quot;"),
                '\'' => escaped.push_str("&#39;"),
                c => escaped.push(c),
            }
        }
        out.write_str(&escaped).map_err(minijinja::Error::from)
    } else {
        minijinja::escape_formatter(out, state, value)
    }
}

fn template_error(path: &str, err: &minijinja::Error) -> MailError {
    MailError::Render {
        template: path.to_owned(),
        reason: err.to_string(),
    }
}

fn render_error(name: &str, path: &str, err: &minijinja::Error) -> MailError {
    let mut reason = err.to_string();
    if err.kind() == minijinja::ErrorKind::UndefinedError {
        reason = format!("a variable is missing ({path}): {reason}");
    }
    MailError::Render {
        template: name.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vars(value: Json) -> Map<String, Json> {
        match value {
            Json::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn locales_fall_back() {
        assert_eq!(resolve_locale("fr"), "fr");
        assert_eq!(resolve_locale("fr-FR"), "fr");
        assert_eq!(resolve_locale("FR_ca"), "fr");
        assert_eq!(resolve_locale("en-GB"), "en");
        assert_eq!(resolve_locale("de"), "en");
        assert_eq!(resolve_locale(""), "en");
    }

    #[test]
    fn every_template_exists_in_every_locale() {
        let templates = Templates::new().expect("templates compile");
        for locale in LOCALES {
            for name in TEMPLATE_NAMES {
                for path in [
                    format!("{locale}/{name}.txt"),
                    format!("{locale}/{name}.html"),
                    subject_key(locale, name),
                ] {
                    assert!(templates.env.get_template(&path).is_ok(), "missing {path}");
                }
            }
        }
    }

    /// A file added under `templates/` but not to `SOURCES` would never be used.
    #[test]
    fn every_file_on_disk_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut on_disk = Vec::new();
        for locale in std::fs::read_dir(&root).expect("templates dir") {
            let locale = locale.expect("entry").path();
            for file in std::fs::read_dir(&locale).expect("locale dir") {
                let file = file.expect("entry").path();
                let rel = file.strip_prefix(&root).expect("under root");
                on_disk.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = SOURCES.iter().map(|(p, _)| (*p).to_owned()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
        let locales: Vec<&str> = on_disk
            .iter()
            .filter_map(|p| p.split('/').next())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(locales, LOCALES);
    }

    #[test]
    fn renders_with_links_alone_and_escaped_html() {
        let templates = Templates::new().expect("templates");
        let link = "https://alice.example.com/move/go?code=a&b=<c>";
        let out = templates
            .render(
                "passphrase_reset",
                "en-US",
                &vars(json!({"PublicName": "Alice & Bob", "ResetLink": link})),
            )
            .expect("render");
        assert_eq!(out.locale, "en");
        assert_eq!(out.subject, "Reset your Hearth password");
        assert!(out.text.lines().any(|line| line == link), "{}", out.text);
        assert!(out.text.contains("Alice & Bob"), "{}", out.text);
        assert!(out.text.ends_with('\n') && !out.text.ends_with("\n\n"));
        assert!(!out.text.contains("\n\n\n"), "{}", out.text);
        assert!(
            out.html
                .contains(r#"href="https://alice.example.com/move/go?code=a&amp;b=&lt;c&gt;""#),
            "{}",
            out.html
        );
        assert!(out.html.contains("Alice &amp; Bob"), "{}", out.html);
        assert!(!out.html.contains("&#x2f;"), "{}", out.html);
    }

    #[test]
    fn subjects_are_rendered_and_localized() {
        let templates = Templates::new().expect("templates");
        let vars = vars(json!({
            "PublicName": "Alice",
            "ConfirmLink": "https://a.example/confirm",
            "TargetDomain": "alice.newhost.example",
        }));
        let en = templates.render("move_confirm", "en", &vars).expect("en");
        let fr = templates
            .render("move_confirm", "fr-FR", &vars)
            .expect("fr");
        assert_eq!(
            en.subject,
            "Confirm moving your Hearth to alice.newhost.example"
        );
        assert_eq!(
            fr.subject,
            "Confirmez le déménagement de votre Hearth vers alice.newhost.example"
        );
        assert_eq!(fr.locale, "fr");
    }

    #[test]
    fn apps_not_installed_only_when_some() {
        let templates = Templates::new().expect("templates");
        let base = json!({"PublicName": "Alice", "CozyLink": "https://alice.example.com/"});
        let none = templates
            .render("import_success", "en", &vars(base.clone()))
            .expect("without");
        let mut with = vars(base.clone());
        with.insert("AppsNotInstalled".into(), json!(["photos", "notes"]));
        let with = templates
            .render("import_success", "en", &with)
            .expect("with");
        let mut empty = vars(base);
        empty.insert("AppsNotInstalled".into(), json!(""));
        let empty = templates
            .render("import_success", "en", &empty)
            .expect("empty");
        assert!(with.text.contains("photos, notes"), "{}", with.text);
        assert!(with.html.contains("photos, notes"), "{}", with.html);
        assert_eq!(none.text, empty.text);
        assert!(!none.text.contains("photos"));
        assert!(with.text.len() > none.text.len());
    }

    #[test]
    fn errors() {
        let templates = Templates::new().expect("templates");
        let err = templates
            .render("nope", "en", &Map::new())
            .expect_err("unknown");
        assert!(matches!(err, MailError::UnknownTemplate(ref name) if name == "nope"));
        let err = templates
            .render("archiver", "en", &vars(json!({"PublicName": "Alice"})))
            .expect_err("missing link");
        assert!(matches!(err, MailError::Render { .. }), "{err}");
        assert!(err.to_string().contains("missing"), "{err}");
        let err = templates
            .render(
                "archiver",
                "en",
                &vars(json!({"PublicName": "Alice", "ArchiveLink": null})),
            )
            .expect_err("null link");
        assert!(matches!(err, MailError::Render { .. }), "{err}");
    }

    #[test]
    fn tidy() {
        assert_eq!(tidy_text("\n\na  \n\n\n\nb\n\n"), "a\n\nb\n");
    }
}
