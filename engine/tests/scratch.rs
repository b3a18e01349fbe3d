#[test]
fn scratch() {
    let mut d = trellis_engine::diagnostic::Diagnostics::default();
    let _ = trellis_engine::load::load_app(std::path::Path::new("/tmp/t1"), &mut d);
    d.sort();
    println!("{}", d.render());
}
#[test]
fn raw() {
    let schema = trellis_engine::schema::FileKind::Entity.schema();
    let v: serde_json::Value = serde_json::json!({"label": "x", "fields": {"m": {"type": "select", "options": ["a", {"value": "f", "colr": "red"}]}}});
    let val = jsonschema::validator_for(&schema).unwrap();
    for e in val.iter_errors(&v) { println!("{} | {} | {:?}", e.instance_path().as_str(), e.schema_path().as_str(), e.kind()); }
    println!("{}", serde_json::to_string(&schema["$defs"]["SelectOption"]).unwrap());
}
