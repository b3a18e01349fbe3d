//! The OpenAPI 3.1 document of the REST API, generated from the deployed model:
//! a schema per entity (what the API returns, what a create or a PATCH takes),
//! the paths of every entity, and every status each handler can answer, so
//! that clients and test tools can hold the server to it.

use axum::extract::State;
use serde_json::{Map, Value as Json, json};
use trellis_engine::model::{Field, FieldType};

use super::AppState;
use super::auth::Caller;
use super::body::BODY_LIMIT;
use crate::catalog::{Catalog, EntityModel, FieldModel, LinesModel};
use crate::read::load::SYSTEM_COLUMNS;
use crate::read::{MAX_PAGE, TOTAL_CAP};
use crate::session::{LOCKOUT_MINUTES, SESSION_HOURS};
use crate::store::ColumnKind;
use crate::store::layout::column_of;
use crate::write::upsert::MAX_UPSERT_ROWS;

/// `GET /api/openapi.json`: the document of the deployed model. It names every
/// entity and field, so like the rest of the API it is for signed-in callers.
pub async fn document_json(State(state): State<AppState>, _caller: Caller) -> axum::Json<Json> {
    axum::Json(document(&state.catalog))
}

/// The whole document.
pub fn document(catalog: &Catalog) -> Json {
    let mut paths = platform_paths();
    let mut schemas = Map::new();
    schemas.insert("Problem".into(), problem_schema());
    schemas.insert("Warnings".into(), warnings_schema());
    for entity in catalog.entities() {
        let name = component_name(&[&entity.app, &entity.name]);
        schemas.insert(name.clone(), record_schema(&entity, catalog));
        schemas.insert(
            format!("{name}.create"),
            input_schema(&entity, Input::Create),
        );
        schemas.insert(format!("{name}.patch"), input_schema(&entity, Input::Patch));
        schemas.insert(
            format!("{name}.upsert"),
            input_schema(&entity, Input::Upsert),
        );
        schemas.insert(format!("{name}.filter"), filter_schema(&entity));
        entity_paths(&entity, &name, &mut paths);
        lookup_paths(catalog, &entity, &name, &mut paths);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Trellis",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The REST API of the deployed apps. Sign in with \
                POST /api/v1/auth/token and send the token as `Authorization: Bearer <token>`. \
                Errors are problem details (RFC 9457).",
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A session token from POST /api/v1/auth/token."},
            },
            "schemas": schemas,
            "responses": problem_responses(),
            "parameters": shared_parameters(),
        },
    })
}

