//! Mango queries: parsing selectors and find requests, and matching documents.
//!
//! The matcher here is the single source of truth for what a selector means; backends
//! use indexes to narrow the candidates and then call [`Selector::matches`] on each.

use std::cmp::Ordering;

use hearth_core::JsonMap;
use serde_json::Value;

use crate::{StoreError, StoreResult, collate};

/// A dotted field path such as `metadata.datetime` (`\.` escapes a literal dot).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath(pub Vec<String>);

impl FieldPath {
    pub fn parse(s: &str) -> StoreResult<Self> {
        let mut parts = vec![String::new()];
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(n) => parts.last_mut().map_or((), |p| p.push(n)),
                    None => return Err(StoreError::invalid(format!("invalid field name {s:?}"))),
                },
                '.' => parts.push(String::new()),
                c => parts.last_mut().map_or((), |p| p.push(c)),
            }
        }
        if s.is_empty() || parts.iter().any(String::is_empty) {
            return Err(StoreError::invalid(format!("invalid field name {s:?}")));
        }
        Ok(Self(parts))
    }

    /// The value at this path, if every step is an object member.
    pub fn get<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        self.0.iter().try_fold(doc, |v, k| v.as_object()?.get(k))
    }

    /// Like [`FieldPath::get`] on a document's members.
    pub fn get_in<'a>(&self, doc: &'a JsonMap) -> Option<&'a Value> {
        let (first, rest) = self.0.split_first()?;
        rest.iter()
            .try_fold(doc.get(first)?, |v, k| v.as_object()?.get(k))
    }

    /// The dotted form, escaping dots inside names.
    pub fn dotted(&self) -> String {
        self.0
            .iter()
            .map(|p| p.replace('.', "\\."))
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// A parsed Mango selector.
#[derive(Debug, Clone)]
pub enum Selector {
    And(Vec<Selector>),
    Or(Vec<Selector>),
    Nor(Vec<Selector>),
    Not(Box<Selector>),
    /// A condition on a field (an empty path is the value itself, inside `$elemMatch`).
    Field(FieldPath, Cond),
}

/// A condition on one value.
#[derive(Debug, Clone)]
pub enum Cond {
    Eq(Value),
    Ne(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Type(JsonType),
    Size(u64),
    Mod(i64, i64),
    Regex(Box<regex_lite::Regex>),
    All(Vec<Value>),
    ElemMatch(Box<Selector>),
    AllMatch(Box<Selector>),
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Nor(Vec<Cond>),
    Not(Box<Cond>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    Null,
    Boolean,
    Number,
    String,
    Array,
    Object,
}

impl Selector {
    /// Parses a selector object (`{"name": "x", "age": {"$gt": 3}}`).
    pub fn parse(v: &Value) -> StoreResult<Self> {
        let obj = v
            .as_object()
            .ok_or_else(|| StoreError::invalid("selector must be a JSON object"))?;
        parse_object(obj, &[])
    }

    /// The selector that matches everything.
    pub fn all() -> Self {
        Self::And(Vec::new())
    }

    /// Whether a document (or, inside `$elemMatch`, any value) matches.
    pub fn matches(&self, doc: &Value) -> bool {
        match self {
            Self::And(all) => all.iter().all(|s| s.matches(doc)),
            Self::Or(any) => any.iter().any(|s| s.matches(doc)),
            Self::Nor(none) => !none.iter().any(|s| s.matches(doc)),
            Self::Not(s) => !s.matches(doc),
            Self::Field(path, cond) => {
                let value = if path.0.is_empty() {
                    Some(doc)
                } else {
                    path.get(doc)
                };
                match value {
                    None => matches!(cond, Cond::Exists(false)),
                    Some(v) => cond.matches(v),
                }
            }
        }
    }

    /// The conditions that must all hold, by field: the top-level `$and` members.
    pub fn required_conditions(&self) -> Vec<(&FieldPath, &Cond)> {
        let mut out = Vec::new();
        fn walk<'a>(s: &'a Selector, out: &mut Vec<(&'a FieldPath, &'a Cond)>) {
            match s {
                Selector::And(all) => all.iter().for_each(|s| walk(s, out)),
                Selector::Field(p, Cond::And(conds)) => conds.iter().for_each(|c| out.push((p, c))),
                Selector::Field(p, c) => out.push((p, c)),
                _ => {}
            }
        }
        walk(self, &mut out);
        out
    }
}

fn invalid<T>(msg: impl Into<String>) -> StoreResult<T> {
    Err(StoreError::invalid(msg))
}

/// Parses the members of a selector object under the field `prefix`.
fn parse_object(obj: &JsonMap, prefix: &[String]) -> StoreResult<Selector> {
    let mut parts = Vec::with_capacity(obj.len());
    for (key, value) in obj {
        parts.push(parse_member(key, value, prefix)?);
    }
    Ok(if parts.len() == 1 {
        parts.remove(0)
    } else {
        Selector::And(parts)
    })
}

fn parse_member(key: &str, value: &Value, prefix: &[String]) -> StoreResult<Selector> {
    let list = |v: &Value| -> StoreResult<Vec<Selector>> {
        let items = v
            .as_array()
            .ok_or_else(|| StoreError::invalid(format!("{key} expects an array")))?;
        items
            .iter()
            .map(|i| match i.as_object() {
                Some(o) => parse_object(o, prefix),
                None => invalid(format!("{key} expects an array of objects")),
            })
            .collect()
    };
    match key {
        "$and" => Ok(Selector::And(list(value)?)),
        "$or" => Ok(Selector::Or(list(value)?)),
        "$nor" => Ok(Selector::Nor(list(value)?)),
        "$not" => match value.as_object() {
            Some(o) => Ok(Selector::Not(Box::new(parse_object(o, prefix)?))),
            None => invalid("$not expects an object"),
        },
        k if k.starts_with('$') => Ok(Selector::Field(
            FieldPath(prefix.to_vec()),
            parse_operator(k, value)?,
        )),
        k => {
            let mut path = prefix.to_vec();
            path.extend(FieldPath::parse(k)?.0);
            match value {
                Value::Object(o) if o.keys().any(|k| k.starts_with('$')) => {
                    if !o.keys().all(|k| k.starts_with('$')) {
                        return invalid(format!("field {k:?} mixes operators and sub-fields"));
                    }
                    let mut conds = o
                        .iter()
                        .map(|(op, arg)| parse_operator(op, arg))
                        .collect::<StoreResult<Vec<_>>>()?;
                    let cond = if conds.len() == 1 {
                        conds.remove(0)
                    } else {
                        Cond::And(conds)
                    };
                    Ok(Selector::Field(FieldPath(path), cond))
                }
                Value::Object(o) if !o.is_empty() => parse_object(o, &path),
                v => Ok(Selector::Field(FieldPath(path), Cond::Eq(v.clone()))),
            }
        }
    }
}

fn parse_operator(op: &str, arg: &Value) -> StoreResult<Cond> {
    let array = || -> StoreResult<Vec<Value>> {
        arg.as_array()
            .cloned()
            .ok_or_else(|| StoreError::invalid(format!("{op} expects an array")))
    };
    let conds = || -> StoreResult<Vec<Cond>> {
        let items = arg
            .as_array()
            .ok_or_else(|| StoreError::invalid(format!("{op} expects an array")))?;
        items.iter().map(parse_cond_object).collect()
    };
    let sub_selector = || -> StoreResult<Box<Selector>> {
        match arg.as_object() {
            Some(o) => Ok(Box::new(parse_object(o, &[])?)),
            None => invalid(format!("{op} expects an object")),
        }
    };
    Ok(match op {
        "$eq" => Cond::Eq(arg.clone()),
        "$ne" => Cond::Ne(arg.clone()),
        "$gt" => Cond::Gt(arg.clone()),
        "$gte" => Cond::Gte(arg.clone()),
        "$lt" => Cond::Lt(arg.clone()),
        "$lte" => Cond::Lte(arg.clone()),
        "$in" => Cond::In(array()?),
        "$nin" => Cond::Nin(array()?),
        "$all" => Cond::All(array()?),
        "$exists" => match arg {
            Value::Bool(b) => Cond::Exists(*b),
            _ => return invalid("$exists expects a boolean"),
        },
        "$type" => Cond::Type(match arg.as_str() {
            Some("null") => JsonType::Null,
            Some("boolean") => JsonType::Boolean,
            Some("number") => JsonType::Number,
            Some("string") => JsonType::String,
            Some("array") => JsonType::Array,
            Some("object") => JsonType::Object,
            _ => {
                return invalid(
                    "$type expects one of null, boolean, number, string, array, object",
                );
            }
        }),
        "$size" => match arg.as_u64() {
            Some(n) => Cond::Size(n),
            None => return invalid("$size expects a non-negative integer"),
        },
        "$mod" => match arg.as_array().map(Vec::as_slice) {
            Some([d, r]) => match (d.as_i64(), r.as_i64()) {
                (Some(d), Some(r)) if d != 0 => Cond::Mod(d, r),
                _ => return invalid("$mod expects [divisor, remainder] integers, divisor not 0"),
            },
            _ => return invalid("$mod expects [divisor, remainder]"),
        },
        "$regex" => match arg.as_str() {
            Some(re) => match regex_lite::Regex::new(re) {
                Ok(r) => Cond::Regex(Box::new(r)),
                Err(e) => return invalid(format!("invalid $regex: {e}")),
            },
            None => return invalid("$regex expects a string"),
        },
        "$elemMatch" => Cond::ElemMatch(sub_selector()?),
        "$allMatch" => Cond::AllMatch(sub_selector()?),
        "$and" => Cond::And(conds()?),
        "$or" => Cond::Or(conds()?),
        "$nor" => Cond::Nor(conds()?),
        "$not" => Cond::Not(Box::new(parse_cond_object(arg)?)),
        other => return invalid(format!("unknown operator {other}")),
    })
}

/// Parses `{"$gt": 1, "$lt": 5}` (or a literal, meaning `$eq`) as one condition.
fn parse_cond_object(v: &Value) -> StoreResult<Cond> {
    match v {
        Value::Object(o) if o.keys().all(|k| k.starts_with('$')) && !o.is_empty() => {
            let mut conds = o
                .iter()
                .map(|(op, arg)| parse_operator(op, arg))
                .collect::<StoreResult<Vec<_>>>()?;
            Ok(if conds.len() == 1 {
                conds.remove(0)
            } else {
                Cond::And(conds)
            })
        }
        v => Ok(Cond::Eq(v.clone())),
    }
}

impl Cond {
    /// Whether a present value satisfies the condition.
    pub fn matches(&self, v: &Value) -> bool {
        let c = |x: &Value| collate::cmp(v, x);
        match self {
            Self::Eq(x) => c(x) == Ordering::Equal,
            Self::Ne(x) => c(x) != Ordering::Equal,
            Self::Gt(x) => c(x) == Ordering::Greater,
            Self::Gte(x) => c(x) != Ordering::Less,
            Self::Lt(x) => c(x) == Ordering::Less,
            Self::Lte(x) => c(x) != Ordering::Greater,
            Self::In(xs) => xs.iter().any(|x| member_equal(v, x)),
            Self::Nin(xs) => !xs.iter().any(|x| member_equal(v, x)),
            Self::Exists(b) => *b,
            Self::Type(t) => {
                *t == match v {
                    Value::Null => JsonType::Null,
                    Value::Bool(_) => JsonType::Boolean,
                    Value::Number(_) => JsonType::Number,
                    Value::String(_) => JsonType::String,
                    Value::Array(_) => JsonType::Array,
                    Value::Object(_) => JsonType::Object,
                }
            }
            Self::Size(n) => v.as_array().is_some_and(|a| a.len() as u64 == *n),
            Self::Mod(d, r) => v.as_i64().is_some_and(|x| x % d == *r),
            Self::Regex(re) => v.as_str().is_some_and(|s| re.is_match(s)),
            Self::All(xs) => match v {
                Value::Array(items) => {
                    !xs.is_empty()
                        && xs
                            .iter()
                            .all(|x| items.iter().any(|i| collate::cmp(i, x).is_eq()))
                }
                _ => false,
            },
            Self::ElemMatch(s) => v.as_array().is_some_and(|a| a.iter().any(|i| s.matches(i))),
            Self::AllMatch(s) => v
                .as_array()
                .is_some_and(|a| !a.is_empty() && a.iter().all(|i| s.matches(i))),
            Self::And(cs) => cs.iter().all(|cond| cond.matches(v)),
            Self::Or(cs) => cs.iter().any(|cond| cond.matches(v)),
            Self::Nor(cs) => !cs.iter().any(|cond| cond.matches(v)),
            Self::Not(cond) => !cond.matches(v),
        }
    }
}

/// `$in` semantics: the value equals the candidate, or (for an array) one of its items does.
fn member_equal(v: &Value, x: &Value) -> bool {
    collate::cmp(v, x).is_eq()
        || v.as_array()
            .is_some_and(|a| a.iter().any(|i| collate::cmp(i, x).is_eq()))
}

/// Sort direction; CouchDB requires every sort field to share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    Asc,
    Desc,
}

/// An index declared by a client (`POST /data/:doctype/_index`).
#[derive(Debug, Clone, PartialEq)]
pub struct IndexDef {
    /// Design document name, without `_design/`.
    pub ddoc: String,
    pub name: String,
    pub fields: Vec<FieldPath>,
    /// Only documents matching this selector are in the index (kept as given).
    pub partial_filter_selector: Option<Value>,
}

impl IndexDef {
    /// Parses the body of `POST _index`: `{index: {fields, partial_filter_selector?}, ddoc?, name?}`.
    pub fn parse(v: &Value) -> StoreResult<Self> {
        let index = v
            .get("index")
            .and_then(Value::as_object)
            .ok_or_else(|| StoreError::invalid("index must be an object with fields"))?;
        let raw_fields = index
            .get("fields")
            .and_then(Value::as_array)
            .ok_or_else(|| StoreError::invalid("index.fields must be an array"))?;
        if raw_fields.is_empty() {
            return invalid("index.fields must not be empty");
        }
        let fields = raw_fields
            .iter()
            .map(|f| match f {
                Value::String(s) => FieldPath::parse(s),
                Value::Object(o) if o.len() == 1 => {
                    FieldPath::parse(o.keys().next().map_or("", |k| k))
                }
                _ => invalid("index.fields items must be names or {name: direction}"),
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let pfs = index
            .get("partial_filter_selector")
            .or_else(|| v.get("partial_filter_selector"))
            .cloned();
        if let Some(s) = &pfs {
            Selector::parse(s)?;
        }
        let text = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let generated = format!(
            "by_{}",
            fields
                .iter()
                .map(|f| f.dotted().replace('.', "_"))
                .collect::<Vec<_>>()
                .join("_and_")
        );
        let ddoc = text("ddoc").map_or_else(
            || generated.clone(),
            |d| d.trim_start_matches("_design/").to_owned(),
        );
        let name = text("name").unwrap_or(generated);
        Ok(Self {
            ddoc,
            name,
            fields,
            partial_filter_selector: pfs,
        })
    }

    /// The CouchDB design document body that describes this index.
    pub fn design_doc(&self) -> Value {
        let fields: JsonMap = self
            .fields
            .iter()
            .map(|f| (f.dotted(), Value::String("asc".into())))
            .collect();
        let def_fields: Vec<Value> = self
            .fields
            .iter()
            .map(|f| Value::String(f.dotted()))
            .collect();
        let mut map = JsonMap::new();
        map.insert("fields".into(), Value::Object(fields));
        map.insert(
            "partial_filter_selector".into(),
            self.partial_filter_selector
                .clone()
                .unwrap_or_else(|| Value::Object(JsonMap::new())),
        );
        serde_json::json!({
            "language": "query",
            "views": { self.name.clone(): {
                "map": map,
                "reduce": "_count",
                "options": {"def": {"fields": def_fields}},
            }},
        })
    }
}

/// A `_find` request.
#[derive(Debug, Clone)]
pub struct FindQuery {
    pub selector: Selector,
    pub sort: Vec<FieldPath>,
    pub direction: Direction,
    /// `None` means every match (the HTTP layer applies the API's default of 100).
    pub limit: Option<usize>,
    pub skip: usize,
    pub bookmark: Option<String>,
    pub fields: Option<Vec<FieldPath>>,
    /// `(ddoc without _design/, optional name)`.
    pub use_index: Option<(String, Option<String>)>,
}

impl FindQuery {
    /// A query for `selector` with no sort, limit or projection.
    pub fn new(selector: Selector) -> Self {
        Self {
            selector,
            sort: Vec::new(),
            direction: Direction::Asc,
            limit: None,
            skip: 0,
            bookmark: None,
            fields: None,
            use_index: None,
        }
    }

    /// Parses a `_find` body. Unknown keys are ignored, as CouchDB does.
    pub fn parse(v: &Value) -> StoreResult<Self> {
        let selector = Selector::parse(
            v.get("selector")
                .ok_or_else(|| StoreError::invalid("selector is required"))?,
        )?;
        let mut q = Self::new(selector);
        if let Some(sort) = v.get("sort") {
            let items = sort
                .as_array()
                .ok_or_else(|| StoreError::invalid("sort must be an array"))?;
            let mut dirs = Vec::new();
            for item in items {
                let (field, dir) = match item {
                    Value::String(s) => (s.as_str(), Direction::Asc),
                    Value::Object(o) if o.len() == 1 => {
                        let (k, d) = o
                            .iter()
                            .next()
                            .ok_or_else(|| StoreError::invalid("empty sort item"))?;
                        let dir = match d.as_str() {
                            Some("asc") => Direction::Asc,
                            Some("desc") => Direction::Desc,
                            _ => return invalid("sort direction must be \"asc\" or \"desc\""),
                        };
                        (k.as_str(), dir)
                    }
                    _ => return invalid("sort items must be field names or {field: direction}"),
                };
                q.sort.push(FieldPath::parse(field)?);
                dirs.push(dir);
            }
            if dirs.windows(2).any(|w| w[0] != w[1]) {
                return invalid("unsupported mixed sort: all sort fields must share one direction");
            }
            q.direction = dirs.first().copied().unwrap_or_default();
        }
        let count = |k: &str| -> StoreResult<Option<usize>> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(n) => n.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                    StoreError::invalid(format!("{k} must be a non-negative integer"))
                }),
            }
        };
        q.limit = count("limit")?;
        q.skip = count("skip")?.unwrap_or(0);
        q.bookmark = v
            .get("bookmark")
            .and_then(Value::as_str)
            .filter(|b| !b.is_empty() && *b != "nil")
            .map(str::to_owned);
        if let Some(fields) = v.get("fields") {
            let items = fields
                .as_array()
                .ok_or_else(|| StoreError::invalid("fields must be an array"))?;
            let paths = items
                .iter()
                .map(|f| {
                    f.as_str()
                        .ok_or_else(|| StoreError::invalid("fields must be strings"))
                        .and_then(FieldPath::parse)
                })
                .collect::<StoreResult<Vec<_>>>()?;
            q.fields = (!paths.is_empty()).then_some(paths);
        }
        q.use_index = match v.get("use_index") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some((s.trim_start_matches("_design/").to_owned(), None)),
            Some(Value::Array(a)) => match a.as_slice() {
                [] => None,
                [Value::String(d)] => Some((d.trim_start_matches("_design/").to_owned(), None)),
                [Value::String(d), Value::String(n)] => {
                    Some((d.trim_start_matches("_design/").to_owned(), Some(n.clone())))
                }
                _ => return invalid("use_index must be a design document name or [ddoc, name]"),
            },
            Some(_) => return invalid("use_index must be a string or an array"),
        };
        Ok(q)
    }

    /// The sort keys of a document for this query, or `None` when it lacks a sorted
    /// field (such documents are never returned by a sorted query).
    pub fn sort_keys(&self, doc: &JsonMap) -> Option<Vec<Vec<u8>>> {
        self.sort
            .iter()
            .map(|p| p.get_in(doc).map(collate::sort_key))
            .collect()
    }
}

