//! The `trellis` command: one binary for authoring, checking and (later) serving apps.

mod bench;

/// glibc's allocator spends a tenth of a bulk write consolidating chunks freed on
/// the database thread; mimalloc keeps allocation off the profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use trellis_engine::graph::WorkflowGraph;
use trellis_engine::schema::FileKind;

#[derive(Parser)]
#[command(
    name = "trellis",
    version,
    about = "Model-driven business apps from YAML"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check app folders; prints located diagnostics on stderr, exits 1 on errors.
    Check {
        /// App folders (each holds an app.yaml).
        #[arg(required = true)]
        apps: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Write the JSON Schemas of every model file kind (for editors).
    Schema {
        /// The folder to write into.
        #[arg(long, default_value = "schemas")]
        out: PathBuf,
    },
    /// Draw a workflow as Mermaid or DOT.
    Graph {
        /// The app folder.
        app: PathBuf,
        /// The workflow's name (its file name without `.yaml`).
        workflow: String,
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// Create a minimal app that checks clean.
    New {
        /// The folder to create; its name becomes the app's name.
        folder: PathBuf,
    },
    /// Run Trellis: deploy the apps and serve them (SQLite under `--data-dir`, or
    /// PostgreSQL with `DATABASE_URL`). The first run creates an `admin` account.
    Serve {
        #[command(flatten)]
        target: Deployment,
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: std::net::SocketAddr,
        /// Load each app's demo records (`data/`) into entities that are still empty.
        #[arg(long)]
        demo: bool,
    },
    /// Plan the database change a model needs and apply it (`--plan` only prints it).
    Migrate {
        #[command(flatten)]
        target: Deployment,
        /// Print the plan without applying it.
        #[arg(long)]
        plan: bool,
        /// Also drop the columns and tables of removed fields and entities, with their data.
        #[arg(long)]
        allow_destructive: bool,
    },
    /// Run the apps' tests (`tests/*.yaml`), each on a fresh database; exits 1
    /// when a case fails.
    Test {
        /// App folders whose tests run (apps they depend on are found beside them).
        #[arg(required = true)]
        apps: Vec<PathBuf>,
        /// `postgres://…` of a server where each case gets a database of its own
        /// (created and dropped); SQLite in a temporary folder otherwise.
        #[arg(long)]
        database: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Run a benchmark suite and print figures with their ratio to a raw baseline.
    Bench(bench::Options),
}

/// Which apps run against which database (`serve` and `migrate`).
#[derive(Args)]
struct Deployment {
    /// App folders (default: every app under `apps/`).
    apps: Vec<PathBuf>,
    /// Add the apps under `examples/`.
    #[arg(long)]
    examples: bool,
    /// Where the SQLite database lives when no database URL is given.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL instead of SQLite.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Mermaid,
    Dot,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Structured logs on stderr; `TRELLIS_LOG` filters them (`debug`, `trellis_runtime=trace`).
    // A test run reports its cases itself: the failed runs a scenario provokes
    // on purpose are not news.
    let default_filter = match cli.command {
        Command::Test { .. } => "error",
        _ => "info,sqlx=warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRELLIS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .init();
    match run(cli.command) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// Checks the apps to run; when they do not check, prints why and returns nothing.
fn checked_apps(apps: Vec<PathBuf>, examples: bool) -> Option<trellis_engine::CheckedModel> {
    let report = trellis_engine::check(&app_dirs(apps, examples));
    if report.model.is_none() {
        eprint!("{}", report.diagnostics.render());
    }
    report.model
}

/// PostgreSQL when a URL is given, else the SQLite database of the data directory.
async fn open_store(target: &Deployment) -> Result<trellis_runtime::Store, String> {
    match &target.database_url {
        Some(url) => trellis_runtime::Store::connect(url).await,
        None => trellis_runtime::Store::open_data_dir(&target.data_dir).await,
    }
    .map_err(|e| e.to_string())
}

async fn serve(
    model: trellis_engine::CheckedModel,
    bind: std::net::SocketAddr,
    demo: bool,
    target: &Deployment,
) -> Result<ExitCode, String> {
    use trellis_runtime::account::AdminAccount;
    let store = open_store(target).await?;
    let password = std::env::var("TRELLIS_ADMIN_PASSWORD").ok();
    match trellis_runtime::serve::prepare(&store, &model, password.as_deref()).await? {
        AdminAccount::Generated(p) => {
            println!("created the admin account; its password, shown only this once: {p}");
            println!("(set TRELLIS_ADMIN_PASSWORD on the first run to choose it)");
        }
        AdminAccount::Created => println!("created the admin account with TRELLIS_ADMIN_PASSWORD"),
        AdminAccount::Existing => {}
    }
    let apps: Vec<String> = model.apps().iter().map(|a| a.name()).collect();
    println!(
        "apps: {}",
        if apps.is_empty() {
            "none".to_owned()
        } else {
            apps.join(", ")
        }
    );
    let state = trellis_runtime::serve::AppState::new(store.clone(), &model);
    if demo {
        use trellis_runtime::demo::{DemoOutcome, load_demo};
        let (password, chosen) = match std::env::var("TRELLIS_DEMO_PASSWORD") {
            Ok(p) => (p, true),
            Err(_) => (
                trellis_runtime::account::generate_password().map_err(|e| e.to_string())?,
                false,
            ),
        };
        for outcome in load_demo(&model, &state.reader, &state.writer, &password)
            .await
            .map_err(|e| format!("loading demo data: {e}"))?
        {
            match outcome {
                DemoOutcome::Loaded {
                    app,
                    records,
                    accounts,
                } => {
                    println!("demo data: {records} records loaded into {app}");
                    if accounts > 0 && !chosen {
                        println!(
                            "demo data: {accounts} demo accounts of {app} sign in with the password {password}, shown only this once"
                        );
                    }
                }
                DemoOutcome::Skipped { app } => {
                    println!("demo data: {app} holds records already; none added")
                }
            }
        }
    }
    trellis_runtime::serve::serve(state, bind, |addr| println!("listening on http://{addr}"))
        .await?;
    store.close().await.map_err(|e| e.to_string())?;
    println!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn migrate(
    model: trellis_engine::CheckedModel,
    plan: bool,
    allow_destructive: bool,
    target: &Deployment,
) -> Result<ExitCode, String> {
    let store = open_store(target).await?;
    let schema_plan = if plan {
        trellis_runtime::plan_model(&store, &model, allow_destructive).await
    } else {
        trellis_runtime::deploy_model(&store, &model, allow_destructive).await
    }
    .map_err(|e| e.to_string())?;
    print!("{schema_plan}");
    if !plan && !schema_plan.steps.is_empty() {
        println!("applied");
    }
    store.close().await.map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// Checks the apps, then runs the tests of the named ones: a line per case
/// and a summary (or one JSON document); 1 when a case fails.
fn test(apps: Vec<PathBuf>, database: Option<String>, format: Format) -> Result<ExitCode, String> {
    use trellis_runtime::apptest::{self, TestDatabase};
    let report = trellis_engine::check(&apps);
    let Some(model) = report.model else {
        match format {
            Format::Human => eprint!("{}", report.diagnostics.render()),
            Format::Json => {
                let json = serde_json::to_string_pretty(&report.diagnostics.0)
                    .map_err(|e| e.to_string())?;
                println!("{json}");
            }
        }
        return Ok(ExitCode::from(1));
    };
    if !report.diagnostics.0.is_empty() {
        eprint!("{}", report.diagnostics.render());
    }
    let named: Vec<PathBuf> = apps.iter().filter_map(|a| a.canonicalize().ok()).collect();
    let names: Vec<String> = model
        .apps()
        .iter()
        .filter(|a| a.dir.canonicalize().is_ok_and(|d| named.contains(&d)))
        .map(|a| a.name())
        .collect();
    let database = match database {
        Some(url) if url.starts_with("postgres") => TestDatabase::Postgres(url),
        Some(url) => return Err(format!("--database takes a postgres:// URL, not `{url}`")),
        None => TestDatabase::Sqlite,
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let human = matches!(format, Format::Human);
    let reports = runtime.block_on(apptest::run(&model, &names, &database, |case| {
        if human {
            println!("{}", case.line());
        }
    }));
    let failed = reports.iter().filter(|r| !r.passed).count();
    let passed = reports.len() - failed;
    match format {
        Format::Human => println!("{passed} passed, {failed} failed"),
        Format::Json => {
            let doc = serde_json::json!({"cases": reports, "passed": passed, "failed": failed});
            let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
            println!("{text}");
        }
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The app folders to run: those named, else every app under `apps/`; plus the
/// examples when asked.
fn app_dirs(named: Vec<PathBuf>, examples: bool) -> Vec<PathBuf> {
    let mut dirs = named;
    let mut roots = Vec::new();
    if dirs.is_empty() {
        roots.push(PathBuf::from("apps"));
    }
    if examples {
        roots.push(PathBuf::from("examples"));
    }
    for root in roots {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("app.yaml").is_file())
            .collect();
        found.sort();
        dirs.extend(found);
    }
    dirs
}

fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Check { apps, format } => {
            let report = trellis_engine::check(&apps);
            match format {
                Format::Human => eprint!("{}", report.diagnostics.render()),
                Format::Json => {
                    let json = serde_json::to_string_pretty(&report.diagnostics.0)
                        .map_err(|e| e.to_string())?;
                    println!("{json}");
                }
            }
            Ok(if report.diagnostics.has_errors() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Schema { out } => {
            std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            for kind in FileKind::ALL {
                let path = out.join(format!("{}.schema.json", kind.name()));
                std::fs::write(&path, kind.schema_text())
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                println!("wrote {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Graph {
            app,
            workflow,
            format,
        } => {
            let report = trellis_engine::check(std::slice::from_ref(&app));
            let Some(model) = report.model else {
                eprint!("{}", report.diagnostics.render());
                return Ok(ExitCode::from(1));
            };
            let loaded = &model.apps()[0];
            let Some(item) = loaded.workflows.get(&workflow) else {
                let known: Vec<&str> = loaded.workflows.keys().map(String::as_str).collect();
                return Err(format!(
                    "no workflow `{workflow}` in {} (workflows: {})",
                    app.display(),
                    known.join(", ")
                ));
            };
            let graph = WorkflowGraph::new(&item.value);
            print!(
                "{}",
                match format {
                    GraphFormat::Mermaid => graph.mermaid(),
                    GraphFormat::Dot => graph.dot(),
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::New { folder } => {
            let name = folder
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !trellis_engine::load::valid_name(&name) {
                return Err(format!(
                    "`{name}` is not a valid app name: lowercase letters, digits and `_`, starting with a letter"
                ));
            }
            if folder.exists() {
                return Err(format!("{} already exists", folder.display()));
            }
            for (rel, text) in trellis_engine::scaffold::new_app(&name) {
                let path = folder.join(rel);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("{}: {e}", parent.display()))?;
                }
                std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            println!(
                "created {}; check it with `trellis check {}`",
                folder.display(),
                folder.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(options) => bench::run(options),
        Command::Test {
            apps,
            database,
            format,
        } => test(apps, database, format),
        Command::Serve { target, bind, demo } => {
            let Some(model) = checked_apps(target.apps.clone(), target.examples) else {
                return Ok(ExitCode::from(1));
            };
            let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
            runtime.block_on(serve(model, bind, demo, &target))
        }
        Command::Migrate {
            target,
            plan,
            allow_destructive,
        } => {
            let Some(model) = checked_apps(target.apps.clone(), target.examples) else {
                return Ok(ExitCode::from(1));
            };
            let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
            runtime.block_on(migrate(model, plan, allow_destructive, &target))
        }
    }
}
