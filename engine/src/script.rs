//! The Rhai sandbox: one engine configuration for every script of every app.
//!
//! Scripts are per-record logic (computed fields, validations, guards, hooks,
//! jobs). They run with operation, time, depth and size limits, without `eval`,
//! modules, files or network, so a runaway script fails its request and never
//! hangs the server. The runtime registers the record API (`find`, `get`,
//! `create`, `update`) on top of this configuration.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, EvalAltResult, Scope};

use crate::source::SourceFile;

/// A compiled script, ready to run many times.
pub type CompiledScript = rhai::AST;

/// Where a script fails to compile: a message and a 1-based line and column
/// inside the script's own text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    pub message: String,
    pub line: u32,
    pub column: u32,
}

/// Operations one script run may perform. Real rules stay far below it: summing
/// 1,000 line items takes about 9,000 operations, a sum with a condition and a
/// discount per line about 25,000. `loop {}` reaches it in well under a
/// millisecond, `while true { x += 1 }` in about 5 ms (release build).
pub const MAX_OPERATIONS: u64 = 100_000;

/// How long one script run may take. The operation budget alone does not bound
/// time: one operation may sort a 10,000-item array, and Rhai counts the budget
/// afresh in each call of a closure passed to `map`, `filter` or `reduce` (a
/// `map` over 100 items ran 3 million operations under a budget of 100,000).
/// Scripts run on the server's request threads, inside the write transaction
/// of an update, so a quarter of a second is the most one run may hold them;
/// real rules take a few milliseconds.
pub const DEADLINE: Duration = Duration::from_millis(250);

/// A run looks at the clock every this many operations: often enough that a
/// run of slow operations overshoots the deadline by little, rarely enough
/// that reading the clock costs about 1% of a run.
const CLOCK_EVERY: u64 = 16;

/// The limits a sandbox runs scripts under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptLimits {
    /// Operations per run; 0 for no limit.
    pub max_operations: u64,
    /// Wall-clock time per run.
    pub deadline: Duration,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        ScriptLimits {
            max_operations: MAX_OPERATIONS,
            deadline: DEADLINE,
        }
    }
}

thread_local! {
    /// When the script run in progress on this thread started, and whether
    /// [`run`] started it (else the engine was called directly, and the run's
    /// first operation started the clock). The engine is shared by every
    /// thread, so its progress callback finds the run's clock here.
    static RUN_STARTED: Cell<Option<(Instant, bool)>> = const { Cell::new(None) };
}

thread_local! {
    /// What `warn(message)` said in the runs collecting warnings on this
    /// thread (see [`collect_warnings`]); `None` when no run collects them.
    static WARNINGS: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Collects what `warn(message)` says on this thread while it lives: a hook
/// runs on a thread of its own, so the warnings are those of one run.
/// Collectors nest; an inner one hides its warnings from the outer one.
#[must_use = "warnings are collected only while the collector lives"]
pub struct WarningCollector {
    outer: Option<Vec<String>>,
}

/// Starts collecting the warnings of the script runs on this thread.
pub fn collect_warnings() -> WarningCollector {
    let outer = WARNINGS.with(|w| w.borrow_mut().replace(Vec::new()));
    WarningCollector { outer }
}

impl WarningCollector {
    /// The warnings given since the collector started, in order.
    pub fn finish(self) -> Vec<String> {
        WARNINGS.with(|w| w.borrow_mut().take()).unwrap_or_default()
    }
}

impl Drop for WarningCollector {
    fn drop(&mut self) {
        let outer = self.outer.take();
        WARNINGS.with(|w| *w.borrow_mut() = outer);
    }
}

/// Starts the clock of a run for as long as it lives. A run inside another
/// (a native function that runs a script) shares the outer run's clock.
struct RunClock(Option<(Instant, bool)>);

impl RunClock {
    fn start() -> RunClock {
        let outer = RUN_STARTED.get();
        let started = match outer {
            Some((at, true)) => at,
            _ => Instant::now(),
        };
        RUN_STARTED.set(Some((started, true)));
        RunClock(outer)
    }
}

impl Drop for RunClock {
    fn drop(&mut self) {
        RUN_STARTED.set(self.0);
    }
}

/// Why a script run failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The sandbox stopped it: too many operations, too long, calls too deep,
    /// a string, array or map too large, too many variables.
    Limit,
    /// The script threw a value (`throw "..."`).
    Thrown,
    /// A hook refused the change on purpose (`refuse("...")`): the message is
    /// the model's, for the person who asked, not a fault to debug.
    Refused,
    /// The script went wrong: a wrong type, an unknown function or property,
    /// an index out of bounds, an arithmetic error.
    Error,
}

