//! What the fuzz targets in `edge-userspace/fuzz` run, one function per
//! target, so that the inputs kept in `fuzz/regressions/<target>/` (and the
//! seed corpus) replay through exactly the same code in the ordinary test
//! suite, without the fuzzer. Each takes arbitrary bytes and must return,
//! never panic; a refused input is the expected answer to most of them.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::Bytes;

use crate::config::{Config, DEMO};
use crate::control::{ApiError, Body, dry_run};
use crate::rules::{ExprKind, Expression, Phase, RulesError, Ruleset, ZoneRules};
use crate::state::State;

/// A phase for a selector byte to pick.
fn phase(selector: u8) -> Phase {
    let phases: Vec<Phase> = Phase::REQUEST.into_iter().chain(Phase::RESPONSE).collect();
    phases[usize::from(selector) % phases.len()]
}

/// What a `rules` input holds: the first byte says what the rest is.
enum RulesInput<'a> {
    /// Even: an expression.
    Expression(&'a str),
    /// Odd: a ruleset's JSON, for the phase the byte picks.
    Ruleset(Phase, &'a str),
}

fn rules_input(data: &[u8]) -> Option<RulesInput<'_>> {
    let (&selector, rest) = data.split_first()?;
    let text = std::str::from_utf8(rest).ok()?;
    Some(match selector % 2 {
        0 => RulesInput::Expression(text),
        _ => RulesInput::Ruleset(phase(selector / 2), text),
    })
}

/// Every way an expression is compiled: filters and values, for requests
/// and for responses, and as a rate limit's characteristic.
fn compile_expression(text: &str) -> Vec<bool> {
    let mut compiled = Vec::new();
    for response in [false, true] {
        for value in [false, true] {
            compiled.push(Expression::compile(text, ExprKind { response, value }).is_ok());
        }
    }
    compiled.push(Expression::compile_characteristic(text).is_ok());
    compiled
}

/// A ruleset's JSON as the config file and the control API read it,
/// compiled for `phase`; `None` if it is not a ruleset.
fn compile_ruleset(phase: Phase, text: &str) -> Option<Result<ZoneRules, RulesError>> {
    let ruleset: Ruleset = serde_json::from_str(text).ok()?;
    Some(ZoneRules::compile(&BTreeMap::from([(phase, ruleset)])))
}

/// `rules`: an expression compiled every way, or a ruleset compiled.
pub fn rules(data: &[u8]) {
    match rules_input(data) {
        Some(RulesInput::Expression(text)) => {
            compile_expression(text);
        }
        Some(RulesInput::Ruleset(phase, text)) => {
            compile_ruleset(phase, text);
        }
        None => {}
    }
}

/// The demo config's state, which the control bodies are written against.
fn demo_state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| Config::parse(DEMO).expect("the demo config is valid").state)
}

/// A `control_body` input: the first byte picks the endpoint (its low seven
/// bits modulo 3, then the phase of a ruleset put) and, by its high bit, the
/// zone (the demo's customer, `example.com`, or its provider); the rest is
/// the body.
fn control_input(data: &[u8]) -> Option<(&'static str, Body, Bytes)> {
    let (&selector, body) = data.split_first()?;
    let low = selector & 0x7f;
    let endpoint = match low % 3 {
        0 => Body::CreateCustomHostname,
        1 => Body::PutRuleset(phase(low / 3)),
        _ => Body::ImportState,
    };
    let zone = match selector & 0x80 {
        0 => "example.com",
        _ => "saasprovider.com",
    };
    Some((zone, endpoint, Bytes::copy_from_slice(body)))
}

fn control_dry_run(data: &[u8]) -> Option<Result<(), ApiError>> {
    let (zone, endpoint, body) = control_input(data)?;
    Some(dry_run(demo_state(), zone, endpoint, body))
}

/// `control_body`: the body run as the control socket runs a write, against
/// the demo's state, without committing it. Whatever the body, a refusal is
/// a client error (4xx): no body makes the control API fail as a server.
pub fn control_body(data: &[u8]) {
    if let Some(Err(error)) = control_dry_run(data) {
        assert!(error.status.is_client_error(), "{error}");
    }
}