/// Component names allow only `A-Z a-z 0-9 . - _`.
fn component_name(parts: &[&str]) -> String {
    parts
        .join(".")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn schema_ref(name: &str) -> Json {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

// ---- Problems ----------------------------------------------------------------

/// Every problem status the handlers answer: (status, component name, when).
fn problem_statuses() -> [(u16, &'static str, String); 11] {
    [
        (
            400,
            "BadRequest",
            "The request is malformed: a body that is not the JSON expected, or a query \
             parameter or header that does not parse or names no field."
                .into(),
        ),
        (
            401,
            "Unauthorized",
            "No valid bearer token (or, signing in, a wrong username or password).".into(),
        ),
        (
            403,
            "Forbidden",
            "The caller's roles do not allow this, or the record would leave the rows they may see."
                .into(),
        ),
        (
            404,
            "NotFound",
            "No such record, or none the caller may see.".into(),
        ),
        (
            409,
            "Conflict",
            "The record changed since it was read, or other records still link to it.".into(),
        ),
        (
            413,
            "PayloadTooLarge",
            format!(
                "The body is larger than {} MiB, or an upsert has more than {MAX_UPSERT_ROWS} records.",
                BODY_LIMIT / (1024 * 1024)
            ),
        ),
        (
            422,
            "Unprocessable",
            "The record is invalid; `errors` lists every field error.".into(),
        ),
        (
            428,
            "PreconditionRequired",
            "The update does not say which version it starts from: send `If-Match` or `version`."
                .into(),
        ),
        (
            429,
            "TooManyRequests",
            format!(
                "Too many failed sign-ins for this username; it is locked for {LOCKOUT_MINUTES} minutes."
            ),
        ),
        (
            500,
            "ServerError",
            "The server failed; the details are in its log.".into(),
        ),
        (
            502,
            "BadGateway",
            "Another system a connector called failed: down, too slow, an error status, \
             or an answer that is not JSON or does not fit."
                .into(),
        ),
    ]
}

fn problem_schema() -> Json {
    json!({
        "type": "object",
        "description": "Problem details (RFC 9457).",
        "required": ["title"],
        "properties": {
            "title": {"type": "string", "description": "The HTTP status's reason phrase."},
            "detail": {"type": "string", "description": "What went wrong, for a person."},
            "errors": {
                "type": "array",
                "description": "Field errors of an invalid record, all of them at once.",
                "items": {
                    "type": "object",
                    "required": ["field", "code", "message"],
                    "properties": {
                        "field": {"type": "string", "description": "The field (`lines[2].qty` in line items; empty for the whole record)."},
                        "code": {"type": "string", "description": "A stable code: required, type, min, max, scale, precision, pattern, option, unique, unknown_field, read_only, link, rule…"},
                        "message": {"type": "string"},
                        "row": {"type": "integer", "minimum": 0, "description": "For a bulk write refused as a whole (an upsert): the input row of this error."},
                    },
                },
            },
            "row": {"type": "integer", "minimum": 0, "description": "For bulk writes: the input row the errors belong to."},
        },
    })
}

/// `_warnings`: what a save tells without refusing.
fn warnings_schema() -> Json {
    json!({
        "type": "array",
        "description": "Warnings of the save (only when there are any): validation rules of level \
            `warning` that do not hold, and what hooks said with `warn(message)`. \
            The record was saved.",
        "items": {
            "type": "object",
            "required": ["field", "code", "message"],
            "properties": {
                "field": {"type": "string", "description": "The field the warning belongs to; empty for the whole record."},
                "code": {"type": "string", "const": "warning"},
                "message": {"type": "string"},
            },
        },
    })
}

fn problem_responses() -> Map<String, Json> {
    problem_statuses()
        .into_iter()
        .map(|(status, name, description)| {
            let mut response = json!({
                "description": description,
                "content": {"application/problem+json": {"schema": schema_ref("Problem")}},
            });
            let header = match status {
                401 => Some(("WWW-Authenticate", "Always `Bearer`.")),
                429 => Some((
                    "Retry-After",
                    "Seconds until the username may sign in again.",
                )),
                _ => None,
            };
            if let Some((header, about)) = header {
                response["headers"] = json!({
                    header: {"description": about, "required": true, "schema": {"type": "string"}},
                });
            }
            (name.to_owned(), response)
        })
        .collect()
}

fn problem_ref(status: u16) -> Json {
    let name = problem_statuses()
        .into_iter()
        .find(|(s, _, _)| *s == status)
        .map_or("ServerError", |(_, name, _)| name);
    json!({"$ref": format!("#/components/responses/{name}")})
}

// ---- Operations ----------------------------------------------------------------

/// One operation, built up step by step.
struct Operation {
    op: Map<String, Json>,
    responses: Vec<(u16, Json)>,
}

impl Operation {
    fn new(id: &str, summary: &str) -> Operation {
        let mut op = Map::new();
        op.insert("operationId".into(), json!(id));
        op.insert("summary".into(), json!(summary));
        Operation {
            op,
            responses: Vec::new(),
        }
    }

    /// An operation that needs a bearer token, which may be missing or stale,
    /// and a database, which may fail.
    fn signed_in(id: &str, summary: &str) -> Operation {
        Operation::new(id, summary).problems(&[401, 500])
    }

    /// No token needed.
    fn public(mut self) -> Operation {
        self.op.insert("security".into(), json!([]));
        self
    }

    fn tag(mut self, tag: &str) -> Operation {
        self.op.insert("tags".into(), json!([tag]));
        self
    }

    fn params(mut self, params: Vec<Json>) -> Operation {
        self.op.insert("parameters".into(), Json::Array(params));
        self
    }

    fn json_body(mut self, schema: Json) -> Operation {
        self.op.insert(
            "requestBody".into(),
            json!({"required": true, "content": {"application/json": {"schema": schema}}}),
        );
        self
    }

    fn answers(mut self, status: u16, response: Json) -> Operation {
        self.responses.push((status, response));
        self
    }

    fn problems(mut self, statuses: &[u16]) -> Operation {
        for status in statuses {
            self.responses.push((*status, problem_ref(*status)));
        }
        self
    }

    fn build(mut self) -> Json {
        self.responses.sort_by_key(|(status, _)| *status);
        let responses: Map<String, Json> = self
            .responses
            .into_iter()
            .map(|(status, response)| (status.to_string(), response))
            .collect();
        self.op.insert("responses".into(), Json::Object(responses));
        Json::Object(self.op)
    }
}

fn json_response(description: &str, schema: Json) -> Json {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// A record response, with the `ETag` that a later `If-Match` sends back.
fn record_response(description: &str, schema: &str) -> Json {
    json!({
        "description": description,
        "headers": {
            "ETag": {"description": "The record's version, quoted.", "required": true, "schema": {"type": "string"}},
        },
        "content": {"application/json": {"schema": schema_ref(schema)}},
    })
}

/// A created record, with links to what can be done with it next (for
/// clients that follow links, and for stateful test tools).
fn created_response(schema: &str) -> Json {
    let mut response = record_response("The record as stored.", schema);
    response["headers"]["Location"] = json!({
        "description": "The new record's path.",
        "required": true,
        "schema": {"type": "string"},
    });
    let id = json!("$response.body#/id");
    let link = |action: &str| json!({"operationId": format!("{schema}.{action}"), "parameters": {"path.id": id}});
    let mut update = link("update");
    update["parameters"]["header.If-Match"] = json!("$response.header.ETag");
    response["links"] = json!({
        "get": link("get"),
        "update": update,
        "history": link("history"),
        "delete": link("delete"),
    });
    response
}

fn no_content(description: &str) -> Json {
    json!({"description": description})
}

// ---- Platform paths ----------------------------------------------------------

fn platform_paths() -> Map<String, Json> {
    let text = |description: &str| json!({"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}});
    let healthz = Operation::new("healthz", "Whether the server and its database answer")
        .public()
        .tag("platform")
        .answers(200, text("The database answers."))
        .answers(503, text("The database does not answer."))
        .build();
    let token = Operation::new(
        "signIn",
        "Sign in: a session token for a username and password",
    )
    .public()
    .tag("auth")
    .json_body(json!({
        "type": "object",
        "required": ["username", "password"],
        "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
    }))
    .answers(200, json_response("Signed in.", token_schema()))
    .problems(&[400, 401, 413, 429, 500])
    .build();
    let logout = Operation::signed_in("signOut", "End the session of the token sent")
        .tag("auth")
        .answers(204, no_content("The session is closed."))
        .build();
    let me = Operation::signed_in("me", "The signed-in user")
        .tag("auth")
        .answers(200, json_response("The user.", user_schema(true)))
        .build();
    let openapi = Operation::signed_in("openapi", "This document")
        .tag("platform")
        .answers(
            200,
            json_response(
                "The OpenAPI document of the deployed model.",
                json!({"type": "object"}),
            ),
        )
        .build();
    let mut paths = Map::new();
    paths.insert("/healthz".into(), json!({"get": healthz}));
    paths.insert("/api/openapi.json".into(), json!({"get": openapi}));
    paths.insert("/api/v1/auth/token".into(), json!({"post": token}));
    paths.insert("/api/v1/auth/logout".into(), json!({"post": logout}));
    paths.insert("/api/v1/me".into(), json!({"get": me}));
    paths
}

fn user_schema(with_attributes: bool) -> Json {
    let mut schema = json!({
        "type": "object",
        "required": ["id", "username", "roles"],
        "properties": {
            "id": {"type": "integer"},
            "username": {"type": "string"},
            "roles": {"type": "array", "items": {"type": "string"}},
        },
    });
    if with_attributes {
        schema["required"] = json!(["id", "username", "roles", "attributes"]);
        schema["properties"]["attributes"] = json!({
            "type": "object",
            "description": "The `$user.<name>` values of row filters.",
        });
    }
    schema
}

fn token_schema() -> Json {
    json!({
        "type": "object",
        "required": ["token", "token_type", "expires_in", "user"],
        "properties": {
            "token": {"type": "string", "description": "Shown once; send it as `Authorization: Bearer <token>`."},
            "token_type": {"const": "Bearer"},
            "expires_in": {"type": "integer", "description": format!("Seconds the session lasts ({SESSION_HOURS} hours).")},
            "user": user_schema(false),
        },
    })
}

// ---- Parameters ----------------------------------------------------------------

fn shared_parameters() -> Json {
    json!({
        "RecordId": {
            "name": "id", "in": "path", "required": true,
            "description": "The record's id; anything but an integer names no record (404).",
            "schema": {"type": "integer", "format": "int64"},
        },
        "IfMatch": {
            "name": "If-Match", "in": "header", "required": false,
            "description": "The version the update starts from (the `ETag` of the read); or send `version` in the body.",
            "schema": {"type": "string"},
        },
        "Search": {
            "name": "q", "in": "query", "required": false,
            "description": "Quick search over the entity's search fields.",
            "schema": {"type": "string"},
        },
        "Limit": {
            "name": "limit", "in": "query", "required": false,
            "description": format!("Records per page; 50 unless given, kept between 1 and {MAX_PAGE}."),
            "schema": {"type": "integer", "minimum": 0, "maximum": i64::MAX},
        },
        "Offset": {
            "name": "offset", "in": "query", "required": false,
            "description": "Records to skip; not with `after`.",
            "schema": {"type": "integer", "minimum": 0, "maximum": i64::MAX},
        },
        "After": {
            "name": "after", "in": "query", "required": false,
            "description": "The `next` cursor of the previous page; not with `offset`.",
            "schema": {"type": "string"},
        },
        "Total": {
            "name": "total", "in": "query", "required": false,
            "description": format!("`exact` counts every match instead of stopping at {TOTAL_CAP}."),
            "schema": {"type": "string", "enum": ["exact"]},
        },
    })
}

/// `filter`: a JSON object in the model's filter language.
fn filter_param(schema: &str) -> Json {
    json!({
        "name": "filter", "in": "query", "required": false,
        "description": "A filter in the model's filter language, as JSON (`{\"status\": \"approved\"}`).",
        "content": {"application/json": {"schema": schema_ref(&format!("{schema}.filter"))}},
    })
}

fn param_ref(name: &str) -> Json {
    json!({"$ref": format!("#/components/parameters/{name}")})
}

/// A query parameter naming fields, with examples the entity answers, which
/// lead test tools past the 400 of an unknown field.
fn field_list_param(name: &str, description: &str, examples: Vec<String>) -> Json {
    json!({
        "name": name, "in": "query", "required": false, "description": description,
        "schema": {"type": "string", "examples": examples},
    })
}

/// Whether a field is stored as one comparable column (so it can sort and group).
fn is_single_column(field: &FieldModel) -> bool {
    field.column != ColumnKind::Json
}

fn sort_param(entity: &EntityModel) -> Json {
    field_list_param(
        "sort",
        "Fields to sort by, comma-separated, `-` for descending.",
        sort_examples(entity),
    )
}

fn sort_examples(entity: &EntityModel) -> Vec<String> {
    let fields = entity
        .fields
        .iter()
        .filter(|(_, f)| is_single_column(f))
        .map(|(n, _)| n.as_str());
    SYSTEM_COLUMNS
        .iter()
        .map(|(n, _)| *n)
        .chain(fields)
        .map(|n| format!("-{n}"))
        .collect()
}

fn measure_examples(entity: &EntityModel) -> Vec<String> {
    let mut examples = vec!["count".to_owned()];
    for (name, field) in &entity.fields {
        use ColumnKind::{Date, DateTime, Exact, Integer};
        match field.column {
            Integer | Exact { .. } => {
                examples.push(format!("count,sum:{name},avg:{name},min:{name},max:{name}"))
            }
            Date | DateTime => examples.push(format!("min:{name},max:{name}")),
            _ => {}
        }
    }
    examples
}

fn group_by_examples(entity: &EntityModel) -> Vec<String> {
    let mut examples = vec!["created_at:month".to_owned()];
    for (name, field) in entity.fields.iter().filter(|(_, f)| is_single_column(f)) {
        examples.push(name.clone());
        if matches!(field.column, ColumnKind::Date | ColumnKind::DateTime) {
            examples.push(format!("{name}:week"));
        }
    }
    examples
}

// ---- Entity paths ----------------------------------------------------------------

fn entity_paths(entity: &EntityModel, schema: &str, paths: &mut Map<String, Json>) {
    let base = format!("/api/v1/{}/{}", entity.app, entity.name);
    let id = |action: &str| format!("{schema}.{action}");
    let list = Operation::signed_in(&id("list"), &format!("List {} records", entity.name))
        .tag(schema)
        .params(vec![
            filter_param(schema),
            param_ref("Search"),
            sort_param(entity),
            param_ref("Limit"),
            param_ref("Offset"),
            param_ref("After"),
            param_ref("Total"),
        ])
        .answers(
            200,
            json_response("A page of records.", page_schema(schema)),
        )
        .problems(&[400, 403])
        .build();
    let create = Operation::signed_in(&id("create"), &format!("Create a {}", entity.name))
        .tag(schema)
        .json_body(schema_ref(&format!("{schema}.create")))
        .answers(201, created_response(schema))
        // 404: created, but outside the rows the caller may read.
        .problems(&[400, 403, 404, 413, 422])
        .build();
    let aggregate = Operation::signed_in(
        &id("aggregate"),
        &format!("Aggregate {} records", entity.name),
    )
    .tag(schema)
    .params(vec![
        field_list_param(
            "measure",
            "Measures, comma-separated: count, sum:field, avg:field, min:field, max:field (default count).",
            measure_examples(entity),
        ),
        field_list_param(
            "group_by",
            "Up to two fields to group by, comma-separated; dates take :day, :week, :month, :quarter or :year.",
            group_by_examples(entity),
        ),
        filter_param(schema),
    ])
    .answers(200, json_response("The groups.", aggregate_schema()))
    .problems(&[400, 403])
    .build();
    let get = Operation::signed_in(&id("get"), &format!("Read a {}", entity.name))
        .tag(schema)
        .answers(200, record_response("The record.", schema))
        .problems(&[403, 404])
        .build();
    let patch = Operation::signed_in(&id("update"), &format!("Change a {}", entity.name))
        .tag(schema)
        .params(vec![param_ref("IfMatch")])
        .json_body(schema_ref(&format!("{schema}.patch")))
        .answers(200, record_response("The record as stored.", schema))
        .problems(&[400, 403, 404, 409, 413, 422, 428])
        .build();
    let delete = Operation::signed_in(&id("delete"), &format!("Delete a {}", entity.name))
        .tag(schema)
        .answers(204, no_content("Deleted."))
        // 400: cascading deletes deeper than the server follows; 422: a record
        // in a locked state, or a `delete` hook that refuses.
        .problems(&[400, 403, 404, 409, 422])
        .build();
    let history = Operation::signed_in(&id("history"), &format!("A {}'s changes", entity.name))
        .tag(schema)
        .answers(
            200,
            json_response("Every audited write, oldest first.", history_schema()),
        )
        .problems(&[403, 404])
        .build();
    let export = Operation::signed_in(
        &id("export"),
        &format!("Export {} records as CSV", entity.name),
    )
    .tag(schema)
    .params(vec![
        filter_param(schema),
        param_ref("Search"),
        sort_param(entity),
    ])
    .answers(
        200,
        json!({
            "description": "The matching records (at most 100,000), one CSV row each.",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }),
    )
    .problems(&[400, 403])
    .build();
    let upsert = Operation::signed_in(
        &id("upsert"),
        &format!("Create or update {} records by a key", entity.name),
    )
    .tag(schema)
    .json_body(upsert_body_schema(entity, schema))
    .answers(
        200,
        json_response("One result per record, in order.", upsert_results_schema()),
    )
    // 422: a bad key, or (all_or_nothing) the failed rows, each error with its row.
    .problems(&[400, 403, 413, 422])
    .build();
    let record_id = json!([param_ref("RecordId")]);
    paths.insert(base.clone(), json!({"get": list, "post": create}));
    paths.insert(format!("{base}/upsert"), json!({"post": upsert}));
    paths.insert(format!("{base}/aggregate"), json!({"get": aggregate}));
    paths.insert(format!("{base}/export"), json!({"get": export}));
    paths.insert(
        format!("{base}/{{id}}"),
        json!({"parameters": record_id, "get": get, "patch": patch, "delete": delete}),
    );
    paths.insert(
        format!("{base}/{{id}}/history"),
        json!({"parameters": record_id, "get": history}),
    );
    if !entity.actions.is_empty() {
        workflow_paths(entity, schema, &base, paths);
    }
}

/// The connector lookups of an entity, each at its own path:
/// `POST …/{entity}/lookup/{connector}/{operation}`.
fn lookup_paths(
    catalog: &Catalog,
    entity: &EntityModel,
    schema: &str,
    paths: &mut Map<String, Json>,
) {
    for (connector, op) in catalog.connectors().lookups(&entity.app, &entity.name) {
        let fields: Map<String, Json> = op
            .def
            .response
            .keys()
            .filter(|f| entity.fields.contains_key(*f))
            .map(|f| {
                let pointer = format!("#/components/schemas/{schema}/properties/{f}");
                (f.clone(), json!({"$ref": pointer}))
            })
            .collect();
        let lookup = Operation::signed_in(
            &format!("{schema}.lookup.{}.{}", connector.name, op.name),
            &format!("Fill {} fields from `{}.{}`", entity.name, connector.name, op.name),
        )
        .tag(schema)
        .json_body(json!({
            "type": "object",
            "description": "The form's current field values; others are ignored.",
        }))
        .answers(
            200,
            json_response(
                "The values found, for the fields the caller may write; nothing is saved.",
                json!({
                    "type": "object",
                    "required": ["values"],
                    "properties": {"values": {"type": "object", "properties": fields, "additionalProperties": false}},
                }),
            ),
        )
        .problems(&[400, 403, 404, 413, 422, 502])
        .build();
        paths.insert(
            format!(
                "/api/v1/{}/{}/lookup/{}/{}",
                entity.app, entity.name, connector.name, op.name
            ),
            json!({"post": lookup}),
        );
    }
}

/// The paths of an entity with a workflow or buttons: taking an action, the
/// workflow history, and the built-in approval moves.
fn workflow_paths(entity: &EntityModel, schema: &str, base: &str, paths: &mut Map<String, Json>) {
    let id = |action: &str| format!("{schema}.{action}");
    let outcome = json!({
        "type": "object",
        "required": ["completed", "record"],
        "properties": {
            "completed": {"type": "boolean", "description": "false while other approvers must still decide."},
            "record": schema_ref(schema),
            "_warnings": schema_ref("Warnings"),
        },
    });
    let answers = |op: Operation| {
        op.answers(
            200,
            json_response("Done: the record as it is now.", outcome.clone()),
        )
        .answers(
            202,
            json_response("Recorded; others must still decide.", outcome.clone()),
        )
        .problems(&[400, 403, 404, 409, 413, 422])
        .build()
    };
    let act = answers(
        Operation::signed_in(&id("act"), &format!("Take an action on a {}", entity.name))
            .tag(schema)
            .json_body(json!({
                "type": "object",
                "properties": {
                    "comment": {"type": ["string", "null"]},
                    "values": {"type": "object", "description": "Values of the action's input fields."},
                    "version": {"type": ["integer", "null"], "description": "The version seen; a newer record is a conflict."},
                },
                "additionalProperties": false,
            })),
    );
    let moves = answers(
        Operation::signed_in(
            &id("move"),
            "Withdraw the record, transfer the approval or add a signer",
        )
        .tag(schema)
        .json_body(json!({
            "type": "object",
            "properties": {
                "comment": {"type": ["string", "null"]},
                "to": {"type": ["integer", "null"], "description": "The user who takes over or signs first."},
            },
            "additionalProperties": false,
        })),
    );
    let history = Operation::signed_in(&id("workflow"), &format!("A {}'s decisions", entity.name))
        .tag(schema)
        .answers(
            200,
            json_response("Every decision, oldest first.", workflow_history_schema()),
        )
        .problems(&[403, 404])
        .build();
    let path_param = |name: &str, values: Json| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "enum": values}});
    paths.insert(
        format!("{base}/{{id}}/actions/{{action}}"),
        json!({
            "parameters": [param_ref("RecordId"), path_param("action", json!(entity.actions))],
            "post": act,
        }),
    );
    paths.insert(
        format!("{base}/{{id}}/workflow"),
        json!({"parameters": [param_ref("RecordId")], "get": history}),
    );
    paths.insert(
        format!("{base}/{{id}}/workflow/{{move}}"),
        json!({
            "parameters": [param_ref("RecordId"), path_param("move", json!(["withdraw", "transfer", "add_sign"]))],
            "post": moves,
        }),
    );
}

/// An upsert: the key, the records, and what a failed record does to the others.
fn upsert_body_schema(entity: &EntityModel, schema: &str) -> Json {
    let keys: Vec<&String> = entity
        .fields
        .iter()
        .filter(|(_, f)| f.column != ColumnKind::Json)
        .map(|(name, _)| name)
        .collect();
    // An empty `enum` is no schema; an entity without such fields refuses any key.
    let key_item = if keys.is_empty() {
        json!({"type": "string"})
    } else {
        json!({"type": "string", "enum": keys})
    };
    json!({
        "type": "object",
        "required": ["key", "records"],
        "properties": {
            "key": {
                "type": "array",
                "minItems": 1,
                "uniqueItems": true,
                "items": key_item,
                "description": "The fields that identify a record; every record must give them. \
                    A record whose key matches one the caller may update updates it; none, it is created; \
                    one outside the caller's rows or several, the record fails.",
            },
            "records": {
                "type": "array",
                "maxItems": MAX_UPSERT_ROWS,
                "items": schema_ref(&format!("{schema}.upsert")),
            },
            "mode": {
                "type": "string",
                "enum": ["all_or_nothing", "per_row"],
                "default": "all_or_nothing",
                "description": "all_or_nothing: a failed record and nothing is written (422). \
                    per_row: the others are written and the failed ones reported.",
            },
        },
        "additionalProperties": false,
    })
}

fn upsert_results_schema() -> Json {
    json!({
        "type": "object",
        "required": ["results"],
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["row", "status"],
                    "properties": {
                        "row": {"type": "integer", "minimum": 0},
                        "status": {"type": "string", "enum": ["created", "updated", "failed"]},
                        "id": {"type": "integer", "description": "The record created or updated."},
                        "errors": {
                            "type": "array",
                            "description": "Why the record failed (an empty field: the whole record).",
                            "items": {
                                "type": "object",
                                "required": ["field", "code", "message"],
                                "properties": {
                                    "field": {"type": "string"},
                                    "code": {"type": "string"},
                                    "message": {"type": "string"},
                                },
                            },
                        },
                    },
                },
            },
        },
    })
}

