//! Permissions at run time: from the roles every app declares, what a user may
//! do with an entity, as the [`Access`] each operation runs under. This is the
//! one permission path: the API asks it before every read, write and aggregate,
//! and the store applies the answer in SQL.

use std::collections::{HashMap, HashSet};

use serde_json::Value as Json;
use trellis_engine::CheckedModel;
use trellis_engine::check::split_ref;
use trellis_engine::model::{FieldAccess, Filter, Label, Operation, Permission};

use crate::catalog::EntityModel;
use crate::read::Access;
use crate::record::Actor;

/// The role that may do everything, in every app.
pub const ADMIN: &str = "admin";

/// A signed-in user, as permissions see them.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub roles: Vec<String>,
    /// `$user.<name>` values of row filters (`id` included).
    pub actor: Actor,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == ADMIN)
    }
}

/// A role as declared, merged over the apps that mention it.
#[derive(Debug, Clone)]
pub struct RoleInfo {
    pub name: String,
    pub label: Label,
    pub external: bool,
}

/// Every role's permissions, by (app, entity).
#[derive(Debug, Default)]
pub struct Permissions {
    grants: HashMap<String, HashMap<(String, String), Permission>>,
    roles: Vec<RoleInfo>,
}

impl Permissions {
    pub fn new(model: &CheckedModel) -> Permissions {
        let mut permissions = Permissions::default();
        for app in model.apps() {
            let app_name = app.name();
            let Some(file) = &app.roles else { continue };
            for (role, def) in &file.value.roles {
                if !permissions.roles.iter().any(|r| &r.name == role) {
                    permissions.roles.push(RoleInfo {
                        name: role.clone(),
                        label: def.label.clone(),
                        external: def.external,
                    });
                }
                let grants = permissions.grants.entry(role.clone()).or_default();
                for (entity, permission) in &def.permissions {
                    grants.insert(split_ref(&app_name, entity), permission.clone());
                }
            }
        }
        permissions
    }

    /// The declared roles (without `admin`, which every deployment has).
    pub fn roles(&self) -> &[RoleInfo] {
        &self.roles
    }

    /// Whether `role` exists.
    pub fn knows(&self, role: &str) -> bool {
        role == ADMIN || self.roles.iter().any(|r| r.name == role)
    }

    /// What `user` may see and change when doing `op` with `entity`; `None`
    /// when no role of theirs allows it. Several roles add up: the operation is
    /// allowed if one allows it, the rows are those any of them allows, and a
    /// field stays hidden (or read-only) only if every one of them says so.
    /// It carries their read access to every entity the links point at: a
    /// linked record shows its title, or may be linked to, only if they may read it.
    pub fn access(&self, user: &User, entity: &EntityModel, op: Operation) -> Option<Access> {
        if user.is_admin() {
            return Some(Access::everything().for_user(&user.actor));
        }
        let mut access = self.granted(user, &(entity.app.clone(), entity.name.clone()), op)?;
        for (name, field) in &entity.fields {
            if let (Some(_), Some(target)) = (&field.target_table, &field.def.target) {
                let target = split_ref(&entity.app, target);
                access =
                    access.with_link(name.clone(), self.granted(user, &target, Operation::Read));
            }
        }
        Some(access)
    }

    /// The access the roles of a user who is not an admin give for `op` on the
    /// entity `key` (app, name), links left out.
    fn granted(&self, user: &User, key: &(String, String), op: Operation) -> Option<Access> {
        let granting: Vec<&Permission> = user
            .roles
            .iter()
            .filter_map(|role| self.grants.get(role)?.get(key))
            .filter(|p| p.allow.contains(&op))
            .collect();
        if granting.is_empty() {
            return None;
        }
        let rows: Option<Vec<&Filter>> = granting.iter().map(|p| p.rows.as_ref()).collect();
        let access = match rows {
            // One role without a row filter sees every record.
            None => Access::everything().for_user(&user.actor),
            Some(filters) => {
                let combined = match filters.as_slice() {
                    [one] => (*one).clone(),
                    _ => {
                        let any: Vec<Json> =
                            filters.iter().map(|f| Json::Object(f.0.clone())).collect();
                        let mut or = serde_json::Map::new();
                        or.insert("or".into(), Json::Array(any));
                        Filter(or)
                    }
                };
                Access::rows(combined, &user.actor)
            }
        };
        let every = |test: fn(FieldAccess) -> bool| -> HashSet<String> {
            let mut sets = granting.iter().map(|p| {
                p.fields
                    .iter()
                    .filter(|(_, a)| test(**a))
                    .map(|(f, _)| f.clone())
                    .collect::<HashSet<_>>()
            });
            let first = sets.next().unwrap_or_default();
            sets.fold(first, |acc, s| &acc & &s)
        };
        let hidden = every(|a| a == FieldAccess::Hidden);
        let fixed = every(|_| true);
        let read_only = fixed.difference(&hidden).cloned().collect::<Vec<_>>();
        Some(access.hiding(hidden).with_read_only(read_only))
    }
}
