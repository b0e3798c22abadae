//! JSON Patch and JSON Pointer tests: RFC 6902 examples, failures leaving the document
//! unchanged, validation messages, and property tests.

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn patch(ops: Value) -> JsonPatch {
    match JsonPatch::from_value(&ops) {
        Ok(p) => p,
        Err(e) => panic!("patch should parse: {e}"),
    }
}

fn patch_error(ops: Value) -> String {
    match JsonPatch::from_value(&ops) {
        Ok(p) => panic!("patch should not parse: {p:?}"),
        Err(e) => e.to_string(),
    }
}

fn applied(doc: Value, ops: Value) -> Result<Value, (String, Value)> {
    let mut doc = doc;
    match patch(ops).apply(&mut doc, usize::MAX) {
        Ok(()) => Ok(doc),
        Err(e) => Err((e.to_string(), doc)),
    }
}

#[test]
fn pointer_parsing_and_display() {
    let p = JsonPointer::parse("/a~1b/m~0n/0").unwrap();
    assert_eq!(p.tokens(), ["a/b", "m~n", "0"]);
    assert_eq!(p.to_string(), "/a~1b/m~0n/0");
    assert!(JsonPointer::parse("").unwrap().is_root());
    assert_eq!(JsonPointer::parse("/").unwrap().tokens(), [""]);
    assert_eq!(JsonPointer::parse("a"), Err(PointerError::NoLeadingSlash));
    assert_eq!(JsonPointer::parse("/a~2"), Err(PointerError::BadEscape));
    assert_eq!(JsonPointer::parse("/a~"), Err(PointerError::BadEscape));
}