fn workflow_history_schema() -> Json {
    json!({
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["kind", "at"],
                    "properties": {
                        "kind": {"type": "string"},
                        "action": {"type": ["string", "null"]},
                        "from_state": {"type": ["string", "null"]},
                        "to_state": {"type": ["string", "null"]},
                        "user_id": {"type": ["integer", "null"]},
                        "via": {"type": ["string", "null"], "description": "Why the user could decide: their role, a field naming them, a deputyship."},
                        "comment": {"type": ["string", "null"]},
                        "at": {"type": "string", "format": "date-time"},
                    },
                },
            },
        },
    })
}

fn page_schema(record: &str) -> Json {
    json!({
        "type": "object",
        "required": ["data", "total", "total_exact", "next"],
        "properties": {
            "data": {"type": "array", "items": schema_ref(record), "description": "The records, without line items."},
            "total": {"type": "integer", "minimum": 0},
            "total_exact": {"type": "boolean", "description": "false when counting stopped at `total`."},
            "next": {"type": ["string", "null"], "description": "The cursor of the next page (`after`)."},
        },
    })
}

fn aggregate_schema() -> Json {
    json!({
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["key", "values"],
                    "properties": {
                        "key": {"type": "object", "description": "Grouping → its value."},
                        "values": {"type": "object", "description": "Measure → its value; exact sums and averages are strings."},
                    },
                },
            },
        },
    })
}

