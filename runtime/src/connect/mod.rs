//! Connectors at run time: other systems' HTTP APIs as the model declares them
//! (`connectors/<name>.yaml`).
//!
//! - [`Connectors`]: every connector of the deployed apps, its operations'
//!   `=expressions` compiled once against their entity (held by the
//!   [`Catalog`](crate::catalog::Catalog));
//! - `render`: an operation over a record → an [`Outgoing`] request (method,
//!   path with URL-encoded values, query, JSON body);
//! - `client`: sending one over HTTP, with the base URL and credentials taken
//!   from the [`Environment`] at send time;
//! - [`enqueue_push`]: the `push` effect — the request rendered now and written
//!   to the outbox on the action's transaction, delivered after commit with the
//!   outbox's retries and attempt log (`notify::dispatch`);
//! - [`lookup`]: a lookup called at once for a form, its answer mapped into
//!   field values.
//!
//! **Secrets** never enter the model or the database: an outbox message holds
//! the names of the environment variables, read when it is delivered.

mod client;
mod lookup;
mod render;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use trellis_engine::CheckedModel;
use trellis_engine::check::duration_seconds;
use trellis_engine::model::{Connector, ConnectorAuth, ConnectorOperation, HttpMethod, Push};
use trellis_engine::script::CompiledScript;

use crate::catalog::Catalog;
use crate::record::{FieldError, RecordError};
use crate::workflow::effects::Run;
use crate::write::prepare::prepare;

pub use client::{Failure, Reply, send};
pub use lookup::{LookupError, lookup};

/// The outbox channel of connector pushes.
pub const PUSH_CHANNEL: &str = "connector";

/// How long a connector waits when its model says nothing.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the settings of connectors that stay outside the model come from:
/// `TRELLIS_CONNECTOR_<NAME>_URL` (a base URL for this environment: staging,
/// a mock) and the variables `auth` names. The process environment, unless a
/// value is given here (tests, embedding).
#[derive(Clone, Default)]
pub struct Environment {
    given: Arc<HashMap<String, String>>,
}

impl std::fmt::Debug for Environment {
    /// Names only: the values are secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.given.keys().collect();
        names.sort();
        f.debug_struct("Environment")
            .field("given", &names)
            .finish()
    }
}

impl Environment {
    /// The process environment.
    pub fn process() -> Environment {
        Environment::default()
    }

    /// This environment with `name` set to `value`, whatever the process has.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Environment {
        Arc::make_mut(&mut self.given).insert(name.into(), value.into());
        self
    }

    /// A variable's value; unset and empty are the same.
    pub fn var(&self, name: &str) -> Option<String> {
        match self.given.get(name) {
            Some(value) => Some(value.clone()),
            None => std::env::var(name).ok(),
        }
        .filter(|v| !v.is_empty())
    }
}

/// An operation of a connector, ready to render.
#[derive(Debug, Clone)]
pub struct OperationModel {
    pub name: String,
    pub def: ConnectorOperation,
    /// The entity's name in the connector's app.
    pub entity: String,
    /// The `=expressions` of `query` and `body`, by source text.
    scripts: HashMap<String, CompiledScript>,
}

/// A connector of an app.
#[derive(Debug, Clone)]
pub struct ConnectorModel {
    pub app: String,
    pub name: String,
    pub base_url: String,
    pub auth: ConnectorAuth,
    pub timeout: Duration,
    pub operations: IndexMap<String, OperationModel>,
}

impl ConnectorModel {
    /// The operation `name` over records of `entity` (a name in this app).
    pub fn operation(&self, name: &str) -> Option<&OperationModel> {
        self.operations.get(name)
    }
}

/// Every connector of a deployed model, by (app, name).
#[derive(Debug, Clone, Default)]
pub struct Connectors {
    by_name: HashMap<(String, String), Arc<ConnectorModel>>,
}

impl Connectors {
    /// Compiles the connectors of `model` against the entities of `catalog`.
    /// The checker compiled every expression already; one that fails here is
    /// left out and reported when it is used.
    pub fn compile(model: &CheckedModel, catalog: &Catalog) -> Connectors {
        let mut by_name = HashMap::new();
        for app in model.apps() {
            let app_name = app.name();
            for (name, item) in &app.connectors {
                let connector = compile_connector(&app_name, name, &item.value, catalog);
                by_name.insert((app_name.clone(), name.clone()), Arc::new(connector));
            }
        }
        Connectors { by_name }
    }

    /// The connector `name` of `app`.
    pub fn get(&self, app: &str, name: &str) -> Option<Arc<ConnectorModel>> {
        self.by_name
            .get(&(app.to_owned(), name.to_owned()))
            .cloned()
    }

