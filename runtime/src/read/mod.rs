//! Reading records: by id, lists with filters, sorting, quick search and
//! bounded paging, and aggregates, all in SQL. Every read takes the caller's
//! [`Access`]: there is no read path without row-level filtering.

pub mod aggregate;
pub mod history;
pub mod load;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, Func, NullOrdering, Order, Query};
use serde::Serialize;
use serde_json::{Map, Value as Json};
use trellis_engine::filter::Bindings;
use trellis_engine::model::Filter;

use crate::catalog::{Catalog, EntityModel};
use crate::record::value::{from_row, to_sql};
use crate::record::{Actor, Record, RecordError};
use crate::store::filter_sql;
use crate::store::{ColumnKind, Dialect, Store};
use crate::write::prepare::FieldsScope;
use load::{SYSTEM_COLUMNS, record_columns, row_values};

/// Totals are counted exactly up to this many rows, then reported as "10000+":
/// counting millions of rows on every page load is what makes big lists slow.
pub const TOTAL_CAP: u64 = 10_000;
/// The most records one page holds.
pub const MAX_PAGE: u64 = 500;

/// What of an entity a caller may see: which records (all, or those matching a
/// row filter) and which fields (all but the hidden ones). Every read takes one,
/// and so do updates and deletes: a record outside the rows does not exist for
/// the caller, and a hidden field is unknown to them, in filters, sorts and
/// results alike; so is a hidden column of a table field's lines, in every line.
/// The same holds through links: a linked record's title, or linking to it in a
/// write, needs the caller's read access to that record.
#[derive(Debug, Clone)]
pub struct Access {
    rows: Option<Filter>,
    user: Map<String, Json>,
    hidden: HashSet<String>,
    read_only: HashSet<String>,
    /// Line columns the caller may not see, by table field (`lines` → `cost`).
    hidden_columns: HashMap<String, HashSet<String>>,
    /// Line columns the caller may read but not change, by table field.
    read_only_columns: HashMap<String, HashSet<String>>,
    /// The caller's read access to the entity each link field points at (`None`:
    /// they may not read it), as `Permissions` sets it; a link it leaves out
    /// reaches everything, as the platform's own access does.
    links: HashMap<String, Option<Access>>,
}

static EVERYTHING: LazyLock<Access> = LazyLock::new(Access::everything);

impl Access {
    /// Every record and field: the platform itself and unrestricted roles.
    pub fn everything() -> Access {
        Access {
            rows: None,
            user: Map::new(),
            hidden: HashSet::new(),
            read_only: HashSet::new(),
            hidden_columns: HashMap::new(),
            read_only_columns: HashMap::new(),
            links: HashMap::new(),
        }
    }

    /// Only records matching `rows`, whose `$user` variables are the actor's.
    pub fn rows(rows: Filter, actor: &Actor) -> Access {
        Access {
            rows: Some(rows),
            user: actor.attributes.clone(),
            hidden: HashSet::new(),
            read_only: HashSet::new(),
            hidden_columns: HashMap::new(),
            read_only_columns: HashMap::new(),
            links: HashMap::new(),
        }
    }

    /// The same, with `actor`'s `$user` values for the variables of request
    /// filters (`{owner: $user.id}` means "mine" for every caller).
    pub fn for_user(mut self, actor: &Actor) -> Access {
        self.user = actor.attributes.clone();
        self
    }

    /// The same, without these fields; `<table field>.<column>` names a
    /// column of the lines.
    pub fn hiding(mut self, fields: impl IntoIterator<Item = String>) -> Access {
        for field in fields {
            match field.split_once('.') {
                Some((table, column)) => {
                    let columns = self.hidden_columns.entry(table.to_owned()).or_default();
                    columns.insert(column.to_owned());
                }
                None => {
                    self.hidden.insert(field);
                }
            }
        }
        self
    }

