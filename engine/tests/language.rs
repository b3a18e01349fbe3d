//! Behaviour of the language's parts on their own: positions, filters,
//! scripts, workflow graphs, numbering patterns and schedules.

use std::path::Path;

use serde_json::json;
use trellis_engine::check::{duration_seconds, entity_numbering_pattern};
use trellis_engine::filter::{
    self, Bindings, Expr, FieldFacts, FilterError, FilterErrorKind, FilterScope, Op, Operand, Var,
};
use trellis_engine::graph::WorkflowGraph;
use trellis_engine::model::{FieldType, Filter, Workflow};
use trellis_engine::script::ScriptSandbox;
use trellis_engine::source::SourceFile;

#[test]
fn every_value_and_key_is_located_by_its_json_pointer() {
    let text =
        "label: {en: Customer, zh: 客户}\nfields:\n  name:\n    type: text\n  tags: [a, 'b']\n"
            .to_owned();
    let (file, value) = SourceFile::parse(Path::new("x.yaml"), text).expect("valid YAML");
    assert_eq!(value["fields"]["name"]["type"], "text");
    let at = |p: &str| file.value_span(p).map(|s| (s.line, s.column));
    assert_eq!(at("/label/zh"), Some((1, 27)));
    assert_eq!(at("/fields/name/type"), Some((4, 11)));
    assert_eq!(at("/fields/tags/1"), Some((5, 13)));
    let key = file.key_span("/fields/name").expect("located key");
    assert_eq!((key.line, key.column, key.len), (3, 3, 4));
    // An unknown pointer falls back to its nearest located ancestor.
    assert_eq!(at("/fields/name/missing"), Some((4, 5)));
}

#[test]
fn yaml_syntax_errors_and_duplicate_keys_are_located() {
    let err = SourceFile::parse(Path::new("x.yaml"), "a: [1, 2\nb: 3\n".into())
        .expect_err("invalid YAML");
    assert_eq!(err.code, trellis_engine::Code::YamlSyntax);
    assert_eq!(err.span.map(|s| s.line), Some(2));
    let err = SourceFile::parse(Path::new("x.yaml"), "a: 1\nb: 2\na: 3\n".into())
        .expect_err("duplicate key");
    assert_eq!(err.code, trellis_engine::Code::DuplicateKey);
    assert_eq!(err.span.map(|s| (s.line, s.column)), Some((3, 1)));
}

#[test]
fn yes_and_no_stay_text() {
    // YAML 1.1 booleans would turn the option `no` into `false`; the loader keeps YAML 1.2 core.
    let (_, value) =
        SourceFile::parse(Path::new("x.yaml"), "options: [yes, no, on]\n".into()).expect("valid");
    assert_eq!(value["options"], json!(["yes", "no", "on"]));
}

/// A scope with a few fields of every kind that matters to filters.
struct Order;

impl FilterScope for Order {
    fn field(&self, path: &[String]) -> Result<FieldFacts, FilterError> {
        let facts = |kind, options: &[&str], multiple| FieldFacts {
            kind,
            options: options.iter().map(|s| s.to_string()).collect(),
            multiple,
        };
        match path.join(".").as_str() {
            "status" => Ok(facts(FieldType::Select, &["open", "late", "done"], false)),
            "qty" => Ok(facts(FieldType::Integer, &[], false)),
            "amount" => Ok(facts(FieldType::Money, &[], false)),
            "due" => Ok(facts(FieldType::Date, &[], false)),
            "name" => Ok(facts(FieldType::Text, &[], false)),
            "owner" => Ok(facts(FieldType::User, &[], false)),
            "tags" => Ok(facts(FieldType::MultiSelect, &["vip", "new"], false)),
            other => Err(FilterError {
                pointer: String::new(),
                kind: FilterErrorKind::UnknownField,
                message: format!("unknown field `{other}`"),
                candidates: vec![],
            }),
        }
    }
    fn user_attribute(&self, name: &str) -> Option<FieldFacts> {
        (name == "id").then(|| FieldFacts {
            kind: FieldType::User,
            options: vec![],
            multiple: false,
        })
    }
    fn user_attributes(&self) -> Vec<String> {
        vec!["$user.id".into()]
    }
}

fn parse(value: serde_json::Value) -> Result<Expr, Vec<FilterError>> {
    let serde_json::Value::Object(map) = value else {
        panic!("a filter is a map")
    };
    filter::check(&Filter(map), &Order)
}

