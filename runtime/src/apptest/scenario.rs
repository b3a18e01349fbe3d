//! What a scenario starts from: its user accounts and its `given` records.
//!
//! Accounts are made first (roles, an `<name>@example.test` address so that
//! e-mail notifications can be told apart), then the given records, as the
//! platform and through the write pipeline (rules applied), then each
//! account's `$user` attributes — `department`, `manager` and the declared
//! ones — because those may name given records (`supplier: $s1`).

use std::collections::HashMap;

use serde_json::{Map, Value as Json};
use trellis_engine::check::split_ref;
use trellis_engine::model::{AppTest, FieldType};
use trellis_engine::source::escape;

use super::values::Names;
use crate::account::{AccountChange, create_user, generate_password, update_user};
use crate::clock::Clock;
use crate::permission::User;
use crate::read::Access;
use crate::record::Actor;
use crate::services::Services;

/// A scenario ready for its steps.
pub struct World {
    pub names: Names,
    /// The signed-in form of each scenario user, as the API builds it.
    pub users: HashMap<String, User>,
}

/// Why the set-up failed, and where in the file.
pub struct SetupError {
    pub pointer: String,
    pub message: String,
}

/// Makes the errors of the set-up entry at `pointer`.
fn failing_at(pointer: String) -> impl Fn(String) -> SetupError {
    move |message| SetupError {
        pointer: pointer.clone(),
        message,
    }
}

/// The e-mail address each scenario user gets.
pub fn email_of(user: &str) -> String {
    format!("{user}@example.test")
}

/// Creates the scenario's accounts and given records.
pub async fn set_up(
    services: &Services,
    app: &str,
    test: &AppTest,
    clock: Clock,
    attribute_kinds: &HashMap<String, FieldType>,
) -> Result<World, SetupError> {
    let mut names = Names {
        keys: HashMap::new(),
        users: Default::default(),
        phones: HashMap::new(),
        clock,
    };
    for (name, user) in &test.users {
        let fail = failing_at(format!("/users/{}", escape(name)));
        let account = AccountChange {
            username: Some(name.clone()),
            password: Some(generate_password().map_err(|e| fail(e.to_string()))?),
            display_name: Some(user.display_name.clone().unwrap_or_else(|| name.clone())),
            email: Some(email_of(name)),
            roles: Some(user.roles.clone()),
            ..AccountChange::default()
        };
        let id = create_user(&services.store, account)
            .await
            .map_err(|e| fail(e.to_string()))?;
        names.users.insert(name.clone(), id);
    }
    let platform = Actor::system();
    let everything = Access::everything();
    for (i, given) in test.given.iter().enumerate() {
        let fail = failing_at(format!("/given/{i}"));
        let (entity_app, entity_name) = split_ref(app, &given.entity);
        let entity = services
            .catalog
            .entity(&entity_app, &entity_name)
            .ok_or_else(|| fail(format!("there is no entity {}", given.entity)))?;
        let input = names.fields(&entity, &given.values).map_err(&fail)?;
        let created = services
            .writer
            .create(&entity, input, &platform, &everything)
            .await
            .map_err(|e| fail(format!("the given record was refused: {e}")))?;
        if let Some(key) = &given.key {
            names.keys.insert(key.clone(), (entity, created.id));
        }
    }
    let mut users = HashMap::new();
    for (name, user) in &test.users {
        let fail = failing_at(format!("/users/{}", escape(name)));
        let id = names.users[name];
        let mut attributes = Map::new();
        if let Some(department) = &user.department {
            attributes.insert("department".into(), Json::from(department.as_str()));
        }
        if let Some(manager) = &user.manager {
            let manager_id = names
                .users
                .get(manager)
                .ok_or_else(|| fail(format!("unknown manager `{manager}`")))?;
            attributes.insert("manager".into(), Json::from(*manager_id));
        }
        for (attribute, value) in &user.attributes {
            let kind = attribute_kinds.get(attribute).copied();
            attributes.insert(attribute.clone(), names.value(value, kind).map_err(&fail)?);
        }
        match attributes.get("phone") {
            Some(Json::String(phone)) => names.phones.insert(name.clone(), phone.trim().to_owned()),
            Some(Json::Number(phone)) => names.phones.insert(name.clone(), phone.to_string()),
            _ => None,
        };
        if !attributes.is_empty() {
            let change = AccountChange {
                attributes: Some(attributes),
                ..AccountChange::default()
            };
            update_user(&services.store, id, change)
                .await
                .map_err(|e| fail(e.to_string()))?;
        }
        let signed_in = crate::session::load_user(&services.store, id)
            .await
            .map_err(|e| fail(e.to_string()))?
            .ok_or_else(|| fail("the account cannot sign in".to_owned()))?;
        users.insert(name.clone(), signed_in);
    }
    Ok(World { names, users })
}
