//! One test case on its own database, already deployed: the scenario's set-up,
//! then each step and its expectations, stopping at the first step that
//! differs (later steps build on it).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use trellis_engine::model::{AppTest, Expect, FieldType, Step};

use super::errors::StepError;
use super::expect::{Observed, differences};
use super::scenario::{World, set_up};
use super::step::{self, Done};
use super::watch::Mark;
use crate::clock::Clock;
use crate::read::Access;
use crate::services::Services;

/// Where a case failed: a JSON pointer into its file, the step (1-based) if
/// it was one, and what differed.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseFailure {
    pub pointer: String,
    pub step: Option<usize>,
    pub message: String,
}

/// Runs a case; `None` when it passes.
pub async fn run(
    services: Services,
    app: String,
    test: Arc<AppTest>,
    clock: Clock,
    attribute_kinds: Arc<HashMap<String, FieldType>>,
) -> Option<CaseFailure> {
    let mut world = match set_up(&services, &app, &test, clock, &attribute_kinds).await {
        Ok(world) => world,
        Err(e) => {
            return Some(CaseFailure {
                pointer: e.pointer,
                step: None,
                message: e.message,
            });
        }
    };
    for (i, step) in test.steps.iter().enumerate() {
        let found = match run_step(&services, &mut world, &app, step).await {
            Ok(found) => found,
            Err(message) => vec![message],
        };
        if !found.is_empty() {
            return Some(CaseFailure {
                pointer: format!("/steps/{i}"),
                step: Some(i + 1),
                message: found.join("; "),
            });
        }
    }
    None
}

/// Takes a step and returns how its outcome differs from its expectations.
async fn run_step(
    services: &Services,
    world: &mut World,
    app: &str,
    step: &Step,
) -> Result<Vec<String>, String> {
    let expect = step.expect.clone().unwrap_or_default();
    let mut watched = Vec::new();
    for name in expect.created.keys() {
        let entity = step::entity(services, app, name).map_err(|e| e.to_string())?;
        watched.push((name.clone(), entity));
    }
    let store = &services.store;
    let entities: Vec<_> = watched.iter().map(|(_, e)| e.as_ref()).collect();
    let mark = Mark::take(store, &entities)
        .await
        .map_err(|e| e.to_string())?;
    let outcome = step::take(services, world, app, step).await;
    if let Err(error) = &outcome
        && error
            .items
            .iter()
            .any(|e| e.codes.iter().any(|c| c == "scenario"))
    {
        return Err(error.to_string());
    }
    let observed = observe(services, world, &expect, outcome, &mark, watched)
        .await
        .map_err(|e| e.to_string())?;
    Ok(differences(&expect, &observed, &world.names))
}

/// Gathers what the expectations look at: the record as stored, who was
/// notified, how many records were created.
async fn observe(
    services: &Services,
    world: &World,
    expect: &Expect,
    outcome: Result<Done, StepError>,
    mark: &Mark,
    watched: Vec<(String, Arc<crate::catalog::EntityModel>)>,
) -> Result<Observed, crate::record::RecordError> {
    let store = &services.store;
    let record = match &outcome {
        Ok(Done::Record(entity, id, _)) => Some(
            services
                .reader
                .get(entity, *id, &Access::everything())
                .await?
                .values,
        ),
        _ => None,
    };
    let notified = if expect.notified.is_some() {
        mark.notified(store, &world.names).await?
    } else {
        BTreeSet::new()
    };
    let mut created = Vec::new();
    for (name, entity) in watched {
        created.push((name, mark.created(store, &entity).await?));
    }
    Ok(Observed {
        outcome,
        record,
        notified,
        created,
    })
}
