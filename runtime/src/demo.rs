//! Demo data (`data/*.yaml` of each app), loaded by `trellis serve --demo`
//! through the write pipeline like any other records. A record's `_key` names
//! it; `$key` in a later record's field becomes that record's id.

use std::collections::HashMap;

use serde_json::{Map, Value as Json};
use trellis_engine::CheckedModel;
use trellis_engine::check::split_ref;

use crate::read::{Access, ListQuery, RecordReader};
use crate::record::{Actor, RecordError};
use crate::write::RecordWriter;

/// What loading did for one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemoOutcome {
    Loaded {
        app: String,
        records: usize,
    },
    /// Its entities hold records already; nothing was added.
    Skipped {
        app: String,
    },
}

/// Loads each app's demo records, unless the entities they go to hold records
/// already (so a restart with `--demo` adds nothing twice).
pub async fn load_demo(
    model: &CheckedModel,
    reader: &RecordReader,
    writer: &RecordWriter,
) -> Result<Vec<DemoOutcome>, RecordError> {
    let everything = Access::everything();
    let mut outcomes = Vec::new();
    for app in model.apps() {
        if app.data.is_empty() {
            continue;
        }
        let name = app.name();
        let mut entities = Vec::new();
        for file in app.data.values() {
            let (entity_app, entity) = split_ref(&name, &file.value.entity);
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
        let mut keys: HashMap<String, i64> = HashMap::new();
        let mut count = 0;
        for (entity, records) in entities {
            for values in records {
                let mut input = Map::new();
                let mut key = None;
                for (field, value) in values {
                    if field == "_key" {
                        key = value.as_str().map(str::to_owned);
                        continue;
                    }
                    input.insert(field.clone(), resolve(value, &keys));
                }
                let created = writer
                    .create(&entity, input, &Actor::system(), &everything)
                    .await?;
                if let Some(key) = key {
                    keys.insert(key, created.id);
                }
                count += 1;
            }
        }
        outcomes.push(DemoOutcome::Loaded {
            app: name,
            records: count,
        });
    }
    Ok(outcomes)
}

/// `$key` → the id of the record loaded under that key; other values as written.
fn resolve(value: &Json, keys: &HashMap<String, i64>) -> Json {
    match value {
        Json::String(s) => match s.strip_prefix('$').and_then(|k| keys.get(k)) {
            Some(id) => Json::from(*id),
            None => value.clone(),
        },
        Json::Array(items) => Json::Array(items.iter().map(|v| resolve(v, keys)).collect()),
        _ => value.clone(),
    }
}
