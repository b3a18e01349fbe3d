//! The bundled apps speak Chinese and English: every text a person reads
//! (labels, descriptions, help, messages, subjects, confirmations) gives both.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The model keys whose values people read.
const READ_BY_PEOPLE: [&str; 7] = [
    "label",
    "description",
    "help",
    "message",
    "subject",
    "confirm",
    "pattern_message",
];

/// The keys under which records' field values stand (data, scenario values
/// and expectations, effects' values): data, not the model's words.
const RECORD_VALUES: [&str; 4] = ["records", "values", "set", "expect"];

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a readable folder").flatten() {
        let path = entry.path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
}

/// Where in `value` a text for people lacks `en` or `zh`, as JSON-pointer-like paths.
fn one_language(value: &Value, at: &str, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let here = format!("{at}/{key}");
                // Records' values are data, not the model's words.
                if RECORD_VALUES.contains(&key.as_str()) {
                    continue;
                }
                // A field may be called `description`: its value is then a field
                // declaration, or in a mapping an expression, not a text.
                let a_field = v.get("type").is_some()
                    || v.as_str().is_some_and(|t| t.starts_with(['=', '$']));
                if READ_BY_PEOPLE.contains(&key.as_str()) && !a_field {
                    let both = v.get("en").is_some_and(Value::is_string)
                        && v.get("zh").is_some_and(Value::is_string);
                    if !both {
                        found.push(here.clone());
                    }
                }
                one_language(v, &here, found);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                one_language(v, &format!("{at}/{i}"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn every_text_of_the_bundled_apps_has_chinese_and_english() {
    let apps = Path::new(env!("CARGO_MANIFEST_DIR")).join("apps");
    let mut files = Vec::new();
    yaml_files(&apps, &mut files);
    assert!(
        files.len() > 50,
        "the bundled apps are found: {}",
        files.len()
    );
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable");
        let value: Value = serde_saphyr::from_str(&text).expect("YAML");
        let mut here = Vec::new();
        one_language(&value, "", &mut here);
        let rel = file
            .strip_prefix(&apps)
            .unwrap_or(file)
            .display()
            .to_string();
        found.extend(here.into_iter().map(|at| format!("{rel}: {at}")));
    }
    assert!(
        found.is_empty(),
        "texts in one language only:\n{}",
        found.join("\n")
    );
}

#[test]
fn a_text_in_one_language_is_found() {
    let value: Value = serde_json::json!({
        "label": {"en": "Customer", "zh": "客户"},
        "fields": {"name": {"label": "Name"}, "code": {"label": {"en": "Code"}},
                   "description": {"type": "text", "label": {"en": "Description", "zh": "描述"}}},
        "records": [{"description": "only data"}],
    });
    let mut found = Vec::new();
    one_language(&value, "", &mut found);
    assert_eq!(found, ["/fields/name/label", "/fields/code/label"]);
}
