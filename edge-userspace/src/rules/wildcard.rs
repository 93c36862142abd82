//! Wildcard patterns (`*` = any run of bytes, `\*` and `\\` escape), matched
//! without allocating; captures for `wildcard_replace` go through a regex
//! built once from the same pattern.

/// A compiled whole-value wildcard pattern.
#[derive(Debug, Clone)]
pub struct Wildcard {
    /// Literal pieces between the stars (lower-cased when case-insensitive).
    segments: Vec<Box<[u8]>>,
    case_sensitive: bool,
}

/// Splits a pattern at unescaped `*`, resolving escapes.
pub(crate) fn segments(pattern: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![Vec::new()];
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' if matches!(pattern.get(i + 1), Some(b'*' | b'\\')) => {
                if let Some(s) = out.last_mut() {
                    s.push(pattern[i + 1]);
                }
                i += 2;
                continue;
            }
            b'*' => out.push(Vec::new()),
            c => {
                if let Some(s) = out.last_mut() {
                    s.push(c);
                }
            }
        }
        i += 1;
    }
    out
}

impl Wildcard {
    pub fn new(pattern: &[u8], case_sensitive: bool) -> Self {
        let segments = segments(pattern)
            .into_iter()
            .map(|s| {
                if case_sensitive {
                    s
                } else {
                    s.to_ascii_lowercase()
                }
                .into_boxed_slice()
            })
            .collect();
        Wildcard {
            segments,
            case_sensitive,
        }
    }

    fn eq(&self, a: &[u8], b: &[u8]) -> bool {
        if self.case_sensitive {
            a == b
        } else {
            a.eq_ignore_ascii_case(b)
        }
    }

    fn find(&self, hay: &[u8], needle: &[u8]) -> Option<usize> {
        if needle.is_empty() {
            return Some(0);
        }
        hay.windows(needle.len()).position(|w| self.eq(w, needle))
    }

    pub fn matches(&self, value: &[u8]) -> bool {
        let segs = &self.segments;
        let (first, last) = (&segs[0], &segs[segs.len() - 1]);
        if segs.len() == 1 {
            return self.eq(value, first);
        }
        if value.len() < first.len() + last.len()
            || !self.eq(&value[..first.len()], first)
            || !self.eq(&value[value.len() - last.len()..], last)
        {
            return false;
        }
        // Leftmost-first placement of the middle pieces is optimal when the
        // only metacharacter is `*`.
        let mut rest = &value[first.len()..value.len() - last.len()];
        for seg in &segs[1..segs.len() - 1] {
            match self.find(rest, seg) {
                Some(p) => rest = &rest[p + seg.len()..],
                None => return false,
            }
        }
        true
    }
}

/// The regex equivalent of a wildcard pattern, one capture group per `*`.
pub(crate) fn to_regex(pattern: &[u8], case_sensitive: bool) -> String {
    let mut re = String::from(if case_sensitive {
        "(?s-u)^"
    } else {
        "(?is-u)^"
    });
    for (i, seg) in segments(pattern).iter().enumerate() {
        if i > 0 {
            re.push_str("(.*?)");
        }
        for &c in seg {
            if c.is_ascii_alphanumeric() {
                re.push(c as char);
            } else {
                re.push_str(&format!("\\x{c:02x}"));
            }
        }
    }
    re.push('$');
    re
}
