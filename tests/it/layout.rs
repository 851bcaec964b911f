//! The module layout the architecture depends on, checked on the sources:
//! `aws/` and `google/` never import each other (what joins them lives in
//! neutral modules: `subject`, `token`, `jwt`, `text`, `hints`), and nothing
//! outside `cli/` uses the command line.

use std::path::{Path, PathBuf};

fn sources(under: &[&str]) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut todo: Vec<PathBuf> = under
        .iter()
        .map(|p| {
            if p.is_empty() {
                root.clone()
            } else {
                root.join(p)
            }
        })
        .collect();
    while let Some(p) = todo.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).expect("read_dir") {
                todo.push(e.expect("entry").path());
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    assert!(!out.is_empty(), "no sources under {under:?}");
    out
}

/// Lines of `files` that name module `other` by a path: `crate::other`,
/// `super::other` or `super::super::other`, outside comments.
fn mentions(files: &[PathBuf], other: &str) -> Vec<String> {
    let needles = [
        format!("crate::{other}"),
        format!("super::{other}"),
        format!("super::super::{other}"),
    ];
    let mut hits = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).expect("read");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if needles.iter().any(|needle| code.contains(needle.as_str())) {
                hits.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    hits
}

#[test]
fn aws_and_google_never_import_each_other() {
    let aws = sources(&["aws.rs", "aws"]);
    let google = sources(&["google.rs", "google"]);
    assert_eq!(mentions(&aws, "google"), Vec::<String>::new());
    assert_eq!(mentions(&google, "aws"), Vec::<String>::new());
}

#[test]
fn the_checker_sees_an_import_when_there_is_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("x.rs");
    std::fs::write(&f, "use crate::google::sts;\n// crate::aws in a comment\n").expect("write");
    assert_eq!(mentions(std::slice::from_ref(&f), "google").len(), 1);
    assert!(mentions(std::slice::from_ref(&f), "aws").is_empty());
}

#[test]
fn only_the_command_line_uses_the_command_line() {
    let all = sources(&[""]);
    let outside: Vec<PathBuf> = all
        .into_iter()
        .filter(|p| {
            let s = p.to_string_lossy();
            // logging.rs and output.rs are themselves command-line only
            // (`#[cfg(feature = "cli")]` in lib.rs): logging warns on stderr.
            !s.contains("/src/cli")
                && !s.ends_with("/src/lib.rs")
                && !s.ends_with("/src/logging.rs")
                && !s.ends_with("/src/output.rs")
        })
        .collect();
    for m in ["cli", "logging", "output"] {
        assert_eq!(mentions(&outside, m), Vec::<String>::new(), "{m}");
    }
}

#[test]
fn no_source_file_is_too_long_to_read_in_one_sitting() {
    for f in sources(&[""]) {
        let lines = std::fs::read_to_string(&f).expect("read").lines().count();
        assert!(lines <= 600, "{}: {lines} lines", f.display());
    }
}
