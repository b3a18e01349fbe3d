//! The REST API end to end: the real `trellis serve --examples` binary on a free
//! port, driven over HTTP as a client would, once on SQLite and once on a fresh
//! PostgreSQL database (created for the run, dropped after it).
//!
//! One server per backend runs every check in turn; each check is a named
//! function and prints its name, so a failure says which one broke. The
//! permission checks read `examples/leave/roles.yaml` and expect exactly what it
//! declares.
//!
//! PostgreSQL is reached through `TRELLIS_TEST_POSTGRES` (default
//! `postgres://trellis:trellis@127.0.0.1:5432/postgres`); when it is unreachable
//! the PostgreSQL run is skipped with a note, except under `CI=true`, where it fails.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

const ADMIN_PASSWORD: &str = "admin-secret-1";
const DEFAULT_POSTGRES: &str = "postgres://trellis:trellis@127.0.0.1:5432/postgres";

#[test]
fn api_on_sqlite() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = Server::start(tmp.path(), None);
    run_checks(&server);
    server.stop();
}

#[test]
fn api_on_postgres() {
    let Some(database) = Postgres::create("api") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = Server::start(tmp.path(), Some(&database.url));
    run_checks(&server);
    check("a second node shares the database and its sessions", || {
        let other = tempfile::tempdir().expect("temp dir");
        let second = Server::start(other.path(), Some(&database.url));
        let token = server
            .token("admin", ADMIN_PASSWORD)
            .expect(200, "signs in on the first node")
            .json();
        let on_second = second.client("admin on node 2", &token);
        let made = on_second
            .post(
                "/api/v1/leave/leave_type",
                &json!({"code": "NODE_TWO", "name": "Node two"}),
            )
            .expect(201, "the first node's session works on the second")
            .json();
        server
            .client("admin on node 1", &token)
            .get(&format!("/api/v1/leave/leave_type/{}", made["id"]))
            .expect(200, "what one node wrote, the other reads");
        second.stop();
    });
    check("two nodes run each due alert exactly once", || {
        let other = tempfile::tempdir().expect("temp dir");
        let second = Server::start(other.path(), Some(&database.url));
        two_nodes_share_the_schedule(&server);
        second.stop();
    });
    server.stop();
    // A failed run keeps its database for inspection, as the storage tests do.
    database.drop_database();
}

fn run_checks(server: &Server) {
    let admin = check("first-run admin signs in", || first_run_admin(server));
    check("five failures lock an account", || lockout(server, &admin));
    let people = check("accounts for every role", || People::create(server, admin));
    check("CRUD on leave_type", || crud_leave_type(&people));
    check("upsert leave types by code", || upsert_by_key(&people));
    check("CRUD on leave_request", || crud_leave_request(&people));
    check("validation lists every bad field", || validation(&people));
    check("bad requests", || bad_requests(server, &people));
    check("aggregate", || aggregate(&people));
    check("permission matrix of roles.yaml", || {
        permission_matrix(&people)
    });
    check("row filters", || row_filters(&people));
    check("hidden fields", || hidden_fields(&people));
    check("read-only fields", || read_only_fields(server, &people));
    check("admin endpoints are for admins", || admin_only(&people));
    check("logout", || logout(server, &people));
    check("API tokens", || api_tokens(server, &people));
    check("CSV export under the export permission", || export(&people));
    check("cookie sessions need the CSRF token to write", || {
        cookie_sessions(server)
    });
    check("operation and login logs", || logs(&people));
    check("a leave request through its workflow", || {
        leave_workflow(&people)
    });
    check("a runaway rule fails its request, not the server", || {
        runaway_rules(server, &people)
    });
    check("alerts run on their schedule, once per occurrence", || {
        alerts(&people)
    });
}

/// Runs one named check; its name is printed first, so a failure shows which.
fn check<T>(name: &str, body: impl FnOnce() -> T) -> T {
    eprintln!("== {name}");
    let started = std::time::Instant::now();
    let out = body();
    eprintln!("   ({:.1?})", started.elapsed());
    out
}

// ---------------------------------------------------------------------------
// The checks

fn first_run_admin(server: &Server) -> Client<'_> {
    assert!(
        server
            .printed
            .iter()
            .any(|l| l == "created the admin account with TRELLIS_ADMIN_PASSWORD"),
        "the first run creates the admin account: {:?}",
        server.printed
    );
    let signed_in = server
        .token("admin", ADMIN_PASSWORD)
        .expect(200, "the admin signs in");
    let body = signed_in.json();
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert_eq!(body["user"]["roles"], json!(["admin"]), "{body}");
    assert!(body["expires_in"].as_i64().unwrap_or(0) > 0, "{body}");
    let admin = server.client("admin", &body);
    let me = admin
        .get("/api/v1/me")
        .expect(200, "/me with the token")
        .json();
    assert_eq!(me["username"], "admin");

    let wrong = server
        .token("admin", "not the password")
        .problem(401, "a wrong password");
    let unknown = server
        .token("nobody", ADMIN_PASSWORD)
        .problem(401, "an unknown user");
    assert_eq!(
        wrong["detail"], unknown["detail"],
        "a wrong password and an unknown user get the same answer"
    );
    let anonymous = server.anonymous();
    let reply = anonymous.get("/api/v1/leave/leave_type");
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer"),
        "a 401 names the scheme"
    );
    reply.problem(401, "a list without a token");
    anonymous
        .post(
            "/api/v1/leave/leave_type",
            &json!({"code": "X1", "name": "x"}),
        )
        .problem(401, "a create without a token");
    let forged = Client {
        token: Some("not-a-token".into()),
        ..server.anonymous()
    };
    forged
        .get("/api/v1/me")
        .problem(401, "a token the server never issued");
    admin
}

fn lockout(server: &Server, admin: &Client) {
    let password = "locked-out-password";
    admin
        .post(
            "/api/v1/admin/users",
            &json!({"username": "locked", "password": password, "roles": ["employee"]}),
        )
        .expect(201, "the admin creates the account to lock");
    for attempt in 1..=5 {
        server
            .token("locked", "wrong password")
            .problem(401, &format!("wrong password, attempt {attempt}"));
    }
    let locked = server.token("locked", password);
    let retry = locked
        .header("retry-after")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| {
            panic!(
                "429 carries Retry-After in seconds: {:?}",
                locked.header("retry-after")
            )
        });
    assert!(retry > 0, "Retry-After {retry}");
    locked.problem(
        429,
        "after five failures even the right password is turned away",
    );
    server
        .token("admin", ADMIN_PASSWORD)
        .expect(200, "another account is not locked");
}

