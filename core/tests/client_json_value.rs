//! JSON text → `google.protobuf.Value` bytes (`client::encode_json_as_value`): the same bytes
//! prost writes for the same document, for any document; escapes decoded; client key order
//! kept; bad text reported, never a panic.

use cursorpool_core::client::{JsonValueError, encode_json_as_value, json_to_value, value_to_json};
use proptest::prelude::*;
use prost::Message;
use serde_json::{Value, json};

fn via_prost(v: &Value) -> Vec<u8> {
    json_to_value(v).encode_to_vec()
}

fn decoded(bytes: &[u8]) -> Value {
    value_to_json(&prost_types::Value::decode(bytes).expect("decodes"))
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (-1e300f64..1e300).prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        "[\\x00-\\x1f\"\\\\/\u{7f}-\u{10ffff}]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Sorted, unique keys (what serde_json writes) give exactly prost's bytes, compact or
    /// pretty-printed.
    #[test]
    fn any_document_encodes_to_prosts_bytes(v in arb_json()) {
        let want = via_prost(&v);
        let compact = encode_json_as_value(&v.to_string()).expect("encodes");
        prop_assert_eq!(compact.as_ref(), &want[..]);
        let pretty = serde_json::to_string_pretty(&v).expect("pretty");
        let spaced = encode_json_as_value(&pretty).expect("encodes");
        prop_assert_eq!(spaced.as_ref(), &want[..]);
    }

    /// Arbitrary text never panics: it encodes exactly when serde_json accepts it (numbers out
    /// of a double's range aside, which become null).
    #[test]
    fn arbitrary_text_is_encoded_or_refused_never_a_panic(text in ".{0,40}") {
        let ours = encode_json_as_value(&text);
        let theirs = serde_json::from_str::<Value>(&text);
        if let Ok(v) = &theirs {
            let bytes = ours.expect("serde_json accepted it");
            prop_assert_eq!(decoded(&bytes), value_to_json(&json_to_value(v)));
        }
    }
}

#[test]
fn escapes_and_surrogate_pairs_are_decoded() {
    let text = r#"{"k\u00e9y":"a\"b\\c\/d\b\f\n\r\t\u0041\ud83d\ude00 end"}"#;
    let bytes = encode_json_as_value(text).expect("encodes");
    let v: Value = serde_json::from_str(text).expect("json");
    assert_eq!(bytes.as_ref(), &via_prost(&v)[..]);
    assert_eq!(decoded(&bytes)["kéy"], "a\"b\\c/d\u{8}\u{c}\n\r\tA😀 end");
}

#[test]
fn object_members_keep_the_clients_order() {
    let bytes = encode_json_as_value(r#"{"zeta": 1, "alpha": 2}"#).expect("encodes");
    let z = bytes.windows(4).position(|w| w == b"zeta").expect("zeta");
    let a = bytes.windows(5).position(|w| w == b"alpha").expect("alpha");
    assert!(z < a, "zeta was written first");
    assert_eq!(decoded(&bytes), json!({"zeta": 1, "alpha": 2}));
}

#[test]
fn empty_keys_strings_and_containers_encode_like_prost() {
    for v in [
        json!({"": 1}),
        json!({"": {"": []}}),
        json!(""),
        json!([]),
        json!({}),
        json!([[], {}, "", 0, false, null]),
        json!(0.0),
        json!(-0.0),
        json!(9007199254740993u64),
    ] {
        let bytes = encode_json_as_value(&v.to_string()).expect("encodes");
        assert_eq!(bytes.as_ref(), &via_prost(&v)[..], "{v}");
    }
}

#[test]
fn numbers_out_of_range_become_null() {
    let bytes = encode_json_as_value("[1e400, -1e400]").expect("encodes");
    assert_eq!(decoded(&bytes), json!([null, null]));
}

#[test]
fn long_strings_get_multi_byte_length_prefixes() {
    let long = "x".repeat(300_000);
    let v = json!({"description": long, "list": vec![long.clone(); 3]});
    let bytes = encode_json_as_value(&v.to_string()).expect("encodes");
    assert_eq!(bytes.as_ref(), &via_prost(&v)[..]);
}

#[test]
fn bad_text_is_an_error_with_its_offset() {
    for (text, at) in [
        ("", 0),
        ("{", 1),
        (r#"{"a" 1}"#, 5),
        (r#"{"a":1,}"#, 7),
        ("[1 2]", 3),
        ("nul", 0),
        ("01", 1),
        ("1.", 2),
        ("-", 1),
        (r#""\x""#, 2),
        (r#""\u12""#, 3),
        ("\"a\u{1}\"", 2),
        ("{} {}", 3),
    ] {
        assert_eq!(
            encode_json_as_value(text),
            Err(JsonValueError::Syntax(at)),
            "{text:?}"
        );
    }
}

#[test]
fn nesting_beyond_the_bound_is_refused() {
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    assert_eq!(encode_json_as_value(&deep), Err(JsonValueError::TooDeep));
    let ok = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert!(encode_json_as_value(&ok).is_ok());
}

#[test]
fn lone_surrogates_become_the_replacement_character() {
    let bytes = encode_json_as_value(r#"["\ud800", "\udc00x", "\ud800\u0041"]"#).expect("encodes");
    assert_eq!(
        decoded(&bytes),
        json!(["\u{FFFD}", "\u{FFFD}x", "\u{FFFD}A"])
    );
}
