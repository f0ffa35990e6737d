//! The `index.html` of a web app is a Go `html/template` in the original; the Cozy
//! apps use a small part of it: `{{.Field}}` values (optionally with `{{- -}}` trim
//! markers), `{{if .Field}} … {{else}} … {{end}}` and comments. That part is rendered
//! here; a file using anything else is served as it is, as the original does when
//! its template does not parse. Unknown fields render as empty strings.

use std::collections::HashMap;

/// A value of the template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// Escaped for HTML text and attributes, as Go does (`"` → `&#34;`).
    Text(String),
    /// Trusted markup, inserted as it is (`template.HTML` in the original).
    Html(String),
    /// `true` / `false`.
    Bool(bool),
}

impl Value {
    fn truthy(&self) -> bool {
        match self {
            Self::Text(s) | Self::Html(s) => !s.is_empty(),
            Self::Bool(b) => *b,
        }
    }

    fn render(&self, out: &mut String) {
        match self {
            Self::Text(s) => escape_into(s, out),
            Self::Html(s) => out.push_str(s),
            Self::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
    }
}

/// Go's HTML escaper: safe in text and in quoted attribute values.
pub(crate) fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '+' => out.push_str("&#43;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

#[derive(Debug)]
enum Token<'a> {
    Text(&'a str),
    Field(&'a str),
    If(&'a str),
    Else,
    End,
}

/// Splits the template into tokens; `None` when it uses something not supported.
fn tokenize<'a>(src: &'a str) -> Option<Vec<Token<'a>>> {
    let mut tokens = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[start + 2..];
        let end = after.find("}}")?;
        let mut inner = &after[..end];
        if let Some(i) = inner.strip_prefix("- ") {
            text = text.trim_end();
            inner = i;
        }
        trim_next = false;
        if let Some(i) = inner.strip_suffix(" -") {
            trim_next = true;
            inner = i;
        }
        tokens.push(Token::Text(text));
        let inner = inner.trim();
        let field = |s: &'a str| -> Option<&'a str> {
            let name = s.strip_prefix('.')?;
            (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
                .then_some(name)
        };
        if inner.starts_with("/*") && inner.ends_with("*/") {
            // A comment.
        } else if inner == "else" {
            tokens.push(Token::Else);
        } else if inner == "end" {
            tokens.push(Token::End);
        } else if let Some(cond) = inner.strip_prefix("if ") {
            tokens.push(Token::If(field(cond.trim())?));
        } else {
            tokens.push(Token::Field(field(inner)?));
        }
        rest = &after[end + 2..];
    }
    tokens.push(Token::Text(if trim_next {
        rest.trim_start()
    } else {
        rest
    }));
    Some(tokens)
}

/// Renders `src` with `values`; `None` when the template cannot be rendered (then the
/// file is served unchanged).
pub(crate) fn render(src: &str, values: &HashMap<&str, Value>) -> Option<String> {
    let tokens = tokenize(src)?;
    let empty = Value::Text(String::new());
    let get = |name: &str| values.get(name).unwrap_or(&empty);
    let mut out = String::with_capacity(src.len() + 1024);
    // For each open `if`: whether its parent is shown, and its condition.
    let mut stack: Vec<(bool, bool, bool)> = Vec::new();
    let mut shown = true;
    for token in tokens {
        match token {
            Token::Text(t) if shown => out.push_str(t),
            Token::Field(name) if shown => get(name).render(&mut out),
            Token::Text(_) | Token::Field(_) => {}
            Token::If(name) => {
                let cond = get(name).truthy();
                stack.push((shown, cond, false));
                shown = shown && cond;
            }
            Token::Else => {
                let top = stack.last_mut()?;
                if top.2 {
                    return None;
                }
                top.2 = true;
                shown = top.0 && !top.1;
            }
            Token::End => {
                shown = stack.pop()?.0;
            }
        }
    }
    stack.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> HashMap<&'static str, Value> {
        HashMap::from([
            ("Token", Value::Text("a.b+c".into())),
            ("CozyData", Value::Text(r#"{"k":"<v>"}"#.into())),
            ("CozyBar", Value::Html("<script></script>".into())),
            ("Tracking", Value::Bool(false)),
        ])
    }

    #[test]
    fn fields_are_escaped() {
        let out = render(
            r#"<div data-cozy="{{.CozyData}}" data-t="{{ .Token }}">{{.CozyBar}}{{.Nope}}</div>"#,
            &values(),
        )
        .unwrap();
        assert_eq!(
            out,
            r#"<div data-cozy="{&#34;k&#34;:&#34;&lt;v&gt;&#34;}" data-t="a.b&#43;c"><script></script></div>"#
        );
    }

    #[test]
    fn conditions_trims_and_comments() {
        let v = values();
        assert_eq!(
            render(
                "{{if .Token}}yes{{else}}no{{end}}|{{if .Tracking}}t{{end}}",
                &v
            )
            .unwrap(),
            "yes|"
        );
        assert_eq!(
            render("a  {{- .Tracking -}}  b{{/* c */}}", &v).unwrap(),
            "afalseb"
        );
        assert_eq!(
            render("{{if .X}}{{if .Token}}x{{end}}{{else}}y{{end}}", &v).unwrap(),
            "y"
        );
    }

    #[test]
    fn unsupported_templates_are_not_rendered() {
        let v = values();
        for src in [
            "{{ message }}",
            "{{range .X}}{{end}}",
            "{{if .X}}",
            "{{end}}",
            "{{.X",
            "{{if .X}}a{{else}}b{{else}}c{{end}}",
        ] {
            assert_eq!(render(src, &v), None, "{src}");
        }
        assert_eq!(render("no actions", &v).unwrap(), "no actions");
    }
}
