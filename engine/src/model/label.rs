//! Text a person reads, in English and Chinese, and the colours of states and options.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Text shown to people: a plain string, or one per language (`{en: Customer, zh: 客户}`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Label {
    /// The same text in every language.
    Plain(String),
    /// Text per language.
    Translated(Translations),
}

/// Text per language; `en` is the fallback.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Translations {
    /// English text.
    pub en: String,
    /// Chinese (simplified) text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zh: Option<String>,
}

impl Label {
    /// The text for a language code (`en` or `zh`), falling back to English.
    pub fn text(&self, lang: &str) -> &str {
        match self {
            Label::Plain(text) => text,
            Label::Translated(t) if lang == "zh" => t.zh.as_deref().unwrap_or(&t.en),
            Label::Translated(t) => &t.en,
        }
    }
}

/// A named colour; the UI maps each to its palette.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Color {
    Gray,
    Red,
    Orange,
    Yellow,
    Green,
    Teal,
    Blue,
    Purple,
    Pink,
}
