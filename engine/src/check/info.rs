//! What the checker knows about the whole workspace before it checks any one
//! file: every entity's fields (with the state field a workflow adds and the
//! system fields every record has), every role, every user attribute.

use std::collections::{BTreeSet, HashMap};

use indexmap::IndexMap;

use crate::filter::{FieldFacts, FilterError, FilterErrorKind, FilterScope};
use crate::load::LoadedApp;
use crate::model::{Field, FieldType};

/// Fields every record has, maintained by the platform.
pub const SYSTEM_FIELDS: [(&str, FieldType); 6] = [
    ("id", FieldType::Integer),
    ("version", FieldType::Integer),
    ("created_at", FieldType::Datetime),
    ("created_by", FieldType::User),
    ("updated_at", FieldType::Datetime),
    ("updated_by", FieldType::User),
];

/// Fields every child (table) row has.
pub const CHILD_SYSTEM_FIELDS: [(&str, FieldType); 2] =
    [("id", FieldType::Integer), ("position", FieldType::Integer)];

/// Built-in `$user` attributes.
pub const USER_BUILTINS: [(&str, FieldType); 6] = [
    ("id", FieldType::User),
    ("name", FieldType::Text),
    ("email", FieldType::Email),
    ("department", FieldType::Text),
    ("manager", FieldType::User),
    ("roles", FieldType::Text),
];

/// A field as the checker sees it.
#[derive(Debug, Clone)]
pub struct FieldInfo {
    pub kind: FieldType,
    pub options: Vec<String>,
    pub multiple: bool,
    /// The linked entity of a link field, resolved to (app, entity); `None` if unresolved.
    pub target: Option<(String, String)>,
    /// The columns of a table field.
    pub children: IndexMap<String, FieldInfo>,
    pub system: bool,
}

impl FieldInfo {
    fn of(field: &Field, app: &str) -> FieldInfo {
        FieldInfo {
            kind: field.kind,
            options: field
                .options
                .iter()
                .flatten()
                .map(|o| o.value().to_owned())
                .collect(),
            multiple: field.multiple,
            target: field.target.as_deref().map(|t| split_ref(app, t)),
            children: field
                .fields
                .iter()
                .flatten()
                .map(|(n, f)| (n.clone(), FieldInfo::of(f, app)))
                .chain(
                    CHILD_SYSTEM_FIELDS
                        .iter()
                        .filter(|_| field.kind == FieldType::Table)
                        .map(|(n, k)| ((*n).to_owned(), FieldInfo::system(*k))),
                )
                .collect(),
            system: false,
        }
    }

    fn system(kind: FieldType) -> FieldInfo {
        FieldInfo {
            kind,
            options: Vec::new(),
            multiple: false,
            target: None,
            children: IndexMap::new(),
            system: true,
        }
    }

    /// A plain text field, for values that are text wherever they go.
    pub fn text() -> FieldInfo {
        FieldInfo {
            system: false,
            ..FieldInfo::system(FieldType::Text)
        }
    }

    pub fn facts(&self) -> FieldFacts {
        FieldFacts {
            kind: self.kind,
            options: self.options.clone(),
            multiple: self.multiple,
        }
    }

    /// Holds text a quick search can match.
    pub fn is_textual(&self) -> bool {
        matches!(
            self.kind,
            FieldType::Text
                | FieldType::LongText
                | FieldType::Email
                | FieldType::Phone
                | FieldType::Url
        )
    }

    pub fn is_numeric(&self) -> bool {
        matches!(
            self.kind,
            FieldType::Integer | FieldType::Decimal | FieldType::Money | FieldType::Percent
        )
    }

    pub fn is_temporal(&self) -> bool {
        matches!(self.kind, FieldType::Date | FieldType::Datetime)
    }
}

/// `customer` in app `crm` → (`crm`, `customer`); `srm.supplier` → (`srm`, `supplier`).
pub fn split_ref(app: &str, reference: &str) -> (String, String) {
    match reference.split_once('.') {
        Some((a, e)) => (a.to_owned(), e.to_owned()),
        None => (app.to_owned(), reference.to_owned()),
    }
}

/// An entity as the checker sees it.
#[derive(Debug, Clone)]
pub struct EntityInfo {
    pub app: String,
    pub name: String,
    pub fields: IndexMap<String, FieldInfo>,
    /// The state field a workflow owns, if any.
    pub state_field: Option<String>,
    pub states: Vec<String>,
    /// Names of workflow transitions and entity actions.
    pub actions: BTreeSet<String>,
}

impl EntityInfo {
    /// Declared fields first, then the state field, then the system fields.
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }
}

/// Everything the checker knows about the apps being checked together.
#[derive(Debug, Default)]
pub struct Workspace {
    /// App name → its dependencies.
    pub apps: HashMap<String, Vec<String>>,
    pub entities: HashMap<(String, String), EntityInfo>,
    /// Every declared role (and `admin`), with whether it is external.
    pub roles: HashMap<String, bool>,
    /// `$user.<name>` attributes declared by any app, plus the built-in ones.
    pub user_attributes: IndexMap<String, FieldInfo>,
}

