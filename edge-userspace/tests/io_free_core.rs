//! The O2O core (`state`, `chain`, `rules`, `stages`) decides what happens to a request from
//! plain values and does no I/O: no runtime, no sockets, no files, no TLS, no store, no
//! kernel. That is what lets the router be tested without sockets and the snapshot be
//! rebuilt off the request path. This test holds the line: it parses the core's source
//! files, and every module of the crate they use (transitively), and fails on any path
//! into an I/O crate or std's sockets and files. Test-only code (`#[cfg(test)]`) is exempt.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// The core's modules, by their path from the crate root.
const CORE: &[&str] = &["state", "chain", "rules", "stages"];

/// Crates that do I/O (or exist to serve it): none of them may be named by the core.
const IO_CRATES: &[&str] = &[
    "tokio",
    "tokio_rustls",
    "hyper",
    "hyper_util",
    "quinn",
    "h3",
    "h3_quinn",
    "aya",
    "redb",
    "rustls",
    "reqwest",
    "hickory_resolver",
];

/// std's sockets and files.
const IO_STD: &[&[&str]] = &[
    &["std", "fs"],
    &["std", "net", "TcpListener"],
    &["std", "net", "TcpStream"],
    &["std", "net", "UdpSocket"],
    &["std", "os", "unix", "net"],
    &["std", "process"],
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// A module of the crate, by its path (`["chain", "index"]`), and its file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Module {
    path: Vec<String>,
    file: PathBuf,
}

/// The file of module `path`, if it is one (`a/b.rs` or `a/b/mod.rs`).
fn module_file(path: &[String]) -> Option<PathBuf> {
    let mut file = src();
    for segment in path {
        file.push(segment);
    }
    let flat = file.with_extension("rs");
    let nested = file.join("mod.rs");
    [flat, nested].into_iter().find(|f| f.is_file())
}

/// The deepest module that `path` (absolute, from the crate root) names or names an item of.
fn resolve(path: &[String]) -> Option<Module> {
    (1..=path.len()).rev().find_map(|len| {
        let path = path[..len].to_vec();
        module_file(&path).map(|file| Module { path, file })
    })
}

/// Whether `attrs` hold `#[cfg(test)]` (code the core ships without).
fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && attr
                .parse_args::<syn::Meta>()
                .is_ok_and(|meta| meta.path().is_ident("test"))
    })
}

/// Every path a file names outside test-only code: `use` trees flattened, paths in
/// expressions, types and patterns, and `a::b` sequences inside macro invocations.
#[derive(Default)]
struct Paths {
    found: Vec<Vec<String>>,
    /// `mod name;` declarations: the file's child modules.
    children: Vec<String>,
}

impl Paths {
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.use_tree(prefix, &path.tree);
                prefix.pop();
            }
            syn::UseTree::Name(name) => self.leaf(prefix, &name.ident),
            syn::UseTree::Rename(rename) => self.leaf(prefix, &rename.ident),
            syn::UseTree::Glob(_) => self.found.push(prefix.clone()),
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }

    fn leaf(&mut self, prefix: &[String], ident: &syn::Ident) {
        let mut path = prefix.to_vec();
        if ident != "self" {
            path.push(ident.to_string());
        }
        self.found.push(path);
    }

    fn tokens(&mut self, tokens: TokenStream) {
        let mut path: Vec<String> = Vec::new();
        let mut colons = 0;
        for token in tokens {
            match token {
                TokenTree::Ident(ident) => {
                    if colons != 2 {
                        self.flush(&mut path);
                    }
                    path.push(ident.to_string());
                    colons = 0;
                }
                TokenTree::Punct(punct) if punct.as_char() == ':' => colons += 1,
                TokenTree::Group(group) => {
                    self.flush(&mut path);
                    colons = 0;
                    self.tokens(group.stream());
                }
                _ => {
                    self.flush(&mut path);
                    colons = 0;
                }
            }
        }
        self.flush(&mut path);
    }

    fn flush(&mut self, path: &mut Vec<String>) {
        if path.len() > 1 {
            self.found.push(std::mem::take(path));
        }
        path.clear();
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Const(i) => &i.attrs,
            syn::Item::Enum(i) => &i.attrs,
            syn::Item::Fn(i) => &i.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Macro(i) => &i.attrs,
            syn::Item::Mod(i) => &i.attrs,
            syn::Item::Static(i) => &i.attrs,
            syn::Item::Struct(i) => &i.attrs,
            syn::Item::Trait(i) => &i.attrs,
            syn::Item::Type(i) => &i.attrs,
            syn::Item::Use(i) => &i.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if is_test_only(attrs) {
            return;
        }
        match item {
            syn::Item::Use(item) => self.use_tree(&mut Vec::new(), &item.tree),
            syn::Item::Mod(item) if item.content.is_none() => {
                self.children.push(item.ident.to_string());
            }
            _ => syn::visit::visit_item(self, item),
        }
    }

    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        if !is_test_only(&item.attrs) {
            syn::visit::visit_impl_item_fn(self, item);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        self.found.push(
            path.segments
                .iter()
                .map(|segment| segment.ident.to_string())
                .collect(),
        );
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.visit_path(&mac.path);
        self.tokens(mac.tokens.clone());
    }
}

