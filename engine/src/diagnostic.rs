//! Located diagnostics: what is wrong, where, and how to fix it, rendered
//! rustc-style for terminals or as JSON for tools and the designer.

use std::fmt::{self, Write as _};
use std::path::PathBuf;

use serde::Serialize;

/// Error or warning. Errors make `trellis check` fail; warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

/// A stable diagnostic code. Codes are documented in `docs/model-reference.md`
/// and never reused for another meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    /// E0001: the file is not valid YAML.
    YamlSyntax,
    /// E0002: a key appears twice in one mapping.
    DuplicateKey,
    /// E0003: a key the language does not know.
    UnknownKey,
    /// E0004: a value of the wrong type.
    WrongType,
    /// E0005: a required key is missing.
    MissingKey,
    /// E0006: a value outside the allowed set or range.
    InvalidValue,
    /// E0007: a file that cannot be read or does not belong in an app folder.
    BadFile,
    /// E0008: a name that is not a valid identifier.
    InvalidName,
    /// E0101: a reference to a field that does not exist.
    UnknownField,
    /// E0102: a reference to an entity that does not exist.
    UnknownEntity,
    /// E0103: a reference to an app that is not in the workspace.
    UnknownApp,
    /// E0104: a reference to a role that no app declares.
    UnknownRole,
    /// E0105: a reference to a workflow state that does not exist.
    UnknownState,
    /// E0106: a reference to a view, dashboard, alert, job, action, test key, connector or
    /// connector operation that does not exist.
    UnknownName,
    /// E0107: a referenced file does not exist.
    MissingFile,
    /// E0108: a name declared twice.
    DuplicateName,
    /// E0109: a key that does not fit the field type (a `target` on a text field).
    FieldKindMismatch,
    /// E0110: a reference to a field of the wrong type.
    WrongFieldType,
    /// E0201: a workflow without exactly one initial state.
    InitialState,
    /// E0202: a state that cannot be reached from the initial state.
    UnreachableState,
    /// E0203: a non-final state from which no final state can be reached.
    DeadEnd,
    /// E0204: a workflow conflicts with its entity (a second workflow, a declared state field).
    WorkflowConflict,
    /// E0301: a Rhai script that does not compile.
    Script,
    /// E0401: an unknown filter operator.
    FilterOperator,
    /// E0402: a filter value that does not fit the field type.
    FilterValue,
    /// E0403: an unknown variable (`$user.<attr>`, `$today`).
    UnknownVariable,
    /// E0501: an invalid numbering pattern.
    NumberingPattern,
    /// E0502: an invalid schedule.
    Schedule,
    /// E0503: an invalid duration.
    Duration,
    /// E0504: an invalid dashboard measure or grouping.
    Measure,
    /// E0505: an invalid regular expression.
    Regex,
    /// E0601: an invalid connector request: a base URL, path template, query
    /// or body value, or response pointer that cannot work.
    ConnectorRequest,
    /// E0602: a secret written into the model where an environment variable's name belongs.
    SecretInModel,
    /// E0603: a connector operation used where it does not fit (another entity's
    /// operation pushed, a lookup pushed, a lookup filling a field no one may write).
    ConnectorMismatch,
    /// W0201: a transition leaves a final state.
    LeavesFinalState,
    /// W0301: a rule file no rule or job uses.
    UnusedFile,
}

