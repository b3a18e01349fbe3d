//! One YAML file of an app: its text, the JSON value it holds, and where every
//! value and key of it stands, so that any problem can be pointed at by a JSON
//! pointer (`/fields/owner/target`) and reported as `file:line:col`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::diagnostic::{Code, Diagnostic, Span};

/// A parsed YAML file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as the user named it.
    pub path: PathBuf,
    pub text: String,
    values: HashMap<String, Span>,
    keys: HashMap<String, Span>,
}

impl SourceFile {
    /// Parses YAML text into its JSON value and position map. A syntax error or a
    /// duplicate key is a located diagnostic.
    pub fn parse(path: &Path, text: String) -> Result<(SourceFile, Value), Diagnostic> {
        let mut file = SourceFile {
            path: path.to_owned(),
            text,
            values: HashMap::new(),
            keys: HashMap::new(),
        };
        let options = serde_saphyr::options! {
            strict_booleans: true,
            leading_zero_numbers_as_strings: true,
        };
        let parsed: Result<Option<Spanned<Node>>, _> =
            serde_saphyr::from_str_with_options(&file.text, options);
        match parsed {
            Ok(Some(root)) => {
                let value = file.index(&root, String::new());
                Ok((file, value))
            }
            Ok(None) => Ok((file, Value::Null)),
            Err(err) => Err(file.yaml_error(&err)),
        }
    }

    fn yaml_error(&self, err: &serde_saphyr::Error) -> Diagnostic {
        // The library's message starts with "line L column C: " and carries its own
        // snippet naming `<input>`; keep only the sentence and render our own.
        let text = err.to_string();
        let first = text.lines().next().unwrap_or("invalid YAML");
        let first = first.strip_prefix("error: ").unwrap_or(first);
        let sentence = match first.find(": ") {
            Some(i) if first.starts_with("line ") => &first[i + 2..],
            _ => first,
        };
        let code = if sentence.contains("duplicate mapping key") {
            Code::DuplicateKey
        } else {
            Code::YamlSyntax
        };
        let sentence = sentence
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(sentence);
        let d = Diagnostic::file(code, &self.path, sentence.to_owned());
        match err.location() {
            Some(loc) if loc.line() > 0 => self.at(
                d,
                Span {
                    line: loc.line() as u32,
                    column: loc.column() as u32,
                    len: 1,
                },
            ),
            _ => d,
        }
    }

