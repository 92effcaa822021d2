//! Text from outside (plugins, alert senders) made safe to show a person.

use std::borrow::Cow;

/// Whether `c` would act on a terminal or hide text instead of being read: control
/// characters (escapes, carriage returns, newlines) and invisible direction or width
/// marks.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// `s` with every hidden character written out as `\u{…}`, so that what a person reads
/// (a plan to approve, an incident's title) is what is there.
pub fn visible(s: &str) -> Cow<'_, str> {
    if !s.chars().any(hidden) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .fold(String::with_capacity(s.len() + 8), |mut out, c| {
                if hidden(c) {
                    out.extend(c.escape_unicode());
                } else {
                    out.push(c);
                }
                out
            }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_characters_are_written_out() {
        assert!(matches!(visible("plain ünïcode ✓"), Cow::Borrowed(_)));
        assert_eq!(visible("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(visible("x\r\ny"), "x\\u{d}\\u{a}y");
        assert_eq!(visible("evil\u{202e}fdp.exe"), "evil\\u{202e}fdp.exe");
    }
}
