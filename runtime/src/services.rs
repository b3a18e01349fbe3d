//! What a signed-in user can do with records, without HTTP: the access check
//! ([`Permissions`]), then the reader, the writer or the workflows. The REST
//! API's handlers and the app-test runner (`apptest`) both call these, so a
//! test step runs exactly the pipeline a request does.

use std::sync::Arc;

use serde_json::{Map, Value as Json};
use trellis_engine::CheckedModel;
use trellis_engine::model::Operation;

use crate::catalog::{Catalog, EntityModel};
use crate::permission::{Permissions, User};
use crate::read::{Access, ListQuery, Page, RecordReader};
use crate::record::{RecordError, Saved};
use crate::schedule::Scheduler;
use crate::store::Store;
use crate::workflow::approvers::Me;
use crate::workflow::{Decision, Outcome, Workflows};
use crate::write::RecordWriter;

/// System fields a caller's update never sets.
const SYSTEM_FIELDS: [&str; 5] = ["id", "created_at", "created_by", "updated_at", "updated_by"];

/// The services of one deployment: store, catalog, permissions, reader,
/// writer, workflows and scheduler, built once from the checked model.
#[derive(Clone)]
pub struct Services {
    pub store: Store,
    pub catalog: Arc<Catalog>,
    pub permissions: Arc<Permissions>,
    pub reader: Arc<RecordReader>,
    pub writer: Arc<RecordWriter>,
    pub workflows: Workflows,
    pub scheduler: Scheduler,
}

impl Services {
    /// The services for running `model` on `store` (and on the store's clock).
    pub fn new(store: Store, model: &CheckedModel) -> Services {
        let catalog = Arc::new(Catalog::new(model));
        let permissions = Arc::new(Permissions::new(model));
        let writer =
            RecordWriter::new(store.clone(), catalog.clone()).with_permissions(permissions.clone());
        let reader = Arc::new(RecordReader::new(store.clone(), catalog.clone()));
        Services {
            scheduler: Scheduler::new(model, catalog.clone(), store.clone(), reader.clone()),
            reader,
            writer: Arc::new(writer.clone()),
            workflows: Workflows::new(model, catalog.clone(), writer, permissions.clone()),
            permissions,
            catalog,
            store,
        }
    }

    /// The user's access for `op` on `entity`; refused when no role of theirs allows it.
    pub fn access(
        &self,
        user: &User,
        entity: &EntityModel,
        op: Operation,
    ) -> Result<Access, RecordError> {
        self.permissions.access(user, entity, op).ok_or_else(|| {
            let op = serde_json::to_value(op)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            RecordError::Refused(format!("your roles do not allow {op} on {}", entity.name))
        })
    }

    /// The access a record is shown under after a write: the user's read
    /// access, or, for a role that may write but not read, the write's own.
    fn shown_under(&self, user: &User, entity: &EntityModel, write: Access) -> Access {
        self.permissions
            .access(user, entity, Operation::Read)
            .unwrap_or(write)
    }

    /// Lists the records the user may see.
    pub async fn list(
        &self,
        user: &User,
        entity: &EntityModel,
        query: &ListQuery,
    ) -> Result<Page, RecordError> {
        let access = self.access(user, entity, Operation::Read)?;
        self.reader.list(entity, query, &access).await
    }

    /// Creates a record; returns it as the user sees it, with the save's warnings.
    pub async fn create(
        &self,
        user: &User,
        entity: &EntityModel,
        input: Map<String, Json>,
    ) -> Result<Saved, RecordError> {
        let access = self.access(user, entity, Operation::Create)?;
        let created = self
            .writer
            .create(entity, input, &user.actor, &access)
            .await?;
        let shown = self.shown_under(user, entity, access);
        let record = self.reader.get(entity, created.id, &shown).await?;
        Ok(Saved {
            record,
            warnings: created.warnings,
        })
    }

    /// Updates the record `id` from `version` (system fields in the patch are
    /// ignored); returns it as the user sees it, with the save's warnings.
    pub async fn update(
        &self,
        user: &User,
        entity: &EntityModel,
        id: i64,
        version: i64,
        mut patch: Map<String, Json>,
    ) -> Result<Saved, RecordError> {
        let access = self.access(user, entity, Operation::Update)?;
        for system in SYSTEM_FIELDS {
            patch.remove(system);
        }
        let updated = self
            .writer
            .update(entity, id, version, patch, &user.actor, &access)
            .await?;
        let shown = self.shown_under(user, entity, access);
        let record = self.reader.get(entity, id, &shown).await?;
        Ok(Saved {
            record,
            warnings: updated.warnings,
        })
    }

    /// Deletes the record `id`.
    pub async fn delete(
        &self,
        user: &User,
        entity: &EntityModel,
        id: i64,
    ) -> Result<(), RecordError> {
        let access = self.access(user, entity, Operation::Delete)?;
        self.writer.delete(entity, id, &user.actor, &access).await
    }

    /// The user as an approver of records of `entity` (their deputyships
    /// today; whether they may update such records).
    pub async fn me(&self, user: &User, entity: &EntityModel) -> Result<Me, RecordError> {
        let can_update = self
            .permissions
            .access(user, entity, Operation::Update)
            .is_some();
        self.workflows.me(user.clone(), can_update).await
    }

    /// Takes a workflow or entity action on the record `id`, which the user
    /// must be able to read.
    pub async fn act(
        &self,
        user: &User,
        entity: &EntityModel,
        id: i64,
        action: &str,
        decision: Decision,
    ) -> Result<Outcome, RecordError> {
        let access = self.access(user, entity, Operation::Read)?;
        let me = self.me(user, entity).await?;
        self.workflows
            .act(entity, id, action, decision, &me, &access)
            .await
    }
}
