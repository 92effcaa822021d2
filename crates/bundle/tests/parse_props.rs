//! Property tests: whatever bytes a runbook file holds, loading it yields
//! diagnostics, never a panic, and every diagnostic points inside the file.

use proptest::prelude::*;
use std::path::Path;
use vigil_bundle::Bundle;

const VALID: &str = r#"apiVersion: vigil/v1
kind: Runbook
name: prop
params:
  service: { type: string, default: api }
steps:
  - id: a
    uses: core/set
    with: { x: "${{ params.service }}", n: 3 }
  - id: b
    uses: core/log
    needs: [a]
    when: "${{ steps.a.output.n > 2 }}"
    retry: { attempts: 2, backoff: 1s }
    timeout: 5s
    with: { message: "hi ${{ steps.a.output.x }}" }
"#;

fn check(text: &str) {
    let bundle = Bundle::from_source(Path::new("prop.yaml"), text);
    let lines = text.lines().count() as u32 + 1;
    for d in &bundle.diagnostics {
        assert!(
            d.line >= 1 && d.line <= lines.max(1),
            "line {} outside 1..={lines}: {}",
            d.line,
            d.message
        );
        assert!(!d.message.is_empty());
        let _ = d.render(Some(text), false);
    }
}

fn token() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "apiVersion",
        "kind",
        "Runbook",
        "vigil/v1",
        "steps",
        "id",
        "uses",
        "needs",
        "with",
        "when",
        "retry",
        "attempts",
        "timeout",
        "5s",
        "core/log",
        ":",
        " ",
        "  ",
        "\n",
        "- ",
        "[",
        "]",
        "{",
        "}",
        ",",
        "\"",
        "'",
        "${{",
        "}}",
        "params.x",
        "steps.a.output",
        "&a",
        "*a",
        "|",
        ">",
        "#",
        "~",
        "null",
        "1e9",
        "-1",
        "\t",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        check(&text);
    }

    #[test]
    fn yaml_shaped_noise_never_panics(tokens in prop::collection::vec(token(), 0..120)) {
        check(&tokens.concat());
    }

    #[test]
    fn mutated_runbooks_never_panic(cuts in prop::collection::vec((0usize..VALID.len(), 0usize..12, "\\PC{0,6}"), 1..6)) {
        let mut text = VALID.to_string();
        for (at, len, insert) in cuts {
            let mut start = at.min(text.len());
            while !text.is_char_boundary(start) { start -= 1; }
            let mut end = (start + len).min(text.len());
            while !text.is_char_boundary(end) { end -= 1; }
            text.replace_range(start..end, &insert);
        }
        check(&text);
    }
}

#[test]
fn the_unmutated_runbook_is_valid() {
    let bundle = Bundle::from_source(Path::new("prop.yaml"), VALID);
    assert!(bundle.diagnostics.is_empty(), "{:?}", bundle.diagnostics);
    assert_eq!(bundle.runbooks[0].steps.len(), 2);
}