/// A failed script run: what happened and on which line of the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptFailure {
    pub kind: FailureKind,
    /// What happened, for a person, without a position.
    pub message: String,
    /// The 1-based line of the script where it stopped, when Rhai knows it.
    pub line: Option<u32>,
}

impl std::fmt::Display for ScriptFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} (line {line} of the script)", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Runs a compiled script under the engine's limits and the run deadline,
/// and says why it failed. Prefer this to calling the engine directly: the
/// clock starts here (a direct call starts it at its first operation).
pub fn run(
    engine: &Engine,
    scope: &mut Scope,
    script: &CompiledScript,
) -> Result<Dynamic, ScriptFailure> {
    let _clock = RunClock::start();
    engine
        .eval_ast_with_scope::<Dynamic>(scope, script)
        .map_err(|e| failure(engine, *e))
}

/// Classifies a run-time error and words it; the position is kept apart.
fn failure(engine: &Engine, error: EvalAltResult) -> ScriptFailure {
    // Errors inside functions and closures are wrapped: report the innermost
    // error, at the deepest position known.
    let mut error = error;
    let mut position = error.position();
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
    | EvalAltResult::ErrorInModule(_, inner, _) = error
    {
        error = *inner;
        if !error.position().is_none() {
            position = error.position();
        }
    }
    let line = (!position.is_none())
        .then(|| position.line())
        .flatten()
        .map(|l| l as u32);
    let limit = |message: String| ScriptFailure {
        kind: FailureKind::Limit,
        message,
        line,
    };
    match error {
        EvalAltResult::ErrorTooManyOperations(_) => limit(format!(
            "stopped after {} operations, the most one script run may take",
            engine.max_operations()
        )),
        EvalAltResult::ErrorTerminated(token, _) => limit(format!(
            "stopped after {} ms, the longest one script run may take",
            token.as_int().unwrap_or_default()
        )),
        EvalAltResult::ErrorStackOverflow(_) => limit(format!(
            "stopped: function calls nested deeper than {} levels",
            engine.max_call_levels()
        )),
        EvalAltResult::ErrorDataTooLarge(what, _) => limit(if what.contains("string") {
            format!(
                "stopped: a string grew past {} bytes",
                engine.max_string_size()
            )
        } else if what.contains("array") {
            format!(
                "stopped: an array grew past {} items",
                engine.max_array_size()
            )
        } else if what.contains("map") {
            format!("stopped: a map grew past {} entries", engine.max_map_size())
        } else {
            format!("stopped: {} too large", what.to_lowercase())
        }),
        EvalAltResult::ErrorTooManyVariables(_) => limit(format!(
            "stopped: more than {} variables",
            engine.max_variables()
        )),
        EvalAltResult::ErrorTooManyModules(_) => limit("stopped: modules are unavailable".into()),
        EvalAltResult::ErrorRuntime(value, _) if value.is::<Refusal>() => ScriptFailure {
            kind: FailureKind::Refused,
            message: value.cast::<Refusal>().0,
            line,
        },
        EvalAltResult::ErrorRuntime(value, _) => ScriptFailure {
            kind: FailureKind::Thrown,
            message: if value.is_unit() {
                "threw an error".to_owned()
            } else {
                format!("threw: {value}")
            },
            line,
        },
        mut other => {
            other.clear_position();
            ScriptFailure {
                kind: FailureKind::Error,
                message: other.to_string(),
                line,
            }
        }
    }
}

/// Where a script was written, so that a run-time error can name `file:line`:
/// a `.rhai` file, or a string value of a YAML model file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOrigin {
    /// The file, relative to its app folder (`entities/order.yaml`, `rules/credit.rhai`).
    pub file: String,
    /// The line of the file each line of the script stands on; empty for a
    /// `.rhai` file, whose lines are the script's.
    lines: Vec<u32>,
}