#[test]
fn rfc6902_appendix_examples() {
    // A.1, A.2, A.3, A.4, A.6, A.7, A.8, A.10, A.16 of RFC 6902.
    let cases = [
        (
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/baz", "value": "qux"}]),
            json!({"baz": "qux", "foo": "bar"}),
        ),
        (
            json!({"foo": ["bar", "baz"]}),
            json!([{"op": "add", "path": "/foo/1", "value": "qux"}]),
            json!({"foo": ["bar", "qux", "baz"]}),
        ),
        (
            json!({"baz": "qux", "foo": "bar"}),
            json!([{"op": "remove", "path": "/baz"}]),
            json!({"foo": "bar"}),
        ),
        (
            json!({"foo": ["bar", "qux", "baz"]}),
            json!([{"op": "remove", "path": "/foo/1"}]),
            json!({"foo": ["bar", "baz"]}),
        ),
        (
            json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
            json!([{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]),
            json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
        ),
        (
            json!({"foo": ["all", "grass", "cows", "eat"]}),
            json!([{"op": "move", "from": "/foo/1", "path": "/foo/3"}]),
            json!({"foo": ["all", "cows", "eat", "grass"]}),
        ),
        (
            json!({"baz": "qux", "foo": ["a", 2, "c"]}),
            json!([{"op": "test", "path": "/baz", "value": "qux"},
                {"op": "test", "path": "/foo/1", "value": 2}]),
            json!({"baz": "qux", "foo": ["a", 2, "c"]}),
        ),
        (
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/child", "value": {"grandchild": {}}}]),
            json!({"foo": "bar", "child": {"grandchild": {}}}),
        ),
        (
            json!({"foo": ["bar"]}),
            json!([{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}]),
            json!({"foo": ["bar", ["abc", "def"]]}),
        ),
    ];
    for (doc, ops, want) in cases {
        assert_eq!(applied(doc, ops.clone()), Ok(want), "patch {ops}");
    }
}

#[test]
fn replace_copy_and_root_operations() {
    assert_eq!(
        applied(
            json!({"a": 1}),
            json!([{"op": "replace", "path": "/a", "value": [1]}])
        ),
        Ok(json!({"a": [1]}))
    );
    assert_eq!(
        applied(
            json!({"a": {"b": 1}}),
            json!([{"op": "copy", "from": "/a", "path": "/c"}])
        ),
        Ok(json!({"a": {"b": 1}, "c": {"b": 1}}))
    );
    assert_eq!(
        applied(
            json!({"a": 1}),
            json!([{"op": "replace", "path": "", "value": 7}])
        ),
        Ok(json!(7))
    );
    assert_eq!(
        applied(
            json!({"a": 1}),
            json!([{"op": "add", "path": "", "value": [true]}])
        ),
        Ok(json!([true]))
    );
    assert_eq!(
        applied(
            json!({"a": 1}),
            json!([{"op": "move", "from": "/a", "path": "/a"}])
        ),
        Ok(json!({"a": 1}))
    );
    assert_eq!(
        applied(
            json!({"a/b": 1, "m~n": 2}),
            json!([{"op": "remove", "path": "/a~1b"},
            {"op": "replace", "path": "/m~0n", "value": 3}])
        ),
        Ok(json!({"m~n": 3}))
    );
}

#[test]
fn test_compares_numbers_by_value() {
    assert!(applied(
        json!({"n": 1}),
        json!([{"op": "test", "path": "/n", "value": 1.0}])
    )
    .is_ok());
    assert!(applied(
        json!([1, {"a": 2.5}]),
        json!([{"op": "test", "path": "", "value": [1.0, {"a": 2.5}]}])
    )
    .is_ok());
    assert!(applied(
        json!({"n": 1}),
        json!([{"op": "test", "path": "/n", "value": "1"}])
    )
    .is_err());
}

#[test]
fn failures_leave_the_document_unchanged() {
    let doc = json!({"a": [1, 2], "s": "text"});
    let cases = [
        (
            json!([{"op": "add", "path": "/x", "value": 1}, {"op": "test", "path": "/a/0", "value": 9}]),
            "operation 1 (test): the value at '/a/0' differs",
        ),
        (
            json!([{"op": "remove", "path": "/a/0"}, {"op": "remove", "path": "/nope"}]),
            "operation 1 (remove): nothing at '/nope'",
        ),
        (
            json!([{"op": "add", "path": "/a/3", "value": 0}]),
            "operation 0 (add): '/a/3' is not a valid array position",
        ),
        (
            json!([{"op": "add", "path": "/a/01", "value": 0}]),
            "operation 0 (add): '/a/01' is not a valid array position",
        ),
        (
            json!([{"op": "remove", "path": "/a/-"}]),
            "operation 0 (remove): '/a/-' is not a valid array position",
        ),
        (
            json!([{"op": "add", "path": "/s/x", "value": 0}]),
            "operation 0 (add): the parent of '/s/x' is not an object or array",
        ),
        (
            json!([{"op": "add", "path": "/q/x", "value": 0}]),
            "operation 0 (add): nothing at '/q/x'",
        ),
        (
            json!([{"op": "replace", "path": "/zz", "value": 0}]),
            "operation 0 (replace): nothing at '/zz'",
        ),
        (
            json!([{"op": "copy", "from": "/zz", "path": "/b"}]),
            "operation 0 (copy): nothing at '/zz'",
        ),
        (
            json!([{"op": "move", "from": "/a/0", "path": "/a/5"}]),
            "operation 0 (move): '/a/5' is not a valid array position",
        ),
        (
            json!([{"op": "test", "path": "/zz", "value": 0}]),
            "operation 0 (test): nothing at '/zz'",
        ),
    ];
    for (ops, message) in cases {
        assert_eq!(
            applied(doc.clone(), ops),
            Err((message.to_owned(), doc.clone()))
        );
    }
}

#[test]
fn invalid_patches_are_rejected_when_parsed() {
    let cases = [
        (
            json!({"op": "add"}),
            "expected an array of operations, got an object",
        ),
        (json!([5]), "operation 0: expected an object, got a number"),
        (json!([{"path": "/a"}]), "operation 0: missing 'op'"),
        (
            json!([{"op": 1, "path": "/a"}]),
            "operation 0: 'op' must be a string, got a number",
        ),
        (
            json!([{"op": "test", "path": "/a", "value": 1}, {"op": "frob", "path": "/a"}]),
            "operation 1: unknown op \"frob\" (expected add, remove, replace, move, copy or test)",
        ),
        (
            json!([{"op": "add", "value": 1}]),
            "operation 0: missing 'path'",
        ),
        (
            json!([{"op": "add", "path": "/a"}]),
            "operation 0: missing 'value'",
        ),
        (
            json!([{"op": "copy", "path": "/a"}]),
            "operation 0: missing 'from'",
        ),
        (
            json!([{"op": "remove", "path": "a"}]),
            "operation 0: 'path' \"a\": a JSON pointer must be empty or start with '/'",
        ),
        (
            json!([{"op": "move", "from": "/a~x", "path": "/b"}]),
            "operation 0: 'from' \"/a~x\": '~' in a JSON pointer must be followed by '0' or '1'",
        ),
        (
            json!([{"op": "remove", "path": ""}]),
            "operation 0 (remove): cannot remove the whole document",
        ),
        (
            json!([{"op": "move", "from": "/a", "path": "/a/b"}]),
            "operation 0 (move): cannot move a value into one of its own children",
        ),
    ];
    for (ops, message) in cases {
        assert_eq!(patch_error(ops), message);
    }
    let too_many = Value::Array(vec![
        json!({"op": "remove", "path": "/a"});
        MAX_PATCH_OPS + 1
    ]);
    assert_eq!(
        patch_error(too_many),
        format!("more than {MAX_PATCH_OPS} operations")
    );
}

#[test]
fn null_value_is_present_and_extra_members_are_ignored() {
    assert_eq!(
        applied(
            json!({}),
            json!([{"op": "add", "path": "/n", "value": null, "x": 1}])
        ),
        Ok(json!({"n": null}))
    );
}

#[test]
fn serializes_back_to_the_same_patch() {
    let ops = json!([
        {"op": "add", "path": "/a~1b", "value": {"x": [1, null]}},
        {"op": "remove", "path": "/c~0"},
        {"op": "replace", "path": "", "value": 2},
        {"op": "move", "from": "/d", "path": "/e"},
        {"op": "copy", "from": "/f", "path": "/g/-"},
        {"op": "test", "path": "/h", "value": "v"}
    ]);
    let parsed = patch(ops.clone());
    assert_eq!(serde_json::to_value(&parsed).unwrap(), ops);
}

/// The attack from issue 7: 40 `copy` operations from `""`, each doubling the document.
fn doubling_bomb(first: Option<Value>) -> JsonPatch {
    let mut ops: Vec<Value> = first.into_iter().collect();
    ops.extend((0..40).map(|i| json!({"op": "copy", "from": "", "path": format!("/k{i}")})));
    patch(Value::Array(ops))
}

#[test]
fn a_doubling_copy_bomb_stops_at_the_limit() {
    let bomb = doubling_bomb(None);
    let original = json!({"data": "x".repeat(100)});
    let mut doc = original.clone();
    let started = std::time::Instant::now();
    let error = bomb.apply(&mut doc, 32_767).expect_err("over the limit");
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert!(
        matches!(
            error,
            PatchError::TooLarge {
                op: "copy",
                limit: 32_767,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(doc, original, "a refused patch changes nothing");
    // in place: partly patched, never past the limit
    let mut doc = original.clone();
    assert!(bomb.apply_in_place(&mut doc, 32_767).is_err());
    assert!(serde_json::to_vec(&doc).unwrap().len() <= 32_767);
    // known without the document
    assert!(bomb.outgrows_empty_document(32_767));
}

#[test]
fn a_bomb_that_needs_the_document_is_only_caught_where_applied() {
    let bomb = doubling_bomb(Some(json!({"op": "test", "path": "/data", "value": "x"})));
    assert!(!bomb.outgrows_empty_document(32_767));
    let mut doc = json!({"data": "x"});
    assert!(matches!(
        bomb.apply_in_place(&mut doc, 32_767),
        Err(PatchError::TooLarge { .. })
    ));
}

#[test]
fn the_limit_counts_what_each_operation_adds_and_removes() {
    let doc = json!({"a": "12345"});
    let exact = |v: &Value| serde_json::to_vec(v).unwrap().len();
    // {"a":"12345","b":"12345"} is 25 bytes
    let copy = json!([{"op": "copy", "from": "/a", "path": "/b"}]);
    assert!(patch(copy.clone()).apply(&mut doc.clone(), 25).is_ok());
    assert!(matches!(
        patch(copy).apply(&mut doc.clone(), 24),
        Err(PatchError::TooLarge { index: 0, .. })
    ));
    // replacing and removing free room again: many rounds stay within a small limit
    let mut ops = Vec::new();
    for _ in 0..100 {
        ops.push(json!({"op": "add", "path": "/b", "value": "0123456789"}));
        ops.push(json!({"op": "replace", "path": "/b", "value": "01234567890123456789"}));
        ops.push(json!({"op": "move", "from": "/b", "path": "/c"}));
        ops.push(json!({"op": "remove", "path": "/c"}));
    }
    let mut d = doc.clone();
    assert_eq!(patch(Value::Array(ops)).apply(&mut d, 60), Ok(()));
    assert_eq!(d, doc);
    // a template already over the limit
    assert_eq!(
        patch(json!([])).apply(&mut doc.clone(), exact(&doc) - 1),
        Err(PatchError::DocumentTooLarge {
            limit: exact(&doc) - 1
        })
    );
    // replacing the whole document with a large value
    let big = json!([{"op": "add", "path": "", "value": "x".repeat(100)}]);
    assert!(patch(big).apply(&mut doc.clone(), 50).is_err());
}

proptest! {
    #[test]
    fn applied_patches_never_pass_the_limit(
        ops in proptest::collection::vec(
            (0..6usize, "(/[a-c0-2-]{1,2}){0,3}", "(/[a-c0-2-]{0,2}){0,2}", 0..3i64), 1..12),
        limit in 20usize..200,
    ) {
        let ops: Vec<Value> = ops.into_iter().map(|(kind, path, from, n)| {
            let op = ["add", "remove", "replace", "move", "copy", "test"][kind];
            json!({"op": op, "path": path, "from": from, "value": n})
        }).collect();
        if let Ok(p) = JsonPatch::from_value(&Value::Array(ops)) {
            let mut doc = json!({"a": [0, 1, {"b": 2}], "b": {"c": [1]}});
            if p.apply_in_place(&mut doc, limit).is_ok() {
                prop_assert!(serde_json::to_vec(&doc).unwrap().len() <= limit);
            }
        }
    }

    #[test]
    fn pointer_display_round_trips(tokens in proptest::collection::vec(".{0,6}", 0..4)) {
        let pointer = JsonPointer::from_tokens(tokens);
        prop_assert_eq!(JsonPointer::parse(&pointer.to_string()), Ok(pointer));
    }

    #[test]
    fn apply_never_panics_and_is_atomic(
        ops in proptest::collection::vec(
            (0..6usize, "(/[a-c0-2-]{1,2}){0,3}", "(/[a-c0-2-]{1,2}){0,3}", 0..3i64), 1..5),
    ) {
        let ops: Vec<Value> = ops.into_iter().map(|(kind, path, from, n)| {
            let op = ["add", "remove", "replace", "move", "copy", "test"][kind];
            json!({"op": op, "path": path, "from": from, "value": n})
        }).collect();
        if let Ok(p) = JsonPatch::from_value(&Value::Array(ops)) {
            let original = json!({"a": [0, 1, {"b": 2}], "b": {"c": [1]}, "0": 1});
            let mut doc = original.clone();
            if p.apply(&mut doc, usize::MAX).is_err() {
                prop_assert_eq!(doc, original);
            }
        }
    }
}