/// Keeps only the requested fields of a document (dotted paths keep their parents).
pub fn project(doc: JsonMap, fields: &[FieldPath]) -> JsonMap {
    let mut out = JsonMap::new();
    for path in fields {
        if let Some(v) = path.get_in(&doc) {
            insert_at(&mut out, &path.0, v.clone());
        }
    }
    out
}

fn insert_at(target: &mut JsonMap, path: &[String], v: Value) {
    match path {
        [] => {}
        [last] => {
            target.insert(last.clone(), v);
        }
        [first, rest @ ..] => {
            let entry = target
                .entry(first.clone())
                .or_insert_with(|| Value::Object(JsonMap::new()));
            if !entry.is_object() {
                *entry = Value::Object(JsonMap::new());
            }
            if let Value::Object(inner) = entry {
                insert_at(inner, rest, v);
            }
        }
    }
}

/// Where a paginated query resumes: the sort keys and id of the last document returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bookmark {
    pub keys: Vec<Vec<u8>>,
    pub id: String,
}

impl Bookmark {
    pub fn encode(&self) -> String {
        use base64::Engine;
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|k| Value::String(base64::engine::general_purpose::STANDARD_NO_PAD.encode(k)))
            .collect();
        let json = serde_json::json!([keys, self.id]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
    }

