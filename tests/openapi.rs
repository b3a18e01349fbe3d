//! The OpenAPI document held against the live server: `openapi-spec-validator`
//! finds it a valid OpenAPI 3.1 document, and schemathesis, generating requests
//! from it (valid and invalid ones), finds no server error and no answer the
//! document does not describe: status, content type, headers and body.
//!
//! Both tools are Python packages that `.ci/run` installs. Without them the
//! test says so and passes, except under `CI=true`, where it fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::{Value, json};

const PASSWORD: &str = "an openapi test password";

/// Test cases per operation and phase: enough to find the usual faults while
/// the whole run stays around a minute on two cores.
const EXAMPLES: &str = "25";
/// A fixed seed, so a failure found once is found again.
const SEED: &str = "1";
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

/// `trellis serve --examples` on a free port; killed when dropped. Its output
/// is drained all along (a full pipe would stall it) and kept for failures.
struct Server {
    child: Child,
    addr: String,
    output: Arc<Mutex<String>>,
    drains: Vec<JoinHandle<()>>,
}

impl Server {
    fn start(data: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(["serve", "--examples", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("DATABASE_URL")
            .env("TRELLIS_ADMIN_PASSWORD", PASSWORD)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("trellis serve starts");
        let output = Arc::new(Mutex::new(String::new()));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let addr = loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).expect("reads stdout") == 0 {
                panic!("the server exited before listening: {line}");
            }
            output.lock().expect("lock").push_str(&line);
            if let Some(addr) = line.trim().strip_prefix("listening on http://") {
                break addr.to_owned();
            }
        };
        let stderr = child.stderr.take().expect("piped stderr");
        let drains = vec![drain(stdout, output.clone()), drain(stderr, output.clone())];
        Server {
            child,
            addr,
            output,
            drains,
        }
    }

    fn log(&self) -> String {
        self.output.lock().expect("lock").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for drain in self.drains.drain(..) {
            let _ = drain.join();
        }
    }
}

fn drain(from: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            let mut text = into.lock().expect("lock");
            text.push_str(&line);
            text.push('\n');
        }
    })
}

/// One HTTP/1.1 exchange: the status and the body.
fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connects");
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("writes");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reads");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP response: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Whether a command-line tool answers `--version`.
fn installed(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A few records, so that operations on `/{id}` also reach real ones (id 1).
fn seed(addr: &str, token: &str) {
    let records = [
        (
            "leave_type",
            json!({"code": "ANNUAL", "name": "Annual", "annual_quota": 10}),
        ),
        (
            "leave_balance",
            json!({"employee": 1, "leave_type": 1, "year": 2030, "quota": "10.5"}),
        ),
        (
            "leave_request",
            json!({"approver": 2, "leave_type": 1, "start_date": "2030-01-01",
                   "end_date": "2030-01-03", "tags": ["travel"], "reason": "seed"}),
        ),
    ];
    for (entity, record) in records {
        let path = format!("/api/v1/leave/{entity}");
        let (status, body) = request(addr, "POST", &path, Some(token), Some(&record));
        assert_eq!(status, 201, "creating a {entity}: {body}");
    }
}

#[test]
fn the_live_api_keeps_to_its_openapi_document() {
    let missing: Vec<&str> = ["openapi-spec-validator", "schemathesis"]
        .into_iter()
        .filter(|tool| !installed(tool))
        .collect();
    if !missing.is_empty() {
        let note = format!(
            "{} not installed: pip install schemathesis openapi-spec-validator",
            missing.join(" and ")
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{note}");
        eprintln!("skipping the OpenAPI test: {note}");
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&tmp.path().join("data"));
    let addr = server.addr.clone();

    let credentials = json!({"username": "admin", "password": PASSWORD});
    let (status, body) = request(
        &addr,
        "POST",
        "/api/v1/auth/token",
        None,
        Some(&credentials),
    );
    assert_eq!(status, 200, "{body}");
    let signed_in: Value = serde_json::from_str(&body).expect("JSON");
    let token = signed_in["token"].as_str().expect("a token").to_owned();
    seed(&addr, &token);

    let (status, document) = request(&addr, "GET", "/api/openapi.json", Some(&token), None);
    assert_eq!(status, 200, "{document}");
    let (status, _) = request(&addr, "GET", "/api/openapi.json", None, None);
    assert_eq!(status, 401, "the document is for signed-in callers");
    let file = tmp.path().join("openapi.json");
    std::fs::write(&file, &document).expect("writes the document");

    let validated = Command::new("openapi-spec-validator")
        .arg(&file)
        .output()
        .expect("openapi-spec-validator runs");
    assert!(validated.status.success(), "{}", text(&validated));

    let tested = Command::new("schemathesis")
        .arg("run")
        .arg(&file)
        .args(["--url", &format!("http://{addr}")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", CHECKS])
        .args(["--max-examples", EXAMPLES, "--seed", SEED])
        // Signing out would end the session every other request uses.
        .args(["--exclude-operation-id", "signOut"])
        // A loaded machine may slow test data generation and answers down;
        // neither is what this test is about.
        .args(["--request-timeout", "20", "--suppress-health-check", "all"])
        .args(["--generation-database", "none", "--no-color"])
        // Hypothesis and schemathesis keep files in the working directory.
        .current_dir(tmp.path())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .expect("schemathesis runs");
    assert!(
        tested.status.success(),
        "schemathesis found failures:\n{}\n--- server output ---\n{}",
        text(&tested),
        server.log()
    );
}
