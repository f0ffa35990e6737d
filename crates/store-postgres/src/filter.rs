//! Mango selectors translated to SQL conditions on `jsonb`, where that can be done.
//!
//! A translation must never drop a document the selector matches: `find` re-checks
//! every row with [`Selector::matches`](hearth_store::mango::Selector::matches), so the
//! SQL only narrows the candidates. When every part of the selector translates exactly
//! (`exact`), the rows are the answer and `LIMIT` can go to the server.

use hearth_store::mango::{Cond, FieldPath, JsonType, Selector};
use serde_json::Value;
use tokio_postgres::types::ToSql;

/// Parameters of a query being built; `$n` placeholders follow their order.
#[derive(Default)]
pub(crate) struct Args(pub Vec<Box<dyn ToSql + Sync + Send>>);

impl Args {
    /// Adds a parameter and returns its placeholder.
    pub fn push(&mut self, v: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(v));
        format!("${}", self.0.len())
    }

    pub fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// SQL conditions implied by a selector, and whether they are exactly the selector.
pub(crate) struct Filter {
    pub conds: Vec<String>,
    pub exact: bool,
}

/// Translates the conjuncts of a selector that can be translated.
pub(crate) fn translate(sel: &Selector, args: &mut Args) -> Filter {
    let mut out = Filter {
        conds: Vec::new(),
        exact: true,
    };
    conjuncts(sel, args, &mut out);
    out
}

fn conjuncts(sel: &Selector, args: &mut Args, out: &mut Filter) {
    match sel {
        Selector::And(all) => all.iter().for_each(|s| conjuncts(s, args, out)),
        Selector::Field(path, cond) => match field(path, cond, args) {
            Some((sql, exact)) => {
                out.conds.push(sql);
                out.exact &= exact;
            }
            None => out.exact = false,
        },
        _ => out.exact = false,
    }
}

/// The JSON types in CouchDB collation order (booleans are one type here).
const TYPES: [&str; 6] = ["null", "boolean", "number", "string", "array", "object"];

fn type_index(v: &Value) -> usize {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

fn type_name(t: JsonType) -> &'static str {
    match t {
        JsonType::Null => "null",
        JsonType::Boolean => "boolean",
        JsonType::Number => "number",
        JsonType::String => "string",
        JsonType::Array => "array",
        JsonType::Object => "object",
    }
}

/// A condition on a field: `(sql, exact)`, or `None` when it is not translated.
fn field(path: &FieldPath, cond: &Cond, args: &mut Args) -> Option<(String, bool)> {
    let first = path.0.first()?;
    if path.0.len() == 1 && first == "_id" {
        return match cond {
            Cond::Eq(Value::String(s)) => Some((format!("id = {}", args.push(s.clone())), true)),
            Cond::Exists(b) => Some((b.to_string(), true)),
            _ => None,
        };
    }
    // `_id` and `_rev` are columns, not members of `data`.
    if first == "_id" || first == "_rev" {
        return None;
    }
    let before = args.0.len();
    let mut e = String::from("data");
    for part in &path.0 {
        e.push_str(" -> ");
        e.push_str(&args.push(part.clone()));
        e.push_str("::text");
    }
    let e = format!("({e})");
    let out = cond_sql(&e, cond, args);
    if out.is_none() {
        // Placeholders are numbered: drop the parameters of an untranslated condition.
        args.0.truncate(before);
    }
    out
}

fn cond_sql(e: &str, cond: &Cond, args: &mut Args) -> Option<(String, bool)> {
    Some(match cond {
        Cond::Exists(true) => (format!("{e} IS NOT NULL"), true),
        Cond::Exists(false) => (format!("{e} IS NULL"), true),
        Cond::Type(t) => (format!("jsonb_typeof({e}) = '{}'", type_name(*t)), true),
        Cond::Size(n) => {
            let n = i64::try_from(*n).ok()?;
            (
                format!(
                    "CASE WHEN jsonb_typeof({e}) = 'array' THEN jsonb_array_length({e}) = {}::int8 ELSE false END",
                    args.push(n)
                ),
                true,
            )
        }
        Cond::Eq(v) => match v {
            Value::Null | Value::Bool(_) | Value::String(_) => (
                format!("{e} = {}::text::jsonb", args.push(v.to_string())),
                true,
            ),
            Value::Number(n) => (
                format!(
                    "CASE WHEN jsonb_typeof({e}) = 'number' THEN {e}::float8 = {}::float8 ELSE false END",
                    args.push(n.as_f64()?)
                ),
                true,
            ),
            _ => return None,
        },
        Cond::Gt(v) | Cond::Gte(v) | Cond::Lt(v) | Cond::Lte(v) => {
            let above = matches!(cond, Cond::Gt(_) | Cond::Gte(_));
            let strict = matches!(cond, Cond::Gt(_) | Cond::Lt(_));
            let t = type_index(v);
            let (same, exact) = match v {
                Value::Number(n) => {
                    let op = match (above, strict) {
                        (true, true) => ">",
                        (true, false) => ">=",
                        (false, true) => "<",
                        (false, false) => "<=",
                    };
                    (
                        format!("{e}::float8 {op} {}::float8", args.push(n.as_f64()?)),
                        true,
                    )
                }
                Value::Null => ((!strict).to_string(), true),
                // Strings collate as ICU does, booleans and containers member-wise:
                // left to the matcher.
                _ => ("true".to_owned(), false),
            };
            let mut sql = format!("CASE jsonb_typeof({e}) WHEN '{}' THEN {same}", TYPES[t]);
            let others: Vec<&str> = if above {
                TYPES[t + 1..].to_vec()
            } else {
                TYPES[..t].to_vec()
            };
            for other in others {
                sql.push_str(&format!(" WHEN '{other}' THEN true"));
            }
            sql.push_str(" ELSE false END");
            (sql, exact)
        }
        Cond::In(xs)
            if xs
                .iter()
                .all(|x| matches!(x, Value::Null | Value::Bool(_) | Value::String(_))) =>
        {
            let texts: Vec<String> = xs.iter().map(Value::to_string).collect();
            (
                format!(
                    "({e} = ANY({}::text[]::jsonb[]) OR jsonb_typeof({e}) = 'array')",
                    args.push(texts)
                ),
                false,
            )
        }
        Cond::And(conds) => {
            let mut parts = Vec::new();
            let mut exact = true;
            for c in conds {
                let before = args.0.len();
                match cond_sql(e, c, args) {
                    Some((sql, x)) => {
                        parts.push(sql);
                        exact &= x;
                    }
                    None => {
                        args.0.truncate(before);
                        exact = false;
                    }
                }
            }
            if parts.is_empty() {
                return None;
            }
            (format!("({})", parts.join(" AND ")), exact)
        }
        _ => return None,
    })
}
