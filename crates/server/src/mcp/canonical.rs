//! RFC 8785 (JCS) canonical JSON of a tool call's arguments, for idempotency keys.
//!
//! The ledger's canonicalizer in `agentsigna-verify` serializes whole entries only; tool
//! arguments need the same rules on a bare value. Like the ledger, this refuses
//! floating-point numbers (which `context` may not hold anyway) and integers beyond
//! ±(2^53 − 1), so every JCS implementation agrees on the bytes.

use serde_json::Value;

/// Largest integer every JCS implementation represents exactly.
const MAX_SAFE: u64 = (1 << 53) - 1;

/// Why a value has no canonical form: a JSON pointer to the offending member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotCanonical {
    pub pointer: String,
    pub reason: &'static str,
}

/// The canonical JSON text of `value`.
pub fn canonical_json(value: &Value) -> Result<String, NotCanonical> {
    let mut out = String::with_capacity(128);
    write(value, &mut String::new(), &mut out)?;
    Ok(out)
}

fn write(v: &Value, at: &mut String, out: &mut String) -> Result<(), NotCanonical> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let fits = n.as_u64().map(|u| u <= MAX_SAFE).or_else(|| n.as_i64().map(|i| i.unsigned_abs() <= MAX_SAFE));
            match fits {
                Some(true) => out.push_str(&n.to_string()),
                Some(false) => return Err(refuse(at, "an integer beyond ±(2^53 - 1)")),
                None => return Err(refuse(at, "a floating-point number")),
            }
        }
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let len = at.len();
                at.push_str(&format!("/{i}"));
                write(item, at, out)?;
                at.truncate(len);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // JCS orders members by the UTF-16 code units of their names.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(k, out);
                out.push(':');
                let len = at.len();
                at.push('/');
                at.push_str(&k.replace('~', "~0").replace('/', "~1"));
                write(&map[k], at, out)?;
                at.truncate(len);
            }
            out.push('}');
        }
    }
    Ok(())
}

fn refuse(at: &str, reason: &'static str) -> NotCanonical {
    NotCanonical { pointer: if at.is_empty() { "/".to_owned() } else { at.to_owned() }, reason }
}

fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_are_sorted_and_whitespace_dropped() {
        let v = json!({"b": [1, true, null], "a": {"y": "x\n\u{1}", "x": -3}, "\u{e9}": "é"});
        assert_eq!(
            canonical_json(&v).unwrap(),
            "{\"a\":{\"x\":-3,\"y\":\"x\\n\\u0001\"},\"b\":[1,true,null],\"é\":\"é\"}"
        );
    }

    #[test]
    fn keys_sort_by_utf16_code_units() {
        // U+1F600 (surrogates D83D DE00) sorts before U+FFFD in UTF-16, after it in UTF-8.
        let v = json!({"\u{fffd}": 1, "\u{1f600}": 2});
        assert_eq!(canonical_json(&v).unwrap(), "{\"\u{1f600}\":2,\"\u{fffd}\":1}");
    }

    #[test]
    fn floats_are_refused_with_their_pointer() {
        let v = json!({"lines": [{"qty": 2}, {"price": 1.5}]});
        let e = canonical_json(&v).unwrap_err();
        assert_eq!(e.pointer, "/lines/1/price");
        assert_eq!(e.reason, "a floating-point number");
        assert!(canonical_json(&json!({"n": 9_007_199_254_740_993u64})).is_err());
        assert!(canonical_json(&json!({"a~/b": 0.5})).unwrap_err().pointer == "/a~0~1b");
    }
}
