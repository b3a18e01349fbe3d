//! Reads an app folder: finds its files by kind, parses each, validates it against
//! its schema and deserializes it into the model types. Every problem is collected;
//! a file with problems is left out of the app and remembered as broken, so that
//! references to it do not cascade into further errors.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use serde::de::DeserializeOwned;

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::model::{
    Alert, AppManifest, AppTest, Connector, Dashboard, DataFile, Entity, Job, RolesFile, Workflow,
};
use crate::schema::FileKind;
use crate::source::SourceFile;

/// A model item together with the file it came from.
#[derive(Debug, Clone)]
pub struct Item<T> {
    /// The item's name: its file's stem.
    pub name: String,
    pub file: Arc<SourceFile>,
    pub value: T,
}

/// A `.rhai` file of an app.
#[derive(Debug, Clone)]
pub struct ScriptFile {
    /// The path as the user sees it.
    pub path: PathBuf,
    pub text: String,
}

/// Everything read from one app folder.
#[derive(Debug, Clone, Default)]
pub struct LoadedApp {
    /// The folder, as named by the user.
    pub dir: PathBuf,
    pub manifest: Option<Item<AppManifest>>,
    pub roles: Option<Item<RolesFile>>,
    pub entities: IndexMap<String, Item<Entity>>,
    pub workflows: IndexMap<String, Item<Workflow>>,
    pub dashboards: IndexMap<String, Item<Dashboard>>,
    pub alerts: IndexMap<String, Item<Alert>>,
    pub jobs: IndexMap<String, Item<Job>>,
    pub tests: IndexMap<String, Item<AppTest>>,
    pub data: IndexMap<String, Item<DataFile>>,
    pub connectors: IndexMap<String, Item<Connector>>,
    /// Rhai files by their path relative to the app folder (`rules/pricing.rhai`).
    pub scripts: IndexMap<String, ScriptFile>,
    /// Names of items whose files failed to load, by kind.
    pub broken: HashSet<(FileKind, String)>,
}

