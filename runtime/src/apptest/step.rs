//! Taking one step as its user, through [`Services`] — the calls the REST
//! API's handlers make — so a step is refused or accepted exactly as the
//! same request would be.

use std::sync::Arc;

use trellis_engine::check::split_ref;
use trellis_engine::model::{Filter, Step};

use super::errors::StepError;
use super::scenario::World;
use crate::catalog::EntityModel;
use crate::read::{Access, ListQuery, Total};
use crate::record::FieldError;
use crate::services::Services;
use crate::workflow::Decision;

/// What a step that succeeded leaves to check.
pub enum Done {
    /// The record created, updated or acted on, and the warnings the step gave.
    Record(Arc<EntityModel>, i64, Vec<FieldError>),
    Deleted(Arc<EntityModel>, i64),
    /// Records listed, or matched by an alert's run.
    Count(u64),
    /// A job ran.
    Ran,
}

/// Takes `step` of a test of `app`.
pub async fn take(
    services: &Services,
    world: &mut World,
    app: &str,
    step: &Step,
) -> Result<Done, StepError> {
    let user = world
        .users
        .get(&step.actor)
        .ok_or_else(|| StepError::scenario(format!("unknown user `{}`", step.actor)))?;
    let names = &world.names;
    let record_error = |e| StepError::from_record(&e);
    if let Some(name) = &step.create {
        let entity = entity(services, app, name)?;
        let input = names
            .fields(&entity, &step.values)
            .map_err(StepError::scenario)?;
        let created = services
            .create(user, &entity, input)
            .await
            .map_err(record_error)?;
        if let Some(key) = &step.key {
            world
                .names
                .keys
                .insert(key.clone(), (entity.clone(), created.id));
        }
        return Ok(Done::Record(entity, created.id, created.warnings));
    }
    if let Some(key) = &step.update {
        let (entity, id) = names.record(key).map_err(StepError::scenario)?;
        let patch = names
            .fields(&entity, &step.values)
            .map_err(StepError::scenario)?;
        // The version a client would have read just before.
        let current = services
            .reader
            .get(&entity, id, &Access::everything())
            .await
            .map_err(record_error)?;
        let updated = services
            .update(user, &entity, id, current.version, patch)
            .await
            .map_err(record_error)?;
        return Ok(Done::Record(entity, id, updated.warnings));
    }
    if let Some(key) = &step.delete {
        let (entity, id) = names.record(key).map_err(StepError::scenario)?;
        services
            .delete(user, &entity, id)
            .await
            .map_err(record_error)?;
        return Ok(Done::Deleted(entity, id));
    }
    if let Some(action) = &step.action {
        let key = step.record.as_deref().unwrap_or_default();
        let (entity, id) = names.record(key).map_err(StepError::scenario)?;
        let decision = Decision {
            comment: step.comment.clone(),
            values: names
                .fields(&entity, &step.values)
                .map_err(StepError::scenario)?,
            version: None,
        };
        let done = services
            .act(user, &entity, id, action, decision)
            .await
            .map_err(record_error)?;
        return Ok(Done::Record(entity, id, done.warnings));
    }
    if let Some(name) = &step.list {
        let entity = entity(services, app, name)?;
        // In the reader's default order (by id): the first is the oldest.
        let query = ListQuery {
            filter: step
                .filter
                .as_ref()
                .map(|f| Filter(names.filter(&entity, &f.0))),
            limit: Some(1),
            exact_total: true,
            ..ListQuery::default()
        };
        let page = services
            .list(user, &entity, &query)
            .await
            .map_err(record_error)?;
        if let Some(key) = &step.key {
            let first = page.records.first().ok_or_else(|| {
                StepError::scenario(format!(
                    "the list of `{name}` is empty, so `${key}` names no record"
                ))
            })?;
            world
                .names
                .keys
                .insert(key.clone(), (entity.clone(), first.id));
        }
        let (Total::Exact(n) | Total::AtLeast(n)) = page.total;
        return Ok(Done::Count(n));
    }
    let (name, is_alert) = match (&step.run_alert, &step.run_job) {
        (Some(alert), _) => (alert, true),
        (None, Some(job)) => (job, false),
        (None, None) => return Err(StepError::scenario("the step does nothing")),
    };
    let item = format!("{app}.{name}");
    let report = services
        .scheduler
        .run_now(&item, user.id)
        .await
        .map_err(|e| StepError::from_record(&e.into()))?
        .ok_or_else(|| {
            StepError::scenario(format!(
                "there is no enabled {} `{name}`",
                if is_alert { "alert" } else { "job" }
            ))
        })?;
    if let Some(message) = &report.error {
        return Err(StepError::from_run(message, &report.failure));
    }
    Ok(if is_alert {
        Done::Count(u64::try_from(report.matched).unwrap_or_default())
    } else {
        Done::Ran
    })
}

/// An entity named in a test of `app` (`customer` or `crm.customer`).
pub fn entity(services: &Services, app: &str, name: &str) -> Result<Arc<EntityModel>, StepError> {
    let (entity_app, entity_name) = split_ref(app, name);
    services
        .catalog
        .entity(&entity_app, &entity_name)
        .ok_or_else(|| StepError::scenario(format!("there is no entity `{name}`")))
}
