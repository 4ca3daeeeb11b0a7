//! The standard JSON ⇄ `google.protobuf.Value` mapping (spec §5: "JSON ⇄ Value conversion is the
//! standard one").
//!
//! Tool input schemas travel JSON → [`prost_types::Value`] (`McpToolDefinition.input_schema`),
//! MCP call arguments come back as `map<string, Value>` → JSON object (`McpArgs.args`).
//!
//! Numbers are `double` on the protobuf side. A finite integral double within ±2^53 becomes a
//! JSON integer (so `3` stays `3`, not `3.0`); NaN and ±infinity, which JSON cannot represent,
//! become `null`. A `Value` with no kind set is `null`.

use std::collections::BTreeMap;

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};
use serde_json::{Map, Number, Value as Json};

/// Largest integer a double represents exactly (2^53).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Converts a JSON value to a `google.protobuf.Value`.
pub fn json_to_value(json: &Json) -> Value {
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => match n.as_f64() {
            Some(f) if f.is_finite() => Kind::NumberValue(f),
            _ => Kind::NullValue(0),
        },
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        Json::Object(map) => Kind::StructValue(json_object_to_struct(map)),
    };
    Value { kind: Some(kind) }
}

/// Converts a JSON object to a `google.protobuf.Struct`.
pub fn json_object_to_struct(map: &Map<String, Json>) -> Struct {
    Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// Converts a `google.protobuf.Value` to JSON.
pub fn value_to_json(value: &Value) -> Json {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::NumberValue(f)) => number_to_json(*f),
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::StructValue(s)) => Json::Object(struct_to_json_object(s)),
        Some(Kind::ListValue(l)) => Json::Array(l.values.iter().map(value_to_json).collect()),
    }
}

/// Converts a `google.protobuf.Struct` to a JSON object.
pub fn struct_to_json_object(s: &Struct) -> Map<String, Json> {
    value_map_to_json_object(&s.fields)
}

/// Converts a `map<string, google.protobuf.Value>` (as in `McpArgs.args`) to a JSON object.
pub fn value_map_to_json_object<'a, I>(fields: I) -> Map<String, Json>
where
    I: IntoIterator<Item = (&'a String, &'a Value)>,
{
    fields
        .into_iter()
        .map(|(k, v)| (k.clone(), value_to_json(v)))
        .collect()
}

fn number_to_json(f: f64) -> Json {
    if !f.is_finite() {
        return Json::Null;
    }
    if f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER {
        // Exact: |f| ≤ 2^53 and integral, so the cast neither truncates nor saturates.
        #[allow(clippy::cast_possible_truncation)]
        return Json::Number(Number::from(f as i64));
    }
    Number::from_f64(f).map_or(Json::Null, Json::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_and_protobuf_values_round_trip() {
        let doc = json!({
            "s": "x", "i": 3, "neg": -7, "f": 1.5, "b": false, "n": null,
            "list": [1, "two", [3.25], {"k": {}}],
            "big": 9_007_199_254_740_992_i64,
        });
        assert_eq!(value_to_json(&json_to_value(&doc)), doc);
        let Json::Object(map) = &doc else {
            unreachable!()
        };
        assert_eq!(
            Json::Object(struct_to_json_object(&json_object_to_struct(map))),
            doc
        );
    }

    #[test]
    fn non_finite_numbers_and_missing_kinds_become_null() {
        for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let v = Value {
                kind: Some(Kind::NumberValue(f)),
            };
            assert_eq!(value_to_json(&v), Json::Null);
        }
        assert_eq!(value_to_json(&Value { kind: None }), Json::Null);
        // Integral doubles beyond 2^53 are not exact integers: they stay floats.
        let v = Value {
            kind: Some(Kind::NumberValue(1e20)),
        };
        assert_eq!(value_to_json(&v), json!(1e20));
    }
}