    pub fn decode(s: &str) -> StoreResult<Self> {
        use base64::Engine;
        let bad = || StoreError::invalid("invalid bookmark");
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| bad())?;
        let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
        let (keys, id) = match v.as_array().map(Vec::as_slice) {
            Some([Value::Array(keys), Value::String(id)]) => (keys, id.clone()),
            _ => return Err(bad()),
        };
        let keys = keys
            .iter()
            .map(|k| {
                k.as_str()
                    .and_then(|k| {
                        base64::engine::general_purpose::STANDARD_NO_PAD
                            .decode(k)
                            .ok()
                    })
                    .ok_or_else(bad)
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Self { keys, id })
    }

    /// Whether a document with these keys and id comes after the bookmark.
    pub fn is_before(&self, keys: &[Vec<u8>], id: &str, dir: Direction) -> bool {
        let o = self
            .keys
            .as_slice()
            .cmp(keys)
            .then_with(|| self.id.as_str().cmp(id));
        match dir {
            Direction::Asc => o == Ordering::Less,
            Direction::Desc => o == Ordering::Greater,
        }
    }
}

/// The warning of a query that no index serves.
pub const NO_INDEX_WARNING: &str =
    "No matching index found, create an index to optimize query time.";

/// Whether a condition implies a key range on its field (an index can narrow it).
pub fn is_range(c: &Cond) -> bool {
    matches!(
        c,
        Cond::Eq(_) | Cond::Gt(_) | Cond::Gte(_) | Cond::Lt(_) | Cond::Lte(_) | Cond::Exists(true)
    )
}