fn history_schema() -> Json {
    json!({
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["at", "user_id", "operation", "changes"],
                    "properties": {
                        "at": {"type": "string", "format": "date-time"},
                        "user_id": {"type": ["integer", "null"]},
                        "operation": {"type": "string", "enum": ["create", "update", "delete"]},
                        "changes": {
                            "type": "object",
                            "description": "Field → [old, new].",
                            "additionalProperties": {"type": "array", "minItems": 2, "maxItems": 2},
                        },
                    },
                },
            },
        },
    })
}

// ---- Entity schemas ----------------------------------------------------------------

/// Which way a value travels: the API's answer, or a client's input.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    Out,
    In,
}

/// What an input schema is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Input {
    Create,
    Patch,
    /// A row of an upsert: a create or a patch, by what its key finds.
    Upsert,
}

/// A record as the API returns it.
fn record_schema(entity: &EntityModel, catalog: &Catalog) -> Json {
    let mut properties = Map::new();
    for (name, kind) in SYSTEM_COLUMNS {
        properties.insert(name.into(), system_schema(name, kind));
    }
    for (name, field) in &entity.fields {
        properties.insert(
            name.clone(),
            described(field_schema(&field.def, Way::Out), &field.def),
        );
    }
    for (name, lines) in &entity.lines {
        properties.insert(
            name.clone(),
            json!({
                "type": "array",
                "description": "Line items, in order (only when reading one record).",
                "items": line_schema(lines, Way::Out),
            }),
        );
    }
    properties.insert("_titles".into(), titles_schema(entity, catalog));
    // Only in the answer of a create or an update.
    properties.insert("_warnings".into(), schema_ref("Warnings"));
    if !entity.actions.is_empty() {
        properties.insert(
            "_actions".into(),
            json!({
                "type": "array",
                "description": "The actions the caller may take now (only when reading one record).",
                "items": {
                    "type": "object",
                    "required": ["action"],
                    "properties": {
                        "action": {"type": "string", "enum": entity.actions},
                        "to": {"type": ["string", "null"]},
                        "input": {"type": "array", "items": {"type": "string"}},
                        "comment_required": {"type": "boolean"},
                    },
                },
            }),
        );
    }
    let required: Vec<&str> = SYSTEM_COLUMNS.iter().map(|(n, _)| *n).collect();
    json!({
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": false,
    })
}

