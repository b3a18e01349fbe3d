//! The values of a scenario as the API takes them: `$key` becomes the id of
//! the record named so, a scenario user's name in a `user` field becomes the
//! account's id, and `$today`, `$today+Nd`, `$today-Nd` and `$now` read the
//! scenario's clock. In a `list` step's filter only `$key` and user names are
//! resolved; its other variables are the filter language's.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::{Map, Value as Json};
use trellis_engine::model::FieldType;

use crate::catalog::{EntityModel, FieldModel};
use crate::clock::Clock;
use crate::record::value::datetime_text;

/// The names a scenario has given so far.
pub struct Names {
    /// `$key` → (entity, id).
    pub keys: HashMap<String, (Arc<EntityModel>, i64)>,
    /// Scenario user name → account id, in declaration order.
    pub users: IndexMap<String, i64>,
    /// Scenario user name → the `phone` attribute, for text messages.
    pub phones: HashMap<String, String>,
    pub clock: Clock,
}

impl Names {
    /// The record a `$key` (or a bare `key`) names.
    pub fn record(&self, key: &str) -> Result<(Arc<EntityModel>, i64), String> {
        let name = key.strip_prefix('$').unwrap_or(key);
        self.keys
            .get(name)
            .cloned()
            .ok_or_else(|| format!("`{key}` names no record of the scenario so far"))
    }

    /// The scenario user an account id belongs to.
    pub fn user_name(&self, id: i64) -> Option<&str> {
        self.users
            .iter()
            .find(|(_, i)| **i == id)
            .map(|(n, _)| n.as_str())
    }

    /// Field values of `entity`, resolved.
    pub fn fields(
        &self,
        entity: &EntityModel,
        values: &Map<String, Json>,
    ) -> Result<Map<String, Json>, String> {
        values
            .iter()
            .map(|(name, value)| {
                let resolved = match (entity.fields.get(name), entity.lines.get(name)) {
                    (_, Some(lines)) => self.lines(&lines.fields, value)?,
                    (field, None) => self.value(value, field.map(kind))?,
                };
                Ok((name.clone(), resolved))
            })
            .collect()
    }

    /// The values of a `list` step's filter, resolved: `$key` becomes the
    /// record's id and a scenario user's name in a `user` field the account's
    /// id; anything else (`$today`, `$user.id`…) is left to the filter language.
    pub fn filter(&self, entity: &EntityModel, filter: &Map<String, Json>) -> Map<String, Json> {
        let nested = |value: &Json| match value {
            Json::Object(map) => Json::Object(self.filter(entity, map)),
            other => other.clone(),
        };
        filter
            .iter()
            .map(|(key, value)| {
                let resolved = match (key.as_str(), value) {
                    ("and" | "or", Json::Array(items)) => items.iter().map(nested).collect(),
                    ("not", _) => nested(value),
                    (field, value) => {
                        let kind = entity.fields.get(field).map(kind);
                        match value {
                            Json::Object(ops) => Json::Object(
                                ops.iter()
                                    .map(|(op, operand)| (op.clone(), self.operand(operand, kind)))
                                    .collect(),
                            ),
                            other => self.operand(other, kind),
                        }
                    }
                };
                (key.clone(), resolved)
            })
            .collect()
    }

    /// One value of a filter (see [`Names::filter`]).
    fn operand(&self, value: &Json, kind: Option<FieldType>) -> Json {
        match value {
            Json::Array(items) => items.iter().map(|v| self.operand(v, kind)).collect(),
            Json::String(text) => {
                if kind == Some(FieldType::User)
                    && let Some(id) = self.users.get(text)
                {
                    return Json::from(*id);
                }
                match text.strip_prefix('$').and_then(|k| self.keys.get(k)) {
                    Some((_, id)) => Json::from(*id),
                    None => value.clone(),
                }
            }
            other => other.clone(),
        }
    }

    /// Line items: a list of rows, each resolved with the line's fields.
    fn lines(&self, fields: &IndexMap<String, FieldModel>, value: &Json) -> Result<Json, String> {
        let Json::Array(rows) = value else {
            return self.value(value, None);
        };
        rows.iter()
            .map(|row| match row {
                Json::Object(cells) => cells
                    .iter()
                    .map(|(name, v)| Ok((name.clone(), self.value(v, fields.get(name).map(kind))?)))
                    .collect::<Result<Map<_, _>, String>>()
                    .map(Json::Object),
                other => self.value(other, None),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Json::Array)
    }

    /// One value; `kind` is the field's type when known (user names resolve
    /// only in `user` fields, where they cannot be mistaken for text).
    pub fn value(&self, value: &Json, kind: Option<FieldType>) -> Result<Json, String> {
        match value {
            Json::Array(items) => items
                .iter()
                .map(|v| self.value(v, kind))
                .collect::<Result<Vec<_>, _>>()
                .map(Json::Array),
            Json::String(text) => self.text(text, kind),
            other => Ok(other.clone()),
        }
    }

    fn text(&self, text: &str, kind: Option<FieldType>) -> Result<Json, String> {
        if kind == Some(FieldType::User)
            && let Some(id) = self.users.get(text)
        {
            return Ok(Json::from(*id));
        }
        let Some(name) = text.strip_prefix('$') else {
            return Ok(Json::String(text.to_owned()));
        };
        if let Some(date) = self.date(name) {
            return Ok(Json::String(date.format("%Y-%m-%d").to_string()));
        }
        if name == "now" {
            return Ok(Json::String(datetime_text(self.clock.now())));
        }
        self.record(text).map(|(_, id)| Json::from(id))
    }

    /// `today`, `today+3d`, `today-1d` on the scenario's clock.
    fn date(&self, name: &str) -> Option<chrono::NaiveDate> {
        let rest = name.strip_prefix("today")?;
        if rest.is_empty() {
            return Some(self.clock.today());
        }
        let (sign, digits) = match rest.split_at(1) {
            ("+", d) => (1, d),
            ("-", d) => (-1, d),
            _ => return None,
        };
        let days: i64 = digits.strip_suffix('d')?.parse().ok()?;
        Some(self.clock.today() + chrono::Duration::days(sign * days))
    }
}

fn kind(field: &FieldModel) -> FieldType {
    field.def.kind
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names() -> Names {
        let date = chrono::NaiveDate::from_ymd_opt(2026, 3, 2).expect("a date");
        Names {
            keys: HashMap::new(),
            users: [("amy".to_owned(), 7)].into_iter().collect(),
            phones: HashMap::new(),
            clock: Clock::on(date),
        }
    }

    #[test]
    fn dates_read_the_scenario_clock_and_user_names_resolve_in_user_fields_only() {
        let n = names();
        let today = n.clock.today();
        let shifted = |d: i64| {
            json!(
                (today + chrono::Duration::days(d))
                    .format("%Y-%m-%d")
                    .to_string()
            )
        };
        assert_eq!(n.value(&json!("$today"), None), Ok(shifted(0)));
        assert_eq!(n.value(&json!("$today+3d"), None), Ok(shifted(3)));
        assert_eq!(n.value(&json!("$today-1d"), None), Ok(shifted(-1)));
        assert_eq!(n.value(&json!("amy"), Some(FieldType::User)), Ok(json!(7)));
        assert_eq!(
            n.value(&json!(["amy"]), Some(FieldType::User)),
            Ok(json!([7]))
        );
        assert_eq!(
            n.value(&json!("amy"), Some(FieldType::Text)),
            Ok(json!("amy"))
        );
        assert!(n.value(&json!("$nobody"), None).is_err());
        assert_eq!(n.user_name(7), Some("amy"));
    }
}