    /// The same, where these fields (or `<table field>.<column>` line
    /// columns) may be read but not written.
    pub fn with_read_only(mut self, fields: impl IntoIterator<Item = String>) -> Access {
        for field in fields {
            match field.split_once('.') {
                Some((table, column)) => {
                    let columns = self.read_only_columns.entry(table.to_owned()).or_default();
                    columns.insert(column.to_owned());
                }
                None => {
                    self.read_only.insert(field);
                }
            }
        }
        self
    }

    /// The same, where the records link `field` points at are read under
    /// `target` (`None`: not at all).
    pub fn with_link(mut self, field: impl Into<String>, target: Option<Access>) -> Access {
        self.links.insert(field.into(), target);
        self
    }

    /// What the caller may read of the records link `field` points at; `None`
    /// when nothing.
    pub fn through(&self, field: &str) -> Option<&Access> {
        match self.links.get(field) {
            Some(target) => target.as_ref(),
            None => Some(&EVERYTHING),
        }
    }

    /// Whether the caller may read `field` but not write it.
    pub fn is_read_only(&self, field: &str) -> bool {
        self.read_only.contains(field)
    }

    /// The actor's `$user` attributes, for the variables of other filters.
    pub fn user(&self) -> &Map<String, Json> {
        &self.user
    }

    /// Whether only some records are visible.
    pub fn restricts_rows(&self) -> bool {
        self.rows.is_some()
    }

    /// Whether the caller may not see `field`.
    pub fn hides(&self, field: &str) -> bool {
        self.hidden.contains(field)
    }

    /// Whether the caller may not see `column` of the lines of `table`.
    pub fn hides_column(&self, table: &str, column: &str) -> bool {
        self.hidden_columns
            .get(table)
            .is_some_and(|c| c.contains(column))
    }

    /// Whether the caller may read `column` of the lines of `table` but not change it.
    pub fn is_read_only_column(&self, table: &str, column: &str) -> bool {
        self.read_only_columns
            .get(table)
            .is_some_and(|c| c.contains(column))
    }

    /// Whether some column of the lines of `table` is hidden from the caller
    /// or read-only to them.
    pub fn protects_columns(&self, table: &str) -> bool {
        self.hidden_columns.contains_key(table) || self.read_only_columns.contains_key(table)
    }

    /// Removes the hidden fields, and the hidden columns of every line, from a
    /// record as it leaves the store.
    pub fn redact(&self, record: &mut Record) {
        for field in &self.hidden {
            record.values.remove(field);
            record.titles.remove(field);
        }
        for table in self.hidden_columns.keys() {
            if let Some(lines) = record.values.get_mut(table) {
                self.redact_lines(table, lines);
            }
        }
    }

    /// Removes the hidden columns of `table` from its lines (a list of line mappings).
    pub fn redact_lines(&self, table: &str, lines: &mut Json) {
        let (Some(hidden), Json::Array(rows)) = (self.hidden_columns.get(table), lines) else {
            return;
        };
        for row in rows {
            if let Json::Object(row) = row {
                row.retain(|column, _| !hidden.contains(column));
            }
        }
    }
}

/// The condition every statement over `entity` carries for this caller (its
/// rows), plus an optional filter of the request, which may not name hidden fields.
pub(crate) fn access_condition(
    catalog: &Catalog,
    store: &Store,
    entity: &EntityModel,
    access: &Access,
    filter: Option<&Filter>,
) -> Result<Condition, RecordError> {
    let dialect = store.dialect();
    let now = store.clock().now();
    let bindings = Bindings {
        user: &access.user,
        today: now.date_naive(),
        now,
    };
    let mut all = Condition::all();
    if let Some(rows) = &access.rows {
        let scope = FieldsScope::with_links(entity, catalog);
        all = all.add(
            filter_sql::compile_with(rows, &scope, &scope, dialect, Some(&bindings))
                .map_err(|e| RecordError::BadQuery(e.to_string()))?,
        );
    }
    if let Some(filter) = filter {
        let scope = FieldsScope::with_links(entity, catalog).hiding(&access.hidden);
        all = all.add(
            filter_sql::compile_with(filter, &scope, &scope, dialect, Some(&bindings))
                .map_err(|e| RecordError::BadQuery(e.to_string()))?,
        );
    }
    Ok(all)
}