impl ScriptOrigin {
    /// A script that is a whole `.rhai` file.
    pub fn file(file: impl Into<String>) -> ScriptOrigin {
        ScriptOrigin {
            file: file.into(),
            lines: Vec::new(),
        }
    }

    /// A script written in the YAML string at `pointer` of `source`; the first
    /// `skip` characters of the string are not script (the `=` of `=expression`).
    /// Each script line is followed through quotes, block scalars and folding
    /// to the file line it stands on.
    pub fn inline(
        source: &SourceFile,
        file: impl Into<String>,
        pointer: &str,
        script: &str,
        skip: usize,
    ) -> ScriptOrigin {
        let value = "=".repeat(skip) + script;
        let first = source.value_span(pointer).map_or(1, |s| s.line);
        let mut offset = skip;
        let mut lines = Vec::new();
        for text in script.split('\n') {
            let line = source
                .locate_in_value(pointer, &value, offset)
                .map_or(first, |s| s.line);
            lines.push(line.max(*lines.last().unwrap_or(&first)));
            offset += text.chars().count() + 1;
        }
        ScriptOrigin {
            file: file.into(),
            lines,
        }
    }

    /// The file line of a 1-based script line; the script's first line when
    /// the line is unknown.
    pub fn line(&self, script_line: Option<u32>) -> u32 {
        if self.lines.is_empty() {
            return script_line.unwrap_or(1).max(1);
        }
        let index = script_line.unwrap_or(1).max(1) as usize - 1;
        self.lines[index.min(self.lines.len() - 1)]
    }

    /// `file:line` of a script line.
    pub fn at(&self, script_line: Option<u32>) -> String {
        format!("{}:{}", self.file, self.line(script_line))
    }
}

/// The sandboxed engine.
pub struct ScriptSandbox {
    engine: Engine,
}

impl Default for ScriptSandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl ScriptSandbox {
    /// An engine with every limit set; see the module documentation.
    pub fn new() -> Self {
        Self::with_limits(ScriptLimits::default())
    }

    /// An engine with these operation and time limits (the others are fixed).
    pub fn with_limits(limits: ScriptLimits) -> Self {
        let mut engine = Engine::new();
        // Rhai counts the sizes of a value through everything inside it, and a
        // table field's lines are one array of maps: the sizes admit a record
        // of 10,000 lines of 10 fields and 1 MiB of text (a 1,000-line order
        // has 5,000-10,000 map entries), yet stop a doubling string or array
        // within about twenty operations.
        engine
            .set_max_operations(limits.max_operations)
            .set_max_call_levels(16)
            .set_max_expr_depths(64, 32)
            .set_max_string_size(1024 * 1024)
            .set_max_array_size(10_000)
            .set_max_map_size(100_000)
            .set_max_variables(200)
            .set_max_functions(100)
            .set_max_modules(0)
            .set_strict_variables(true);
        engine.disable_symbol("eval");
        engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
        engine.on_print(|_| {});
        engine.on_debug(|_, _, _| {});
        let deadline = limits.deadline;
        let millis = i64::try_from(deadline.as_millis()).unwrap_or(i64::MAX);
        engine.on_progress(move |operations| {
            if operations == 1 && !RUN_STARTED.get().is_some_and(|(_, by_run)| by_run) {
                RUN_STARTED.set(Some((Instant::now(), false)));
            }
            if operations % CLOCK_EVERY != 0 {
                return None;
            }
            let (started, _) = RUN_STARTED.get()?;
            (started.elapsed() >= deadline).then(|| Dynamic::from(millis))
        });
        register_helpers(&mut engine);
        ScriptSandbox { engine }
    }

    /// The configured engine, for the runtime to extend. Run scripts with
    /// [`ScriptSandbox::run`] (or [`run`]), which starts the run's clock and
    /// classifies failures.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine, to register the runtime's functions (the record API) on
    /// before it is shared.
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// Runs a compiled script; see [`run`].
    pub fn run(
        &self,
        scope: &mut Scope,
        script: &CompiledScript,
    ) -> Result<Dynamic, ScriptFailure> {
        run(&self.engine, scope, script)
    }

