//! Message templates: minijinja over the record a notification is about, in
//! each language of a label; and the JSON body templates of SMS gateways.

use std::sync::OnceLock;

use minijinja::value::{Serde, Value};
use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Value as Json, json};
use trellis_engine::model::Label;

use super::About;

/// A rendered label: the English text and, when the label has one, the Chinese.
#[derive(Debug, Clone, PartialEq)]
pub struct Text {
    pub en: String,
    pub zh: Option<String>,
}

impl Text {
    /// One text for channels that carry one: the English, then the Chinese on
    /// a line of its own when it differs.
    pub fn joined(&self) -> String {
        match &self.zh {
            Some(zh) if zh != &self.en => format!("{}\n{zh}", self.en),
            _ => self.en.clone(),
        }
    }

    /// Label-shaped JSON: a string, or `{en, zh}`.
    pub fn to_json(&self) -> Json {
        match &self.zh {
            Some(zh) => json!({"en": self.en, "zh": zh}),
            None => Json::String(self.en.clone()),
        }
    }
}

/// The variables of a message template.
pub fn context(about: &About<'_>) -> Value {
    minijinja::context! {
        record => Value::from(Serde(about.record)),
        app => about.app,
        entity => about.entity,
        id => about.record_id,
    }
}

/// Renders each language of a label.
pub fn label(label: &Label, context: &Value) -> Text {
    match label {
        Label::Plain(text) => Text {
            en: text_template(text, context),
            zh: None,
        },
        Label::Translated(t) => Text {
            en: text_template(&t.en, context),
            zh: t.zh.as_deref().map(|zh| text_template(zh, context)),
        },
    }
}

/// The first line of a text, at most 120 characters: a subject when none was given.
pub fn first_line(text: &str) -> String {
    super::excerpt(text.lines().next().unwrap_or_default().trim(), 120)
}

/// Text templates: missing values (and nulls) print as nothing, and a chain
/// through a missing value (`record.customer.name`) is missing too.
fn text_env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_formatter(|out, _state, value| {
            if value.is_none() || value.is_undefined() {
                return Ok(());
            }
            match value.as_str() {
                Some(s) => out.write_str(s),
                None => write!(out, "{value}"),
            }
            .map_err(minijinja::Error::from)
        });
        env
    })
}

/// JSON body templates: every value printed is escaped for use inside a JSON
/// string (`"text": "{{ message }}"`), so quotes and newlines in a message
/// cannot break the body or add fields to it.
fn json_env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        escaping(|text| {
            let quoted = Json::String(text.to_owned()).to_string();
            quoted[1..quoted.len() - 1].to_owned()
        })
    })
}

/// A template environment that prints every value through `escape` (and
/// nothing for a missing one): what keeps values inside their place in a
/// JSON body or a URL path.
pub(crate) fn escaping(escape: fn(&str) -> String) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_formatter(move |out, _state, value| {
        if value.is_none() || value.is_undefined() {
            return Ok(());
        }
        let text = match value.as_str() {
            Some(s) => s.to_owned(),
            None => value.to_string(),
        };
        out.write_str(&escape(&text))
            .map_err(minijinja::Error::from)
    });
    env
}

/// Renders a message template; one that fails is used as written (and logged),
/// since a notification must not abort the write it belongs to.
fn text_template(source: &str, context: &Value) -> String {
    if !source.contains("{{") && !source.contains("{%") {
        return source.to_owned();
    }
    match text_env().render_str(source, context.clone()) {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!(error = %e, template = source, "a notification template failed; sent as written");
            source.to_owned()
        }
    }
}

/// Renders an SMS gateway's body template for one phone number and message,
/// and checks that the result is JSON.
pub fn sms_body(template: &str, phone: &str, message: &str) -> Result<Json, String> {
    let text = json_env()
        .render_str(
            template,
            minijinja::context! { phone => phone, message => message },
        )
        .map_err(|e| format!("the body template does not render: {e}"))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("the body template does not make JSON ({e}): {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_engine::model::Translations;

    fn about(record: &serde_json::Map<String, Json>) -> About<'_> {
        About {
            app: "crm",
            entity: "customer",
            record_id: 7,
            record,
        }
    }

    #[test]
    fn labels_render_in_both_languages_with_missing_values_empty() {
        let record = json!({"name": "Acme \"Ltd\"", "owner": 3, "note": null})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let ctx = context(&about(&record));
        let text = label(
            &Label::Translated(Translations {
                en: "{{ record.name }} #{{ id }}{{ record.note }}{{ record.gone.deeper }}".into(),
                zh: Some("客户 {{ record.name }}".into()),
            }),
            &ctx,
        );
        assert_eq!(text.en, "Acme \"Ltd\" #7");
        assert_eq!(text.zh.as_deref(), Some("客户 Acme \"Ltd\""));
        assert_eq!(text.joined(), "Acme \"Ltd\" #7\n客户 Acme \"Ltd\"");
        let broken = label(&Label::Plain("{{ record.name ".into()), &ctx);
        assert_eq!(
            broken.en, "{{ record.name ",
            "a broken template is sent as written"
        );
    }

    #[test]
    fn sms_bodies_escape_values_inside_json_strings() {
        let body = sms_body(
            r#"{"to": "{{ phone }}", "text": "{{ message }}"}"#,
            "+86 138",
            "say \"hi\"\nnow",
        )
        .expect("renders");
        assert_eq!(body, json!({"to": "+86 138", "text": "say \"hi\"\nnow"}));
        assert!(sms_body("{{ message }", "1", "x").is_err());
        assert!(sms_body("not json {{ message }}", "1", "x").is_err());
    }
}
