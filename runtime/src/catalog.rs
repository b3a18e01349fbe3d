//! The compiled model the runtime works from: for each entity, its table, its
//! fields with their column kinds, its line tables, and its scripts compiled
//! once per deployment.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use trellis_engine::CheckedModel;
use trellis_engine::check::SYSTEM_FIELDS;
use trellis_engine::model::{
    Entity, Field, FieldType, Label, Numbering, OnDelete, RuleEvent, RuleLevel, UniqueKey,
};
use trellis_engine::script::{CompiledScript, ScriptOrigin, ScriptSandbox};

use crate::store::ColumnKind;
use crate::store::layout::{column_of, entity_table, lines_table};

/// A field as the runtime handles it.
#[derive(Debug, Clone)]
pub struct FieldModel {
    pub def: Field,
    pub column: ColumnKind,
    /// For single links: the table of the linked entity.
    pub target_table: Option<String>,
    /// The compiled `pattern`, anchored to the whole value.
    pub pattern: Option<regex::Regex>,
}

/// The rows of a table field.
#[derive(Debug, Clone)]
pub struct LinesModel {
    pub table: String,
    pub fields: IndexMap<String, FieldModel>,
    pub computed: Vec<(String, CompiledScript)>,
    /// `=expression` defaults of the columns, compiled.
    pub default_scripts: HashMap<String, CompiledScript>,
}

/// A validation rule, compiled.
#[derive(Debug, Clone)]
pub struct Validation {
    pub name: String,
    /// Where the rule is written, for run-time errors.
    pub origin: ScriptOrigin,
    pub script: CompiledScript,
    pub message: Option<Label>,
    pub field: Option<String>,
    pub level: RuleLevel,
}

/// A hook: a rule run on an event, with the record API.
#[derive(Debug, Clone)]
pub struct HookRule {
    pub on: RuleEvent,
    /// For `transition`: only these actions (all when empty).
    pub actions: Vec<String>,
    pub when: Option<trellis_engine::model::Filter>,
    pub script: crate::hooks::Script,
}

/// A link field of another entity that points at this one.
#[derive(Debug, Clone)]
pub struct Backlink {
    pub app: String,
    pub entity: String,
    pub table: String,
    pub field: String,
    pub on_delete: OnDelete,
}

/// An entity, ready to store and read records.
#[derive(Debug, Clone, Default)]
pub struct EntityModel {
    pub app: String,
    pub name: String,
    pub table: String,
    /// Scalar fields in declaration order (the workflow's state field included).
    pub fields: IndexMap<String, FieldModel>,
    pub lines: IndexMap<String, LinesModel>,
    pub title: Option<String>,
    pub search: Vec<String>,
    pub numbering: Option<Numbering>,
    /// The category tree the records form, if any (`inherit`ed fields).
    pub tree: Option<trellis_engine::model::Tree>,
    /// Declared unique keys, plus one per `unique: true` field.
    pub unique: Vec<UniqueKey>,
    pub computed: Vec<(String, CompiledScript)>,
    /// `=expression` defaults, by field.
    pub default_scripts: HashMap<String, CompiledScript>,
    pub validations: Vec<Validation>,
    /// Rules that run on events (`create`, `update`, `delete`, `transition`).
    pub hooks: Vec<HookRule>,
    pub state_field: Option<String>,
    pub initial_state: Option<String>,
    /// States whose records change only through workflow actions.
    pub locked_states: std::collections::HashSet<String>,
    /// The names of the workflow's transitions and the entity's buttons.
    pub actions: Vec<String>,
    /// Links from other entities to this one.
    pub linked_from: Vec<Backlink>,
}

impl EntityModel {
    /// The names scripts over this entity's records may use.
    pub fn script_variables(&self) -> Vec<&str> {
        self.fields
            .keys()
            .map(String::as_str)
            .chain(self.lines.keys().map(String::as_str))
            .chain(SYSTEM_FIELDS.iter().map(|(n, _)| *n))
            .chain(["record", "user", "today", "now"])
            .collect()
    }
}