/// How a list pages.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Paging {
    /// The first page.
    #[default]
    First,
    /// Skip this many records (cost grows with the offset).
    Offset(u64),
    /// The records after a cursor from the previous page (cost stays flat).
    After(String),
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filter: Option<Filter>,
    /// Quick search over the entity's `search` fields.
    pub search: Option<String>,
    /// Field names, `-` for descending.
    pub sort: Vec<String>,
    /// Records per page (default 50, at most 500).
    pub limit: Option<u64>,
    pub paging: Paging,
    /// Count every match instead of stopping at [`TOTAL_CAP`].
    pub exact_total: bool,
}

/// How many records match a list query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    Exact(u64),
    /// At least this many (the cap was reached).
    AtLeast(u64),
}

impl Serialize for Total {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Total::Exact(n) => s.serialize_u64(*n),
            Total::AtLeast(n) => s.serialize_str(&format!("{n}+")),
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub records: Vec<Record>,
    pub total: Total,
    /// The cursor of the next page, if there is one.
    pub next: Option<String>,
}

/// Reads records of a store.
#[derive(Debug, Clone)]
pub struct RecordReader {
    pub(crate) store: Store,
    catalog: Arc<Catalog>,
    total_cap: u64,
}

impl RecordReader {
    pub fn new(store: Store, catalog: Arc<Catalog>) -> Self {
        RecordReader {
            store,
            catalog,
            total_cap: TOTAL_CAP,
        }
    }

