//! CouchDB collation: the order of JSON values used by Mango sorts and ranges.
//!
//! `null < false < true < numbers < strings < arrays < objects`; arrays compare
//! element by element, objects member by member (key, then value); strings follow an
//! approximation of ICU's root collation: letters compare case-insensitively first
//! (`a < B < c`), then lowercase before uppercase (`a < A`), then by code point.
//!
//! [`sort_key`] turns a value into bytes whose `memcmp` order is this collation, so a
//! database can keep them in an ordinary index; [`cmp`] compares values directly.
//! Both are defined by the same string decomposition, so they always agree (a property
//! test checks it).

use std::cmp::Ordering;

use serde_json::Value;

/// The key of an absent field: lower than every JSON value.
pub const MISSING_KEY: &[u8] = &[0x01];

const TAG_NULL: u8 = 0x10;
const TAG_FALSE: u8 = 0x20;
const TAG_TRUE: u8 = 0x21;
const TAG_NUMBER: u8 = 0x30;
const TAG_STRING: u8 = 0x40;
const TAG_ARRAY: u8 = 0x50;
const TAG_OBJECT: u8 = 0x60;
const END: u8 = 0x00;

fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(false) => 1,
        Value::Bool(true) => 2,
        Value::Number(_) => 3,
        Value::String(_) => 4,
        Value::Array(_) => 5,
        Value::Object(_) => 6,
    }
}

fn number(n: &serde_json::Number) -> f64 {
    let f = n.as_f64().unwrap_or(0.0);
    // -0 and 0 are the same number for collation.
    if f == 0.0 { 0.0 } else { f }
}

/// Compares two JSON values in CouchDB collation order.
pub fn cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number(x).total_cmp(&number(y)),
        (Value::String(x), Value::String(y)) => cmp_str(x, y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let o = cmp(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            for ((kp, vp), (kq, vq)) in x.iter().zip(y) {
                let o = cmp_str(kp, kq).then_with(|| cmp(vp, vq));
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Compares two strings: case-insensitively, then lowercase first, then by code point.
pub fn cmp_str(a: &str, b: &str) -> Ordering {
    primary(a)
        .cmp(primary(b))
        .then_with(|| tertiary(a).cmp(tertiary(b)))
        .then_with(|| a.cmp(b))
}

fn primary(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().flat_map(char::to_lowercase)
}

fn tertiary(s: &str) -> impl Iterator<Item = u8> + '_ {
    s.chars().map(|c| if c.is_uppercase() { 2 } else { 1 })
}

/// The sort key of a value: bytes that compare with `memcmp` as [`cmp`] compares values.
pub fn sort_key(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    encode(v, &mut out);
    out
}

/// The sort key of an optional value, [`MISSING_KEY`] for an absent one.
pub fn sort_key_opt(v: Option<&Value>) -> Vec<u8> {
    v.map_or_else(|| MISSING_KEY.to_vec(), sort_key)
}

fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(TAG_NULL),
        Value::Bool(false) => out.push(TAG_FALSE),
        Value::Bool(true) => out.push(TAG_TRUE),
        Value::Number(n) => {
            out.push(TAG_NUMBER);
            let bits = number(n).to_bits();
            let ordered = if bits >> 63 == 1 {
                !bits
            } else {
                bits ^ (1 << 63)
            };
            out.extend_from_slice(&ordered.to_be_bytes());
        }
        Value::String(s) => encode_str(s, out),
        Value::Array(items) => {
            out.push(TAG_ARRAY);
            for item in items {
                encode(item, out);
            }
            out.push(END);
        }
        Value::Object(members) => {
            out.push(TAG_OBJECT);
            for (k, item) in members {
                encode_str(k, out);
                encode(item, out);
            }
            out.push(END);
        }
    }
}

/// A string is three self-terminated sections: the lowercase form, the case of each
/// character, the original bytes. Zero bytes inside a section are escaped as `00 FF`
/// and a section ends with `00 01`, so a shorter prefix sorts first.
fn encode_str(s: &str, out: &mut Vec<u8>) {
    out.push(TAG_STRING);
    let mut buf = [0u8; 4];
    for c in primary(s) {
        escaped(c.encode_utf8(&mut buf).as_bytes(), out);
    }
    out.extend_from_slice(&[0x00, 0x01]);
    out.extend(tertiary(s));
    out.push(END);
    escaped(s.as_bytes(), out);
    out.extend_from_slice(&[0x00, 0x01]);
}

fn escaped(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        if b == 0 {
            out.extend_from_slice(&[0x00, 0xFF]);
        } else {
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn couchdb_order() {
        let ordered = [
            json!(null),
            json!(false),
            json!(true),
            json!(-10.5),
            json!(0),
            json!(1),
            json!(2.5),
            json!(""),
            json!("a"),
            json!("A"),
            json!("aa"),
            json!("b"),
            json!("B"),
            json!("ba"),
            json!([]),
            json!([1]),
            json!([1, 2]),
            json!([2]),
            json!(["a"]),
            json!({}),
            json!({"a": 1}),
            json!({"a": 2}),
            json!({"b": 1}),
        ];
        for w in ordered.windows(2) {
            assert_eq!(cmp(&w[0], &w[1]), Ordering::Less, "{} < {}", w[0], w[1]);
            assert!(sort_key(&w[0]) < sort_key(&w[1]), "key {} < {}", w[0], w[1]);
        }
        assert!(MISSING_KEY < sort_key(&json!(null)).as_slice());
        assert_eq!(cmp(&json!(1), &json!(1.0)), Ordering::Equal);
        assert_eq!(sort_key(&json!(-0.0)), sort_key(&json!(0)));
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-1000i64..1000).prop_map(|n| json!(n)),
            (-1e6f64..1e6).prop_map(|f| json!(f)),
            "[a-cA-C\u{0}é_ ]{0,4}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[a-cA]{0,2}", inner), 0..3)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn sort_key_agrees_with_cmp(a in arb_json(), b in arb_json()) {
            let by_value = cmp(&a, &b);
            let by_key = sort_key(&a).cmp(&sort_key(&b));
            prop_assert_eq!(by_value, by_key, "{} vs {}", a, b);
        }

        #[test]
        fn cmp_is_antisymmetric(a in arb_json(), b in arb_json()) {
            prop_assert_eq!(cmp(&a, &b), cmp(&b, &a).reverse());
        }
    }
}