fn crud_leave_type(p: &People) {
    let admin = &p.admin;
    let created = admin.post(
        "/api/v1/leave/leave_type",
        &json!({"code": "TEMP", "name": "Temporary", "annual_quota": 10}),
    );
    let created = created.expect(201, "create a leave type");
    let id = created.json()["id"].as_i64().expect("an id");
    let path = format!("/api/v1/leave/leave_type/{id}");
    assert_eq!(created.header("location"), Some(path.as_str()), "Location");
    assert_eq!(
        created.header("etag"),
        Some("\"1\""),
        "ETag of a new record"
    );
    let record = created.json();
    assert_eq!(record["version"], 1);
    assert_eq!(record["paid"], true, "the default of `paid`");
    assert_eq!(record["annual_quota"], "10.0", "decimals are exact strings");
    assert_eq!(record["created_by"], p.admin.id);

    let read = admin.get(&path).expect(200, "read it back");
    assert_eq!(read.header("etag"), Some("\"1\""));
    assert_eq!(read.json()["name"], "Temporary");

    let renamed = admin
        .patch_if_match(&path, 1, &json!({"name": "Seasonal"}))
        .expect(200, "PATCH with If-Match");
    assert_eq!(renamed.header("etag"), Some("\"2\""));
    assert_eq!(renamed.json()["version"], 2);
    assert_eq!(renamed.json()["name"], "Seasonal");
    let requota = admin
        .patch(&path, &json!({"version": 2, "annual_quota": "12.5"}))
        .expect(200, "PATCH with `version` in the body");
    assert_eq!(requota.json()["version"], 3);
    assert_eq!(requota.json()["annual_quota"], "12.5");

    admin
        .patch_if_match(&path, 1, &json!({"name": "Stale"}))
        .problem(409, "a PATCH from a stale version");
    admin
        .patch(&path, &json!({"name": "Blind"}))
        .problem(428, "a PATCH without any version");
    assert_eq!(
        admin.get(&path).expect(200, "read").json()["name"],
        "Seasonal",
        "refused PATCHes change nothing"
    );

    let history = admin
        .get(&format!("{path}/history"))
        .expect(200, "history")
        .json();
    let changes = history["data"].as_array().expect("a list of changes");
    let operations: Vec<&str> = changes
        .iter()
        .map(|c| c["operation"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(operations, ["create", "update", "update"], "{history}");
    assert_eq!(
        changes[1]["changes"]["name"],
        json!(["Temporary", "Seasonal"])
    );
    assert_eq!(
        changes[2]["changes"]["annual_quota"],
        json!(["10.0", "12.5"])
    );
    assert!(
        changes.iter().all(|c| c["user_id"] == p.admin.id),
        "every change names its user: {history}"
    );

    admin.delete(&path).expect(204, "delete");
    admin.get(&path).problem(404, "a deleted record");
    admin.delete(&path).problem(404, "deleting it again");
    admin
        .patch(&path, &json!({"version": 3, "name": "Ghost"}))
        .problem(404, "updating a deleted record");
}

/// Bulk upsert by an external key: records found by `code` are updated, the
/// others created; all or nothing by default, or row by row.
fn upsert_by_key(p: &People) {
    let admin = &p.admin;
    let path = "/api/v1/leave/leave_type/upsert";
    let n = p.next();
    let (old, new) = (format!("UPS{n}OLD"), format!("UPS{n}NEW"));
    let made = admin
        .post(
            "/api/v1/leave/leave_type",
            &json!({"code": old, "name": "Before"}),
        )
        .expect(201, "a leave type to upsert onto")
        .json();
    let id = made["id"].as_i64().expect("an id");
    let reply = admin
        .post(
            path,
            &json!({"key": ["code"], "records": [
                {"code": old, "name": "After"},
                {"code": new, "name": "Fresh"},
            ]}),
        )
        .expect(200, "upsert")
        .json();
    assert_eq!(
        reply["results"][0],
        json!({"row": 0, "status": "updated", "id": id}),
        "{reply}"
    );
    assert_eq!(reply["results"][1]["status"], "created", "{reply}");
    let record = admin
        .get(&format!("/api/v1/leave/leave_type/{id}"))
        .expect(200, "read")
        .json();
    assert_eq!(
        (record["name"].clone(), record["version"].clone()),
        (json!("After"), json!(2))
    );

    let bad = json!({"key": ["code"], "records": [
        {"code": old, "name": "Again"},
        {"code": "not a code", "name": "Bad"},
    ]});
    let problem = admin
        .post(path, &bad)
        .problem(422, "all or nothing: a bad row refuses the request");
    assert_eq!(problem["errors"][0]["row"], 1, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "code", "{problem}");
    let mut per_row = bad.clone();
    per_row["mode"] = json!("per_row");
    let reply = admin
        .post(path, &per_row)
        .expect(200, "per row: the good rows are written")
        .json();
    assert_eq!(reply["results"][0]["status"], "updated", "{reply}");
    assert_eq!(reply["results"][1]["status"], "failed", "{reply}");
    assert_eq!(
        reply["results"][1]["errors"][0]["code"], "pattern",
        "{reply}"
    );
    let record = admin
        .get(&format!("/api/v1/leave/leave_type/{id}"))
        .expect(200, "read")
        .json();
    assert_eq!(record["name"], "Again", "only the per-row request wrote");

    p.a.post(
        path,
        &json!({"key": ["code"], "records": [{"code": old, "name": "Mine"}]}),
    )
    .problem(403, "an employee may neither create nor update leave types");
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"code": format!("MANY{i}"), "name": "Many"}))
        .collect();
    admin
        .post(path, &json!({"key": ["code"], "records": many}))
        .problem(413, "more records than one upsert takes");
    admin
        .post(path, &json!({"key": ["colour"], "records": []}))
        .problem(422, "a key field the entity does not have");
}

fn crud_leave_request(p: &People) {
    let a = &p.a;
    let created = a
        .post(
            "/api/v1/leave/leave_request",
            &json!({
                "approver": p.manager.id,
                "leave_type": p.leave_type,
                "start_date": "2030-03-02",
                "end_date": "2030-03-03",
                "reason": "family visit",
            }),
        )
        .expect(201, "an employee creates a leave request");
    let record = created.json();
    let id = record["id"].as_i64().expect("an id");
    let path = format!("/api/v1/leave/leave_request/{id}");
    assert_eq!(created.header("location"), Some(path.as_str()));
    assert_eq!(created.header("etag"), Some("\"1\""));
    assert_eq!(record["version"], 1);
    assert_eq!(record["employee"], a.id, "`employee` defaults to $user.id");
    assert_eq!(
        record["status"], "draft",
        "a new request is in the workflow's initial state"
    );
    assert_eq!(record["days"], "2.0", "the computed number of days");
    assert_eq!(record["urgency"], "normal", "a select default");
    assert!(
        record["number"]
            .as_str()
            .is_some_and(|n| n.starts_with("LV-")),
        "numbered by its pattern: {record}"
    );
    assert_eq!(record["_titles"]["leave_type"], "Annual leave");
    assert!(
        record.get("_warnings").is_none(),
        "a save without warnings has no `_warnings`: {record}"
    );

    assert_eq!(
        a.get(&path).expect(200, "read it back").json()["reason"],
        "family visit"
    );
    a.patch_if_match(&path, 1, &json!({"reason": "wedding"}))
        .expect(200, "PATCH with If-Match");
    let longer = a
        .patch(&path, &json!({"version": 2, "end_date": "2030-03-04"}))
        .expect(200, "PATCH with `version` in the body")
        .json();
    assert_eq!(longer["version"], 3);
    assert_eq!(longer["days"], "3.0", "computed fields follow the change");
    a.patch(&path, &json!({"version": 2, "reason": "stale"}))
        .problem(409, "a stale version");
    a.patch(&path, &json!({"reason": "blind"}))
        .problem(428, "no version");
    let state = a
        .patch(&path, &json!({"version": 3, "status": "approved"}))
        .problem(422, "setting the workflow state directly");
    assert_field_error(&state, "status", "read_only");

    let history = a
        .get(&format!("{path}/history"))
        .expect(200, "history")
        .json();
    let changes = history["data"].as_array().expect("a list of changes");
    assert_eq!(changes.len(), 3, "{history}");
    assert_eq!(changes[0]["operation"], "create");
    assert_eq!(changes[1]["operation"], "update");
    assert_eq!(
        changes[1]["changes"]["reason"],
        json!(["family visit", "wedding"])
    );
    assert_eq!(
        changes[2]["changes"]["end_date"],
        json!(["2030-03-03", "2030-03-04"])
    );
    assert_eq!(changes[2]["changes"]["days"], json!(["2.0", "3.0"]));

    // A rule of level `warning` that does not hold: the change is saved, and
    // the answer says what the rule says.
    let long = a
        .patch(&path, &json!({"version": 3, "end_date": "2030-03-15"}))
        .expect(200, "a long leave is saved with a warning")
        .json();
    assert_eq!(long["version"], 4);
    assert_eq!(long["days"], "14.0");
    assert_eq!(
        long["_warnings"],
        json!([{"field": "days", "code": "warning", "message": "More than ten days; please tell your team early"}]),
        "{long}"
    );
    assert!(
        a.get(&path)
            .expect(200, "read it back")
            .json()
            .get("_warnings")
            .is_none(),
        "warnings belong to the save's answer, not to the record"
    );

    a.delete(&path)
        .expect(204, "an employee deletes their own request");
    a.get(&path).problem(404, "the deleted request");
    p.admin
        .get(&path)
        .problem(404, "the deleted request, for the admin too");
}

fn validation(p: &People) {
    let problem = p
        .admin
        .post(
            "/api/v1/leave/leave_type",
            &json!({
                "code": "lower case",
                "name": "x".repeat(41),
                "annual_quota": 400,
                "colour": "blue",
            }),
        )
        .problem(422, "an invalid leave type");
    assert_field_errors(
        &problem,
        &[
            ("code", "pattern"),
            ("name", "max_length"),
            ("annual_quota", "max"),
            ("colour", "unknown_field"),
        ],
    );

    let problem =
        p.a.post(
            "/api/v1/leave/leave_request",
            &json!({
                "start_date": "next tuesday",
                "urgency": "whenever",
                "contact_phone": "call me",
            }),
        )
        .problem(422, "an invalid leave request");
    assert_field_errors(
        &problem,
        &[
            ("start_date", "type"),
            ("urgency", "option"),
            ("contact_phone", "pattern"),
            ("approver", "required"),
            ("leave_type", "required"),
            ("end_date", "required"),
        ],
    );

    let problem =
        p.a.post(
            "/api/v1/leave/leave_request",
            &json!({
                "approver": p.a.id,
                "leave_type": p.leave_type,
                "start_date": "2030-05-10",
                "end_date": "2030-05-01",
            }),
        )
        .problem(422, "a request breaking two rules");
    assert_field_errors(&problem, &[("end_date", "rule"), ("approver", "rule")]);

    let problem =
        p.a.post(
            "/api/v1/leave/leave_request",
            &json!({
                "approver": p.manager.id,
                "leave_type": 999_999,
                "start_date": "2030-05-10",
                "end_date": "2030-05-11",
            }),
        )
        .problem(422, "a link to no record");
    assert_field_errors(&problem, &[("leave_type", "link")]);

    let problem = p
        .admin
        .post(
            "/api/v1/leave/leave_type",
            &json!({"code": "ANNUAL", "name": "Again"}),
        )
        .problem(422, "a taken unique code");
    assert_field_errors(&problem, &[("code", "unique")]);
}