    /// Counts totals exactly up to `cap` instead of [`TOTAL_CAP`].
    pub fn with_total_cap(mut self, cap: u64) -> Self {
        self.total_cap = cap;
        self
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    fn condition(
        &self,
        entity: &EntityModel,
        access: &Access,
        filter: Option<&Filter>,
    ) -> Result<Condition, RecordError> {
        access_condition(&self.catalog, &self.store, entity, access, filter)
    }

    /// One record with its lines and link titles; `NotFound` when it does not
    /// exist or is outside the caller's rows (never a hint that it exists).
    /// One statement for the record and its link titles, one per line table.
    pub async fn get(
        &self,
        entity: &EntityModel,
        id: i64,
        access: &Access,
    ) -> Result<Record, RecordError> {
        self.get_on(self.store.connection(), entity, id, access)
            .await
    }

    /// [`get`](Self::get) on a connection or a transaction the caller holds
    /// (a hook reading what its own transaction wrote).
    pub async fn get_on(
        &self,
        conn: &impl ConnectionTrait,
        entity: &EntityModel,
        id: i64,
        access: &Access,
    ) -> Result<Record, RecordError> {
        let dialect = self.store.dialect();
        let mut select = Query::select();
        select
            .columns(record_columns(entity))
            .from(Alias::new(entity.table.as_str()))
            .and_where(Expr::col(Alias::new("id")).eq(id))
            .cond_where(self.condition(entity, access, None)?);
        let titled = self.titled_links(entity, access)?;
        for link in &titled {
            // Aliased, so that a link to the entity's own table still means the outer row.
            let linked = Alias::new("linked");
            let mut sub = Query::select();
            sub.column((linked.clone(), Alias::new(link.title.as_str())))
                .from_as(Alias::new(link.table.as_str()), linked.clone())
                .and_where(Expr::col((linked, Alias::new("id"))).equals((
                    Alias::new(entity.table.as_str()),
                    Alias::new(link.field.as_str()),
                )))
                .cond_where(link.rows.clone());
            select.expr_as(
                Expr::SubQuery(None, Box::new(sub.into())),
                Alias::new(format!("{}__title", link.field)),
            );
        }
        let row = conn
            .query_one(&select)
            .await?
            .ok_or(RecordError::NotFound {
                entity: entity.name.clone(),
                id,
            })?;
        let mut values = row_values(&row, entity, dialect)?;
        let mut titles = Map::new();
        for link in &titled {
            let title = from_row(&row, &format!("{}__title", link.field), link.kind, dialect)?;
            if !Json::is_null(&title) {
                titles.insert(link.field.clone(), title);
            }
        }
        let version = values.get("version").and_then(Json::as_i64).unwrap_or(0);
        for (name, rows) in load::load_lines(conn, dialect, entity, id).await? {
            values.insert(
                name,
                Json::Array(rows.into_iter().map(Json::Object).collect()),
            );
        }
        let mut record = Record {
            id,
            version,
            values,
            titles,
        };
        access.redact(&mut record);
        Ok(record)
    }

    /// The link fields whose target's title the caller may see: the target has
    /// a title, they may read the target entity and that field, and only the
    /// targets inside their rows of it show one (the id stays: it is a value of
    /// their own record).
    fn titled_links(
        &self,
        entity: &EntityModel,
        access: &Access,
    ) -> Result<Vec<TitledLink>, RecordError> {
        let mut links = Vec::new();
        for (name, field) in &entity.fields {
            let Some(table) = &field.target_table else {
                continue;
            };
            let Some(target) = self.catalog.entity_by_table(table) else {
                continue;
            };
            let Some(title) = target.title.clone() else {
                continue;
            };
            let Some(through) = access.through(name).filter(|a| !a.hides(&title)) else {
                continue;
            };
            let kind = target
                .fields
                .get(&title)
                .map_or(ColumnKind::Text, |f| f.column);
            links.push(TitledLink {
                field: name.clone(),
                table: table.clone(),
                rows: self.condition(&target, through, None)?,
                title,
                kind,
            });
        }
        Ok(links)
    }

    /// A page of records.
    pub async fn list(
        &self,
        entity: &EntityModel,
        query: &ListQuery,
        access: &Access,
    ) -> Result<Page, RecordError> {
        self.list_on(self.store.connection(), entity, query, access)
            .await
    }

    /// [`list`](Self::list) on a connection or a transaction the caller holds.
    pub async fn list_on(
        &self,
        conn: &impl ConnectionTrait,
        entity: &EntityModel,
        query: &ListQuery,
        access: &Access,
    ) -> Result<Page, RecordError> {
        let dialect = self.store.dialect();
        let mut cond = self.condition(entity, access, query.filter.as_ref())?;
        if let Some(q) = query
            .search
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
        {
            cond = cond.add(search_condition(entity, q, access));
        }
        let sort = sort_keys(entity, &query.sort, access)?;
        let limit = query.limit.unwrap_or(50).clamp(1, MAX_PAGE);

        let total = self
            .total(conn, entity, cond.clone(), query.exact_total)
            .await?;
        let mut select = Query::select();
        select
            .columns(record_columns(entity))
            .from(Alias::new(entity.table.as_str()))
            .cond_where(cond);
        for key in &sort {
            let (order, nulls) = if key.descending {
                (Order::Desc, NullOrdering::Last)
            } else {
                (Order::Asc, NullOrdering::First)
            };
            if key.field == "id" {
                // Never null: a NULLS clause would only keep PostgreSQL from
                // reading the primary key's index in order.
                select.order_by(Alias::new("id"), order);
            } else {
                select.order_by_with_nulls(Alias::new(key.field.as_str()), order, nulls);
            }
        }
        match &query.paging {
            Paging::First => {}
            Paging::Offset(n) => {
                select.offset(*n);
            }
            Paging::After(cursor) => {
                let values = decode_cursor(cursor, sort.len())?;
                select.cond_where(after(&sort, &values, dialect));
            }
        }
        select.limit(limit + 1);
        let rows = conn.query_all(&select).await?;
        let more = rows.len() as u64 > limit;
        let mut records = Vec::with_capacity(rows.len());
        for row in rows.iter().take(limit as usize) {
            let values = row_values(row, entity, dialect)?;
            let id = values.get("id").and_then(Json::as_i64).unwrap_or(0);
            let version = values.get("version").and_then(Json::as_i64).unwrap_or(0);
            records.push(Record {
                id,
                version,
                values,
                titles: Map::new(),
            });
        }
        let next = match (more, records.last()) {
            (true, Some(last)) => Some(encode_cursor(
                &sort
                    .iter()
                    .map(|k| last.values.get(&k.field).cloned().unwrap_or(Json::Null))
                    .collect::<Vec<_>>(),
            )),
            _ => None,
        };
        self.add_titles(conn, entity, &mut records, access).await?;
        for record in &mut records {
            access.redact(record);
        }
        Ok(Page {
            records,
            total,
            next,
        })
    }

    async fn total(
        &self,
        conn: &impl ConnectionTrait,
        entity: &EntityModel,
        cond: Condition,
        exact: bool,
    ) -> Result<Total, RecordError> {
        let mut inner = Query::select();
        inner
            .expr_as(Expr::val(1), Alias::new("one"))
            .from(Alias::new(entity.table.as_str()))
            .cond_where(cond);
        if !exact {
            inner.limit(self.total_cap + 1);
        }
        let mut outer = Query::select();
        outer
            .expr(Func::count(Expr::col(Alias::new("one"))))
            .from_subquery(inner, Alias::new("matching"));
        let row = conn
            .query_one(&outer)
            .await?
            .ok_or_else(|| RecordError::BadQuery("COUNT returned no row".into()))?;
        let n = row.try_get_by_index::<i64>(0)? as u64;
        Ok(if !exact && n > self.total_cap {
            Total::AtLeast(self.total_cap)
        } else {
            Total::Exact(n)
        })
    }

    /// Adds the titles of linked records the caller may see, one query per link
    /// field for the whole page.
    async fn add_titles(
        &self,
        conn: &impl ConnectionTrait,
        entity: &EntityModel,
        records: &mut [Record],
        access: &Access,
    ) -> Result<(), RecordError> {
        let dialect = self.store.dialect();
        for link in self.titled_links(entity, access)? {
            let ids = crate::record::linked_ids(records.iter().map(|r| &r.values), &link.field);
            if ids.is_empty() {
                continue;
            }
            let mut q = Query::select();
            q.column(Alias::new("id"))
                .column(Alias::new(link.title.as_str()))
                .from(Alias::new(link.table.as_str()))
                .and_where(Expr::col(Alias::new("id")).is_in(ids))
                .cond_where(link.rows);
            let mut titles = HashMap::new();
            for row in conn.query_all(&q).await? {
                let id: i64 = row.try_get("", "id")?;
                titles.insert(id, from_row(&row, &link.title, link.kind, dialect)?);
            }
            for record in records.iter_mut() {
                if let Some(t) = record
                    .values
                    .get(&link.field)
                    .and_then(Json::as_i64)
                    .and_then(|id| titles.get(&id))
                {
                    record.titles.insert(link.field.clone(), t.clone());
                }
            }
        }
        Ok(())
    }
}

/// A link field whose target's title the caller may see.
struct TitledLink {
    field: String,
    /// The target's table, its title field and that field's column kind.
    table: String,
    title: String,
    kind: ColumnKind,
    /// The caller's rows of the target.
    rows: Condition,
}

/// A sort key, checked against the model.
#[derive(Debug, Clone)]
pub struct SortKey {
    pub field: String,
    pub kind: ColumnKind,
    pub descending: bool,
}

/// Sort keys from `-created_at`, `name`…, always ending with `id` so the order
/// is total and keyset paging sees every row once. Hidden fields are unknown.
pub fn sort_keys(
    entity: &EntityModel,
    sort: &[String],
    access: &Access,
) -> Result<Vec<SortKey>, RecordError> {
    let mut keys = Vec::new();
    for spec in sort
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (descending, field) = match spec.strip_prefix('-') {
            Some(f) => (true, f),
            None => (false, spec),
        };
        let kind = column_kind(entity, field)
            .filter(|_| !access.hides(field))
            .ok_or_else(|| {
                RecordError::BadQuery(format!(
                    "cannot sort by `{field}`: {} has no such field",
                    entity.name
                ))
            })?;
        if kind == ColumnKind::Json {
            return Err(RecordError::BadQuery(format!(
                "cannot sort by `{field}`: it holds several values"
            )));
        }
        if field != "id" {
            keys.push(SortKey {
                field: field.to_owned(),
                kind,
                descending,
            });
        }
    }
    keys.push(SortKey {
        field: "id".into(),
        kind: ColumnKind::Id,
        descending: false,
    });
    Ok(keys)
}