#[test]
fn filters_parse_into_comparisons_with_variables() {
    let expr = parse(json!({"status": {"in": ["open", "late"]}, "owner": "$user.id", "due": {"lt": "$today-3d"}})).expect("valid");
    let Expr::And(parts) = expr else {
        panic!("several keys make an `and`")
    };
    assert_eq!(parts.len(), 3);
    assert_eq!(
        parts[1],
        Expr::Compare {
            path: vec!["owner".into()],
            op: Op::Eq,
            value: Operand::Var(Var::User("id".into()))
        }
    );
    assert_eq!(
        parts[2],
        Expr::Compare {
            path: vec!["due".into()],
            op: Op::Lt,
            value: Operand::Var(Var::Today(-3))
        }
    );
    let or = parse(json!({"or": [{"qty": {"gte": 10}}, {"not": {"name": {"starts_with": "A"}}}]}))
        .expect("valid");
    assert!(matches!(or, Expr::Or(ref p) if p.len() == 2));
}

#[test]
fn filters_report_every_problem_with_its_place() {
    let errors = parse(json!({
        "nope": 1,
        "qty": {"gtt": 3},
        "status": "closed",
        "amount": "a lot",
        "owner": "$user.boss",
        "name": {"between": [1, 2, 3]},
    }))
    .expect_err("six problems");
    let found: Vec<(&str, FilterErrorKind)> = errors
        .iter()
        .map(|e| (e.pointer.as_str(), e.kind))
        .collect();
    assert_eq!(
        found,
        vec![
            ("/nope", FilterErrorKind::UnknownField),
            ("/qty/gtt", FilterErrorKind::UnknownOperator),
            ("/status", FilterErrorKind::BadValue),
            ("/amount", FilterErrorKind::BadValue),
            ("/owner", FilterErrorKind::UnknownVariable),
            ("/name/between", FilterErrorKind::BadValue),
        ]
    );
}

#[test]
fn hostile_text_in_a_filter_is_a_value_never_a_field() {
    // A field name is checked against the model; a value is only ever data.
    let errors = parse(json!({"name; DROP TABLE x": 1})).expect_err("unknown field");
    assert_eq!(errors[0].kind, FilterErrorKind::UnknownField);
    let ok = parse(json!({"name": "x'); DROP TABLE orders;--"}))
        .expect("any text is a valid text value");
    assert!(matches!(
        ok,
        Expr::Compare {
            value: Operand::Value(_),
            ..
        }
    ));
}

#[test]
fn filters_match_single_records_in_memory() {
    let expr = parse(json!({"status": {"in": ["open", "late"]}, "qty": {"between": [1, 5]}, "tags": "vip", "due": {"lt": "$today"}})).expect("valid");
    let user = serde_json::Map::new();
    let vars = Bindings {
        user: &user,
        today: chrono::NaiveDate::from_ymd_opt(2026, 3, 2).expect("date"),
        now: chrono::Utc::now(),
    };
    let record = |status: &str, qty: i64, due: &str| {
        json!({"status": status, "qty": qty, "tags": ["vip"], "due": due})
            .as_object()
            .cloned()
            .expect("map")
    };
    assert!(expr.matches(&record("late", 3, "2026-03-01"), &vars));
    assert!(!expr.matches(&record("done", 3, "2026-03-01"), &vars));
    assert!(!expr.matches(&record("open", 9, "2026-03-01"), &vars));
    assert!(!expr.matches(&record("open", 3, "2026-03-02"), &vars));
}

#[test]
fn scripts_compile_only_with_known_variables() {
    let sandbox = ScriptSandbox::new();
    assert!(sandbox.compile("qty * price", &["qty", "price"]).is_ok());
    let err = sandbox
        .compile("let a = 1;\nqty * prise", &["qty", "price"])
        .expect_err("unknown variable");
    assert!(err.message.contains("prise"), "{}", err.message);
    assert_eq!((err.line, err.column), (2, 7));
    let err = sandbox
        .compile("eval(\"1\")", &[])
        .expect_err("eval is disabled");
    assert!(err.message.contains("eval"), "{}", err.message);
}

#[test]
fn runaway_scripts_stop_with_an_error() {
    let sandbox = ScriptSandbox::new();
    let engine = sandbox.engine();
    for source in [
        "loop {}",
        "fn f(x) { f(x + 1) } f(0)",
        "let s = \"ab\"; loop { s += s; }",
        "let a = []; loop { a.push(1); }",
    ] {
        let ast = sandbox.compile(source, &[]).expect("compiles");
        let result = engine.eval_ast::<rhai::Dynamic>(&ast);
        assert!(
            result.is_err(),
            "`{source}` should be stopped by the sandbox"
        );
    }
    let ast = sandbox
        .compile("days_between(\"2026-03-01\", \"2026-03-09\")", &[])
        .expect("compiles");
    assert_eq!(engine.eval_ast::<i64>(&ast).expect("runs"), 8);
}

