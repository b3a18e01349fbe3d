//! The Rhai sandbox: one engine configuration for every script of every app.
//!
//! Scripts are per-record logic (computed fields, validations, guards, hooks,
//! jobs). They run with operation, depth and size limits, without `eval`,
//! modules, files or network, so a runaway script fails its request and never
//! hangs the server. The runtime registers the record API (`find`, `get`,
//! `create`, `update`) on top of this configuration.

use rhai::{Dynamic, Engine, Scope};

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
        let mut engine = Engine::new();
        engine
            .set_max_operations(100_000)
            .set_max_call_levels(16)
            .set_max_expr_depths(64, 32)
            .set_max_string_size(64 * 1024)
            .set_max_array_size(10_000)
            .set_max_map_size(1_000)
            .set_max_variables(200)
            .set_max_functions(100)
            .set_max_modules(0)
            .set_strict_variables(true);
        engine.disable_symbol("eval");
        engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
        engine.on_print(|_| {});
        engine.on_debug(|_, _, _| {});
        register_helpers(&mut engine);
        ScriptSandbox { engine }
    }

    /// The configured engine, for the runtime to extend and run scripts with.
    pub fn engine(&self) -> &Engine {
        &self.engine
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

/// Small pure helpers that model scripts may call.
fn register_helpers(engine: &mut Engine) {
    register_decimal_mixing(engine);
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
