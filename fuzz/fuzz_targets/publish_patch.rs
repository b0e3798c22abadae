//! `body-patch` in published `http-response` items: the publish body is parsed with
//! `proto::publish::parse_publish_body`, then each patch is applied to a held request's
//! timeout body, as the server does at delivery. The first input byte picks the template; the
//! rest is the publish body. Checks that nothing panics and that a patch's result stays bounded
//! (issue 7: a patch of `copy` ops doubling the document must be refused, not built; the
//! seed `copy-bomb` is that attack).
#![no_main]

use gripway_proto::publish::{parse_publish_body, HttpResponseAction, PublishLimits, ResponseBody};
use libfuzzer_sys::fuzz_target;

/// The bound the patch is applied under (the server passes its content limit): a result
/// larger than this must be refused, never built.
const MAX_PATCHED_BYTES: usize = 1 << 16;

const TEMPLATES: &[&str] = &[
    "{}",
    r#"{"messages": [], "last": null}"#,
    r#"{"a": {"b": [1, 2, {"c": "d"}]}, "e": "f", "~": {"/": 0}}"#,
    "[]",
    r#""text""#,
    "[[[[]]], {\"x\": [true, false, null, 1.5e3]}]",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let limits = PublishLimits::default();
    let Ok(items) = parse_publish_body(body, &limits) else {
        return;
    };
    let template = TEMPLATES[usize::from(pick) % TEMPLATES.len()];
    for item in &items {
        let Some(format) = &item.formats.http_response else {
            continue;
        };
        let HttpResponseAction::Send(message) = &format.action else {
            continue;
        };
        let ResponseBody::Patch(patch) = &message.body else {
            continue;
        };
        let mut doc: serde_json::Value = serde_json::from_str(template).expect("template");
        if patch.apply(&mut doc, MAX_PATCHED_BYTES).is_ok() {
            let out = serde_json::to_vec(&doc).expect("a JSON value serializes");
            assert!(
                out.len() <= MAX_PATCHED_BYTES,
                "patched body of {} bytes",
                out.len()
            );
        }
    }
});
