//! Necessary conditions tested before a regex runs. Firewall rules are full
//! of anchored patterns (`^/wp-(admin|login)`) that fail on the first byte
//! of nearly every request; the regex engine gets there too, but only after
//! fetching its per-thread cache and setting up a search, which costs more
//! than the whole comparison below.

use regex::bytes::Regex;
use regex_syntax::hir::{Hir, HirKind, Look};

/// A regex with the literal every match must start with (empty when the
/// pattern is not anchored at the start of the value or begins with
/// anything but a literal).
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    prefix: Box<[u8]>,
    re: Regex,
}

impl Pattern {
    pub(crate) fn new(re: Regex) -> Self {
        Pattern {
            prefix: anchored_prefix(re.as_str()),
            re,
        }
    }

    #[inline]
    pub(crate) fn is_match(&self, b: &[u8]) -> bool {
        has_prefix(b, &self.prefix) && self.re.is_match(b)
    }
}

/// `hay.starts_with(prefix)` without a call into libc's `memcmp`: prefixes
/// in rules are short and most values differ from them in the first bytes.
#[inline]
pub(crate) fn has_prefix(hay: &[u8], prefix: &[u8]) -> bool {
    hay.len() >= prefix.len() && hay.iter().zip(prefix).all(|(a, b)| a == b)
}

/// The literal after a leading `^` (or `\A`), read from the parsed pattern so
/// that flags, escapes, classes and top-level alternations are understood
/// as the regex engine understands them. Parsed as `regex::bytes` does
/// (Unicode on, invalid UTF-8 allowed); a pattern it cannot parse gets no
/// prefix, which only means no shortcut.
pub(crate) fn anchored_prefix(pattern: &str) -> Box<[u8]> {
    let Ok(hir) = regex_syntax::ParserBuilder::new()
        .utf8(false)
        .build()
        .parse(pattern)
    else {
        return Box::default();
    };
    let HirKind::Concat(items) = hir.kind() else {
        return Box::default();
    };
    let mut items = items.iter().map(Hir::kind);
    if items.next() != Some(&HirKind::Look(Look::Start)) {
        return Box::default();
    }
    let mut prefix = Vec::new();
    for kind in items {
        match kind {
            HirKind::Literal(lit) => prefix.extend_from_slice(&lit.0),
            _ => break,
        }
    }
    prefix.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn has_prefix_is_starts_with() {
        for (hay, prefix) in [
            ("", ""),
            ("a", ""),
            ("", "a"),
            ("ab", "a"),
            ("ab", "b"),
            ("ab", "abc"),
            ("abc", "abc"),
        ] {
            assert_eq!(
                has_prefix(hay.as_bytes(), prefix.as_bytes()),
                hay.starts_with(prefix),
                "{hay:?} {prefix:?}"
            );
        }
    }

    fn prefix(p: &str) -> Vec<u8> {
        anchored_prefix(p).into_vec()
    }

    #[test]
    fn prefix_only_of_patterns_anchored_on_a_literal() {
        assert_eq!(prefix("^/wp-(admin|login)-3"), b"/wp-");
        assert_eq!(prefix(r"\A/api/v\d+/"), b"/api/v");
        assert_eq!(prefix(r"^/a\.php$"), b"/a.php");
        assert_eq!(prefix("^ab*"), b"a", "a repeated byte is not required");
        assert_eq!(prefix("^ab?c"), b"a");
        assert_eq!(prefix("^é/"), "é/".as_bytes());
        assert!(prefix("^/a|^/b").is_empty(), "top-level alternation");
        assert_eq!(
            prefix("(?i)^/admin"),
            b"/",
            "case-insensitive letters are classes"
        );
        assert!(prefix("(?m)^/admin").is_empty(), "start of any line");
        assert!(prefix("/admin").is_empty(), "not anchored");
        assert!(prefix("^[ab]c").is_empty());
        assert!(prefix("^").is_empty());
        assert!(prefix("").is_empty());
    }

    fn pattern() -> impl Strategy<Value = String> {
        // Anchors, flags, literals, classes, groups, alternations and
        // quantifiers over a small alphabet, so prefixes often matter.
        let atom = prop::sample::select(vec![
            "a", "b", "/", "ab", "a/", r"\.", ".", "[ab]", "(a|b)", "(?i)a", "(?i:b)", "a?", "b*",
            "a+", "b{2}", "$", "^", r"\A", "|", "(?m)^", r"\d", "é",
        ]);
        (
            prop::sample::select(vec!["", "^", r"\A", "(?m)^", "(?i)^"]),
            prop::collection::vec(atom, 0..5),
        )
            .prop_map(|(head, atoms)| format!("{head}{}", atoms.concat()))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// The prefix check never changes a regex's answer.
        #[test]
        fn same_answer_as_the_regex_alone(
            p in pattern(),
            inputs in prop::collection::vec("[ab/.1A\né]{0,6}", 1..8),
        ) {
            let Ok(re) = Regex::new(&p) else { return Ok(()) };
            let pat = Pattern::new(re.clone());
            for input in inputs {
                prop_assert_eq!(pat.is_match(input.as_bytes()), re.is_match(input.as_bytes()), "{} on {:?}", p, input);
            }
        }
    }
}