/// `config`: the config file's bytes, parsed and validated as `edge serve`
/// loads them.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::parse(text);
    }
}

/// The SNI rustls's server reads from `hello` (a TLS record), if it accepts
/// it as a ClientHello: the reference the XDP program's own walk
/// (`edge-ebpf/src/tls.rs`) is checked against, by the `client_hello` fuzz
/// target on the same source and by `tests/tests/xdp_fuzz_inputs.rs` on the
/// loaded program.
pub fn rustls_server_name(hello: &[u8]) -> Option<String> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut reader = hello;
    acceptor.read_tls(&mut reader).ok()?;
    let accepted = acceptor.accept().ok()??;
    accepted.client_hello().server_name().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    /// The files of `fuzz/<folder>/<target>/`.
    fn inputs(folder: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz")
            .join(folder)
            .join(target);
        let mut found: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
            .map(|entry| entry.expect("a readable folder").path())
            .filter(|path| path.file_name().is_some_and(|name| name != ".gitkeep"))
            .map(|path| {
                let input = std::fs::read(&path).expect("a readable input");
                (path, input)
            })
            .collect();
        found.sort();
        found
    }

    /// Every crash kept in `regressions/` and every seed, through the
    /// target's function: a crash found once stays a test.
    fn replay(target: &str, run: fn(&[u8])) {
        for folder in ["regressions", "corpus"] {
            for (path, input) in inputs(folder, target) {
                eprintln!("{target}: {}", path.display());
                run(&input);
            }
        }
    }

    #[test]
    fn rules_inputs_replay() {
        replay("rules", rules);
    }

    #[test]
    fn control_body_inputs_replay() {
        replay("control_body", control_body);
    }

    #[test]
    fn config_inputs_replay() {
        replay("config", config);
    }

    /// The seeds are worth something only if they get past the parsers: each
    /// is accepted, so the fuzzer starts from inputs that reach the compiler
    /// and the validation.
    #[test]
    fn every_seed_is_accepted() {
        let rules_seeds = inputs("corpus", "rules");
        assert!(rules_seeds.len() >= 10);
        for (path, input) in rules_seeds {
            let accepted = match rules_input(&input) {
                Some(RulesInput::Expression(text)) => compile_expression(text).contains(&true),
                Some(RulesInput::Ruleset(phase, text)) => {
                    matches!(compile_ruleset(phase, text), Some(Ok(_)))
                }
                None => false,
            };
            assert!(accepted, "{} is refused", path.display());
        }
        let control_seeds = inputs("corpus", "control_body");
        assert!(control_seeds.len() >= 5);
        for (path, input) in control_seeds {
            let answer = control_dry_run(&input).expect("a selector byte");
            assert_eq!(answer, Ok(()), "{}", path.display());
        }
        for (path, input) in inputs("corpus", "config") {
            let text = std::str::from_utf8(&input).unwrap();
            let config = Config::parse(text);
            assert!(config.is_ok(), "{}: {config:?}", path.display());
        }
    }

    /// The checks the control target asserts on can fail: a body the dry run
    /// refuses is a 400 naming the problem (an unknown field, the nesting
    /// limit, an expression that does not compile).
    #[test]
    fn a_bad_body_is_a_client_error_naming_the_field() {
        let answer = control_dry_run(b"\x80{\"hostnam\": \"a.example.org\"}").unwrap();
        let error = answer.unwrap_err();
        assert_eq!(error.status, http::StatusCode::BAD_REQUEST);
        assert!(error.message.contains("unknown field `hostnam`"), "{error}");
        let deep = format!("\x02{}{}", "[".repeat(320), "]".repeat(320));
        let error = control_dry_run(deep.as_bytes()).unwrap().unwrap_err();
        assert!(error.message.contains("deeper than 32"), "{error}");
        let unknown =
            control_dry_run(b"\x07{\"rules\":[{\"expression\":\"nope\",\"action\":\"block\"}]}")
                .unwrap()
                .unwrap_err();
        assert_eq!(unknown.status, http::StatusCode::BAD_REQUEST, "{unknown}");
    }
}