impl Workspace {
    /// Learns the names and shapes of everything the loaded apps declare.
    pub fn build(apps: &[LoadedApp]) -> Workspace {
        let mut ws = Workspace::default();
        ws.roles.insert("admin".into(), false);
        for (name, kind) in USER_BUILTINS {
            ws.user_attributes
                .insert(name.to_owned(), FieldInfo::system(kind));
        }
        for app in apps {
            let app_name = app.name();
            let depends = app
                .manifest
                .as_ref()
                .map(|m| m.value.depends.clone())
                .unwrap_or_default();
            ws.apps.insert(app_name.clone(), depends);
            for (name, item) in &app.entities {
                let mut fields: IndexMap<String, FieldInfo> = item
                    .value
                    .fields
                    .iter()
                    .map(|(n, f)| (n.clone(), FieldInfo::of(f, &app_name)))
                    .collect();
                let workflow = app.workflows.values().find(|w| w.value.entity == *name);
                let mut info = EntityInfo {
                    app: app_name.clone(),
                    name: name.clone(),
                    fields: IndexMap::new(),
                    state_field: None,
                    states: Vec::new(),
                    actions: item
                        .value
                        .actions
                        .iter()
                        .map(|a| a.action.clone())
                        .collect(),
                };
                if let Some(w) = workflow {
                    let states: Vec<String> = w.value.states.keys().cloned().collect();
                    if !fields.contains_key(&w.value.field) {
                        let mut state = FieldInfo::system(FieldType::Select);
                        state.options = states.clone();
                        state.system = false;
                        fields.insert(w.value.field.clone(), state);
                    }
                    info.state_field = Some(w.value.field.clone());
                    info.states = states;
                    info.actions
                        .extend(w.value.transitions.iter().map(|t| t.action.clone()));
                }
                for (n, k) in SYSTEM_FIELDS {
                    fields
                        .entry(n.to_owned())
                        .or_insert_with(|| FieldInfo::system(k));
                }
                info.fields = fields;
                ws.entities.insert((app_name.clone(), name.clone()), info);
            }
            if let Some(roles) = &app.roles {
                for (name, role) in &roles.value.roles {
                    ws.roles.insert(name.clone(), role.external);
                }
                for (name, field) in &roles.value.user_attributes {
                    ws.user_attributes
                        .insert(name.clone(), FieldInfo::of(field, &app_name));
                }
            }
        }
        ws
    }

    pub fn entity(&self, app: &str, name: &str) -> Option<&EntityInfo> {
        self.entities.get(&(app.to_owned(), name.to_owned()))
    }

    /// The names of an app's entities, for suggestions.
    pub fn entity_names(&self, app: &str) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .entities
            .keys()
            .filter(|(a, _)| a == app)
            .map(|(_, e)| e.as_str())
            .collect();
        names.sort_unstable();
        names
    }

    pub fn role_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.roles.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// A filter scope over one entity (or over a table's rows, with `parent`).
pub struct EntityScope<'a> {
    pub ws: &'a Workspace,
    pub fields: &'a IndexMap<String, FieldInfo>,
}

impl FilterScope for EntityScope<'_> {
    fn field(&self, path: &[String]) -> Result<FieldFacts, FilterError> {
        let unknown = |name: &str, known: &IndexMap<String, FieldInfo>| FilterError {
            pointer: String::new(),
            kind: FilterErrorKind::UnknownField,
            message: format!("unknown field `{name}`"),
            candidates: known.keys().cloned().collect(),
        };
        match path {
            [name] => self
                .fields
                .get(name)
                .map(FieldInfo::facts)
                .ok_or_else(|| unknown(name, self.fields)),
            [link, name] => {
                let field = self
                    .fields
                    .get(link)
                    .ok_or_else(|| unknown(link, self.fields))?;
                let target = field
                    .target
                    .as_ref()
                    .and_then(|(a, e)| self.ws.entity(a, e))
                    .ok_or_else(|| FilterError {
                        pointer: String::new(),
                        kind: FilterErrorKind::UnknownField,
                        message: format!(
                            "`{link}` is not a link field; `{link}.{name}` cannot be followed"
                        ),
                        candidates: Vec::new(),
                    })?;
                target
                    .fields
                    .get(name)
                    .map(FieldInfo::facts)
                    .ok_or_else(|| unknown(name, &target.fields))
            }
            _ => Err(FilterError {
                pointer: String::new(),
                kind: FilterErrorKind::UnknownField,
                message: format!(
                    "`{}` follows more than one link; filters follow at most one",
                    path.join(".")
                ),
                candidates: Vec::new(),
            }),
        }
    }

    fn user_attribute(&self, name: &str) -> Option<FieldFacts> {
        self.ws.user_attributes.get(name).map(FieldInfo::facts)
    }

    fn user_attributes(&self) -> Vec<String> {
        self.ws
            .user_attributes
            .keys()
            .map(|k| format!("$user.{k}"))
            .collect()
    }
}