    /// The lookups over `entity` of `app`, as (connector, operation), by name.
    pub fn lookups(&self, app: &str, entity: &str) -> Vec<(Arc<ConnectorModel>, OperationModel)> {
        let mut found: Vec<(Arc<ConnectorModel>, OperationModel)> = self
            .by_name
            .values()
            .filter(|c| c.app == app)
            .flat_map(|c| {
                c.operations
                    .values()
                    .filter(|op| op.entity == entity && op.def.is_lookup())
                    .map(|op| (c.clone(), op.clone()))
            })
            .collect();
        found.sort_by(|a, b| (&a.0.name, &a.1.name).cmp(&(&b.0.name, &b.1.name)));
        found
    }
}

fn compile_connector(app: &str, name: &str, def: &Connector, catalog: &Catalog) -> ConnectorModel {
    let timeout = def
        .timeout
        .as_deref()
        .and_then(duration_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let mut operations = IndexMap::new();
    for (op_name, op) in &def.operations {
        let (_, entity) = trellis_engine::check::split_ref(app, &op.entity);
        let mut scripts = HashMap::new();
        if let Some(model) = catalog.entity(app, &entity) {
            let vars = model.script_variables();
            let mut sources = Vec::new();
            op.query.values().for_each(|v| expressions(v, &mut sources));
            op.body
                .iter()
                .flatten()
                .for_each(|(_, v)| expressions(v, &mut sources));
            for source in sources {
                if let Ok(script) = catalog.sandbox().compile(source, &vars) {
                    scripts.insert(source.to_owned(), script);
                }
            }
        }
        operations.insert(
            op_name.clone(),
            OperationModel {
                name: op_name.clone(),
                def: op.clone(),
                entity,
                scripts,
            },
        );
    }
    ConnectorModel {
        app: app.to_owned(),
        name: name.to_owned(),
        base_url: def.base_url.clone(),
        auth: def.auth.clone(),
        timeout,
        operations,
    }
}

/// The `=expression` sources in a mapped value, nested ones included.
fn expressions<'a>(value: &'a Json, out: &mut Vec<&'a str>) {
    match value {
        Json::String(text) => {
            if let Some(source) = text.strip_prefix('=') {
                out.push(source);
            }
        }
        Json::Object(map) => map.values().for_each(|v| expressions(v, out)),
        Json::Array(items) => items.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

/// A request rendered from a record, ready to send. It is the payload of a
/// push's outbox message, so it holds no secret: the base URL as the model
/// gives it (the environment may replace it when it is sent) and the names of
/// the variables that hold the credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    pub app: String,
    pub connector: String,
    pub operation: String,
    pub entity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<i64>,
    pub method: HttpMethod,
    pub base_url: String,
    /// The rendered path, its values URL-encoded.
    pub path: String,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub query: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Json>,
    #[serde(default)]
    pub auth: ConnectorAuth,
    pub timeout_ms: u64,
}

impl Outgoing {
    /// `<app>.<connector>.<operation>`: the outbox target of a push.
    pub fn target(&self) -> String {
        format!("{}.{}.{}", self.app, self.connector, self.operation)
    }
}

/// The `push` effect of an action, run where it stands among the action's
/// effects: renders the operation from the record as the action has it at
/// that point (stored values, the action's inputs, the values earlier effects
/// set and, in `on_enter`, the new state) and writes it to the outbox on the
/// action's transaction, with the topic `<app>.<entity>.<action>`. It leaves
/// after the action commits; a rolled-back action pushes nothing.
pub async fn enqueue_push(run: &Run<'_>, push: &Push) -> Result<(), RecordError> {
    let (entity, cx) = (run.entity, run.cx);
    let what = format!("push `{}.{}`", push.connector, push.operation);
    let refused = |message: String| {
        RecordError::Invalid(vec![FieldError::new(
            "",
            "connector",
            format!("{what}: {message}"),
        )])
    };
    let connector = run
        .catalog
        .connectors()
        .get(&entity.app, &push.connector)
        .ok_or_else(|| refused("there is no such connector".into()))?;
    let op = connector
        .operation(&push.operation)
        .ok_or_else(|| refused("the connector has no such operation".into()))?;
    // The record as it will be written; if it is not valid yet, the write
    // that follows says why, and the push sees the record as it stands.
    let current =
        prepare(entity, run.record, &run.patch, false, cx).unwrap_or_else(|_| run.record.clone());
    let id = current.values.get("id").and_then(Json::as_i64);
    let outgoing = render::request(&connector, op, entity, &current, id, cx)
        .map_err(|e| refused(e.to_string()))?;
    let payload = serde_json::to_value(&outgoing).map_err(|e| refused(e.to_string()))?;
    let topic = format!("{}.{}.{}", entity.app, entity.name, run.action);
    crate::notify::outbox::enqueue_kind(
        run.txn,
        run.writer.store().dialect(),
        PUSH_CHANNEL,
        &topic,
        &outgoing.target(),
        &payload,
        chrono::Utc::now(),
    )
    .await?;
    Ok(())
}
