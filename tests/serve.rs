//! `trellis serve` as a user runs it on a fresh machine: first run creates the
//! data directory, deploys the apps and the admin account, answers `/healthz`,
//! and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

struct Server {
    child: Child,
    lines: BufReader<ChildStdout>,
    printed: Vec<String>,
}

impl Server {
    fn start(data: &Path, password: Option<&str>) -> (Server, String) {
        Server::start_with(data, password, &[])
    }

    fn start_with(data: &Path, password: Option<&str>, extra: &[&str]) -> (Server, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_trellis"));
        cmd.args(["serve", "--examples", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(extra)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("DATABASE_URL")
            .env_remove("TRELLIS_ADMIN_PASSWORD")
            .stdout(Stdio::piped());
        if let Some(p) = password {
            cmd.env("TRELLIS_ADMIN_PASSWORD", p);
        }
        let mut child = cmd.spawn().expect("trellis serve starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut server = Server {
            child,
            lines: BufReader::new(stdout),
            printed: Vec::new(),
        };
        loop {
            let mut line = String::new();
            if server.lines.read_line(&mut line).expect("reads stdout") == 0 {
                panic!("the server exited before listening: {:?}", server.printed);
            }
            server.printed.push(line.trim_end().to_owned());
            if let Some(addr) = line.trim().strip_prefix("listening on http://") {
                let addr = addr.to_owned();
                return (server, addr);
            }
        }
    }

    /// Sends SIGTERM and returns the rest of what the server printed.
    fn stop(mut self) -> (bool, String) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        let mut rest = String::new();
        self.lines
            .read_to_string(&mut rest)
            .expect("reads the rest");
        let status = self.child.wait().expect("the server exits");
        (status.success(), rest)
    }
}

fn get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connects");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("writes");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reads");
    response
}

#[test]
fn first_run_creates_the_admin_then_serves_and_stops_cleanly() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let (server, addr) = Server::start(&data, None);
    let printed = server.printed.join("\n");
    let password = printed
        .lines()
        .find_map(|l| {
            l.strip_prefix("created the admin account; its password, shown only this once: ")
        })
        .expect("a generated password is printed once")
        .to_owned();
    assert_eq!(password.len(), 20);
    assert!(printed.contains("apps: crm, order, leave"), "{printed}");
    assert!(
        data.join("trellis.db").is_file(),
        "the data directory and database are created"
    );
    let health = get(&addr, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(get(&addr, "/nope").starts_with("HTTP/1.1 404"));
    let (clean, rest) = server.stop();
    assert!(clean, "SIGTERM ends the server with success");
    assert!(rest.contains("stopped"), "{rest}");

    // A second start finds everything in place and prints no password.
    let (server, addr) = Server::start(&data, None);
    assert!(
        !server.printed.join("\n").contains("password"),
        "{:?}",
        server.printed
    );
    assert!(get(&addr, "/healthz").starts_with("HTTP/1.1 200"));
    assert!(server.stop().0);
}

#[test]
fn the_admin_password_can_be_chosen_on_the_first_run() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (server, _) = Server::start(&tmp.path().join("data"), Some("a chosen secret"));
    let printed = server.printed.join("\n");
    assert!(
        printed.contains("created the admin account with TRELLIS_ADMIN_PASSWORD"),
        "{printed}"
    );
    assert!(
        !printed.contains("a chosen secret"),
        "the password is never printed"
    );
    assert!(server.stop().0);
}

#[test]
fn demo_data_loads_once_with_links_between_its_records() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let (server, addr) = Server::start_with(&data, Some("demo-secret"), &["--demo"]);
    let printed = server.printed.join("\n");
    assert!(
        printed.contains("demo data: 4 records loaded into leave"),
        "{printed}"
    );
    let body = serde_json::json!({"username": "admin", "password": "demo-secret"}).to_string();
    let token = ureq::post(format!("http://{addr}/api/v1/auth/token"))
        .header("Content-Type", "application/json")
        .send(&body)
        .expect("signs in")
        .body_mut()
        .read_to_string()
        .expect("a body");
    let token: serde_json::Value = serde_json::from_str(&token).expect("JSON");
    let token = token["token"].as_str().expect("a token").to_owned();
    let list = ureq::get(format!("http://{addr}/api/v1/leave/leave_type?sort=code"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .expect("lists")
        .body_mut()
        .read_to_string()
        .expect("a body");
    let list: serde_json::Value = serde_json::from_str(&list).expect("JSON");
    let types = list["data"].as_array().expect("records");
    let by_code = |code: &str| {
        types
            .iter()
            .find(|t| t["code"] == code)
            .unwrap_or_else(|| panic!("{code} loaded: {list}"))
    };
    assert_eq!(list["total"], 4);
    assert_eq!(
        by_code("SICK_LONG")["parent"],
        by_code("SICK")["id"],
        "`$sick` became the id of the record keyed `sick`"
    );
    assert_eq!(by_code("SICK_LONG")["_titles"]["parent"], "病假 Sick leave");
    assert!(server.stop().0);

    let (server, _) = Server::start_with(&data, None, &["--demo"]);
    assert!(
        server
            .printed
            .join("\n")
            .contains("demo data: leave holds records already; none added"),
        "{:?}",
        server.printed
    );
    assert!(server.stop().0);
}
