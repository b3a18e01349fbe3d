//! Generated files stay in step with their source, and the code keeps its shape:
//! the committed `schemas/` equal what `trellis schema` writes, the model reference
//! names every key and diagnostic code, and the engine stays free of storage and HTTP.

use std::path::{Path, PathBuf};

use trellis_engine::Code;
use trellis_engine::schema::FileKind;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("engine/ has a parent")
        .to_owned()
}

#[test]
fn committed_schemas_equal_the_generated_ones() {
    for kind in FileKind::ALL {
        let path = repo().join(format!("schemas/{}.schema.json", kind.name()));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == kind.schema_text(),
            "{} is stale: run `cargo run -- schema --out schemas/`",
            path.display()
        );
    }
}

fn property_names(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(props)) = map.get("properties") {
                out.extend(props.keys().cloned());
            }
            map.values().for_each(|v| property_names(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| property_names(v, out)),
        _ => {}
    }
}

#[test]
fn the_model_reference_documents_every_key_and_code() {
    let doc = std::fs::read_to_string(repo().join("docs/model-reference.md"))
        .expect("docs/model-reference.md exists");
    let mut missing = Vec::new();
    for kind in FileKind::ALL {
        let mut names = Vec::new();
        property_names(&kind.schema(), &mut names);
        for name in names {
            if !doc.contains(&format!("`{name}`")) && !missing.contains(&name) {
                missing.push(name);
            }
        }
    }
    for code in Code::ALL {
        if !doc.contains(code.as_str()) {
            missing.push(code.as_str().to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "docs/model-reference.md does not mention: {missing:?}"
    );
}

#[test]
fn the_engine_depends_on_no_storage_http_or_template_crate() {
    let manifest =
        std::fs::read_to_string(repo().join("engine/Cargo.toml")).expect("engine/Cargo.toml");
    for forbidden in [
        "sea-orm",
        "sea-query",
        "sqlx",
        "axum",
        "hyper",
        "tower",
        "minijinja",
        "reqwest",
    ] {
        assert!(
            !manifest
                .lines()
                .any(|l| l.trim_start().starts_with(forbidden)),
            "the engine must stay pure, but engine/Cargo.toml names `{forbidden}`"
        );
    }
}

#[test]
fn every_module_starts_with_a_doc_comment() {
    let mut undocumented = Vec::new();
    let mut stack = vec![
        repo().join("engine/src"),
        repo().join("runtime/src"),
        repo().join("designer/src"),
        repo().join("src"),
    ];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if !text.trim_start().starts_with("//!") {
                    undocumented.push(path.display().to_string());
                }
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "modules without a `//!` first line: {undocumented:?}"
    );
}

#[test]
fn every_diagnostic_code_is_unique() {
    let mut codes: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    codes.sort_unstable();
    let before = codes.len();
    codes.dedup();
    assert_eq!(before, codes.len(), "two diagnostics share a code");
}
