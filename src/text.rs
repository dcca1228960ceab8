//! Text for people: control characters in commands, output, ids and host names
//! made visible, so what a job or a user typed can never move the cursor, change
//! colours, retitle the window or hide a line on the terminal that shows it. Used by
//! every human-facing output (tables, `show`, errors, the worker's log); JSON and
//! piped `logs` keep the exact bytes.

use std::borrow::Cow;

/// Text as a terminal should show it: control characters that would move the
/// cursor, change colours or reorder text are replaced by something visible, so
/// output, commands and ids can never rewrite what a user sees (or hide a line).
/// C0 controls (except newline and tab) become their Control Pictures (`\x1b` →
/// `␛`), DEL `␡`; C1 controls and the bidi overrides and isolates (U+202A–202E,
/// U+2066–2069) become `\u{...}`. Borrows when there is nothing to replace.
pub fn visible(text: &str) -> Cow<'_, str> {
    fn needs_escape(c: char) -> bool {
        matches!(c, '\0'..='\x08' | '\x0b'..='\x1f' | '\x7f'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\0'..='\x1f' if needs_escape(c) => {
                shown.push(char::from_u32(0x2400 + c as u32).unwrap_or('?'));
            }
            '\x7f' => shown.push('\u{2421}'),
            c if needs_escape(c) => shown.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => shown.push(c),
        }
    }
    Cow::Owned(shown)
}

/// `text` as one table cell: every control character shown visibly (as [`visible`]
/// does, and newline `␤`, tab `␉`), so a cell never breaks or redraws a line.
pub fn one_line(text: &str) -> String {
    visible(text)
        .chars()
        .map(|c| match c {
            '\n' => '\u{2424}',
            '\t' => '\u{2409}',
            c => c,
        })
        .collect()
}