/// Every entity of a deployed model.
#[derive(Clone)]
pub struct Catalog {
    entities: HashMap<(String, String), Arc<EntityModel>>,
    sandbox: Arc<ScriptSandbox>,
    /// The connectors of every app, their expressions compiled over these entities.
    connectors: Arc<crate::connect::Connectors>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("entities", &self.entities.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Catalog {
    /// Compiles a checked model. The checker has compiled every script already, so
    /// compiling here does not fail for a model that checked clean.
    pub fn new(model: &CheckedModel) -> Catalog {
        let mut sandbox = ScriptSandbox::new();
        crate::hooks::api::register(sandbox.engine_mut());
        let sandbox = Arc::new(sandbox);
        let mut entities: HashMap<(String, String), EntityModel> = HashMap::new();
        for app in model.apps() {
            let app_name = app.name();
            for (name, item) in &app.entities {
                let workflow = app.workflows.values().find(|w| w.value.entity == *name);
                let model = entity_model(
                    &sandbox,
                    &app_name,
                    name,
                    &item.value,
                    workflow.map(|w| &w.value),
                    app,
                    &item.file,
                );
                entities.insert((app_name.clone(), name.clone()), model);
            }
        }
        let backlinks: Vec<((String, String), Backlink)> = entities
            .values()
            .flat_map(|e| {
                e.fields.iter().filter_map(move |(f, m)| {
                    let target = m.def.target.as_deref()?;
                    if m.def.kind != FieldType::Link || m.def.multiple {
                        return None;
                    }
                    let key = trellis_engine::check::split_ref(&e.app, target);
                    let on_delete = m.def.on_delete.unwrap_or(OnDelete::Restrict);
                    Some((
                        key,
                        Backlink {
                            app: e.app.clone(),
                            entity: e.name.clone(),
                            table: e.table.clone(),
                            field: f.clone(),
                            on_delete,
                        },
                    ))
                })
            })
            .collect();
        for (key, backlink) in backlinks {
            if let Some(target) = entities.get_mut(&key) {
                target.linked_from.push(backlink);
            }
        }
        let entities = entities
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect();
        let mut catalog = Catalog {
            entities,
            sandbox,
            connectors: Arc::default(),
        };
        catalog.connectors = Arc::new(crate::connect::Connectors::compile(model, &catalog));
        catalog
    }

    /// The connectors of the deployed apps.
    pub fn connectors(&self) -> &crate::connect::Connectors {
        &self.connectors
    }

    pub fn entity(&self, app: &str, name: &str) -> Option<Arc<EntityModel>> {
        self.entities
            .get(&(app.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every entity, ordered by app and name so that what is built from them is stable.
    pub fn entities(&self) -> Vec<Arc<EntityModel>> {
        let mut keys: Vec<&(String, String)> = self.entities.keys().collect();
        keys.sort();
        keys.into_iter().map(|k| self.entities[k].clone()).collect()
    }

    /// The entity stored in `table`.
    pub fn entity_by_table(&self, table: &str) -> Option<Arc<EntityModel>> {
        self.entities.values().find(|e| e.table == table).cloned()
    }

    pub fn sandbox(&self) -> &ScriptSandbox {
        &self.sandbox
    }

    /// The sandbox, for scripts that run on a thread of their own (hooks).
    pub fn shared_sandbox(&self) -> Arc<ScriptSandbox> {
        self.sandbox.clone()
    }
}

fn entity_model(
    sandbox: &ScriptSandbox,
    app: &str,
    name: &str,
    entity: &Entity,
    workflow: Option<&trellis_engine::model::Workflow>,
    loaded: &trellis_engine::load::LoadedApp,
    file: &trellis_engine::source::SourceFile,
) -> EntityModel {
    let table = entity_table(app, name);
    let field_model = |def: &Field| FieldModel {
        def: def.clone(),
        column: column_of(def).kind,
        target_table: def
            .target
            .as_deref()
            .filter(|_| def.kind == FieldType::Link && !def.multiple)
            .map(|t| {
                let (a, e) = trellis_engine::check::split_ref(app, t);
                entity_table(&a, &e)
            }),
        pattern: def
            .pattern
            .as_deref()
            .and_then(|p| regex::Regex::new(&format!("^(?:{p})$")).ok()),
    };
    let mut fields = IndexMap::new();
    let mut lines = IndexMap::new();
    for (field_name, def) in &entity.fields {
        if def.kind == FieldType::Table {
            let children: IndexMap<String, FieldModel> = def
                .fields
                .iter()
                .flatten()
                .map(|(n, f)| (n.clone(), field_model(f)))
                .collect();
            let vars: Vec<&str> = children
                .keys()
                .map(String::as_str)
                .chain(["id", "position", "parent", "user", "today", "now"])
                .collect();
            let computed = def
                .fields
                .iter()
                .flatten()
                .filter_map(|(n, f)| {
                    Some((
                        n.clone(),
                        sandbox.compile(f.computed.as_deref()?, &vars).ok()?,
                    ))
                })
                .collect();
            let default_scripts = def
                .fields
                .iter()
                .flatten()
                .filter_map(|(n, f)| {
                    let expression = f.default.as_ref()?.as_str()?.strip_prefix('=')?;
                    Some((n.clone(), sandbox.compile(expression, &vars).ok()?))
                })
                .collect();
            lines.insert(
                field_name.clone(),
                LinesModel {
                    table: lines_table(app, name, field_name),
                    fields: children,
                    computed,
                    default_scripts,
                },
            );
        } else {
            fields.insert(field_name.clone(), field_model(def));
        }
    }
    let mut state_field = None;
    let mut initial_state = None;
    let mut locked_states = std::collections::HashSet::new();
    if let Some(w) = workflow {
        locked_states = w
            .states
            .iter()
            .filter(|(_, s)| s.locked)
            .map(|(n, _)| n.clone())
            .collect();
        let options = w
            .states
            .keys()
            .map(|s| trellis_engine::model::SelectOption::Value(s.clone()))
            .collect();
        let def = Field {
            read_only: true,
            options: Some(options),
            ..blank_field(FieldType::Select)
        };
        fields.insert(w.field.clone(), field_model(&def));
        state_field = Some(w.field.clone());
        initial_state = w
            .states
            .iter()
            .find(|(_, s)| s.is_initial)
            .map(|(n, _)| n.clone());
    }
    let mut model = EntityModel {
        app: app.to_owned(),
        name: name.to_owned(),
        table,
        fields,
        lines,
        title: entity.title.clone(),
        search: entity.search.clone(),
        numbering: entity.numbering.clone(),
        tree: entity.tree.clone(),
        unique: entity.unique.clone(),
        computed: Vec::new(),
        default_scripts: HashMap::new(),
        validations: Vec::new(),
        hooks: Vec::new(),
        state_field,
        initial_state,
        locked_states,
        actions: workflow
            .iter()
            .flat_map(|w| &w.transitions)
            .chain(&entity.actions)
            .map(|a| a.action.clone())
            .collect(),
        linked_from: Vec::new(),
    };
    for (field_name, f) in &model.fields {
        if f.def.unique {
            model.unique.push(UniqueKey {
                fields: vec![field_name.clone()],
                when: None,
                normalize: false,
                message: None,
                show: Vec::new(),
            });
        }
    }
    let vars: Vec<String> = model
        .script_variables()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let vars: Vec<&str> = vars.iter().map(String::as_str).collect();
    model.computed = entity
        .fields
        .iter()
        .filter_map(|(n, f)| {
            Some((
                n.clone(),
                sandbox.compile(f.computed.as_deref()?, &vars).ok()?,
            ))
        })
        .collect();
    model.default_scripts = entity
        .fields
        .iter()
        .filter_map(|(n, f)| {
            let expr = f.default.as_ref()?.as_str()?.strip_prefix('=')?;
            Some((n.clone(), sandbox.compile(expr, &vars).ok()?))
        })
        .collect();
    // Errors at run time name `file:line`, relative to the app folder.
    let relative = |path: &std::path::Path| {
        path.strip_prefix(&loaded.dir)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    for (i, rule) in entity.rules.iter().enumerate() {
        let (source, origin) = match (&rule.script, &rule.file) {
            (Some(s), _) => {
                let pointer = format!("/rules/{i}/script");
                let origin = ScriptOrigin::inline(file, relative(&file.path), &pointer, s, 0);
                (s.clone(), origin)
            }
            (None, Some(f)) => (
                loaded
                    .scripts
                    .get(f.as_str())
                    .map(|s| s.text.clone())
                    .unwrap_or_default(),
                ScriptOrigin::file(f.as_str()),
            ),
            (None, None) => continue,
        };
        if rule.on != RuleEvent::Validate {
            let hook_vars = trellis_engine::check::HOOK_VARIABLES;
            if let Ok(compiled) = sandbox.compile(&source, &hook_vars) {
                model.hooks.push(HookRule {
                    on: rule.on,
                    actions: rule.actions.clone(),
                    when: rule.when.clone(),
                    script: crate::hooks::Script {
                        name: format!("rule `{}`", rule.name),
                        origin,
                        compiled,
                    },
                });
            }
            continue;
        }
        if let Ok(script) = sandbox.compile(&source, &vars) {
            model.validations.push(Validation {
                name: rule.name.clone(),
                origin,
                script,
                message: rule.message.clone(),
                field: rule.field.clone(),
                level: rule.level,
            });
        }
    }
    model
}

/// A field of a type with every option unset.
pub fn blank_field(kind: FieldType) -> Field {
    Field {
        kind,
        label: None,
        help: None,
        required: false,
        required_when: None,
        default: None,
        min: None,
        max: None,
        min_length: None,
        max_length: None,
        pattern: None,
        pattern_message: None,
        read_only: false,
        read_only_when: None,
        visible_when: None,
        computed: None,
        unique: false,
        index: false,
        options: None,
        target: None,
        multiple: false,
        on_delete: None,
        link_filter: None,
        precision: None,
        scale: None,
        currency: None,
        fields: None,
    }
}