    /// Compiles a script in which `variables` are defined (field names, `record`,
    /// `user`, `today`...). Any other variable is a compile error.
    pub fn compile(&self, source: &str, variables: &[&str]) -> Result<CompiledScript, ScriptError> {
        let mut scope = Scope::new();
        for name in variables {
            scope.push_dynamic(*name, Dynamic::UNIT);
        }
        self.engine
            .compile_with_scope(&scope, source)
            .map_err(|e| ScriptError {
                message: e.err_type().to_string(),
                line: e.position().line().unwrap_or(1) as u32,
                column: e.position().position().unwrap_or(1) as u32,
            })
    }
}

/// Lets exact numbers (money, decimals) and plain float literals mix, so that
/// `price * 0.9` or `days <= 2.0` work; the result stays exact.
fn register_decimal_mixing(engine: &mut Engine) {
    use rust_decimal::Decimal;
    fn exact(f: f64) -> Decimal {
        // Through the shortest decimal text of the float: 0.9 becomes 0.9, not 0.899999…
        f.to_string().parse().unwrap_or_default()
    }
    macro_rules! arithmetic {
        ($($op:literal => $method:ident),*) => {$(
            engine.register_fn($op, |a: Decimal, b: f64| -> Result<Decimal, Box<rhai::EvalAltResult>> {
                a.$method(exact(b)).ok_or_else(|| format!("arithmetic overflow in {}", $op).into())
            });
            engine.register_fn($op, |a: f64, b: Decimal| -> Result<Decimal, Box<rhai::EvalAltResult>> {
                exact(a).$method(b).ok_or_else(|| format!("arithmetic overflow in {}", $op).into())
            });
        )*};
    }
    arithmetic!("+" => checked_add, "-" => checked_sub, "*" => checked_mul, "/" => checked_div);
    macro_rules! comparison {
        ($($op:literal => $cmp:tt),*) => {$(
            engine.register_fn($op, |a: Decimal, b: f64| a $cmp exact(b));
            engine.register_fn($op, |a: f64, b: Decimal| exact(a) $cmp b);
        )*};
    }
    comparison!("<" => <, "<=" => <=, ">" => >, ">=" => >=, "==" => ==, "!=" => !=);
    engine.register_fn("min", |a: Decimal, b: f64| a.min(exact(b)));
    engine.register_fn("min", |a: f64, b: Decimal| exact(a).min(b));
    engine.register_fn("max", |a: Decimal, b: f64| a.max(exact(b)));
    engine.register_fn("max", |a: f64, b: Decimal| exact(a).max(b));
}

/// What `refuse(message)` throws: a value no script can make otherwise, so a
/// refusal is told apart from any other thrown value.
#[derive(Debug, Clone)]
struct Refusal(String);

/// Small pure helpers that model scripts may call.
fn register_helpers(engine: &mut Engine) {
    register_decimal_mixing(engine);
    // A hook's way to say no: the change is refused with this message.
    engine.register_fn(
        "refuse",
        |message: &str| -> Result<Dynamic, Box<rhai::EvalAltResult>> {
            Err(Box::new(rhai::EvalAltResult::ErrorRuntime(
                Dynamic::from(Refusal(message.to_owned())),
                rhai::Position::NONE,
            )))
        },
    );
    // A hook's way to tell the person saving something without refusing: the
    // change goes on, and the answer carries this message as a warning.
    engine.register_fn(
        "warn",
        |message: &str| -> Result<(), Box<rhai::EvalAltResult>> {
            WARNINGS.with(|w| match w.borrow_mut().as_mut() {
                Some(warnings) => {
                    warnings.push(message.to_owned());
                    Ok(())
                }
                None => Err("`warn` is only available in hooks".into()),
            })
        },
    );
    // Whole days from one `YYYY-MM-DD` date to another (negative when `to` is earlier).
    engine.register_fn("days_between", |from: &str, to: &str| -> Dynamic {
        let parse =
            |s: &str| chrono::NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d");
        match (parse(from), parse(to)) {
            (Ok(a), Ok(b)) => Dynamic::from((b - a).num_days()),
            _ => Dynamic::UNIT,
        }
    });
    // A date moved by a number of days.
    engine.register_fn("add_days", |date: &str, days: i64| -> Dynamic {
        match chrono::NaiveDate::parse_from_str(date.get(..10).unwrap_or(date), "%Y-%m-%d") {
            Ok(d) => Dynamic::from(
                (d + chrono::Duration::days(days))
                    .format("%Y-%m-%d")
                    .to_string(),
            ),
            Err(_) => Dynamic::UNIT,
        }
    });
}
