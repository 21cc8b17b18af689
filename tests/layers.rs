//! The layering holds: a module imports only modules listed above it in `src/lib.rs`'s
//! `# Layout` (the one list the documentation and this check share). Every `crate::`
//! path in a module's code counts (comments and `#[cfg(test)]` modules do not: tests may
//! use anything); a module's own submodules are the module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The modules of the layout, in order (`- [`name`]` lines of the `# Layout` section).
fn layout(lib: &str) -> Vec<String> {
    let mut in_layout = false;
    let mut out = Vec::new();
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else { continue };
        let doc = doc.trim();
        if doc.starts_with("# ") {
            in_layout = doc == "# Layout";
            continue;
        }
        if let Some(rest) = doc.strip_prefix("- [`").filter(|_| in_layout) {
            let name = rest.split('`').next().unwrap();
            out.push(name.to_string());
        }
    }
    out
}

/// The module's code without comments and test modules.
fn code(text: &str, file: &Path) -> String {
    if file.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The top-level modules a piece of code names through `crate::`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = code.as_bytes();
    let mut at = 0;
    while let Some(i) = code[at..].find("crate::") {
        let start = at + i + "crate::".len();
        at = start;
        if i > 0 && (b[at - 8].is_ascii_alphanumeric() || b[at - 8] == b'_') {
            continue; // `mycrate::`
        }
        if b.get(start) == Some(&b'{') {
            // `crate::{a, b::{C, D}, e}`: the names at depth one.
            let (mut depth, mut j, mut expect) = (0usize, start, true);
            while j < b.len() {
                match b[j] {
                    b'{' => {
                        depth += 1;
                        expect = depth == 1;
                    }
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    b',' if depth == 1 => expect = true,
                    c if expect && (c.is_ascii_alphabetic() || c == b'_') => {
                        let end = (j..b.len()).find(|&k| !(b[k].is_ascii_alphanumeric() || b[k] == b'_')).unwrap();
                        out.insert(code[j..end].to_string());
                        expect = false;
                        j = end;
                        continue;
                    }
                    _ => {}
                }
                j += 1;
            }
        } else {
            let end = (start..b.len()).find(|&k| !(b[k].is_ascii_alphanumeric() || b[k] == b'_')).unwrap_or(b.len());
            out.insert(code[start..end].to_string());
        }
    }
    out.retain(|m| m != "self" && m != "super");
    out
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_module_imports_one_above_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(root.join("lib.rs")).unwrap();
    let order = layout(&lib);
    assert!(order.len() > 10, "the layout in src/lib.rs lists the modules: {order:?}");
    let rank: BTreeMap<&str, usize> = order.iter().enumerate().map(|(i, m)| (m.as_str(), i)).collect();
    assert_eq!(rank.len(), order.len(), "a module is listed twice: {order:?}");

    // Every declared module is in the layout, and every listed one exists.
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod ").and_then(|r| r.strip_suffix(';')))
        .map(str::to_string)
        .collect();
    let listed: BTreeSet<String> = order.iter().cloned().collect();
    assert_eq!(declared, listed, "src/lib.rs: `pub mod` declarations and the # Layout list differ");

    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut upward = Vec::new();
    let mut seen = 0;
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_str().unwrap().trim_end_matches(".rs").to_string();
        if top == "lib" || top == "main" || top == "bin" {
            continue;
        }
        let me = *rank.get(top.as_str()).unwrap_or_else(|| panic!("{} is not in the layout", rel.display()));
        let text = std::fs::read_to_string(f).unwrap();
        for m in imports(&code(&text, f)) {
            if m == top {
                continue;
            }
            seen += 1;
            match rank.get(m.as_str()) {
                Some(&r) if r < me => {}
                Some(_) => upward.push(format!("{} imports `{m}`, listed below `{top}`", rel.display())),
                None => upward.push(format!("{} imports `{m}`, which the layout does not list", rel.display())),
            }
        }
    }
    assert!(seen > 50, "the check found the imports ({seen})");
    assert!(upward.is_empty(), "upward imports (see src/lib.rs # Layout):\n{}", upward.join("\n"));
}

#[test]
fn the_import_reader_reads_paths_and_groups() {
    let got = imports("use crate::a::B;\nuse crate::{c, d::{E, F}, g};\nlet x = crate::h::i();\nmycrate::z();\n");
    let want: BTreeSet<String> = ["a", "c", "d", "g", "h"].iter().map(|s| s.to_string()).collect();
    assert_eq!(got, want);
    assert!(code("fn a() {}\n// crate::x\n#[cfg(test)]\nmod tests {\n use crate::y;\n}\n", Path::new("m.rs"))
        .find("crate::")
        .is_none());
}
