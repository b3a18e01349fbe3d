//! Connectors (`connectors/<name>.yaml`): another system's HTTP API as the app
//! sees it — where it is, how to sign in (secrets stay in the environment), and
//! named operations that push a record to it or look values up for a form.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Label, ValueExpr};

/// Another system's HTTP API and the operations the app uses on it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Connector {
    /// The connector's name in the designer and the push log.
    pub label: Label,
    /// What the other system is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Label>,
    /// The address every operation's path is joined to (`https://erp.example.com/api`).
    /// `TRELLIS_CONNECTOR_<NAME>_URL` in the server's environment replaces it, so
    /// staging and tests point the connector at a mock.
    pub base_url: String,
    /// How requests sign in (default: `none`). Only names of environment variables
    /// appear here, never a secret.
    #[serde(default)]
    pub auth: ConnectorAuth,
    /// The longest one request may take: `10s` (the default), at most `25s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// The operations, by name.
    pub operations: IndexMap<String, ConnectorOperation>,
}

/// How a connector's requests sign in. Each key names an environment variable
/// of the server that holds the secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorAuth {
    /// No credentials.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(BearerAuth),
    /// HTTP basic authentication.
    Basic(BasicAuth),
    /// A header of the connector's choosing (`X-Api-Key: <value>`).
    Header(HeaderAuth),
}

/// A bearer token from the environment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BearerAuth {
    /// The environment variable holding the token (`ERP_TOKEN`).
    pub token_env: String,
}

/// A user name and password from the environment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The environment variable holding the user name.
    pub username_env: String,
    /// The environment variable holding the password.
    pub password_env: String,
}

/// A header whose value comes from the environment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderAuth {
    /// The header's name (`X-Api-Key`).
    pub name: String,
    /// The environment variable holding its value.
    pub value_env: String,
}

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    /// The method as sent: `GET`, `POST`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }

    /// Whether requests of this method carry a body.
    pub fn has_body(self) -> bool {
        matches!(self, HttpMethod::Post | HttpMethod::Put | HttpMethod::Patch)
    }
}

/// One request a connector makes about a record of `entity`: a push (a workflow
/// effect sends it through the outbox) or, with `response`, a lookup (a form
/// asks it for values).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectorOperation {
    /// What the operation does, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Label>,
    /// The entity of this app whose records the mappings read (and a lookup fills).
    pub entity: String,
    /// The HTTP method.
    pub method: HttpMethod,
    /// The path after the base URL, a template with `{{ record.<field> }}`
    /// placeholders (each value is URL-encoded): `/shipments/{{ record.number }}`.
    pub path: String,
    /// Query parameters: name → a literal or `=expression` over the record.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub query: IndexMap<String, ValueExpr>,
    /// The JSON body: key → a literal, `=expression` over the record, or a nested
    /// mapping or list of those. Only for `POST`, `PUT` and `PATCH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<IndexMap<String, ValueExpr>>,
    /// Makes the operation a lookup: field of the entity → JSON pointer into the
    /// answer (`/data/0/credit_code`).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub response: IndexMap<String, String>,
}

impl ConnectorOperation {
    /// A lookup answers with values for the form; anything else is a push.
    pub fn is_lookup(&self) -> bool {
        !self.response.is_empty()
    }
}

/// The `push` effect: send the record through a connector operation, after the
/// action commits, with retries (the outbox).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Push {
    /// A connector of this app (`connectors/<name>.yaml`).
    pub connector: String,
    /// One of its operations over this workflow's entity.
    pub operation: String,
}
