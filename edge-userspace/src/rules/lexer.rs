//! Tokens of the rules language. Field names, keywords, numbers, IPs, CIDRs
//! and ranges all lex as one `Word`: their meaning depends on the type of the
//! left-hand side, which only the parser knows (as in wirefilter).

use super::error::ExprError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// `[A-Za-z0-9_.:/-]+`: field, function, keyword, number, IP, CIDR or range.
    Word(String),
    /// A quoted or raw string, escapes resolved.
    Str(Vec<u8>),
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Comma,
    Star,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Tilde,
    Bang,
    AndAnd,
    OrOr,
    XorXor,
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned {
    pub tok: Tok,
    pub at: usize,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'/' | b'-')
}

pub fn lex(src: &str) -> Result<Vec<Spanned>, ExprError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let at = i;
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let two = bytes.get(i..i + 2).unwrap_or(&[]);
        let (tok, len) = match (b, two) {
            (_, b"==") => (Tok::Eq, 2),
            (_, b"!=") => (Tok::Ne, 2),
            (_, b"<=") => (Tok::Le, 2),
            (_, b">=") => (Tok::Ge, 2),
            (_, b"&&") => (Tok::AndAnd, 2),
            (_, b"||") => (Tok::OrOr, 2),
            (_, b"^^") => (Tok::XorXor, 2),
            (b'<', _) => (Tok::Lt, 1),
            (b'>', _) => (Tok::Gt, 1),
            (b'~', _) => (Tok::Tilde, 1),
            (b'!', _) => (Tok::Bang, 1),
            (b'(', _) => (Tok::LParen, 1),
            (b')', _) => (Tok::RParen, 1),
            (b'[', _) => (Tok::LBracket, 1),
            (b']', _) => (Tok::RBracket, 1),
            (b'{', _) => (Tok::LBrace, 1),
            (b'}', _) => (Tok::RBrace, 1),
            (b',', _) => (Tok::Comma, 1),
            (b'*', _) => (Tok::Star, 1),
            (b'"', _) => {
                let (s, len) = quoted(src, i)?;
                (Tok::Str(s), len)
            }
            (b'r', [_, b'"' | b'#']) => {
                let (s, len) = raw(src, i)?;
                (Tok::Str(s), len)
            }
            _ if is_word_byte(b) => {
                let len = bytes[i..].iter().take_while(|&&c| is_word_byte(c)).count();
                (Tok::Word(src[i..i + len].to_owned()), len)
            }
            _ => {
                let c = src[i..].chars().next().unwrap_or('?');
                return Err(ExprError::at(src, i, format!("unexpected character `{c}`")));
            }
        };
        out.push(Spanned { tok, at });
        i += len;
    }
    Ok(out)
}

/// `"..."` with `\"`, `\\` and `\xHH` escapes.
fn quoted(src: &str, start: usize) -> Result<(Vec<u8>, usize), ExprError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Ok((out, i + 1 - start)),
            b'\\' => {
                match bytes.get(i + 1) {
                    Some(b'"') => out.push(b'"'),
                    Some(b'\\') => out.push(b'\\'),
                    Some(b'x') => {
                        let hex = src
                            .get(i + 2..i + 4)
                            .and_then(|h| u8::from_str_radix(h, 16).ok());
                        match hex {
                            Some(v) => {
                                out.push(v);
                                i += 2;
                            }
                            None => {
                                return Err(ExprError::at(
                                    src,
                                    i,
                                    "invalid \\x escape, expected two hex digits",
                                ));
                            }
                        }
                    }
                    _ => {
                        return Err(ExprError::at(
                            src,
                            i,
                            "invalid escape, expected \\\", \\\\ or \\xHH",
                        ));
                    }
                }
                i += 2;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err(ExprError::at(src, start, "unterminated string"))
}

/// `r"..."` or `r#"..."#` (any number of `#`): no escapes at all.
fn raw(src: &str, start: usize) -> Result<(Vec<u8>, usize), ExprError> {
    let bytes = src.as_bytes();
    let hashes = bytes[start + 1..]
        .iter()
        .take_while(|&&c| c == b'#')
        .count();
    let open = start + 1 + hashes;
    if bytes.get(open) != Some(&b'"') {
        return Err(ExprError::at(
            src,
            start,
            "raw string must start with r\" or r#\"",
        ));
    }
    let close: Vec<u8> = std::iter::once(b'"')
        .chain(std::iter::repeat_n(b'#', hashes))
        .collect();
    let body = &bytes[open + 1..];
    match body
        .windows(close.len())
        .position(|w| w == close.as_slice())
    {
        Some(p) => Ok((body[..p].to_vec(), open + 1 + p + close.len() - start)),
        None => Err(ExprError::at(src, start, "unterminated raw string")),
    }
}