fn column_kind(entity: &EntityModel, field: &str) -> Option<ColumnKind> {
    SYSTEM_COLUMNS
        .iter()
        .find(|(n, _)| *n == field)
        .map(|(_, k)| *k)
        .or_else(|| entity.fields.get(field).map(|f| f.column))
}

/// Quick search over the entity's search fields the caller may see.
fn search_condition(entity: &EntityModel, q: &str, access: &Access) -> Condition {
    let escaped = q
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    let pattern = format!("%{escaped}%");
    let mut any = Condition::any();
    let fields: Vec<&String> = entity.search.iter().filter(|f| !access.hides(f)).collect();
    for field in &fields {
        let lowered = Expr::from(Func::lower(Expr::col(Alias::new(field.as_str()))));
        any =
            any.add(lowered.like(sea_orm::sea_query::LikeExpr::new(pattern.clone()).escape('\\')));
    }
    if fields.is_empty() {
        // No declared search fields: nothing matches rather than a full scan of every column.
        any = any.add(Expr::val(1).eq(0));
    }
    any
}

/// Rows strictly after `values` in the order of `keys` (NULLs sort first ascending, last descending).
fn after(keys: &[SortKey], values: &[Json], dialect: Dialect) -> Condition {
    let mut any = Condition::any();
    for i in 0..keys.len() {
        let mut all = Condition::all();
        for (key, value) in keys[..i].iter().zip(values) {
            let col = Expr::col(Alias::new(key.field.as_str()));
            all = all.add(if value.is_null() {
                col.is_null()
            } else {
                col.eq(to_sql(value, key.kind, dialect))
            });
        }
        let (key, value) = (&keys[i], &values[i]);
        let col = Expr::col(Alias::new(key.field.as_str()));
        let step = match (key.descending, value.is_null()) {
            (false, false) => Condition::all().add(col.gt(to_sql(value, key.kind, dialect))),
            (false, true) => Condition::all().add(col.is_not_null()),
            (true, false) => Condition::any()
                .add(col.clone().lt(to_sql(value, key.kind, dialect)))
                .add(col.is_null()),
            (true, true) => Condition::all().add(Expr::val(1).eq(0)),
        };
        any = any.add(all.add(step));
    }
    any
}

fn encode_cursor(values: &[Json]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Json::Array(values.to_vec()).to_string())
}

fn decode_cursor(cursor: &str, keys: usize) -> Result<Vec<Json>, RecordError> {
    let bad = || {
        RecordError::BadQuery("invalid cursor; it belongs to another sort or was altered".into())
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    match serde_json::from_slice::<Json>(&bytes).map_err(|_| bad())? {
        Json::Array(values) if values.len() == keys => Ok(values),
        _ => Err(bad()),
    }
}