/// A system field: ids and versions, times, and the users who wrote (none
/// for the platform itself).
fn system_schema(name: &str, kind: ColumnKind) -> Json {
    match (name, kind) {
        ("created_by" | "updated_by", _) => json!({"type": ["integer", "null"]}),
        (_, ColumnKind::DateTime) => json!({"type": "string", "format": "date-time"}),
        _ => json!({"type": "integer"}),
    }
}

/// The filter language, as far as a schema can say it: a field equals a value
/// of its type (contains it, for fields holding several), or meets operators;
/// `and`, `or` and `not` combine filters. Paths through links
/// (`leave_type.code`) and `$user` variables are accepted too.
fn filter_schema(entity: &EntityModel) -> Json {
    let mut properties = Map::new();
    for (name, kind) in SYSTEM_COLUMNS {
        properties.insert(name.into(), comparison(system_schema(name, kind)));
    }
    for (name, field) in &entity.fields {
        let unfilterable = matches!(
            field.def.kind,
            FieldType::Table | FieldType::Json | FieldType::Attachment
        );
        if !unfilterable {
            properties.insert(name.clone(), comparison(value_schema(&field.def, Way::In)));
        }
    }
    properties.insert(
        "and".into(),
        json!({"type": "array", "items": {"type": "object"}}),
    );
    properties.insert(
        "or".into(),
        json!({"type": "array", "items": {"type": "object"}}),
    );
    properties.insert("not".into(), json!({"type": "object"}));
    json!({"type": "object", "properties": properties, "additionalProperties": false})
}

