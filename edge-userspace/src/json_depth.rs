//! The nesting limit of the JSON the edge is handed from outside: control API
//! bodies and the config file. Checked before deserialisation, so a hostile
//! document is refused with an error naming the limit instead of reaching
//! serde_json's own, unnamed recursion limit (or, in `serde_json::Value`, a
//! drop that recurses once per level).

/// Deepest nesting of arrays and objects accepted. The deepest legitimate
/// document, the config file's rules (config → state → zones → zone →
/// rulesets → ruleset → rules → rule → action parameters → headers → header),
/// stays under a dozen levels.
pub const MAX_DEPTH: usize = 32;

/// Refuses a document whose arrays and objects nest deeper than [`MAX_DEPTH`],
/// naming the limit and the byte offset where it was passed. Only brackets
/// outside strings count; whether the rest is valid JSON is for the parser.
pub fn check(json: &[u8]) -> Result<(), String> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (at, &b) in json.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!(
                        "JSON nests deeper than {MAX_DEPTH} levels (the limit) at byte {at}"
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn the_limit_is_accepted_one_more_and_ten_times_it_are_not() {
        assert_eq!(check(nested(MAX_DEPTH).as_bytes()), Ok(()));
        for depth in [MAX_DEPTH + 1, 10 * MAX_DEPTH] {
            let error = check(nested(depth).as_bytes()).unwrap_err();
            assert!(error.contains("deeper than 32 levels"), "{error}");
        }
        let objects = format!(
            "{}1{}",
            r#"{"a":"#.repeat(10 * MAX_DEPTH),
            "}".repeat(10 * MAX_DEPTH)
        );
        assert!(check(objects.as_bytes()).is_err());
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let quoted = format!(r#"{{"a": "{}\"{}"}}"#, "[".repeat(1000), "{".repeat(1000));
        assert_eq!(check(quoted.as_bytes()), Ok(()));
        // An escaped backslash ends before the quote, which closes the string.
        let escaped = format!(r#"["\\", {}]"#, nested(MAX_DEPTH));
        assert!(check(escaped.as_bytes()).is_err());
    }

    #[test]
    fn siblings_are_not_depth() {
        let wide = format!("[{}]", vec!["[[]]"; 10_000].join(","));
        assert_eq!(check(wide.as_bytes()), Ok(()));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        /// What passes the check never reaches serde_json's own (unnamed)
        /// recursion limit, whatever else is wrong with it.
        #[test]
        fn what_passes_never_hits_serdes_recursion_limit(json in r#"[\[\]{}"\\a:,1 ]{0,3000}"#) {
            if check(json.as_bytes()).is_ok()
                && let Err(error) = serde_json::from_str::<serde_json::Value>(&json)
            {
                prop_assert!(!error.to_string().contains("recursion limit"), "{error}");
            }
        }
    }
}
