//! Text from agents and users: invisible, bidirectional and control characters.
//!
//! Two rules, one list of code points ([`is_hidden`]):
//!
//! - Where such characters have no business (ids, names, labels, keys, references, action
//!   types, amounts, currencies…) they are refused with a 400 naming the field
//!   ([`check_plain`]).
//! - Free text (descriptions, context, comments, outcome details) keeps them, as the
//!   record of what was sent; every place a person reads it shows each one as a visible
//!   marker such as `⟨U+202E⟩` ([`visible`]), so that stored bytes that say one thing can
//!   never be displayed as another (the web pages also isolate the text with `<bdi>`).

use crate::{Error, Result};

/// Whether `c` is invisible or changes how the text around it is displayed: control
/// characters (C0, DEL, C1), bidirectional embeddings, overrides, isolates and marks,
/// zero-width characters, other format characters (Unicode category Cf), line and
/// paragraph separators, and the blank fillers that render as nothing.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'                      // soft hyphen
            | '\u{034F}'                    // combining grapheme joiner
            | '\u{0600}'..='\u{0605}'       // Arabic number signs
            | '\u{061C}'                    // Arabic letter mark
            | '\u{06DD}' | '\u{070F}' | '\u{0890}' | '\u{0891}' | '\u{08E2}'
            | '\u{115F}' | '\u{1160}'       // Hangul fillers
            | '\u{17B4}' | '\u{17B5}'       // Khmer inherent vowels
            | '\u{180B}'..='\u{180F}'       // Mongolian selectors and vowel separator
            | '\u{200B}'..='\u{200F}'       // zero width space/joiners, LRM, RLM
            | '\u{2028}'..='\u{202E}'       // line/paragraph separators, LRE RLE PDF LRO RLO
            | '\u{2060}'..='\u{206F}'       // word joiner, invisible operators, isolates, …
            | '\u{3164}'                    // Hangul filler
            | '\u{FE00}'..='\u{FE0F}'       // variation selectors
            | '\u{FEFF}'                    // zero width no-break space (BOM)
            | '\u{FFA0}'                    // halfwidth Hangul filler
            | '\u{FFF9}'..='\u{FFFB}'       // interlinear annotation
            | '\u{110BD}' | '\u{110CD}' | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}' // tags, variation selectors supplement
        )
}

/// The Unicode name of the common ones, for error messages.
fn name_of(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{0000}' => "NULL",
        '\u{001B}' => "ESCAPE",
        '\u{007F}' => "DELETE",
        '\t' => "CHARACTER TABULATION",
        '\n' => "LINE FEED",
        '\r' => "CARRIAGE RETURN",
        '\u{200B}' => "ZERO WIDTH SPACE",
        '\u{200C}' => "ZERO WIDTH NON-JOINER",
        '\u{200D}' => "ZERO WIDTH JOINER",
        '\u{200E}' => "LEFT-TO-RIGHT MARK",
        '\u{200F}' => "RIGHT-TO-LEFT MARK",
        '\u{202A}' => "LEFT-TO-RIGHT EMBEDDING",
        '\u{202B}' => "RIGHT-TO-LEFT EMBEDDING",
        '\u{202C}' => "POP DIRECTIONAL FORMATTING",
        '\u{202D}' => "LEFT-TO-RIGHT OVERRIDE",
        '\u{202E}' => "RIGHT-TO-LEFT OVERRIDE",
        '\u{2066}' => "LEFT-TO-RIGHT ISOLATE",
        '\u{2067}' => "RIGHT-TO-LEFT ISOLATE",
        '\u{2068}' => "FIRST STRONG ISOLATE",
        '\u{2069}' => "POP DIRECTIONAL ISOLATE",
        '\u{FEFF}' => "ZERO WIDTH NO-BREAK SPACE",
        _ => return None,
    })
}

/// `U+202E (RIGHT-TO-LEFT OVERRIDE)`.
pub fn describe(c: char) -> String {
    match name_of(c) {
        Some(n) => format!("U+{:04X} ({n})", u32::from(c)),
        None => format!("U+{:04X}", u32::from(c)),
    }
}

/// Refuses a value that holds any invisible, bidirectional or control character (also
/// newlines and tabs): ids, names, labels, keys, references.
pub fn check_plain(field: &str, value: &str) -> Result<()> {
    match value.chars().find(|c| is_hidden(*c)) {
        Some(c) => Err(Error::invalid(
            field,
            format!("{field} contains the invisible or control character {}; it is not allowed here", describe(c)),
        )),
        None => Ok(()),
    }
}

/// Refuses control characters other than newline and tab in free text (NUL, ESC, …);
/// bidirectional and zero-width characters are kept (and shown with [`visible`]).
pub fn check_free(field: &str, value: &str) -> Result<()> {
    match value.chars().find(|c| c.is_control() && !matches!(c, '\n' | '\t')) {
        Some(c) => Err(Error::invalid(field, format!("{field} contains the control character {}", describe(c)))),
        None => Ok(()),
    }
}

/// The text as a person must see it: every hidden character but newline and tab
/// replaced by a visible marker `⟨U+202E⟩`. Text without any comes back unchanged.
pub fn visible(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| is_hidden(c) && !matches!(c, '\n' | '\t')) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_hidden(c) && !matches!(c, '\n' | '\t') {
            out.push_str(&format!("⟨U+{:04X}⟩", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn hidden_characters_are_refused_in_plain_fields_and_marked_in_free_text() {
        for c in ['\u{202E}', '\u{200B}', '\u{0000}', '\u{001B}', '\u{2066}', '\u{FEFF}', '\u{0085}', '\n', '\u{E0041}']
        {
            let v = format!("acme{c}corp");
            let e = check_plain("name", &v).expect_err("refused");
            assert!(e.to_string().contains(&format!("U+{:04X}", u32::from(c))), "{e}");
        }
        check_plain("name", "Société Générale 株式会社 שלום").expect("letters of any script are fine");
        assert!(check_free("description", "a\u{202E}b\nc\td").is_ok());
        assert!(check_free("description", "a\u{0000}b").is_err());
        assert_eq!(visible("pay \u{202E}00.005,49\u{202C} USD"), "pay ⟨U+202E⟩00.005,49⟨U+202C⟩ USD");
        assert_eq!(visible("two\nlines\tok"), "two\nlines\tok");
        assert!(matches!(visible("plain"), std::borrow::Cow::Borrowed(_)));
    }
}
