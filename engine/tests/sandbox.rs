//! The script sandbox under attack: every runaway script stops with a
//! classified failure on the line it stopped at, within the operation budget
//! and the run's deadline, and each run on each thread has its own clock.

use std::path::Path;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Scope};
use trellis_engine::script::{
    DEADLINE, FailureKind, ScriptFailure, ScriptLimits, ScriptOrigin, ScriptSandbox,
};
use trellis_engine::source::SourceFile;

fn run(sandbox: &ScriptSandbox, source: &str) -> Result<Dynamic, ScriptFailure> {
    let ast = sandbox.compile(source, &[]).expect("compiles");
    sandbox.run(&mut Scope::new(), &ast)
}

/// Runs `body` on a thread and fails the test if it has not finished in
/// `limit`, so that a broken deadline fails instead of hanging the test run.
fn within<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || send.send(body()));
    receive
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("still running after {limit:?}"))
}

/// Each call of the closure stays under the operation budget (about 50,000
/// operations), but 10,000 calls of it would run for minutes: only the
/// deadline stops it.
const BUDGET_ESCAPE: &str = "let a = [];\na.pad(10000, 0);\n\
     a.map(|x| { let i = 0; while i < 10000 { i += 1; } i }).len()";

#[test]
fn runaway_scripts_stop_at_a_limit_on_their_line() {
    for (source, line, says) in [
        ("let x = 1;\nloop {}", 2, "100000 operations"),
        ("let x = 0;\nwhile true { x += 1; }", 2, "100000 operations"),
        // Rhai reports a stack overflow at the call that started the recursion.
        ("fn f(x) {\n  f(x + 1)\n}\nf(0)", 4, "deeper than 16"),
        (
            "let s = \"x\";\nloop { s += s; }",
            2,
            "string grew past 1048576 bytes",
        ),
        (
            "let a = [1];\nloop { a += a; }",
            2,
            "array grew past 10000 items",
        ),
        (BUDGET_ESCAPE, 3, "250 ms"),
    ] {
        let started = Instant::now();
        let failure = within(Duration::from_secs(10), move || {
            run(&ScriptSandbox::new(), source)
        })
        .expect_err(source);
        assert_eq!(failure.kind, FailureKind::Limit, "{source}: {failure:?}");
        assert!(failure.message.contains(says), "{source}: {failure:?}");
        assert_eq!(failure.line, Some(line), "{source}: {failure:?}");
        assert!(
            started.elapsed() < DEADLINE + Duration::from_millis(750),
            "{source} ran {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn errors_of_the_script_are_not_limits() {
    let sandbox = ScriptSandbox::new();
    let thrown = run(&sandbox, "let x = 1;\nthrow \"no credit\";").expect_err("throws");
    assert_eq!(thrown.kind, FailureKind::Thrown);
    assert_eq!(thrown.message, "threw: no credit");
    assert_eq!(thrown.line, Some(2));
    let wrong = run(&sandbox, "1 + \"a\" - 2").expect_err("a type error");
    assert_eq!(wrong.kind, FailureKind::Error, "{wrong:?}");
    assert!(!wrong.message.contains("line"), "no position: {wrong:?}");
    // A limit cannot be caught by the script itself.
    let caught = run(&sandbox, "try { loop {} } catch { 1 }").expect_err("not caught");
    assert_eq!(caught.kind, FailureKind::Limit);
}

#[test]
fn a_refusal_is_told_apart_from_a_thrown_value() {
    let sandbox = ScriptSandbox::new();
    let refused = run(
        &sandbox,
        "let x = 1;\nif x > 0 { refuse(\"Credit exceeded\") }",
    )
    .expect_err("refuses");
    assert_eq!(refused.kind, FailureKind::Refused);
    assert_eq!(refused.message, "Credit exceeded");
    assert_eq!(refused.line, Some(2));
    // A script cannot make a refusal by throwing its text.
    let thrown = run(&sandbox, "throw \"Credit exceeded\"").expect_err("throws");
    assert_eq!(thrown.kind, FailureKind::Thrown);
}

#[test]
fn warn_adds_a_warning_and_the_script_goes_on() {
    let sandbox = ScriptSandbox::new();
    // Outside a run that collects warnings (a validation rule), `warn` is unavailable.
    let outside = run(&sandbox, "warn(\"Check the name\")").expect_err("no collector");
    assert!(
        outside.message.contains("only available in hooks"),
        "{outside}"
    );
    let collector = trellis_engine::script::collect_warnings();
    let value = run(&sandbox, "warn(\"Similar: Acme\"); warn(`Two ${1 + 1}`); 7").expect("runs on");
    assert_eq!(value.as_int().ok(), Some(7));
    // A nested collector keeps its warnings to itself.
    let inner = trellis_engine::script::collect_warnings();
    let _ = run(&sandbox, "warn(\"inner\")").expect("runs");
    assert_eq!(inner.finish(), vec!["inner".to_owned()]);
    assert_eq!(
        collector.finish(),
        vec!["Similar: Acme".to_owned(), "Two 2".to_owned()]
    );
    assert!(run(&sandbox, "warn(\"after\")").is_err());
}

#[test]
fn a_sum_over_a_thousand_lines_fits_the_limits() {
    let sandbox = ScriptSandbox::new();
    let lines: rhai::Array = (0..1000_i64)
        .map(|i| {
            let mut line = rhai::Map::new();
            line.insert(
                "item".into(),
                format!("pump model {i:05}, stainless, 2 inch").into(),
            );
            line.insert("qty".into(), Dynamic::from(i));
            line.insert(
                "price".into(),
                Dynamic::from(rust_decimal::Decimal::new(1234, 2)),
            );
            line.insert(
                "amount".into(),
                Dynamic::from(rust_decimal::Decimal::new(1234, 2)),
            );
            Dynamic::from_map(line)
        })
        .collect();
    for source in [
        "let total = 0.0;\n\
         for l in lines {\n\
           if l.qty > 10 && l.price != () { total = l.qty * l.price * 0.9 + total; } else { total = l.amount + total; }\n\
         }\n\
         total",
        "lines.reduce(|sum, l| sum + l.amount, 0.0)",
        "lines.filter(|l| l.qty > 500).len() > 3",
    ] {
        let ast = sandbox.compile(source, &["lines"]).expect("compiles");
        let mut scope = Scope::new();
        scope.push_dynamic("lines", Dynamic::from_array(lines.clone()));
        if let Err(e) = sandbox.run(&mut scope, &ast) {
            panic!("{source}: {e}");
        }
    }
}

#[test]
fn the_deadline_stops_a_run_the_operation_budget_would_not() {
    let unlimited = ScriptLimits {
        max_operations: 0,
        deadline: Duration::from_millis(30),
    };
    let failure = within(Duration::from_secs(5), move || {
        run(&ScriptSandbox::with_limits(unlimited), "loop {}")
    })
    .expect_err("stopped");
    assert_eq!(failure.kind, FailureKind::Limit);
    assert!(failure.message.contains("30 ms"), "{failure:?}");
    // A run started without `run`, straight on the engine, is stopped too.
    let stopped = within(Duration::from_secs(5), move || {
        let sandbox = ScriptSandbox::with_limits(unlimited);
        let ast = sandbox.compile("loop {}", &[]).expect("compiles");
        sandbox.engine().eval_ast::<Dynamic>(&ast).is_err()
    });
    assert!(stopped);
}

#[test]
fn every_run_has_its_own_clock() {
    let sandbox = ScriptSandbox::with_limits(ScriptLimits {
        max_operations: 0,
        deadline: Duration::from_millis(40),
    });
    let short = "let i = 0; while i < 100 { i += 1; } i";
    assert_eq!(run(&sandbox, short).expect("runs").as_int(), Ok(100));
    // Later runs on the same thread start their own clock, also after one that
    // hit the deadline.
    std::thread::sleep(Duration::from_millis(60));
    assert!(run(&sandbox, short).is_ok());
    assert!(run(&sandbox, "loop {}").is_err());
    assert!(run(&sandbox, short).is_ok());
    // Runs on other threads at the same time: the runaway ones stop, the
    // short ones finish.
    std::thread::scope(|s| {
        let runaway: Vec<_> = (0..3)
            .map(|_| s.spawn(|| run(&sandbox, "loop {}")))
            .collect();
        let fine: Vec<_> = (0..3)
            .map(|_| s.spawn(|| (0..20).all(|_| run(&sandbox, short).is_ok())))
            .collect();
        for h in runaway {
            assert_eq!(
                h.join().expect("joins").expect_err("stopped").kind,
                FailureKind::Limit
            );
        }
        for h in fine {
            assert!(h.join().expect("joins"));
        }
    });
}

#[test]
fn script_origins_map_script_lines_to_file_lines() {
    let text = "fields:\n  total:\n    type: money\n    computed: |\n      let t = 0;\n      t + 1\n  due:\n    default: \"=today\"\nrules:\n  - name: r\n    script: >-\n      a &&\n      b\n"
        .to_owned();
    let (file, _) = SourceFile::parse(Path::new("entities/order.yaml"), text).expect("YAML");
    let computed = ScriptOrigin::inline(
        &file,
        "entities/order.yaml",
        "/fields/total/computed",
        "let t = 0;\nt + 1\n",
        0,
    );
    assert_eq!(computed.at(Some(1)), "entities/order.yaml:5");
    assert_eq!(computed.at(Some(2)), "entities/order.yaml:6");
    assert_eq!(computed.at(None), "entities/order.yaml:5");
    let default = ScriptOrigin::inline(
        &file,
        "entities/order.yaml",
        "/fields/due/default",
        "today",
        1,
    );
    assert_eq!(default.line(Some(1)), 8);
    let rule = ScriptOrigin::inline(&file, "entities/order.yaml", "/rules/0/script", "a && b", 0);
    assert_eq!(rule.line(Some(1)), 12);
    let rhai = ScriptOrigin::file("rules/credit.rhai");
    assert_eq!(rhai.at(Some(7)), "rules/credit.rhai:7");
    assert_eq!(rhai.at(None), "rules/credit.rhai:1");
}