impl LoadedApp {
    /// The app's name: from `app.yaml`, else the folder's name.
    pub fn name(&self) -> String {
        match &self.manifest {
            Some(m) => m.value.name.clone(),
            None => self
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }

    /// Whether an item of this kind and name exists or failed to load (and so
    /// should not be reported as missing).
    pub fn knows(&self, kind: FileKind, name: &str) -> bool {
        self.broken.contains(&(kind, name.to_owned()))
            || match kind {
                FileKind::Entity => self.entities.contains_key(name),
                FileKind::Workflow => self.workflows.contains_key(name),
                FileKind::Dashboard => self.dashboards.contains_key(name),
                FileKind::Alert => self.alerts.contains_key(name),
                FileKind::Job => self.jobs.contains_key(name),
                FileKind::Test => self.tests.contains_key(name),
                FileKind::Data => self.data.contains_key(name),
                FileKind::Connector => self.connectors.contains_key(name),
                FileKind::App | FileKind::Roles => false,
            }
    }
}

/// Folders of an app and the kind of YAML file each holds.
const FOLDERS: [(&str, FileKind); 8] = [
    ("entities", FileKind::Entity),
    ("workflows", FileKind::Workflow),
    ("dashboards", FileKind::Dashboard),
    ("alerts", FileKind::Alert),
    ("jobs", FileKind::Job),
    ("tests", FileKind::Test),
    ("data", FileKind::Data),
    ("connectors", FileKind::Connector),
];

/// Loads an app folder. Problems go to `diags`; what loaded cleanly is returned.
pub fn load_app(dir: &Path, diags: &mut Diagnostics) -> LoadedApp {
    let mut app = LoadedApp {
        dir: dir.to_owned(),
        ..LoadedApp::default()
    };
    let manifest_path = dir.join("app.yaml");
    if !manifest_path.is_file() {
        diags.push(
            Diagnostic::file(
                Code::BadFile,
                &manifest_path,
                "an app folder needs an `app.yaml`",
            )
            .with_help("run `trellis new <folder>` to start an app"),
        );
    } else if let Some(item) = load_item(&manifest_path, FileKind::App, &mut app.broken, diags) {
        app.manifest = Some(item);
    }
    let roles_path = dir.join("roles.yaml");
    if roles_path.is_file() {
        app.roles = load_item(&roles_path, FileKind::Roles, &mut app.broken, diags);
    }
    for entry in sorted_entries(dir) {
        let name = file_name(&entry);
        if entry.is_dir() {
            if let Some((_, kind)) = FOLDERS.iter().find(|(f, _)| *f == name) {
                load_folder(&entry, *kind, &mut app, diags);
            } else if name == "rules" {
                load_scripts(&entry, dir, &mut app, diags);
            } else if name.starts_with('.') {
                continue;
            } else {
                let hint = crate::diagnostic::did_you_mean(
                    &name,
                    FOLDERS.iter().map(|(f, _)| *f).chain(["rules"]),
                );
                if hint.is_some() || contains_yaml(&entry) {
                    let d = Diagnostic::file(
                        Code::BadFile,
                        &entry,
                        format!("`{name}` is not a folder of an app"),
                    );
                    diags.push(match hint {
                        Some(h) => d.with_help(format!("did you mean `{h}`?")),
                        None => d.with_help("app folders are entities, workflows, dashboards, alerts, jobs, rules, tests, data and connectors"),
                    });
                }
            }
        } else if is_yaml(&entry) && name != "app.yaml" && name != "roles.yaml" {
            diags.push(
                Diagnostic::file(Code::BadFile, &entry, format!("`{name}` is not a file of an app"))
                    .with_help("an app's top level holds `app.yaml` and `roles.yaml`; other files go in their kind's folder"),
            );
        }
    }
    app
}

fn load_folder(folder: &Path, kind: FileKind, app: &mut LoadedApp, diags: &mut Diagnostics) {
    for path in sorted_entries(folder) {
        if !is_yaml(&path) {
            if path.is_file() && !file_name(&path).starts_with('.') {
                diags.push(Diagnostic::file(
                    Code::BadFile,
                    &path,
                    format!("`{}` holds only `.yaml` files", file_name(folder)),
                ));
            }
            continue;
        }
        let name = stem(&path);
        if !valid_name(&name) {
            diags.push(
                Diagnostic::file(Code::InvalidName, &path, format!("`{name}` is not a valid name"))
                    .with_help("names are lowercase letters, digits and single `_`, starting with a letter, at most 48 characters"),
            );
        }
        match kind {
            FileKind::Entity => insert(
                &mut app.entities,
                load_item(&path, kind, &mut app.broken, diags),
            ),
            FileKind::Workflow => insert(
                &mut app.workflows,
                load_item(&path, kind, &mut app.broken, diags),
            ),
            FileKind::Dashboard => insert(
                &mut app.dashboards,
                load_item(&path, kind, &mut app.broken, diags),
            ),
            FileKind::Alert => insert(
                &mut app.alerts,
                load_item(&path, kind, &mut app.broken, diags),
            ),
            FileKind::Job => insert(
                &mut app.jobs,
                load_item(&path, kind, &mut app.broken, diags),
            ),
            FileKind::Test => insert(
                &mut app.tests,
                load_item(&path, kind, &mut app.broken, diags),
            ),
            FileKind::Data => insert(
                &mut app.data,
                load_item(&path, kind, &mut app.broken, diags),
            ),
            FileKind::Connector => insert(
                &mut app.connectors,
                load_item(&path, kind, &mut app.broken, diags),
            ),
            FileKind::App | FileKind::Roles => {}
        }
    }
}

fn insert<T>(map: &mut IndexMap<String, Item<T>>, item: Option<Item<T>>) {
    if let Some(item) = item {
        map.insert(item.name.clone(), item);
    }
}

fn load_scripts(folder: &Path, app_dir: &Path, app: &mut LoadedApp, diags: &mut Diagnostics) {
    for path in sorted_entries(folder) {
        if path.extension().is_some_and(|e| e == "rhai") {
            match fs::read_to_string(&path) {
                Ok(text) => {
                    let rel = path
                        .strip_prefix(app_dir)
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .replace('\\', "/");
                    app.scripts.insert(rel, ScriptFile { path, text });
                }
                Err(e) => diags.push(Diagnostic::file(
                    Code::BadFile,
                    &path,
                    format!("cannot read: {e}"),
                )),
            }
        } else if path.is_file() {
            diags.push(Diagnostic::file(
                Code::BadFile,
                &path,
                "`rules` holds only `.rhai` files",
            ));
        }
    }
}

/// Reads, parses, validates and deserializes one file.
fn load_item<T: DeserializeOwned>(
    path: &Path,
    kind: FileKind,
    broken: &mut HashSet<(FileKind, String)>,
    diags: &mut Diagnostics,
) -> Option<Item<T>> {
    let name = stem(path);
    let parsed = fs::read_to_string(path)
        .map_err(|e| Diagnostic::file(Code::BadFile, path, format!("cannot read: {e}")))
        .and_then(|text| SourceFile::parse(path, text));
    let (file, value) = match parsed {
        Ok(parsed) => parsed,
        Err(d) => {
            diags.push(d);
            broken.insert((kind, name));
            return None;
        }
    };
    let problems = kind.validate(&file, &value);
    if !problems.is_empty() {
        problems.into_iter().for_each(|d| diags.push(d));
        broken.insert((kind, name));
        return None;
    }
    match serde_json::from_value::<T>(value) {
        Ok(value) => Some(Item {
            name,
            file: Arc::new(file),
            value,
        }),
        Err(e) => {
            // The schema accepted what serde refuses: report it at the file, not silently.
            diags.push(Diagnostic::file(Code::WrongType, path, e.to_string()));
            broken.insert((kind, name));
            None
        }
    }
}

/// Whether a name is a valid identifier for entities, fields, states and the like:
/// lowercase letters, digits and single underscores, starting with a letter. A
/// double underscore is kept for the runtime, which joins names with it
/// (`crm__customer__lines`), so that no two names ever make the same table.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 48
        && !name.contains("__")
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

fn contains_yaml(dir: &Path) -> bool {
    sorted_entries(dir).iter().any(|p| is_yaml(p))
}

fn is_yaml(path: &Path) -> bool {
    path.is_file() && path.extension().is_some_and(|e| e == "yaml" || e == "yml")
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