fn workflow(yaml: &str) -> Workflow {
    let (_, value) = SourceFile::parse(Path::new("w.yaml"), yaml.to_owned()).expect("valid YAML");
    serde_json::from_value(value).expect("a workflow")
}

#[test]
fn workflow_graphs_find_unreachable_states_dead_ends_and_traps() {
    let w = workflow(
        "entity: x\nfield: s\nstates:\n  a: {initial: true}\n  b: {}\n  c: {}\n  d: {}\n  e: {}\n  done: {final: true}\n  orphan: {final: true}\ntransitions:\n  - {action: go, from: a, to: b}\n  - {action: fin, from: b, to: done}\n  - {action: stuck, from: a, to: c}\n  - {action: loop1, from: a, to: d}\n  - {action: loop2, from: d, to: e}\n  - {action: loop3, from: e, to: d}\n",
    );
    let s = WorkflowGraph::new(&w).soundness();
    assert_eq!(s.unreachable, vec!["orphan"]);
    assert_eq!(s.dead_ends, vec!["c"]);
    assert_eq!(s.traps, vec!["d", "e"]);
    assert!(!s.no_final);
}

#[test]
fn workflow_graphs_draw_as_mermaid_and_dot() {
    let w = workflow(
        "entity: x\nfield: s\nstates:\n  draft: {initial: true, label: Draft}\n  done: {final: true}\ntransitions:\n  - {action: finish, from: \"*\", to: done}\n",
    );
    let g = WorkflowGraph::new(&w);
    assert_eq!(
        g.mermaid(),
        "stateDiagram-v2\n    draft : Draft\n    [*] --> draft\n    draft --> done : finish\n    done --> [*]\n"
    );
    let dot = g.dot();
    assert!(
        dot.contains("\"draft\" -> \"done\" [label=\"finish\"];"),
        "{dot}"
    );
    assert!(
        dot.contains("\"done\" [label=\"done\", peripheries=2];"),
        "{dot}"
    );
}

#[test]
fn numbering_patterns_need_one_counter_and_known_parts() {
    assert!(entity_numbering_pattern("SO-{yyyy}{mm}{dd}-{seq:4}").is_ok());
    assert!(entity_numbering_pattern("CSTZ{seq:6}").is_ok());
    assert!(entity_numbering_pattern("SO-{yyyy}").is_err());
    assert!(entity_numbering_pattern("{seq:4}{seq:2}").is_err());
    assert!(entity_numbering_pattern("{seq:20}").is_err());
    assert!(entity_numbering_pattern("{hh}{seq:3}").is_err());
    assert!(entity_numbering_pattern("{seq:3").is_err());
}

#[test]
fn durations_have_a_number_and_a_unit() {
    assert_eq!(duration_seconds("30m"), Some(1_800));
    assert_eq!(duration_seconds("2h"), Some(7_200));
    assert_eq!(duration_seconds("3d"), Some(259_200));
    assert_eq!(duration_seconds("1w"), Some(604_800));
    assert_eq!(duration_seconds("3 days"), None);
    assert_eq!(duration_seconds("h"), None);
}

#[test]
fn exact_numbers_mix_with_float_literals_and_stay_exact() {
    let sandbox = ScriptSandbox::new();
    let run = |src: &str| {
        let ast = sandbox.compile(src, &[]).expect("compiles");
        let value = sandbox
            .engine()
            .eval_ast::<rhai::Dynamic>(&ast)
            .map_err(|e| e.to_string())?;
        Ok::<String, String>(match value.clone().try_cast::<rust_decimal::Decimal>() {
            Some(d) => d.normalize().to_string(),
            None => value.to_string(),
        })
    };
    assert_eq!(
        run("parse_decimal(\"100\") * 0.95 * 0.9 * 0.98"),
        Ok("83.79".to_owned())
    );
    assert_eq!(
        run("let p = parse_decimal(\"0.1\"); p + 0.2"),
        Ok("0.3".to_owned())
    );
    assert_eq!(run("parse_decimal(\"1.5\") <= 2.0"), Ok("true".to_owned()));
    assert_eq!(
        run("min(parse_decimal(\"0.8379\"), 0.85)"),
        Ok("0.8379".to_owned())
    );
}

#[test]
fn names_are_lowercase_identifiers_without_double_underscores() {
    use trellis_engine::load::valid_name;
    assert!(valid_name("sales_order") && valid_name("a1"));
    for bad in ["Sales", "1st", "_x", "a__b", "a-b", "", &"x".repeat(49)] {
        assert!(!valid_name(bad), "`{bad}` should be refused");
    }
}