fn bad_requests(server: &Server, p: &People) {
    let a = &p.a;
    let list = "/api/v1/leave/leave_request";
    p.admin
        .post(list, &p.request_body(None, "2033-03-03", p.manager.id))
        .expect(201, "the admin asks for leave too");
    let mine = p
        .admin
        .get_with(list, &[("filter", r#"{"employee": "$user.id"}"#)])
        .expect(
            200,
            "`$user` in a filter of an unrestricted caller means them",
        )
        .json();
    let rows = mine["data"].as_array().expect("records");
    assert!(
        !rows.is_empty() && rows.iter().all(|r| r["employee"] == p.admin.id),
        "exactly the admin's own requests: {mine}"
    );
    let long = "x".repeat(10_000);
    server
        .token(&long, "whatever-password")
        .problem(401, "a sign-in with a username no account can have");
    let problem = p
        .admin
        .post(
            "/api/v1/admin/users",
            &json!({"username": long, "password": "password-1"}),
        )
        .problem(422, "an account with a 10,000-character username");
    assert_field_error(&problem, "username", "invalid");
    a.get_with(list, &[("filter", r#"{"no_such_field": 1}"#)])
        .problem(400, "a filter naming an unknown field");
    a.get_with(list, &[("filter", r#"{"status": "draft""#)])
        .problem(400, "a filter that is not JSON");
    a.get_with(list, &[("filter", "[1, 2]")])
        .problem(400, "a filter that is not an object");
    a.get_with(list, &[("filter", r#"{"status": {"near": "draft"}}"#)])
        .problem(400, "a filter with an unknown operator");
    a.get_with(list, &[("sort", "no_such_field")])
        .problem(400, "sorting by an unknown field");
    a.get_with(list, &[("limit", "ten")])
        .problem(400, "a limit that is not a number");
    a.get_with(&format!("{list}/aggregate"), &[("measure", "median:days")])
        .problem(400, "an unknown measure");
    a.get_with(&format!("{list}/aggregate"), &[("group_by", "nowhere")])
        .problem(400, "grouping by an unknown field");
    a.send("POST", list, &[], Some("{\"approver\": "), None)
        .problem(400, "a body that is not JSON");

    for (method, path) in [
        ("GET", format!("{list}/abc")),
        ("GET", format!("{list}/1.5")),
        ("DELETE", format!("{list}/abc")),
        ("GET", format!("{list}/abc/history")),
    ] {
        // As the admin, whom no permission stops before the id is read.
        p.admin.send(method, &path, &[], None, None).problem(
            404,
            &format!("{method} {path}: an id that is not an integer"),
        );
    }
    a.patch(&format!("{list}/abc"), &json!({"version": 1}))
        .problem(404, "PATCH of an id that is not an integer");
    a.get("/api/v1/leave/no_such_entity")
        .problem(404, "an unknown entity");
    a.get("/api/v1/nowhere/leave_request")
        .problem(404, "an unknown app");
    server
        .anonymous()
        .get("/api/v1/no/such/path/at/all")
        .problem(404, "an unknown path");
}

fn aggregate(p: &People) {
    let admin = &p.admin;
    for (code, paid, quota) in [("AGG_A", true, 10), ("AGG_B", true, 5), ("AGG_C", false, 3)] {
        admin
            .post(
                "/api/v1/leave/leave_type",
                &json!({"code": code, "name": code, "paid": paid, "annual_quota": quota}),
            )
            .expect(201, "a leave type to aggregate");
    }
    let groups = admin
        .get_with(
            "/api/v1/leave/leave_type/aggregate",
            &[
                ("group_by", "paid"),
                ("measure", "count,sum:annual_quota,max:annual_quota"),
                ("filter", r#"{"code": {"starts_with": "AGG_"}}"#),
            ],
        )
        .expect(200, "aggregate leave types")
        .json();
    let group = |paid: bool| {
        groups["data"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["key"]["paid"] == paid)
            .unwrap_or_else(|| panic!("a group for paid = {paid}: {groups}"))
            .clone()
    };
    assert_eq!(
        group(true)["values"],
        json!({"count": 2, "sum:annual_quota": "15.0", "max:annual_quota": "10.0"}),
        "{groups}"
    );
    assert_eq!(
        group(false)["values"],
        json!({"count": 1, "sum:annual_quota": "3.0", "max:annual_quota": "3.0"}),
        "{groups}"
    );
    assert_eq!(groups["data"].as_array().map(Vec::len), Some(2), "{groups}");
}

/// Every role × entity × operation does what `roles.yaml` declares: allowed →
/// 2xx, not allowed → 403.
fn permission_matrix(p: &People) {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/leave/roles.yaml"),
    )
    .expect("reads roles.yaml");
    let roles: Value = serde_saphyr::from_str(&text).expect("roles.yaml parses");
    let allowed = |role: &str, entity: &str, op: &str| -> bool {
        roles["roles"][role]["permissions"][entity]["allow"]
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o == op))
    };
    let sessions = [("employee", &p.a), ("manager", &p.manager), ("hr", &p.hr)];
    for (role, _) in sessions {
        assert!(
            roles["roles"][role]["permissions"].is_object(),
            "roles.yaml declares the role {role}"
        );
    }
    for (role, client) in sessions {
        for entity in ["leave_request", "leave_type", "leave_balance"] {
            let list = format!("/api/v1/leave/{entity}");
            let may = |op: &str| allowed(role, entity, op);
            let outcome = |reply: Reply, op: &str, success: u16| {
                let what = format!(
                    "{role} may{} {op} {entity}",
                    if may(op) { "" } else { " not" }
                );
                if may(op) {
                    reply.expect(success, &what);
                } else {
                    reply.problem(403, &what);
                }
            };

            let before = count(&p.admin, entity, &[]);
            outcome(client.post(&list, &p.new_record(entity)), "create", 201);
            let created = if may("create") { 1 } else { 0 };
            assert_eq!(
                count(&p.admin, entity, &[]),
                before + created,
                "{role}'s create of {entity} adds {created} record(s)"
            );

            // Every fixture is one the role's row filter lets it see, so a
            // refusal can only come from the operation itself.
            let target = p.fixture(entity);
            let path = format!("{list}/{target}");
            outcome(client.get(&path), "read", 200);
            outcome(client.get(&list), "read", 200);
            outcome(client.get(&format!("{path}/history")), "read", 200);
            // Aggregates are reads.
            outcome(
                client.get_with(&format!("{list}/aggregate"), &[("measure", "count")]),
                "read",
                200,
            );

            let version = p.version(&path);
            let change = p.change(entity);
            // A change to a field the role may only read is refused as such.
            let read_only = change.as_object().expect("a change").keys().any(|field| {
                roles["roles"][role]["permissions"][entity]["fields"][field] == "read_only"
            });
            let reply = client.patch_if_match(&path, version, &change);
            if may("update") && read_only {
                let problem = reply.problem(
                    422,
                    &format!("{role} changes a read-only field of {entity}"),
                );
                assert_field_error(
                    &problem,
                    change
                        .as_object()
                        .expect("a change")
                        .keys()
                        .next()
                        .expect("a field"),
                    "read_only",
                );
            } else {
                outcome(reply, "update", 200);
            }
            let changed = if may("update") && !read_only { 1 } else { 0 };
            assert_eq!(
                p.version(&path),
                version + changed,
                "{role}'s update of {entity} #{target} is {}",
                if changed == 1 {
                    "written"
                } else {
                    "not written"
                }
            );

            outcome(client.delete(&path), "delete", 204);
            let left = p.admin.get(&path);
            if may("delete") {
                left.problem(404, &format!("{role} deleted {entity} #{target}"));
            } else {
                left.expect(200, &format!("a refused delete by {role} leaves it"));
            }
        }
    }
}

/// Employees see their own requests only; managers those they approve or made.
fn row_filters(p: &People) {
    let (a, b) = (&p.a, &p.b);
    let list = "/api/v1/leave/leave_request";
    let own = a
        .post(list, &p.request_body(None, "2031-06-01", p.manager.id))
        .expect(201, "A's own request")
        .json();
    let theirs = b
        .post(list, &p.request_body(None, "2031-06-08", p.hr.id))
        .expect(201, "B's request, approved by HR")
        .json();
    assert_eq!(theirs["employee"], b.id, "B's request is B's by default");
    let b_id = theirs["id"].as_i64().expect("an id");
    let b_path = format!("{list}/{b_id}");
    let b_number = theirs["number"].as_str().expect("a number").to_owned();

    a.get(&b_path).problem(404, "A reads B's request");
    a.get(&format!("{b_path}/history"))
        .problem(404, "A reads the history of B's request");
    a.patch_if_match(&b_path, 1, &json!({"reason": "mine now"}))
        .problem(404, "A changes B's request");
    a.delete(&b_path).problem(404, "A deletes B's request");
    let unchanged = b.get(&b_path).expect(200, "B still has it").json();
    assert_eq!(unchanged["version"], 1, "B's request is untouched");

    // A link to a record outside A's rows is refused like a link to no record.
    let balance_of = |employee: i64| {
        let body = json!({
            "employee": employee,
            "leave_type": p.leave_type,
            "year": 2000 + p.next(),
            "quota": "10.0",
        });
        p.admin
            .post("/api/v1/leave/leave_balance", &body)
            .expect(201, "the admin creates a balance")
            .json()["id"]
            .as_i64()
            .expect("an id")
    };
    let (a_balance, b_balance) = (balance_of(a.id), balance_of(b.id));
    let with_balance = |balance: i64| {
        let mut body = p.request_body(None, &date(p.next()), p.manager.id);
        body["balance"] = json!(balance);
        a.post(list, &body)
    };
    let hidden = with_balance(b_balance).problem(422, "A links B's balance");
    let missing = with_balance(999_999).problem(422, "A links no balance");
    assert_field_errors(&hidden, &[("balance", "link")]);
    assert_eq!(
        hidden["errors"][0]["message"]
            .as_str()
            .map(|m| m.replace(&b_balance.to_string(), "N")),
        missing["errors"][0]["message"]
            .as_str()
            .map(|m| m.replace("999999", "N")),
        "B's balance is missing for A, not confirmed"
    );
    with_balance(a_balance).expect(201, "A links their own balance");

    let page = a
        .get_with(list, &[("limit", "500")])
        .expect(200, "A's list")
        .json();
    let rows = page["data"].as_array().expect("a list");
    assert!(!rows.is_empty(), "A sees their own requests");
    assert!(
        rows.iter().all(|r| r["employee"] == a.id),
        "A's list holds only A's requests: {page}"
    );
    assert!(rows.iter().any(|r| r["id"] == own["id"]));
    assert_eq!(page["total"], rows.len(), "the total counts A's rows only");
    let filtered = a
        .get_with(list, &[("filter", &format!(r#"{{"id": {b_id}}}"#))])
        .expect(200, "A filters for B's id")
        .json();
    assert_eq!(filtered["data"], json!([]), "{filtered}");
    assert_eq!(
        count(a, "leave_request", &[]),
        rows.len() as i64,
        "A's aggregate counts A's rows only"
    );
    assert_eq!(
        count(
            a,
            "leave_request",
            &[("filter", &format!(r#"{{"employee": {}}}"#, b.id))]
        ),
        0,
        "an aggregate over B's requests counts none for A"
    );
    let by_employee = a
        .get_with(
            &format!("{list}/aggregate"),
            &[("group_by", "employee"), ("measure", "count")],
        )
        .expect(200, "A groups by employee")
        .json();
    assert!(
        by_employee["data"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|g| g["key"]["employee"] == a.id),
        "A's groups hold only A: {by_employee}"
    );

    let b_count = || {
        count(
            &p.admin,
            "leave_request",
            &[("filter", &format!(r#"{{"employee": {}}}"#, b.id))],
        )
    };
    let before = b_count();
    a.post(
        list,
        &p.request_body(Some(b.id), "2031-06-15", p.manager.id),
    )
    .problem(403, "A files a request in B's name");
    assert_eq!(b_count(), before, "nothing was created in B's name");
    let own_path = format!("{list}/{}", own["id"]);
    a.patch_if_match(&own_path, 1, &json!({"employee": b.id}))
        .problem(403, "A hands their request to B");
    assert_eq!(
        a.get(&own_path).expect(200, "A's request").json()["employee"],
        a.id,
        "the refused change was rolled back"
    );
    // B's request holds the unique key (employee, start_date) that A now sends.
    // Today the clash is found before the row check (422); either way the
    // refusal must not name B's request.
    let clash = a.post(
        list,
        &p.request_body(Some(b.id), "2031-06-08", p.manager.id),
    );
    assert!(
        matches!(clash.status, 403 | 422),
        "A cannot file in B's name: {clash:?}"
    );
    assert!(
        !clash.body.contains(&b_number) && !clash.body.contains(&format!("#{b_id}")),
        "a refusal never names a record outside A's rows: {}",
        clash.body
    );

    // The manager sees requests they approve or made, and no others.
    let managers_own = p
        .admin
        .post(
            list,
            &p.request_body(Some(p.manager.id), "2031-06-01", p.hr.id),
        )
        .expect(201, "the manager's own request")
        .json();
    let page = p
        .manager
        .get_with(list, &[("limit", "500")])
        .expect(200, "the manager's list")
        .json();
    let rows = page["data"].as_array().expect("a list");
    let ids: Vec<&Value> = rows.iter().map(|r| &r["id"]).collect();
    assert!(
        rows.iter()
            .all(|r| r["approver"] == p.manager.id || r["employee"] == p.manager.id),
        "the manager's list holds only requests they approve or made: {page}"
    );
    assert!(ids.contains(&&own["id"]), "A's request names the manager");
    assert!(
        ids.contains(&&managers_own["id"]),
        "the manager's own request"
    );
    assert!(!ids.contains(&&json!(b_id)), "B's request goes to HR");
    p.manager
        .get(&b_path)
        .problem(404, "the manager reads a request they have no part in");
    assert_eq!(
        count(&p.manager, "leave_request", &[]),
        rows.len() as i64,
        "the manager's aggregate counts their rows only"
    );
    p.hr.get(&b_path).expect(200, "HR reads every request");
}

/// `hr_note` is hidden from employees: no response to them carries it, and a
/// request naming it is refused as naming an unknown field.
fn hidden_fields(p: &People) {
    const SECRET: &str = "confidential: under review";
    let list = "/api/v1/leave/leave_request";
    let a = &p.a;
    let created = a
        .post(list, &p.request_body(None, "2031-09-01", p.manager.id))
        .expect(201, "A's request");
    assert_hides_hr_note(&created, SECRET);
    let id = created.json()["id"].as_i64().expect("an id");
    let path = format!("{list}/{id}");

    let noted =
        p.hr.patch_if_match(&path, 1, &json!({"hr_note": SECRET}))
            .expect(200, "HR writes a note")
            .json();
    assert_eq!(noted["hr_note"], SECRET, "HR sees the note");
    let hr_history =
        p.hr.get(&format!("{path}/history"))
            .expect(200, "HR reads the history")
            .json();
    assert_eq!(
        hr_history["data"][1]["changes"]["hr_note"],
        json!([null, SECRET]),
        "HR's history shows the note: {hr_history}"
    );

    assert_hides_hr_note(&a.get(&path).expect(200, "A reads it"), SECRET);
    assert_hides_hr_note(
        &a.get_with(list, &[("limit", "500")]).expect(200, "A lists"),
        SECRET,
    );
    assert_hides_hr_note(
        &a.get_with(list, &[("q", "confidential")])
            .expect(200, "A searches"),
        SECRET,
    );
    let a_history = a
        .get(&format!("{path}/history"))
        .expect(200, "A reads the history");
    assert_hides_hr_note(&a_history, SECRET);
    assert_eq!(
        a_history.json()["data"].as_array().map(Vec::len),
        Some(1),
        "HR's change to the hidden note is not even listed for A: {a_history:?}"
    );
    let changed = a
        .patch_if_match(&path, 2, &json!({"reason": "sunshine"}))
        .expect(200, "A changes the reason");
    assert_hides_hr_note(&changed, SECRET);
    assert_hides_hr_note(
        &a.get_with(
            &format!("{list}/aggregate"),
            &[("group_by", "status"), ("measure", "count,max:days")],
        )
        .expect(200, "A aggregates"),
        SECRET,
    );

    for (what, query) in [
        ("group by hr_note", vec![("group_by", "hr_note")]),
        ("measure hr_note", vec![("measure", "max:hr_note")]),
        (
            "filter on hr_note",
            vec![("filter", r#"{"hr_note": {"is_null": false}}"#)],
        ),
        (
            "filter on hr_note inside or",
            vec![(
                "filter",
                r#"{"or": [{"status": "draft"}, {"hr_note": {"contains": "review"}}]}"#,
            )],
        ),
    ] {
        let reply = a.get_with(&format!("{list}/aggregate"), &query);
        reply.problem(400, &format!("A's aggregate: {what}"));
    }
    for (what, query) in [
        (
            "filter on hr_note",
            ("filter", r#"{"hr_note": {"contains": "review"}}"#),
        ),
        ("sort by hr_note", ("sort", "hr_note")),
        ("sort by -hr_note", ("sort", "-hr_note")),
    ] {
        a.get_with(list, &[query])
            .problem(400, &format!("A's list: {what}"));
    }
    let refused = a
        .patch_if_match(&path, 3, &json!({"hr_note": "let me see"}))
        .problem(422, "A writes hr_note");
    assert_field_error(&refused, "hr_note", "unknown_field");
    let refused = a
        .post(list, &{
            let mut body = p.request_body(None, "2031-09-15", p.manager.id);
            body["hr_note"] = json!("let me see");
            body
        })
        .problem(422, "A creates with hr_note");
    assert_field_error(&refused, "hr_note", "unknown_field");
    assert_eq!(
        p.hr.get(&path).expect(200, "HR reads it").json()["hr_note"],
        SECRET,
        "the refused writes left the note alone"
    );

    // The manager may read the note (read_only), but roles.yaml gives managers
    // no update at all, so a PATCH is refused before any field is looked at.
    let seen = p
        .manager
        .get(&path)
        .expect(200, "the approver reads it")
        .json();
    assert_eq!(seen["hr_note"], SECRET, "read_only fields are readable");
    p.manager
        .patch_if_match(&path, 3, &json!({"hr_note": "overruled"}))
        .problem(403, "the manager writes hr_note");
}

/// A field a role may read but not write: the leave app has none that a role
/// may also update, so the probe app served beside it declares one.
fn read_only_fields(server: &Server, p: &People) {
    let editor = server.new_user(&p.admin, "editor", &["probe_editor"], json!({}));
    let list = "/api/v1/probe/memo";
    let refused = editor
        .post(list, &json!({"title": "first", "verdict": "mine"}))
        .problem(422, "the editor creates with a read-only field");
    assert_field_error(&refused, "verdict", "read_only");
    let memo = p
        .admin
        .post(list, &json!({"title": "first", "verdict": "pending"}))
        .expect(201, "the admin writes a verdict")
        .json();
    let path = format!("{list}/{}", memo["id"]);
    assert_eq!(
        editor.get(&path).expect(200, "the editor reads it").json()["verdict"],
        "pending",
        "a read-only field is readable"
    );
    let refused = editor
        .patch_if_match(
            &path,
            1,
            &json!({"title": "renamed", "verdict": "approved"}),
        )
        .problem(422, "the editor changes a read-only field");
    assert_field_error(&refused, "verdict", "read_only");
    let renamed = editor
        .patch_if_match(&path, 1, &json!({"title": "renamed"}))
        .expect(200, "the editor changes the other fields")
        .json();
    assert_eq!(renamed["verdict"], "pending");
    assert_eq!(renamed["version"], 2, "the refused PATCH wrote nothing");
}

const ADMIN_READS: [&str; 4] = [
    "/api/v1/admin/users",
    "/api/v1/admin/roles",
    "/api/v1/admin/logs/logins",
    "/api/v1/admin/logs/operations",
];

fn admin_only(p: &People) {
    for (who, client) in [("employee", &p.a), ("manager", &p.manager), ("hr", &p.hr)] {
        for path in ADMIN_READS {
            client
                .get(path)
                .problem(403, &format!("{who} reads {path}"));
        }
        client
            .post(
                "/api/v1/admin/users",
                &json!({"username": format!("made-by-{who}"), "password": "password-1", "roles": ["hr"]}),
            )
            .problem(403, &format!("{who} creates an account"));
        client
            .patch(
                &format!("/api/v1/admin/users/{}", client.id),
                &json!({"roles": ["hr"]}),
            )
            .problem(403, &format!("{who} gives themselves a role"));
    }
    let me = p.a.get("/api/v1/me").expect(200, "A's /me").json();
    assert_eq!(me["roles"], json!(["employee"]), "A's roles are unchanged");
    for path in ADMIN_READS {
        p.admin
            .get(path)
            .expect(200, &format!("the admin reads {path}"));
    }

    let users = p
        .admin
        .get("/api/v1/admin/users")
        .expect(200, "the admin lists accounts")
        .json();
    let names: Vec<&str> = users["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["username"].as_str())
        .collect();
    for name in ["admin", "employee-a", "employee-b", "manager", "hr"] {
        assert!(names.contains(&name), "{name} is listed: {names:?}");
    }
    assert!(
        !users.to_string().contains("argon2"),
        "no password hash is ever returned"
    );
    let roles = p
        .admin
        .get("/api/v1/admin/roles")
        .expect(200, "the admin lists roles")
        .json();
    for role in ["employee", "manager", "hr"] {
        assert!(
            roles["data"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["name"] == role),
            "{role} is listed: {roles}"
        );
    }
    let problem = p
        .admin
        .post(
            "/api/v1/admin/users",
            &json!({"username": "nobody", "password": "password-1", "roles": ["wizard"]}),
        )
        .problem(422, "a role no app declares");
    assert_field_error(&problem, "roles", "invalid");
}

fn logout(server: &Server, p: &People) {
    let first = server.sign_in("employee-a", &password_of("employee-a"));
    let second = server.sign_in("employee-a", &password_of("employee-a"));
    first
        .post("/api/v1/auth/logout", &json!({}))
        .expect(204, "logout");
    first
        .get("/api/v1/me")
        .problem(401, "the token after logout");
    first
        .get("/api/v1/leave/leave_request")
        .problem(401, "a list with the token after logout");
    first
        .post("/api/v1/auth/logout", &json!({}))
        .problem(401, "logging out twice");
    second
        .get("/api/v1/me")
        .expect(200, "another session of the same user lives on");
    p.a.get("/api/v1/me")
        .expect(200, "and so does the suite's own session");
}

fn export(p: &People) {
    let path = "/api/v1/leave/leave_request/export";
    p.a.get(path)
        .problem(403, "employees have no export permission");
    let csv = p.manager.get(path).expect(200, "managers export");
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let text = csv
        .body
        .strip_prefix('\u{feff}')
        .expect("a byte-order mark for spreadsheets");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    assert_eq!(header[0], "id");
    assert!(header.contains(&"leave_type.title"), "{header:?}");
    assert!(
        header.contains(&"hr_note"),
        "read-only for managers, not hidden: {header:?}"
    );
    let listed = p
        .manager
        .get_with("/api/v1/leave/leave_request", &[("total", "exact")])
        .expect(200, "the manager's list")
        .json();
    assert_eq!(
        lines.count() as i64,
        listed["total"].as_i64().expect("a total"),
        "the export holds exactly the manager's rows"
    );
    let filtered = p
        .manager
        .get_with(path, &[("filter", r#"{"status": "no_such_state"}"#)])
        .problem(400, "an export filter is checked like a list's");
    assert!(
        filtered["detail"]
            .as_str()
            .is_some_and(|d| d.contains("no_such_state")),
        "{filtered}"
    );
    p.manager
        .get_with(path, &[("sort", "hr_note")])
        .expect(200, "the manager may sort by a read-only field");
    let hr = p.hr.get(path).expect(200, "HR exports");
    assert!(
        hr.body
            .lines()
            .next()
            .is_some_and(|h| h.contains("hr_note"))
    );
}

fn api_tokens(server: &Server, p: &People) {
    let issued =
        p.a.post(
            "/api/v1/me/tokens",
            &json!({"name": "payroll sync", "days": 30}),
        )
        .expect(201, "a named API token")
        .json();
    let integration = server.client(
        "payroll sync",
        &json!({"token": issued["token"], "user": {"id": p.a.id}}),
    );
    integration
        .get("/api/v1/me")
        .expect(200, "the API token signs requests in");
    let listed =
        p.a.get("/api/v1/me/tokens")
            .expect(200, "lists tokens")
            .json();
    let entry = listed["data"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "payroll sync"))
        .unwrap_or_else(|| panic!("the token is listed: {listed}"))
        .clone();
    assert!(
        entry.get("token").is_none()
            && !listed
                .to_string()
                .contains(issued["token"].as_str().unwrap_or("?")),
        "a listed token never shows its secret: {listed}"
    );
    p.b.delete(&format!("/api/v1/me/tokens/{}", entry["id"]))
        .problem(404, "another user's token");
    p.a.delete(&format!("/api/v1/me/tokens/{}", entry["id"]))
        .expect(204, "revokes the token");
    integration
        .get("/api/v1/me")
        .problem(401, "a revoked token");
}

fn cookie_sessions(server: &Server) {
    let body = json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string();
    let mut login = server
        .agent
        .post(format!("{}/api/v1/auth/login", server.base))
        .header("Content-Type", "application/json")
        .send(&body)
        .expect("signs in");
    assert_eq!(login.status(), 200);
    let set_cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_owned();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().expect("name=value").to_owned();
    let answer: Value =
        serde_json::from_str(&login.body_mut().read_to_string().expect("a body")).expect("JSON");
    let csrf = answer["csrf_token"]
        .as_str()
        .expect("a CSRF token")
        .to_owned();
    let send = |method: &str, csrf: Option<&str>| {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}/api/v1/leave/leave_type", server.base))
            .header("Cookie", &cookie)
            .header("Content-Type", "application/json");
        if let Some(token) = csrf {
            request = request.header("X-CSRF-Token", token);
        }
        let body =
            json!({"code": format!("COOKIE_{}", csrf.map_or(0, str::len)), "name": "Cookie"});
        server
            .agent
            .run(request.body(body.to_string()).expect("a request"))
            .expect("a response")
            .status()
            .as_u16()
    };
    assert_eq!(send("GET", None), 200, "reads need no CSRF token");
    assert_eq!(
        send("POST", None),
        403,
        "a cookie write without the CSRF token"
    );
    assert_eq!(
        send("POST", Some("forged")),
        403,
        "a cookie write with a wrong token"
    );
    assert_eq!(
        send("POST", Some(&csrf)),
        201,
        "a cookie write with the token"
    );
}

fn logs(p: &People) {
    // The operation log is written in the background: poll briefly.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let operations = loop {
        let reply = p
            .admin
            .get_with(
                "/api/v1/admin/logs/operations",
                &[("user_id", &p.a.id.to_string()), ("limit", "500")],
            )
            .expect(200, "the operation log")
            .json();
        let rows = reply["data"].as_array().cloned().unwrap_or_default();
        if rows.iter().any(|r| r["path"] == "/api/v1/me/tokens")
            || std::time::Instant::now() > deadline
        {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        operations.iter().all(|r| r["user_id"] == p.a.id),
        "filtered by user"
    );
    let entry = operations
        .iter()
        .find(|r| r["method"] == "POST" && r["path"] == "/api/v1/me/tokens")
        .unwrap_or_else(|| panic!("employee A's token request is logged: {operations:?}"));
    assert_eq!(entry["status"], 201);
    assert!(entry["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
    let failures = p
        .admin
        .get_with("/api/v1/admin/logs/logins", &[("success", "false")])
        .expect(200, "the login log")
        .json();
    let rows = failures["data"].as_array().cloned().unwrap_or_default();
    assert!(!rows.is_empty(), "failed sign-ins are logged");
    assert!(
        rows.iter()
            .all(|r| r["success"] == false && r["ip"] == "127.0.0.1")
    );
    p.a.get("/api/v1/admin/logs/logins")
        .problem(403, "logs are for administrators");
    p.admin
        .get_with("/api/v1/admin/logs/operations", &[("colour", "red")])
        .problem(400, "an unknown log filter");
}

// ---------------------------------------------------------------------------
// Fixtures: the accounts, and records the permission checks act on

fn password_of(username: &str) -> String {
    format!("{username}-password")
}

struct People<'s> {
    admin: Client<'s>,
    a: Client<'s>,
    b: Client<'s>,
    manager: Client<'s>,
    hr: Client<'s>,
    /// A leave type every request uses.
    leave_type: i64,
    /// Makes codes, years and dates unique.
    counter: Cell<u32>,
}

impl<'s> People<'s> {
    fn create(server: &'s Server, admin: Client<'s>) -> People<'s> {
        let attributes = |no: &str| json!({"employee_no": no});
        let a = server.new_user(&admin, "employee-a", &["employee"], attributes("E-001"));
        let b = server.new_user(&admin, "employee-b", &["employee"], attributes("E-002"));
        let manager = server.new_user(&admin, "manager", &["manager"], attributes("M-001"));
        let hr = server.new_user(&admin, "hr", &["hr"], attributes("H-001"));
        let me = a.get("/api/v1/me").expect(200, "A's /me").json();
        assert_eq!(me["attributes"]["employee_no"], "E-001", "{me}");
        let leave_type = admin
            .post(
                "/api/v1/leave/leave_type",
                &json!({"code": "ANNUAL", "name": "Annual leave", "annual_quota": 10}),
            )
            .expect(201, "the admin creates the leave type requests use")
            .json()["id"]
            .as_i64()
            .expect("an id");
        People {
            admin,
            a,
            b,
            manager,
            hr,
            leave_type,
            counter: Cell::new(0),
        }
    }

    fn next(&self) -> u32 {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        assert!(n < 100, "the fixtures' years stay within 2000..2100");
        n
    }

    /// A leave request for `employee` (default: the caller) starting and ending on `date`.
    fn request_body(&self, employee: Option<i64>, date: &str, approver: i64) -> Value {
        let mut body = json!({
            "approver": approver,
            "leave_type": self.leave_type,
            "start_date": date,
            "end_date": date,
        });
        if let Some(employee) = employee {
            body["employee"] = json!(employee);
        }
        body
    }

    /// A valid new record of `entity` (a request in the caller's own name).
    fn new_record(&self, entity: &str) -> Value {
        let n = self.next();
        match entity {
            "leave_request" => self.request_body(None, &date(n), self.manager.id),
            "leave_type" => json!({"code": format!("NEW{n}"), "name": format!("New {n}")}),
            "leave_balance" => json!({
                "employee": self.a.id,
                "leave_type": self.leave_type,
                "year": 2000 + n,
                "quota": "10.0",
            }),
            other => panic!("no fixture for {other}"),
        }
    }

    /// A record of `entity` made by the admin that every role's row filter
    /// lets it see: requests are A's and name the manager as approver, balances are A's.
    fn fixture(&self, entity: &str) -> i64 {
        let n = self.next();
        let body = match entity {
            "leave_request" => self.request_body(Some(self.a.id), &date(n), self.manager.id),
            "leave_type" => json!({"code": format!("FIX{n}"), "name": format!("Fixture {n}")}),
            "leave_balance" => json!({
                "employee": self.a.id,
                "leave_type": self.leave_type,
                "year": 2000 + n,
                "quota": "10.0",
            }),
            other => panic!("no fixture for {other}"),
        };
        self.admin
            .post(&format!("/api/v1/leave/{entity}"), &body)
            .expect(201, &format!("the admin creates a {entity} fixture"))
            .json()["id"]
            .as_i64()
            .expect("an id")
    }

    /// A valid change to a record of `entity`.
    fn change(&self, entity: &str) -> Value {
        match entity {
            "leave_request" => json!({"reason": "changed"}),
            "leave_type" => json!({"name": "Changed"}),
            "leave_balance" => json!({"quota": "12.5"}),
            other => panic!("no change for {other}"),
        }
    }

    /// The current version of a record, as the admin reads it.
    fn version(&self, path: &str) -> i64 {
        self.admin
            .get(path)
            .expect(200, "the admin reads the version")
            .json()["version"]
            .as_i64()
            .expect("a version")
    }
}

/// A distinct date per fixture.
fn date(n: u32) -> String {
    let day = chrono::NaiveDate::from_ymd_opt(2032, 1, 1).expect("a date")
        + chrono::Duration::days(i64::from(n));
    day.to_string()
}

/// How many records of `entity` `client`'s aggregate counts.
fn count(client: &Client, entity: &str, query: &[(&str, &str)]) -> i64 {
    let mut query = query.to_vec();
    query.push(("measure", "count"));
    let body = client
        .get_with(&format!("/api/v1/leave/{entity}/aggregate"), &query)
        .expect(200, &format!("count {entity}"))
        .json();
    match body["data"].as_array().map(Vec::as_slice) {
        Some([]) => 0,
        Some([one]) => one["values"]["count"].as_i64().expect("a count"),
        _ => panic!("one group without group_by: {body}"),
    }
}

fn assert_hides_hr_note(reply: &Reply, secret: &str) {
    assert!(
        !reply.body.contains("hr_note") && !reply.body.contains(secret),
        "{}: an employee's response carries the hidden hr_note: {}",
        reply.what,
        reply.body
    );
}

#[track_caller]
fn assert_field_error(problem: &Value, field: &str, code: &str) {
    let errors = problem["errors"].as_array().cloned().unwrap_or_default();
    assert!(
        errors
            .iter()
            .any(|e| e["field"] == field && e["code"] == code && e["message"].is_string()),
        "expected a `{code}` error on `{field}`: {problem}"
    );
}

/// The problem lists exactly these (field, code) errors, each with a message.
#[track_caller]
fn assert_field_errors(problem: &Value, expected: &[(&str, &str)]) {
    let errors = problem["errors"].as_array().cloned().unwrap_or_default();
    let mut got: Vec<(String, String)> = errors
        .iter()
        .map(|e| {
            assert!(
                e["message"].as_str().is_some_and(|m| !m.is_empty()),
                "every error has a message: {e}"
            );
            (
                e["field"].as_str().unwrap_or_default().to_owned(),
                e["code"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let mut want: Vec<(String, String)> = expected
        .iter()
        .map(|(f, c)| ((*f).to_owned(), (*c).to_owned()))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "every bad field at once: {problem}");
}

/// Submit and approve over HTTP: the allowed actions follow the state and
/// the person, the approval counts the days into the employee's balance (a
/// transition rule with the record API, as the approver), and the decisions
/// are the workflow history.
fn leave_workflow(p: &People) {
    let year = 2040 + i64::from(p.next());
    let balance =
        p.hr.post(
            "/api/v1/leave/leave_balance",
            &json!({"employee": p.a.id, "leave_type": p.leave_type, "year": year, "quota": "10"}),
        )
        .expect(201, "HR opens A's balance")
        .json();
    let request =
        p.a.post(
            "/api/v1/leave/leave_request",
            &json!({
                "approver": p.manager.id,
                "leave_type": p.leave_type,
                "start_date": format!("{year}-05-04"),
                "end_date": format!("{year}-05-05"),
            }),
        )
        .expect(201, "A asks for two days")
        .json();
    let path = format!("/api/v1/leave/leave_request/{}", request["id"]);
    let actions = |who: &Client| -> Vec<String> {
        let record = who.get(&path).expect(200, "the request").json();
        record["_actions"]
            .as_array()
            .expect("actions")
            .iter()
            .map(|a| a["action"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(actions(&p.a), vec!["submit"]);
    p.manager
        .post(&format!("{path}/actions/submit"), &json!({}))
        .problem(403, "only the employee submits");
    p.b.post(&format!("{path}/actions/submit"), &json!({}))
        .problem(404, "B cannot see A's request");
    p.a.post(&format!("{path}/actions/approve"), &json!({}))
        .problem(409, "approving a draft");
    let submitted =
        p.a.post(&format!("{path}/actions/submit"), &json!({}))
            .expect(200, "A submits")
            .json();
    assert_eq!(submitted["record"]["status"], "submitted");
    assert_eq!(actions(&p.manager), vec!["approve", "send_to_hr", "reject"]);
    p.a.post(&format!("{path}/actions/approve"), &json!({}))
        .problem(403, "A approves their own request");
    let approved = p
        .manager
        .post(
            &format!("{path}/actions/approve"),
            &json!({"comment": "enjoy"}),
        )
        .expect(200, "the manager approves")
        .json();
    assert_eq!(approved["record"]["status"], "approved");
    assert_eq!(
        approved["record"]["balance"], balance["id"],
        "the rule links the balance"
    );
    let counted =
        p.a.get(&format!("/api/v1/leave/leave_balance/{}", balance["id"]))
            .expect(200, "A's balance")
            .json();
    assert_eq!(counted["used"], "2.0", "the approved days are counted");
    let decisions =
        p.a.get(&format!("{path}/workflow"))
            .expect(200, "the workflow history")
            .json();
    let steps: Vec<(&str, &str)> = decisions["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|d| {
            (
                d["action"].as_str().unwrap_or_default(),
                d["comment"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(steps, vec![("submit", ""), ("approve", "enjoy")]);
    p.manager
        .patch(
            &format!("/api/v1/leave/leave_balance/{}", balance["id"]),
            &json!({"version": counted["version"], "used": "0"}),
        )
        .problem(422, "by hand, the manager changes no balance");
}

/// The probe app's `runaway` rule loops, recurses or grows a string for
/// some titles: each such create fails at once with an error that names the
/// rule, its file and line, and the server goes on serving.
fn runaway_rules(server: &Server, people: &People) {
    let admin = &people.admin;
    for (title, line, says) in [
        ("loop", 12, "operations"),
        ("deep", 13, "nested deeper"),
        ("huge", 14, "string grew past"),
    ] {
        let started = std::time::Instant::now();
        let problem = admin
            .post("/api/v1/probe/memo", &json!({"title": title}))
            .expect(422, "a runaway rule refuses the record")
            .json();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{title} took {:?}",
            started.elapsed()
        );
        let error = &problem["errors"][0];
        assert_eq!(error["code"], "script_limit", "{problem}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("rule `runaway` (entities/memo.yaml:{line})"))
                && message.contains(says),
            "{title}: {problem}"
        );
        server
            .anonymous()
            .get("/healthz")
            .expect(200, "the server still answers");
        admin
            .post("/api/v1/probe/memo", &json!({"title": "fine"}))
            .expect(201, "the next request is served normally");
    }
}

/// The admin's notifications whose English text mentions `title`.
fn told_about(admin: &Client, title: &str) -> usize {
    let inbox = admin
        .get_with("/api/v1/me/notifications", &[("limit", "200")])
        .expect(200, "the admin's notifications")
        .json();
    inbox["data"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|n| n["message"].to_string().contains(title))
        .count()
}

/// Waits up to `seconds` for the admin to be told about `title`.
fn wait_until_told(admin: &Client, title: &str, seconds: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    while told_about(admin, title) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no alert about {title} within {seconds} s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

const OPEN_MEMO: &str = "/api/v1/admin/schedules/probe.open_memo";

fn alerts(people: &People) {
    let admin = &people.admin;
    let title = format!("Alert probe {}", people.next());
    admin
        .post("/api/v1/probe/memo", &json!({"title": title}))
        .expect(201, "a memo without verdict");
    wait_until_told(admin, &title, 10);
    // Run now: the memo still matches, but its occurrence was told already.
    let report = admin
        .post(&format!("{OPEN_MEMO}/run"), &json!({}))
        .expect(200, "run now")
        .json();
    assert!(report["matched"].as_i64() >= Some(1), "{report}");
    assert_eq!(report["notified"], 0, "{report}");
    assert_eq!(told_about(admin, &title), 1, "told once per occurrence");
    let runs = admin
        .get(&format!("{OPEN_MEMO}/runs"))
        .expect(200, "the runs")
        .json();
    let runs = runs["data"].as_array().expect("a list");
    let me = admin.get("/api/v1/me").expect(200, "/me").json();
    assert_eq!(runs[0]["manual_by"], me["id"], "{runs:?}");
    assert!(
        runs.iter()
            .any(|r| r["manual_by"].is_null() && r["result"] == "ok"),
        "scheduled runs are recorded too: {runs:?}"
    );
    let items = admin
        .get("/api/v1/admin/schedules")
        .expect(200, "the scheduled items")
        .json();
    assert!(
        items["data"]
            .as_array()
            .expect("a list")
            .iter()
            .any(|i| i["name"] == "probe.open_memo" && i["schedule"] == "every 2s"),
        "{items}"
    );
    people
        .a
        .get("/api/v1/admin/schedules")
        .expect(403, "schedules are for administrators");
    admin
        .post("/api/v1/admin/schedules/probe.nothing/run", &json!({}))
        .expect(404, "an unknown item");
}

/// Two nodes on one database, an alert due every two seconds, for a minute:
/// every due time runs once, and a new memo is told about once.
fn two_nodes_share_the_schedule(server: &Server) {
    let token = server
        .token("admin", ADMIN_PASSWORD)
        .expect(200, "signs in")
        .json();
    let admin = server.client("admin", &token);
    let title = "Two-node alert probe";
    admin
        .post("/api/v1/probe/memo", &json!({"title": title}))
        .expect(201, "a memo without verdict");
    std::thread::sleep(Duration::from_secs(62));
    let runs = admin
        .get_with(&format!("{OPEN_MEMO}/runs"), &[("limit", "500")])
        .expect(200, "the runs")
        .json();
    let scheduled: Vec<&Value> = runs["data"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|r| r["manual_by"].is_null())
        .collect();
    let mut due: Vec<String> = scheduled.iter().map(|r| r["due_at"].to_string()).collect();
    due.sort();
    due.dedup();
    assert_eq!(due.len(), scheduled.len(), "a due time ran twice: {runs}");
    assert!(scheduled.len() >= 28, "a due time was missed: {runs}");
    assert!(
        scheduled.iter().all(|r| r["result"] == "ok"),
        "every run succeeded: {runs}"
    );
    assert_eq!(told_about(&admin, title), 1, "no duplicate notification");
}

// ---------------------------------------------------------------------------
// The server and an HTTP client

/// `trellis serve` running on a free port; killed if a test fails before `stop`.
struct Server {
    child: Child,
    base: String,
    /// What it printed up to `listening on …`.
    printed: Vec<String>,
    /// The rest of its standard output, read on a thread so it never blocks.
    rest: Option<JoinHandle<String>>,
    /// Its standard error (the logs), shown when a test fails.
    log: PathBuf,
    agent: ureq::Agent,
}

impl Server {
    /// Starts the server on the examples and the probe app, with SQLite under
    /// `dir` or the PostgreSQL database at `database_url`.
    fn start(dir: &Path, database_url: Option<&str>) -> Server {
        let probe = write_probe_app(dir);
        let log = dir.join("server.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_trellis"));
        cmd.arg("serve")
            .arg(&probe)
            .args(["--examples", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("TRELLIS_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).expect("a log file"));
        if let Some(url) = database_url {
            cmd.env("DATABASE_URL", url);
        }
        let mut child = cmd.spawn().expect("trellis serve starts");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut printed = Vec::new();
        let base = loop {
            let mut line = String::new();
            if lines.read_line(&mut line).expect("reads stdout") == 0 {
                let _ = child.wait();
                panic!(
                    "the server exited before listening: {printed:?}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let line = line.trim_end().to_owned();
            if let Some(addr) = line.strip_prefix("listening on ") {
                break addr.to_owned();
            }
            printed.push(line);
        };
        let rest = std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = lines.read_to_string(&mut rest);
            rest
        });
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Server {
            child,
            base,
            printed,
            rest: Some(rest),
            log,
            agent,
        }
    }

    /// Sends SIGTERM and checks that the server stops cleanly.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGTERM is delivered");
        let exit = self.child.wait().expect("the server exits");
        let rest = self
            .rest
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        assert!(exit.success(), "the server stops cleanly: {exit}");
        assert!(rest.contains("stopped"), "it says it stopped: {rest}");
    }

    fn anonymous(&self) -> Client<'_> {
        Client {
            server: self,
            who: "anonymous".into(),
            token: None,
            id: 0,
        }
    }

    /// `POST /api/v1/auth/token`.
    fn token(&self, username: &str, password: &str) -> Reply {
        self.anonymous().post(
            "/api/v1/auth/token",
            &json!({"username": username, "password": password}),
        )
    }

    /// A client signed in from a token response.
    fn client(&self, who: &str, token_response: &Value) -> Client<'_> {
        Client {
            server: self,
            who: who.to_owned(),
            token: Some(
                token_response["token"]
                    .as_str()
                    .expect("a token")
                    .to_owned(),
            ),
            id: token_response["user"]["id"].as_i64().expect("a user id"),
        }
    }

    fn sign_in(&self, username: &str, password: &str) -> Client<'_> {
        let reply = self
            .token(username, password)
            .expect(200, &format!("{username} signs in"));
        self.client(username, &reply.json())
    }

    /// Creates an account through the admin API (password: [`password_of`]) and signs in.
    fn new_user(
        &self,
        admin: &Client,
        username: &str,
        roles: &[&str],
        attributes: Value,
    ) -> Client<'_> {
        let password = password_of(username);
        let created = admin
            .post(
                "/api/v1/admin/users",
                &json!({
                    "username": username,
                    "password": password,
                    "roles": roles,
                    "attributes": attributes,
                }),
            )
            .expect(201, &format!("the admin creates {username}"));
        let client = self.sign_in(username, &password);
        assert_eq!(created.json()["id"], client.id, "{username}'s id");
        client
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        if std::thread::panicking() && !log.trim().is_empty() {
            eprintln!("--- the server's log:\n{log}");
        }
    }
}

/// A second app served beside the examples, with a role that may update its
/// entity but not one of its fields.
fn write_probe_app(dir: &Path) -> PathBuf {
    let app = dir.join("probe");
    let files = [
        (
            "app.yaml",
            "name: probe\nlabel: {en: Probe, zh: 探针}\nversion: 0.1.0\nmenu:\n  - entity: memo\n",
        ),
        (
            "entities/memo.yaml",
            "label: {en: Memo, zh: 备忘}\ntitle: title\nfields:\n  \
             title: {type: text, label: {en: Title, zh: 标题}, required: true}\n  \
             verdict: {type: text, label: {en: Verdict, zh: 结论}}\n\
             rules:\n  \
             - name: runaway\n    \
               on: validate\n    \
               message: {en: Never refused, zh: 不会拒绝}\n    \
               script: |\n      \
                 fn deeper(n) { deeper(n + 1) }\n      \
                 if title == \"loop\" { loop {} }\n      \
                 if title == \"deep\" { deeper(0); }\n      \
                 if title == \"huge\" { let s = \"x\"; loop { s += s; } }\n      \
                 true\n",
        ),
        (
            "alerts/open_memo.yaml",
            "label: {en: Memo without verdict, zh: 未下结论的备忘}\nentity: memo\n\
             schedule: every 2s\nfilter: {verdict: {is_null: true}}\n\
             recipients: [{user: admin}]\n\
             message: {en: \"{{ record.title }} waits for a verdict\", zh: \"{{ record.title }} 待下结论\"}\n",
        ),
        (
            "roles.yaml",
            "roles:\n  probe_editor:\n    label: {en: Editor, zh: 编辑}\n    permissions:\n      \
             memo:\n        allow: [create, read, update]\n        fields:\n          \
             verdict: read_only\n",
        ),
    ];
    for (path, text) in files {
        let path = app.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("writes the probe app");
    }
    app
}

/// A user of the API: a bearer token (or none) and a name for messages.
struct Client<'s> {
    server: &'s Server,
    who: String,
    token: Option<String>,
    /// The account's id (0 when anonymous).
    id: i64,
}

impl Client<'_> {
    fn get(&self, path: &str) -> Reply {
        self.send("GET", path, &[], None, None)
    }

    fn get_with(&self, path: &str, query: &[(&str, &str)]) -> Reply {
        self.send("GET", path, query, None, None)
    }

    fn post(&self, path: &str, body: &Value) -> Reply {
        self.send("POST", path, &[], Some(&body.to_string()), None)
    }

    fn patch(&self, path: &str, body: &Value) -> Reply {
        self.send("PATCH", path, &[], Some(&body.to_string()), None)
    }

    fn patch_if_match(&self, path: &str, version: i64, body: &Value) -> Reply {
        self.send("PATCH", path, &[], Some(&body.to_string()), Some(version))
    }

    fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, &[], None, None)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&str>,
        if_match: Option<i64>,
    ) -> Reply {
        let mut url = format!("{}{path}", self.server.base);
        for (i, (key, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&format!("{}={}", encode(key), encode(value)));
        }
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        if let Some(version) = if_match {
            request = request.header("If-Match", format!("\"{version}\""));
        }
        let what = format!("{}: {method} {path}", self.who);
        let sent = match body {
            Some(body) => self.server.agent.run(
                request
                    .header("Content-Type", "application/json")
                    .body(body.to_owned())
                    .expect("a request"),
            ),
            None => self.server.agent.run(request.body(()).expect("a request")),
        };
        let mut response = sent.unwrap_or_else(|e| panic!("{what}: no response: {e}"));
        let body = response
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("{what}: unreadable body: {e}"));
        Reply {
            what,
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body,
        }
    }
}

/// Percent-encodes a query component.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A response, read whole.
struct Reply {
    what: String,
    status: u16,
    headers: ureq::http::HeaderMap,
    body: String,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} → {} {}", self.what, self.status, self.body)
    }
}

impl Reply {
    /// Checks the status; `why` says what was being tried.
    #[track_caller]
    fn expect(self, status: u16, why: &str) -> Reply {
        assert_eq!(
            self.status, status,
            "{why}: expected {status} from {}, got {} {}",
            self.what, self.status, self.body
        );
        self
    }

    /// Checks the status of a refusal and that it is a problem document; returns it.
    #[track_caller]
    fn problem(self, status: u16, why: &str) -> Value {
        let reply = self.expect(status, why);
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json"),
            "{why}: {} answers with problem details",
            reply.what
        );
        let problem = reply.json();
        assert!(
            problem["title"].is_string(),
            "{why}: a problem has a title: {problem}"
        );
        problem
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", self.what, self.body))
    }
}

// ---------------------------------------------------------------------------
// A fresh PostgreSQL database per run

struct Postgres {
    admin_url: String,
    name: String,
    url: String,
}

impl Postgres {
    /// Creates the database; `None` (with a note) when PostgreSQL is
    /// unreachable, which fails the test under `CI=true`.
    fn create(test: &str) -> Option<Postgres> {
        let admin_url =
            std::env::var("TRELLIS_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned());
        let name = format!("trellis_t_{test}_{}", std::process::id());
        let created = block_on(async {
            let admin = trellis_runtime::Store::connect(&admin_url).await?;
            let created = admin
                .execute_sql(&format!("CREATE DATABASE \"{name}\""))
                .await;
            admin.close().await?;
            created
        });
        match created {
            Ok(()) => {}
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("PostgreSQL is required under CI=true and unreachable: {e}")
            }
            Err(e) => {
                eprintln!("note: skipping the PostgreSQL run of {test}: {e}");
                return None;
            }
        }
        let url = replace_database(&admin_url, &name);
        Some(Postgres {
            admin_url,
            name,
            url,
        })
    }

    fn drop_database(self) {
        block_on(async {
            let admin = trellis_runtime::Store::connect(&self.admin_url).await?;
            admin.drop_database(&self.name).await?;
            admin.close().await
        })
        .expect("drops the test database");
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let cut = base.rfind('/').expect("a database URL has a path");
    format!("{}/{database}{query}", &base[..cut])
}