/// A field's condition: a value, or operators (`{"gte": 10, "lt": 20}`).
/// The operators' operands are left open: which fit depends on the operator.
fn comparison(value: Json) -> Json {
    let operators: Vec<&str> = trellis_engine::filter::Op::ALL
        .iter()
        .map(|(name, _)| *name)
        .collect();
    json!({
        "anyOf": [
            value,
            {"type": "object", "minProperties": 1, "propertyNames": {"enum": operators}},
        ],
    })
}

/// What a create or a PATCH takes: the fields a person may write. Anything
/// else (unknown, computed, read-only or the workflow's state) is a 422.
fn input_schema(entity: &EntityModel, input: Input) -> Json {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (name, field) in &entity.fields {
        if !is_writable(entity, name, &field.def) {
            continue;
        }
        properties.insert(
            name.clone(),
            described(field_schema(&field.def, Way::In), &field.def),
        );
        if input == Input::Create && field.def.required && field.def.default.is_none() {
            required.push(name.clone());
        }
    }
    for (name, lines) in &entity.lines {
        properties.insert(
            name.clone(),
            json!({
                "type": ["array", "null"],
                "description": "Every line, in order: lines with an `id` are kept and changed, others added, missing ones removed.",
                "items": line_schema(lines, Way::In),
            }),
        );
    }
    if input == Input::Patch {
        properties.insert(
            "version".into(),
            json!({"type": "integer", "description": "The version the update starts from, unless If-Match says it."}),
        );
    }
    json!({
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": false,
    })
}

fn is_writable(entity: &EntityModel, name: &str, def: &Field) -> bool {
    def.computed.is_none() && !def.read_only && entity.state_field.as_deref() != Some(name)
}

/// A line item: its `id` (in answers always, in inputs for lines kept) and its fields.
fn line_schema(lines: &LinesModel, way: Way) -> Json {
    let mut properties = Map::new();
    properties.insert("id".into(), json!({"type": "integer"}));
    let mut required = Vec::new();
    if way == Way::Out {
        required.push("id".to_owned());
    }
    for (name, field) in &lines.fields {
        if way == Way::In && field.def.computed.is_some() {
            continue;
        }
        properties.insert(
            name.clone(),
            described(field_schema(&field.def, way), &field.def),
        );
        if way == Way::In && field.def.required && field.def.default.is_none() {
            required.push(name.clone());
        }
    }
    json!({
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": false,
    })
}

/// `_titles`: the title of each linked record, by link field.
fn titles_schema(entity: &EntityModel, catalog: &Catalog) -> Json {
    let mut properties = Map::new();
    for (name, field) in &entity.fields {
        let Some(target) = field
            .target_table
            .as_deref()
            .and_then(|t| catalog.entity_by_table(t))
        else {
            continue;
        };
        let Some(title) = &target.title else { continue };
        let schema = target.fields.get(title).map_or_else(
            || json!({"type": "string"}),
            |f| values_schema(&f.def, Way::Out),
        );
        properties.insert(name.clone(), schema);
    }
    json!({
        "type": "object",
        "description": "The title of each linked record, by link field.",
        "properties": properties,
        "additionalProperties": false,
    })
}