impl Code {
    /// Every code, in order.
    pub const ALL: &'static [Code] = &[
        Code::YamlSyntax,
        Code::DuplicateKey,
        Code::UnknownKey,
        Code::WrongType,
        Code::MissingKey,
        Code::InvalidValue,
        Code::BadFile,
        Code::InvalidName,
        Code::UnknownField,
        Code::UnknownEntity,
        Code::UnknownApp,
        Code::UnknownRole,
        Code::UnknownState,
        Code::UnknownName,
        Code::MissingFile,
        Code::DuplicateName,
        Code::FieldKindMismatch,
        Code::WrongFieldType,
        Code::InitialState,
        Code::UnreachableState,
        Code::DeadEnd,
        Code::WorkflowConflict,
        Code::Script,
        Code::FilterOperator,
        Code::FilterValue,
        Code::UnknownVariable,
        Code::NumberingPattern,
        Code::Schedule,
        Code::Duration,
        Code::Measure,
        Code::Regex,
        Code::ConnectorRequest,
        Code::SecretInModel,
        Code::ConnectorMismatch,
        Code::LeavesFinalState,
        Code::UnusedFile,
    ];

    /// The code as printed: `E0102`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::YamlSyntax => "E0001",
            Code::DuplicateKey => "E0002",
            Code::UnknownKey => "E0003",
            Code::WrongType => "E0004",
            Code::MissingKey => "E0005",
            Code::InvalidValue => "E0006",
            Code::BadFile => "E0007",
            Code::InvalidName => "E0008",
            Code::UnknownField => "E0101",
            Code::UnknownEntity => "E0102",
            Code::UnknownApp => "E0103",
            Code::UnknownRole => "E0104",
            Code::UnknownState => "E0105",
            Code::UnknownName => "E0106",
            Code::MissingFile => "E0107",
            Code::DuplicateName => "E0108",
            Code::FieldKindMismatch => "E0109",
            Code::WrongFieldType => "E0110",
            Code::InitialState => "E0201",
            Code::UnreachableState => "E0202",
            Code::DeadEnd => "E0203",
            Code::WorkflowConflict => "E0204",
            Code::Script => "E0301",
            Code::FilterOperator => "E0401",
            Code::FilterValue => "E0402",
            Code::UnknownVariable => "E0403",
            Code::NumberingPattern => "E0501",
            Code::Schedule => "E0502",
            Code::Duration => "E0503",
            Code::Measure => "E0504",
            Code::Regex => "E0505",
            Code::ConnectorRequest => "E0601",
            Code::SecretInModel => "E0602",
            Code::ConnectorMismatch => "E0603",
            Code::LeavesFinalState => "W0201",
            Code::UnusedFile => "W0301",
        }
    }

    /// Warnings start with `W`.
    pub fn severity(self) -> Severity {
        if self.as_str().starts_with('W') {
            Severity::Warning
        } else {
            Severity::Error
        }
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A place in a source file: 1-based line and column (in characters), and the
/// length of the marked text (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Span {
    pub line: u32,
    pub column: u32,
    pub len: u32,
}

/// One problem found in a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: Code,
    pub message: String,
    /// The file, as the user named it (`examples/leave/entities/leave_request.yaml`).
    pub file: PathBuf,
    /// Where in the file; `None` for problems of the whole file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span: Option<Span>,
    /// The source line the span is on, for the snippet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_line: Option<String>,
    /// A short note under the marked text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic for a whole file.
    pub fn file(code: Code, file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: code.severity(),
            code,
            message: message.into(),
            file: file.into(),
            span: None,
            source_line: None,
            label: None,
            help: None,
        }
    }

    /// Adds a note under the marked text.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Adds a hint.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds a hint unless one is already there (a "did you mean" wins over a list).
    pub fn with_help_if_none(self, help: impl Into<String>) -> Self {
        if self.help.is_some() {
            self
        } else {
            self.with_help(help)
        }
    }

    /// Adds a "did you mean" hint when a known name is close to `wrong`.
    pub fn suggest<'a>(self, wrong: &str, known: impl IntoIterator<Item = &'a str>) -> Self {
        match did_you_mean(wrong, known) {
            Some(best) => self.with_help(format!("did you mean `{best}`?")),
            None => self,
        }
    }

    /// `file:line:col: error[CODE]: message`, then the snippet, label and help.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = write!(out, "{}", self.file.display());
        if let Some(span) = self.span {
            let _ = write!(out, ":{}:{}", span.line, span.column);
        }
        let _ = writeln!(out, ": {kind}[{}]: {}", self.code.as_str(), self.message);
        let gutter = self.span.map_or(1, |s| s.line.to_string().len());
        let pad = " ".repeat(gutter);
        if let (Some(span), Some(line)) = (self.span, &self.source_line) {
            let marker_start = " ".repeat(span.column.saturating_sub(1) as usize);
            let carets = "^".repeat(span.len.max(1) as usize);
            let label = self
                .label
                .as_deref()
                .map(|l| format!(" {l}"))
                .unwrap_or_default();
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{} | {}", span.line, line.trim_end());
            let _ = writeln!(out, "{pad} | {marker_start}{carets}{label}");
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "{pad} = help: {help}");
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// The known name closest to `wrong`, if it is close enough to be a typo.
pub fn did_you_mean<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(wrong, k), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// All diagnostics of one check run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Warning)
    }

    /// Errors first, then warnings; each by file and position, so output is stable.
    pub fn sort(&mut self) {
        self.0.sort_by(|a, b| {
            (a.severity, &a.file, a.span, a.code).cmp(&(b.severity, &b.file, b.span, b.code))
        });
        self.0.dedup();
    }

    /// Every diagnostic rendered, then a summary line.
    pub fn render(&self) -> String {
        let mut out: String = self.0.iter().map(|d| d.render() + "\n").collect();
        let errors = self.errors().count();
        let warnings = self.warnings().count();
        let _ = writeln!(out, "{errors} error(s), {warnings} warning(s)");
        out
    }
}
