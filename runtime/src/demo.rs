//! Demo data (`data/*.yaml` of each app), loaded by `trellis serve --demo`
//! through the write pipeline like any other records. A record's `_key` names
//! it; `$key` in a later record's field (or line) becomes that record's id,
//! also across apps loaded after it. A record that gives its workflow state
//! is put in that state as it is, without the actions that lead there: demo
//! data shows a business in progress. Demo accounts (`accounts:` files) are
//! made first, so `user` fields can name them as `$name`.

use std::collections::HashMap;

use serde_json::{Map, Value as Json};
use trellis_engine::CheckedModel;
use trellis_engine::check::split_ref;
use trellis_engine::model::TestUser;

use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};

use crate::account::{AccountChange, AccountError, create_user, update_user};
use crate::catalog::EntityModel;
use crate::read::{Access, ListQuery, RecordReader};
use crate::record::{Actor, RecordError};
use crate::store::Store;
use crate::write::RecordWriter;

/// What loading did for one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemoOutcome {
    Loaded {
        app: String,
        records: usize,
        /// The demo accounts it created.
        accounts: usize,
    },
    /// Its entities hold records already; nothing was added.
    Skipped { app: String },
}

/// Loads each app's demo accounts and records, unless the entities they go to
/// hold records already (so a restart with `--demo` adds nothing twice). Every
/// demo account signs in with `password`.
pub async fn load_demo(
    model: &CheckedModel,
    reader: &RecordReader,
    writer: &RecordWriter,
    password: &str,
) -> Result<Vec<DemoOutcome>, RecordError> {
    let everything = Access::everything();
    let mut outcomes = Vec::new();
    let mut keys: HashMap<String, i64> = HashMap::new();
    for app in model.apps() {
        if app.data.is_empty() {
            continue;
        }
        let name = app.name();
        let mut entities = Vec::new();
        let mut accounts = Vec::new();
        for file in app.data.values() {
            accounts.extend(&file.value.accounts);
            let Some(entity) = &file.value.entity else {
                continue;
            };
            let (entity_app, entity) = split_ref(&name, entity);
            let model = reader
                .catalog()
                .entity(&entity_app, &entity)
                .ok_or_else(|| RecordError::UnknownEntity(format!("{entity_app}.{entity}")))?;
            entities.push((model, &file.value.records));
        }
        let mut populated = false;
        for (entity, _) in &entities {
            let probe = ListQuery {
                limit: Some(1),
                ..Default::default()
            };
            populated |= !reader
                .list(entity, &probe, &everything)
                .await?
                .records
                .is_empty();
        }
        if populated {
            outcomes.push(DemoOutcome::Skipped { app: name });
            continue;
        }
        // Accounts first, so records can name them; their attributes last,
        // because those may name records (a portal account's company).
        let store = writer.store();
        for (username, account) in &accounts {
            keys.insert(
                (*username).clone(),
                open_account(store, username, account, password).await?,
            );
        }
        let mut count = 0;
        for (entity, records) in entities {
            for values in records {
                let mut input = Map::new();
                let mut key = None;
                let mut state = None;
                for (field, value) in values {
                    if field == "_key" {
                        key = value.as_str().map(str::to_owned);
                    } else if entity.state_field.as_ref() == Some(field) {
                        state = value.as_str();
                    } else {
                        input.insert(field.clone(), resolve(value, &keys));
                    }
                }
                let created = writer
                    .create(&entity, input, &Actor::system(), &everything)
                    .await?;
                if let (Some(field), Some(state)) = (&entity.state_field, state) {
                    put_in_state(writer.store(), &entity, field, state, created.id).await?;
                }
                if let Some(key) = key {
                    keys.insert(key, created.id);
                }
                count += 1;
            }
        }
        for (username, account) in &accounts {
            let mut attributes = Map::new();
            if let Some(department) = &account.department {
                attributes.insert("department".into(), Json::from(department.as_str()));
            }
            if let Some(manager) = account.manager.as_ref().and_then(|m| keys.get(m)) {
                attributes.insert("manager".into(), Json::from(*manager));
            }
            for (attribute, value) in &account.attributes {
                attributes.insert(attribute.clone(), resolve(value, &keys));
            }
            let change = AccountChange {
                attributes: Some(attributes),
                ..AccountChange::default()
            };
            update_user(store, keys[*username], change)
                .await
                .map_err(|e| refused(username, e))?;
        }
        outcomes.push(DemoOutcome::Loaded {
            app: name,
            records: count,
            accounts: accounts.len(),
        });
    }
    Ok(outcomes)
}

/// `$key` → the id of the record loaded under that key, also inside lists and
/// line items; other values as written.
fn resolve(value: &Json, keys: &HashMap<String, i64>) -> Json {
    match value {
        Json::String(s) => match s.strip_prefix('$').and_then(|k| keys.get(k)) {
            Some(id) => Json::from(*id),
            None => value.clone(),
        },
        Json::Array(items) => Json::Array(items.iter().map(|v| resolve(v, keys)).collect()),
        Json::Object(fields) => Json::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), resolve(v, keys)))
                .collect(),
        ),
        _ => value.clone(),
    }
}

/// Creates a demo account with its roles, or finds the one a previous load made.
async fn open_account(
    store: &Store,
    username: &str,
    account: &TestUser,
    password: &str,
) -> Result<i64, RecordError> {
    let change = AccountChange {
        username: Some(username.to_owned()),
        password: Some(password.to_owned()),
        display_name: Some(
            account
                .display_name
                .clone()
                .unwrap_or_else(|| username.to_owned()),
        ),
        roles: Some(account.roles.clone()),
        ..AccountChange::default()
    };
    match create_user(store, change).await {
        Ok(id) => Ok(id),
        Err(AccountError::UsernameTaken(_)) => {
            let mut q = Query::select();
            q.column(Alias::new("id"))
                .from(Alias::new("trellis_users"))
                .and_where(Expr::col(Alias::new("username")).eq(username));
            let row = store.connection().query_one(&q).await?;
            Ok(row
                .map(|r| r.try_get_by_index::<i64>(0))
                .transpose()?
                .unwrap_or_default())
        }
        Err(e) => Err(refused(username, e)),
    }
}

fn refused(username: &str, error: AccountError) -> RecordError {
    RecordError::Refused(format!("demo account `{username}`: {error}"))
}

/// Sets a demo record's workflow state; the checker has made sure it is one.
async fn put_in_state(
    store: &Store,
    entity: &EntityModel,
    field: &str,
    state: &str,
    id: i64,
) -> Result<(), RecordError> {
    let mut q = Query::update();
    q.table(Alias::new(entity.table.as_str()))
        .value(Alias::new(field), state)
        .and_where(Expr::col(Alias::new("id")).eq(id));
    store.connection().execute(&q).await?;
    Ok(())
}