/// A field's value, `null` included unless the field is required.
fn field_schema(def: &Field, way: Way) -> Json {
    let schema = values_schema(def, way);
    if def.required {
        schema
    } else {
        or_null(schema)
    }
}

/// A field's value when it has one: one value, or a list for fields that hold several.
fn values_schema(def: &Field, way: Way) -> Json {
    let one = value_schema(def, way);
    if holds_several(def) {
        json!({"type": "array", "items": one})
    } else {
        one
    }
}

/// The fields stored as a list (as `coerce` treats them).
fn holds_several(def: &Field) -> bool {
    def.kind == FieldType::MultiSelect
        || (def.multiple
            && matches!(
                def.kind,
                FieldType::Link | FieldType::User | FieldType::Attachment
            ))
}

/// One value of a field. Inputs carry the field's constraints, to tell clients
/// what passes; answers do not, since stored values may predate a constraint.
fn value_schema(def: &Field, way: Way) -> Json {
    match def.kind {
        FieldType::Text
        | FieldType::LongText
        | FieldType::Email
        | FieldType::Phone
        | FieldType::Url => match way {
            Way::Out => json!({"type": "string"}),
            Way::In => text_input(def),
        },
        FieldType::Integer => match way {
            Way::Out => json!({"type": "integer"}),
            Way::In => with_range(json!({"type": "integer"}), def),
        },
        FieldType::Decimal | FieldType::Money | FieldType::Percent => decimal_schema(def, way),
        FieldType::Boolean => json!({"type": "boolean"}),
        FieldType::Date => json!({"type": "string", "format": "date"}),
        FieldType::Datetime => json!({"type": "string", "format": "date-time"}),
        FieldType::Select | FieldType::MultiSelect => {
            let options: Vec<&str> = def.options.iter().flatten().map(|o| o.value()).collect();
            json!({"type": "string", "enum": options})
        }
        FieldType::Link | FieldType::User => match way {
            Way::Out => json!({"type": "integer"}),
            Way::In => json!({"type": "integer", "minimum": 1}),
        },
        FieldType::Attachment | FieldType::Json | FieldType::Table => json!({}),
    }
}

/// Exact numbers travel as text, so no float touches money: answers carry
/// exactly the column's decimal places; inputs may be numbers too, and may not
/// have more digits than the column holds.
fn decimal_schema(def: &Field, way: Way) -> Json {
    let ColumnKind::Exact { precision, scale } = column_of(def).kind else {
        return json!({"type": "string"});
    };
    let fraction = match (way, scale) {
        (_, 0) => String::new(),
        (Way::Out, s) => format!("\\.[0-9]{{{s}}}"),
        (Way::In, s) => format!("(\\.[0-9]{{1,{s}}}0*)?"),
    };
    match way {
        Way::Out => json!({"type": "string", "pattern": format!("^-?[0-9]+{fraction}$")}),
        Way::In => {
            let whole = precision.saturating_sub(scale).max(1);
            let pattern = format!("^-?[0-9]{{1,{whole}}}{fraction}$");
            with_range(
                json!({"type": ["string", "number"], "pattern": pattern}),
                def,
            )
        }
    }
}

fn text_input(def: &Field) -> Json {
    let mut schema = json!({"type": "string"});
    if let Some(min) = def.min_length {
        schema["minLength"] = json!(min);
    }
    if let Some(max) = def.max_length {
        schema["maxLength"] = json!(max);
    }
    if let Some(pattern) = &def.pattern {
        // The whole value must match; empty text is not checked against it.
        schema["pattern"] = json!(format!("^(?:{pattern})?$"));
    }
    schema
}

fn with_range(mut schema: Json, def: &Field) -> Json {
    if let Some(min) = def.min {
        schema["minimum"] = bound(min);
    }
    if let Some(max) = def.max {
        schema["maximum"] = bound(max);
    }
    schema
}

/// A bound as the model wrote it: `2000`, not `2000.0`.
fn bound(value: f64) -> Json {
    let whole = value as i64;
    if whole as f64 == value {
        json!(whole)
    } else {
        json!(value)
    }
}

/// The same schema, with `null` allowed.
fn or_null(mut schema: Json) -> Json {
    let Some(object) = schema.as_object_mut() else {
        return schema;
    };
    if let Some(values) = object.get_mut("enum").and_then(Json::as_array_mut) {
        values.push(Json::Null);
    }
    match object.get("type").cloned() {
        Some(Json::String(kind)) => {
            object.insert("type".into(), json!([kind, "null"]));
        }
        Some(Json::Array(mut kinds)) => {
            kinds.push(json!("null"));
            object.insert("type".into(), Json::Array(kinds));
        }
        // No type: any JSON, `null` included.
        _ => {}
    }
    schema
}