/// Why `path` is I/O, if it is.
fn io(path: &[String]) -> Option<String> {
    let first = path.first()?;
    if IO_CRATES.contains(&first.as_str()) {
        return Some(format!("the I/O crate `{first}`"));
    }
    IO_STD
        .iter()
        .find(|io| path.len() >= io.len() && io.iter().zip(path).all(|(a, b)| a == b))
        .map(|io| format!("`{}`", io.join("::")))
}

/// `path` as named in `module`, from the crate root; `None` for anything outside the crate.
fn absolute(module: &Module, path: &[String]) -> Option<Vec<String>> {
    let first = path.first()?;
    match first.as_str() {
        "crate" => Some(path[1..].to_vec()),
        "self" => Some(module.path.iter().chain(&path[1..]).cloned().collect()),
        "super" => {
            let mut base = module.path.clone();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
            Some(base.into_iter().chain(rest.iter().cloned()).collect())
        }
        _ => None,
    }
}

/// Every violation in the core and the modules it uses: (file, path, why).
fn violations() -> (Vec<(PathBuf, String, String)>, BTreeSet<Module>) {
    let mut queue: VecDeque<Module> = CORE
        .iter()
        .map(|name| resolve(&[name.to_string()]).expect("a core module exists"))
        .collect();
    let mut seen: BTreeSet<Module> = BTreeSet::new();
    let mut violations = Vec::new();
    while let Some(module) = queue.pop_front() {
        if !seen.insert(module.clone()) {
            continue;
        }
        let text = std::fs::read_to_string(&module.file).unwrap();
        let file =
            syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", module.file.display()));
        if is_test_only(&file.attrs) {
            continue;
        }
        let mut paths = Paths::default();
        paths.visit_file(&file);
        for child in &paths.children {
            let path: Vec<String> = module.path.iter().chain([child]).cloned().collect();
            if let Some(file) = module_file(&path) {
                queue.push_back(Module { path, file });
            }
        }
        for path in &paths.found {
            if let Some(why) = io(path) {
                violations.push((module.file.clone(), path.join("::"), why));
            } else if let Some(used) = absolute(&module, path).as_deref().and_then(resolve) {
                queue.push_back(used);
            }
        }
    }
    (violations, seen)
}

#[test]
fn the_o2o_core_does_no_io() {
    let (violations, modules) = violations();
    let report: Vec<String> = violations
        .iter()
        .map(|(file, path, why)| {
            let file = file.strip_prefix(src()).unwrap_or(file);
            format!("{}: `{path}` is {why}", file.display())
        })
        .collect();
    assert!(
        report.is_empty(),
        "the O2O core must stay free of I/O:\n{}",
        report.join("\n")
    );
    // The walk reached the core's files and what they use, not just the roots.
    let names: BTreeSet<String> = modules.iter().map(|m| m.path.join("::")).collect();
    for expected in [
        "chain::snapshot",
        "rules::compiled",
        "stages::phase",
        "state::index",
    ] {
        assert!(
            names.contains(expected),
            "{expected} not checked: {names:?}"
        );
    }
}

/// The checker itself finds what it is there to find.
#[test]
fn io_paths_are_recognised() {
    let file: syn::File = syn::parse_quote! {
        use std::{fs, net::{IpAddr, TcpStream}};
        use ::tokio::sync::watch;
        fn f() { let _ = format!("{}", hyper::Method::GET); }
        #[cfg(test)]
        mod tests { use redb::Database; }
    };
    let mut paths = Paths::default();
    paths.visit_file(&file);
    let io: BTreeSet<String> = paths
        .found
        .iter()
        .filter_map(|p| io(p).map(|_| p.join("::")))
        .collect();
    let expected: BTreeSet<String> = [
        "std::fs",
        "std::net::TcpStream",
        "tokio::sync::watch",
        "hyper::Method::GET",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(io, expected);
}