/// Chooses the index a query uses among `indexes` (CouchDB's rules, the same for
/// every backend): the one `use_index` names if it fits the sort, else the narrowest
/// one whose fields start with the sort, else without a sort the one whose leading
/// fields are constrained the most; indexes with a partial filter only when named.
/// Answers the position of the index and the warning to return, if any.
pub fn choose_index(indexes: &[&IndexDef], q: &FindQuery) -> (Option<usize>, Option<String>) {
    let conds = q.selector.required_conditions();
    let fits =
        |d: &IndexDef| d.fields.len() >= q.sort.len() && d.fields[..q.sort.len()] == q.sort[..];
    if let Some((ddoc, name)) = &q.use_index {
        let wanted = indexes
            .iter()
            .position(|d| &d.ddoc == ddoc && name.as_ref().is_none_or(|n| n == &d.name));
        match wanted {
            Some(i) if fits(indexes[i]) => return (Some(i), None),
            _ => {
                let warning = format!(
                    "{ddoc} was not used because it does not contain a valid index for this query."
                );
                let (auto, _) = choose_index(
                    indexes,
                    &FindQuery {
                        use_index: None,
                        ..q.clone()
                    },
                );
                return (auto, Some(warning));
            }
        }
    }
    // Indexes with a partial filter are only used when asked for, as in CouchDB.
    let candidates = indexes
        .iter()
        .enumerate()
        .filter(|(_, d)| d.partial_filter_selector.is_none() && fits(d));
    let best = if q.sort.is_empty() {
        let score = |d: &IndexDef| {
            d.fields
                .iter()
                .take_while(|f| conds.iter().any(|(p, c)| p == f && is_range(c)))
                .count()
        };
        candidates
            .map(|(i, d)| (score(d), i))
            .filter(|(s, _)| *s > 0)
            .max_by_key(|(s, _)| *s)
            .map(|(_, i)| i)
    } else {
        candidates
            .min_by_key(|(_, d)| d.fields.len())
            .map(|(i, _)| i)
    };
    let warning = best.is_none().then(|| NO_INDEX_WARNING.to_owned());
    (best, warning)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(selector: Value, doc: Value, expect: bool) {
        let s = Selector::parse(&selector).unwrap();
        assert_eq!(s.matches(&doc), expect, "{selector} on {doc}");
    }

    #[test]
    fn operators() {
        let doc = json!({"name": "Alice", "age": 30, "tags": ["a", "b"], "meta": {"dt": "2020"}, "n": null});
        let cases = [
            (json!({"name": "Alice"}), true),
            (json!({"name": "alice"}), false),
            (json!({"name": {"$eq": "Alice"}}), true),
            (json!({"name": {"$ne": "Bob"}}), true),
            (json!({"missing": {"$ne": "Bob"}}), false),
            (json!({"age": {"$gt": 29, "$lt": 31}}), true),
            (json!({"age": {"$gte": 30}}), true),
            (json!({"age": {"$lte": 29}}), false),
            (json!({"age": {"$gt": null}}), true),
            (json!({"n": {"$gt": null}}), false),
            (json!({"missing": {"$gt": null}}), false),
            (json!({"name": {"$gt": 5}}), true),
            (json!({"age": {"$in": [1, 30]}}), true),
            (json!({"tags": {"$in": ["b"]}}), true),
            (json!({"tags": {"$nin": ["b"]}}), false),
            (json!({"age": {"$nin": [1, 2]}}), true),
            (json!({"age": {"$exists": true}}), true),
            (json!({"missing": {"$exists": false}}), true),
            (json!({"age": {"$exists": false}}), false),
            (json!({"age": {"$type": "number"}}), true),
            (json!({"n": {"$type": "null"}}), true),
            (json!({"tags": {"$size": 2}}), true),
            (json!({"age": {"$mod": [7, 2]}}), true),
            (json!({"name": {"$regex": "^Al"}}), true),
            (json!({"name": {"$regex": "ice$"}}), true),
            (json!({"name": {"$regex": "^al"}}), false),
            (json!({"tags": {"$all": ["a", "b"]}}), true),
            (json!({"tags": {"$all": ["a", "c"]}}), false),
            (json!({"tags": {"$elemMatch": {"$eq": "b"}}}), true),
            (json!({"tags": {"$allMatch": {"$in": ["a", "b"]}}}), true),
            (json!({"tags": {"$allMatch": {"$eq": "a"}}}), false),
            (json!({"meta.dt": "2020"}), true),
            (json!({"meta": {"dt": "2020"}}), true),
            (json!({"meta": {"dt": {"$gt": "2019"}}}), true),
            (json!({"$or": [{"name": "Bob"}, {"age": 30}]}), true),
            (json!({"$and": [{"name": "Bob"}, {"age": 30}]}), false),
            (json!({"$nor": [{"name": "Bob"}, {"age": 31}]}), true),
            (json!({"$not": {"name": "Bob"}}), true),
            (json!({"$not": {"missing": 1}}), true),
            (json!({"age": {"$not": {"$gt": 40}}}), true),
            (json!({"age": {"$or": [{"$lt": 10}, {"$gt": 20}]}}), true),
            (json!({}), true),
        ];
        for (sel, expect) in cases {
            check(sel, doc.clone(), expect);
        }
    }

    #[test]
    fn elem_match_on_objects() {
        check(
            json!({"r": {"$elemMatch": {"type": "io.cozy.files", "id": "x"}}}),
            json!({"r": [{"type": "io.cozy.files", "id": "x"}]}),
            true,
        );
        check(
            json!({"r": {"$elemMatch": {"type": "io.cozy.files", "id": "y"}}}),
            json!({"r": [{"type": "io.cozy.files", "id": "x"}]}),
            false,
        );
    }

    #[test]
    fn bad_selectors_are_refused() {
        for bad in [
            json!([]),
            json!({"a": {"$foo": 1}}),
            json!({"a": {"$in": 3}}),
            json!({"$or": {}}),
            json!({"a": {"$regex": "("}}),
            json!({"a": {"$mod": [0, 1]}}),
            json!({"a": {"$gt": 1, "b": 2}}),
            json!({"": 1}),
        ] {
            assert!(Selector::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn find_query_parsing() {
        let q = FindQuery::parse(&json!({"selector": {"a": 1}, "sort": [{"a": "desc"}], "limit": 5, "skip": 2, "fields": ["a", "b.c"], "use_index": ["_design/x", "y"], "bookmark": "nil"})).unwrap();
        assert_eq!(q.direction, Direction::Desc);
        assert_eq!(q.limit, Some(5));
        assert_eq!(q.skip, 2);
        assert!(q.bookmark.is_none());
        assert_eq!(q.use_index, Some(("x".into(), Some("y".into()))));
        assert!(
            FindQuery::parse(&json!({"selector": {}, "sort": [{"a": "asc"}, {"b": "desc"}]}))
                .is_err()
        );
        assert!(FindQuery::parse(&json!({"sort": ["a"]})).is_err());
    }

    #[test]
    fn projection_keeps_nested_paths() {
        let doc = json!({"_id": "1", "a": 1, "b": {"c": 2, "d": 3}})
            .as_object()
            .cloned()
            .unwrap();
        let fields = vec![
            FieldPath::parse("_id").unwrap(),
            FieldPath::parse("b.c").unwrap(),
        ];
        assert_eq!(
            Value::Object(project(doc, &fields)),
            json!({"_id": "1", "b": {"c": 2}})
        );
    }

    #[test]
    fn index_def_defaults() {
        let d =
            IndexDef::parse(&json!({"index": {"fields": ["dir_id", {"name": "asc"}]}})).unwrap();
        assert_eq!(d.ddoc, "by_dir_id_and_name");
        assert_eq!(d.name, "by_dir_id_and_name");
        let d = IndexDef::parse(
            &json!({"index": {"fields": ["a"]}, "ddoc": "_design/mine", "name": "n"}),
        )
        .unwrap();
        assert_eq!((d.ddoc.as_str(), d.name.as_str()), ("mine", "n"));
        assert!(IndexDef::parse(&json!({"index": {"fields": []}})).is_err());
    }

    #[test]
    fn bookmark_round_trip() {
        let b = Bookmark {
            keys: vec![vec![0, 1, 255]],
            id: "abc".into(),
        };
        assert_eq!(Bookmark::decode(&b.encode()).unwrap(), b);
        assert!(Bookmark::decode("not a bookmark!").is_err());
    }
}