/// Adds the field's label and help, in English.
fn described(mut schema: Json, def: &Field) -> Json {
    if let Some(label) = &def.label {
        schema["title"] = json!(label.text("en"));
    }
    if let Some(help) = &def.help {
        schema["description"] = json!(help.text("en"));
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(dir: &str) -> Catalog {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let report = trellis_engine::check(&[root]);
        let model = report
            .model
            .unwrap_or_else(|| panic!("{dir} checks clean:\n{}", report.diagnostics.render()));
        Catalog::new(&model)
    }

    /// Every `$ref` in `value`, with the pointer where it stands.
    fn refs<'a>(value: &'a Json, at: String, out: &mut Vec<(String, &'a str)>) {
        match value {
            Json::Object(map) => {
                for (key, child) in map {
                    if key == "$ref"
                        && let Some(target) = child.as_str()
                    {
                        out.push((at.clone(), target));
                    }
                    refs(child, format!("{at}/{key}"), out);
                }
            }
            Json::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    refs(child, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    /// The operation of every link in `value`.
    fn links<'a>(value: &'a Json, out: &mut Vec<&'a str>) {
        match value {
            Json::Object(map) => {
                for link in map
                    .get("links")
                    .and_then(Json::as_object)
                    .into_iter()
                    .flatten()
                {
                    out.push(link.1["operationId"].as_str().expect("operationId"));
                }
                map.values().for_each(|child| links(child, out));
            }
            Json::Array(items) => items.iter().for_each(|child| links(child, out)),
            _ => {}
        }
    }

    /// Structural soundness: references and links resolve, every operation
    /// answers something, path templates are declared, ids are unique.
    fn assert_sound(doc: &Json) {
        assert_eq!(doc["openapi"], "3.1.0");
        let mut found = Vec::new();
        refs(doc, String::new(), &mut found);
        assert!(!found.is_empty());
        for (at, target) in found {
            let pointer = target.strip_prefix('#').expect("local reference");
            assert!(doc.pointer(pointer).is_some(), "{at}: {target} resolves");
        }
        let mut ids = std::collections::HashSet::new();
        let paths = doc["paths"].as_object().expect("paths");
        for (path, item) in paths {
            let declared = |op: &Json| {
                item["parameters"]
                    .as_array()
                    .into_iter()
                    .chain(op["parameters"].as_array())
                    .flatten()
                    .any(|p| p == &json!({"$ref": "#/components/parameters/RecordId"}))
            };
            for (method, op) in item.as_object().expect("path item") {
                if method == "parameters" {
                    continue;
                }
                let responses = op["responses"].as_object().expect("responses");
                assert!(!responses.is_empty(), "{method} {path} answers something");
                assert!(
                    responses.keys().any(|s| s.starts_with('2')),
                    "{method} {path} has a success"
                );
                for (status, response) in responses {
                    let Some(target) = response["$ref"].as_str() else {
                        continue;
                    };
                    let named = problem_statuses()
                        .into_iter()
                        .find(|(_, name, _)| target.ends_with(&format!("/{name}")));
                    assert_eq!(
                        named.map(|(s, _, _)| s.to_string()).as_ref(),
                        Some(status),
                        "{method} {path}: {status} refers to {target}"
                    );
                }
                if path.contains("{id}") {
                    assert!(declared(op), "{method} {path} declares id");
                }
                let id = op["operationId"].as_str().expect("operationId");
                assert!(ids.insert(id.to_owned()), "{id} is unique");
            }
        }
        let mut linked = Vec::new();
        links(doc, &mut linked);
        assert!(!linked.is_empty());
        for target in linked {
            assert!(ids.contains(target), "a link's {target} exists");
        }
        let names = doc["components"]["schemas"].as_object().expect("schemas");
        assert!(names.keys().all(|n| {
            n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        }));
    }

    #[test]
    fn the_example_app_has_a_sound_document() {
        let doc = document(&catalog("../examples/leave"));
        assert_sound(&doc);
        for path in [
            "/healthz",
            "/api/v1/auth/token",
            "/api/v1/auth/logout",
            "/api/v1/me",
            "/api/v1/leave/leave_request",
            "/api/v1/leave/leave_request/aggregate",
            "/api/v1/leave/leave_request/{id}",
            "/api/v1/leave/leave_request/{id}/history",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} is documented");
        }
        assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([]));
        assert_eq!(
            doc["paths"]["/api/v1/auth/token"]["post"]["security"],
            json!([])
        );
        assert!(doc["paths"]["/api/v1/me"]["get"].get("security").is_none());

        let request = &doc["components"]["schemas"]["leave.leave_request"]["properties"];
        assert_eq!(
            request["days"]["type"],
            json!(["string", "null"]),
            "decimals are text"
        );
        assert_eq!(request["start_date"]["format"], "date");
        assert_eq!(
            request["start_date"]["type"], "string",
            "required: never null"
        );
        assert_eq!(request["leave_type"]["type"], "integer");
        assert_eq!(request["proof"]["type"], json!(["array", "null"]));
        assert_eq!(
            request["tags"]["items"]["enum"],
            json!(["travel", "family", "medical", "study"])
        );
        assert_eq!(
            request["urgency"]["enum"],
            json!(["normal", "urgent", null])
        );
        assert!(
            request["status"]["enum"]
                .as_array()
                .expect("states")
                .contains(&json!("draft"))
        );
        assert!(request["_titles"]["properties"]["leave_type"].is_object());

        let create = &doc["components"]["schemas"]["leave.leave_request.create"];
        assert_eq!(
            create["required"],
            json!(["approver", "leave_type", "end_date"])
        );
        for not_writable in ["number", "days", "status", "decided_at", "id"] {
            assert!(
                create["properties"].get(not_writable).is_none(),
                "{not_writable}"
            );
        }
        let patch = &doc["components"]["schemas"]["leave.leave_request.patch"];
        assert_eq!(patch["required"], json!([]));
        assert_eq!(patch["properties"]["version"]["type"], "integer");
    }

    #[test]
    fn line_items_are_arrays_of_objects() {
        let doc = document(&catalog("../tests/spec-coverage"));
        assert_sound(&doc);
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let with_lines = schemas
            .values()
            .flat_map(|s| s["properties"].as_object())
            .flat_map(|p| p.values())
            .filter(|p| p["items"]["properties"]["id"]["type"] == "integer")
            .count();
        assert!(with_lines > 0, "the spec-coverage app has line items");
    }

    #[test]
    fn lookups_are_documented_with_the_fields_they_fill() {
        let doc = document(&catalog("../tests/spec-coverage"));
        let op = &doc["paths"]["/api/v1/spec_coverage/customer/lookup/registry/search"]["post"];
        assert_eq!(
            op["operationId"], "spec_coverage.customer.lookup.registry.search",
            "{op}"
        );
        let values = &op["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
            ["values"];
        assert_eq!(
            values["properties"]["credit_code"],
            json!({"$ref": "#/components/schemas/spec_coverage.customer/properties/credit_code"})
        );
        assert_eq!(
            op["responses"]["502"],
            json!({"$ref": "#/components/responses/BadGateway"})
        );
        let pushes = doc["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .filter(|p| p.contains("/lookup/erp/"))
            .count();
        assert_eq!(pushes, 0, "a push is no lookup");
    }
}
