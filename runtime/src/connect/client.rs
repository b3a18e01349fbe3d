//! Sending a rendered request: the base URL (the environment's
//! `TRELLIS_CONNECTOR_<NAME>_URL`, else the model's), the credentials read
//! from the environment now, and one HTTP exchange through the outbox's
//! `ureq` agent (no redirects followed, so a request goes only where it is
//! configured) on the blocking pool.

use std::time::{Duration, Instant};

use base64::Engine as _;
use trellis_engine::check::url_variable;
use trellis_engine::model::ConnectorAuth;

use super::render::encode;
use super::{Environment, Outgoing};

/// The most of an answer read back.
const ANSWER_LIMIT: u64 = 1024 * 1024;

/// What the other system answered, whatever the status.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// Where the request went, without its query.
    pub url: String,
    pub duration: Duration,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why no answer came back.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// A credential or address the environment should hold is missing:
    /// retrying helps once it is set.
    #[error("the server's environment has no `{0}`")]
    MissingVariable(String),
    /// Connection refused, timeout, a broken answer.
    #[error("{url}: {message}")]
    Unreachable { url: String, message: String },
}

impl Failure {
    /// Where the request was going, if it got that far.
    pub fn url(&self) -> String {
        match self {
            Failure::Unreachable { url, .. } => url.clone(),
            Failure::MissingVariable(_) => String::new(),
        }
    }
}

/// The URL a request goes to: base URL, path and encoded query.
pub fn url(out: &Outgoing, env: &Environment) -> String {
    let base = env
        .var(&url_variable(&out.connector))
        .unwrap_or_else(|| out.base_url.clone());
    let mut url = format!("{}{}", base.trim_end_matches('/'), out.path);
    for (i, (name, value)) in out.query.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str(&encode(name));
        url.push('=');
        url.push_str(&encode(value));
    }
    url
}

fn shown(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or_default().to_owned()
}

/// The credential headers of a request.
fn credentials(auth: &ConnectorAuth, env: &Environment) -> Result<Vec<(String, String)>, Failure> {
    let var = |name: &str| {
        env.var(name)
            .ok_or_else(|| Failure::MissingVariable(name.into()))
    };
    Ok(match auth {
        ConnectorAuth::None => Vec::new(),
        ConnectorAuth::Bearer(b) => vec![(
            "Authorization".into(),
            format!("Bearer {}", var(&b.token_env)?),
        )],
        ConnectorAuth::Basic(b) => {
            let pair = format!("{}:{}", var(&b.username_env)?, var(&b.password_env)?);
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            vec![("Authorization".into(), format!("Basic {encoded}"))]
        }
        ConnectorAuth::Header(h) => vec![(h.name.clone(), var(&h.value_env)?)],
    })
}

/// Sends `out`, waiting at most its timeout and never more than `cap`;
/// `headers` are added (a delivery id). Any HTTP status is a [`Reply`].
pub async fn send(
    out: &Outgoing,
    env: &Environment,
    cap: Duration,
    headers: Vec<(String, String)>,
) -> Result<Reply, Failure> {
    let url = url(out, env);
    let shown_url = shown(&url);
    let mut all = credentials(&out.auth, env)?;
    all.extend(headers);
    let timeout = Duration::from_millis(out.timeout_ms).min(cap);
    let method = out.method;
    let body = out.body.as_ref().map(|b| b.to_string().into_bytes());
    let started = Instant::now();
    let target = shown_url.clone();
    let sent = tokio::task::spawn_blocking(move || {
        let agent = crate::notify::agent(timeout);
        let mut request = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(&url)
            .header("Accept", "application/json");
        for (name, value) in &all {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = match body {
            Some(body) if method.has_body() => request
                .header("Content-Type", "application/json")
                .body(body)
                .map_err(|e| e.to_string())
                .and_then(|r| agent.run(r).map_err(|e| e.to_string())),
            _ => request
                .body(())
                .map_err(|e| e.to_string())
                .and_then(|r| agent.run(r).map_err(|e| e.to_string())),
        };
        let mut response = response?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(ANSWER_LIMIT)
            .read_to_vec()
            .map_err(|e| format!("the answer could not be read: {e}"))?;
        Ok::<_, String>((status, String::from_utf8_lossy(&body).into_owned()))
    })
    .await;
    let unreachable = |message: String| Failure::Unreachable {
        url: target.clone(),
        message,
    };
    let (status, body) = match sent {
        Ok(Ok(done)) => done,
        Ok(Err(message)) => return Err(unreachable(message)),
        Err(e) => return Err(unreachable(format!("the request task failed: {e}"))),
    };
    Ok(Reply {
        status,
        body,
        url: shown_url,
        duration: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use indexmap::IndexMap;
    use trellis_engine::model::{BasicAuth, HttpMethod};

    fn outgoing() -> Outgoing {
        Outgoing {
            app: "crm".into(),
            connector: "registry_test_only".into(),
            operation: "search".into(),
            entity: "customer".into(),
            record_id: None,
            method: HttpMethod::Get,
            base_url: "https://registry.example.com/api/".into(),
            path: "/companies".into(),
            query: IndexMap::from([
                ("keyword".to_owned(), "上海 & Co".to_owned()),
                ("size".to_owned(), "1".to_owned()),
            ]),
            body: None,
            auth: ConnectorAuth::Basic(BasicAuth {
                username_env: "TRELLIS_TEST_USER".into(),
                password_env: "TRELLIS_TEST_PASSWORD".into(),
            }),
            timeout_ms: 1000,
        }
    }

    #[test]
    fn urls_join_the_base_and_encode_the_query() {
        let out = outgoing();
        let env = Environment::process();
        assert_eq!(
            url(&out, &env),
            "https://registry.example.com/api/companies?keyword=%E4%B8%8A%E6%B5%B7%20%26%20Co&size=1"
        );
        let mocked = env.with(
            "TRELLIS_CONNECTOR_REGISTRY_TEST_ONLY_URL",
            "http://127.0.0.1:9",
        );
        assert!(url(&out, &mocked).starts_with("http://127.0.0.1:9/companies?"));
    }

    #[test]
    fn credentials_come_from_the_environment_by_name() {
        let out = outgoing();
        let missing = credentials(&out.auth, &Environment::process()).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "the server's environment has no `TRELLIS_TEST_USER`"
        );
        let env = Environment::process()
            .with("TRELLIS_TEST_USER", "sync")
            .with("TRELLIS_TEST_PASSWORD", "pw");
        let headers = credentials(&out.auth, &env).expect("both are set");
        assert_eq!(
            headers,
            vec![("Authorization".to_owned(), "Basic c3luYzpwdw==".to_owned())]
        );
        assert!(
            !format!("{env:?}").contains("pw"),
            "values are never printed"
        );
    }
}