    /// Records the position of `node` at `pointer` and returns its JSON value.
    fn index(&mut self, node: &Spanned<Node>, pointer: String) -> Value {
        self.values.insert(pointer.clone(), span_of(node));
        match &node.value {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => Value::from(*i),
            Node::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Node::Str(s) => Value::String(s.clone()),
            Node::Seq(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.index(item, format!("{pointer}/{i}")))
                    .collect(),
            ),
            Node::Map(entries) => {
                let mut map = serde_json::Map::new();
                for (key, value) in entries {
                    let name = match &key.value {
                        Node::Str(s) => s.clone(),
                        Node::Int(i) => i.to_string(),
                        Node::Bool(b) => b.to_string(),
                        Node::Float(f) => f.to_string(),
                        Node::Null => "null".to_owned(),
                        Node::Seq(_) | Node::Map(_) => "?".to_owned(),
                    };
                    let child = format!("{pointer}/{}", escape(&name));
                    self.keys.insert(child.clone(), span_of(key));
                    let v = self.index(value, child);
                    map.insert(name, v);
                }
                Value::Object(map)
            }
        }
    }

    /// Where the value at `pointer` stands, or its nearest located ancestor.
    pub fn value_span(&self, pointer: &str) -> Option<Span> {
        let mut p = pointer;
        loop {
            if let Some(span) = self.values.get(p) {
                return Some(*span);
            }
            p = &p[..p.rfind('/')?];
        }
    }

    /// Where the key that holds the value at `pointer` stands (falls back to the value).
    pub fn key_span(&self, pointer: &str) -> Option<Span> {
        self.keys
            .get(pointer)
            .copied()
            .or_else(|| self.value_span(pointer))
    }

    /// A diagnostic pointing at the value at `pointer`.
    pub fn error(&self, code: Code, pointer: &str, message: impl Into<String>) -> Diagnostic {
        let d = Diagnostic::file(code, &self.path, message);
        match self.value_span(pointer) {
            Some(span) => self.at(d, span),
            None => d,
        }
    }

    /// A diagnostic pointing at the key of the value at `pointer`.
    pub fn key_error(&self, code: Code, pointer: &str, message: impl Into<String>) -> Diagnostic {
        let d = Diagnostic::file(code, &self.path, message);
        match self.key_span(pointer) {
            Some(span) => self.at(d, span),
            None => d,
        }
    }

    /// Places a diagnostic at `span` and attaches the source line.
    pub fn at(&self, mut d: Diagnostic, span: Span) -> Diagnostic {
        let line = self.text.lines().nth(span.line.saturating_sub(1) as usize);
        if let Some(line) = line {
            // Never mark past the end of the line (multi-line values mark their first line).
            let width = line.chars().count() as u32;
            let room = width.saturating_sub(span.column.saturating_sub(1)).max(1);
            d.span = Some(Span {
                len: span.len.clamp(1, room),
                ..span
            });
            d.source_line = Some(line.to_owned());
        } else {
            d.span = Some(span);
        }
        d
    }

    /// Where the character at `offset` (counted in characters) of the text value at
    /// `pointer` stands in the file. The value is followed through its quotes,
    /// escapes, block indicator, indentation and folded line breaks, so a script
    /// error inside any kind of YAML string points at the right column.
    pub fn locate_in_value(&self, pointer: &str, value: &str, offset: usize) -> Option<Span> {
        let span = *self.values.get(pointer)?;
        let lines: Vec<Vec<char>> = self.text.lines().map(|l| l.chars().collect()).collect();
        let (mut line, mut col) = (span.line as usize - 1, span.column as usize - 1);
        let first = lines.get(line)?.get(col).copied();
        let quote = first.filter(|c| *c == '"' || *c == '\'');
        if quote.is_some() {
            col += 1;
        }
        if matches!(first, Some('|' | '>')) {
            line += 1;
            col = indentation(lines.get(line)?);
        }
        // A block scalar's content starts a line; its lines share that indentation,
        // and deeper indentation belongs to the content.
        let start = lines.get(line)?;
        let block_indent = start[..col.min(start.len())]
            .iter()
            .all(|c| c.is_whitespace())
            .then_some(col);
        let wanted: Vec<char> = value.chars().collect();
        let mut vi = 0;
        while vi < offset.min(wanted.len()) {
            let vc = wanted[vi];
            match lines.get(line)?.get(col).copied() {
                None => {
                    line += 1;
                    let next = lines.get(line)?;
                    col = block_indent
                        .unwrap_or_else(|| indentation(next))
                        .min(next.len());
                    if vc == '\n' || vc == ' ' {
                        vi += 1;
                    }
                }
                Some(c) if c == vc => {
                    col += 1;
                    vi += 1;
                }
                Some('\\') if quote == Some('"') => {
                    col += 2;
                    vi += 1;
                }
                Some('\'') if quote == Some('\'') => {
                    col += 2;
                    vi += 1;
                }
                Some(c) if c.is_whitespace() => col += 1,
                Some(_) => {
                    col += 1;
                    vi += 1;
                }
            }
        }
        Some(Span {
            line: line as u32 + 1,
            column: col as u32 + 1,
            len: 1,
        })
    }
}

fn indentation(line: &[char]) -> usize {
    line.iter().take_while(|c| c.is_whitespace()).count()
}

/// Escapes one JSON-pointer segment (RFC 6901).
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Builds a JSON pointer from segments.
pub fn pointer<I, S>(segments: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    segments
        .into_iter()
        .map(|s| format!("/{}", escape(s.as_ref())))
        .collect()
}

fn span_of(node: &Spanned<Node>) -> Span {
    let loc = &node.referenced;
    Span {
        line: loc.line() as u32,
        column: loc.column() as u32,
        len: loc.span().len().max(1) as u32,
    }
}

/// A YAML node whose children keep their positions.
#[derive(Debug)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Node>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::Float(v as f64), Node::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Node::Map(entries))
    }
}
