//! Names a user gives to `tasker init` and `tasker generate`, checked once and spelled the way
//! each language wants them (file names, class names, callables).

use std::fmt;

/// Words that are keywords in one of the four languages: a handler or module named like one
/// would not compile (or import) in at least one of them.
const RESERVED: &[&str] = &[
    "and",
    "as",
    "assert",
    "async",
    "await",
    "begin",
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "crate",
    "def",
    "default",
    "del",
    "delete",
    "do",
    "elif",
    "else",
    "end",
    "enum",
    "except",
    "export",
    "extends",
    "extern",
    "false",
    "finally",
    "fn",
    "for",
    "from",
    "function",
    "global",
    "if",
    "impl",
    "import",
    "in",
    "interface",
    "is",
    "lambda",
    "let",
    "loop",
    "match",
    "mod",
    "module",
    "move",
    "mut",
    "new",
    "nil",
    "nonlocal",
    "not",
    "null",
    "or",
    "package",
    "pass",
    "private",
    "protected",
    "pub",
    "public",
    "raise",
    "redo",
    "ref",
    "rescue",
    "retry",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "switch",
    "then",
    "this",
    "throw",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "undef",
    "unless",
    "until",
    "use",
    "var",
    "void",
    "when",
    "where",
    "while",
    "with",
    "yield",
];

/// A handler's name: snake_case segments separated by `/`, e.g. `payments/charge_card`. The last
/// segment names the step; the others are namespaces (Python packages, Ruby modules,
/// directories, the dotted prefix of a callable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerName {
    segments: Vec<String>,
}

impl HandlerName {
    /// Checks `raw`; the error says what is wrong with it and what would be accepted.
    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::parse_as("handler", raw)
    }

    /// [`Self::parse`] for a name of another kind (`subscriber`), which the errors name.
    pub fn parse_as(kind: &str, raw: &str) -> Result<Self, String> {
        let segments: Vec<&str> = raw.split('/').collect();
        if raw.is_empty() || segments.iter().any(|s| s.is_empty()) {
            return Err(format!(
                "{kind} name '{raw}' is empty or has an empty segment: use snake_case words separated by '/', \
                 e.g. 'charge_card' or 'payments/charge_card'"
            ));
        }
        if segments.len() > 4 {
            return Err(format!(
                "{kind} name '{raw}' has {} segments; at most 4 are allowed",
                segments.len()
            ));
        }
        for segment in &segments {
            check_snake(segment).map_err(|why| {
                let suggestion = to_snake(raw);
                let hint = if suggestion != raw && HandlerName::parse(&suggestion).is_ok() {
                    format!(" (did you mean '{suggestion}'?)")
                } else {
                    String::new()
                };
                format!("{kind} name '{raw}': segment '{segment}' {why}{hint}")
            })?;
        }
        Ok(Self {
            segments: segments.into_iter().map(str::to_owned).collect(),
        })
    }

    /// The last segment: the step's name and the file's stem.
    pub fn leaf(&self) -> &str {
        self.segments.last().map(String::as_str).unwrap_or_default()
    }

    /// The segments before the last one.
    pub fn namespaces(&self) -> &[String] {
        &self.segments[..self.segments.len() - 1]
    }

    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// `ChargeCardHandler`.
    pub fn class_name(&self) -> String {
        format!("{}Handler", camel(self.leaf()))
    }

    /// `payments.charge_card`: the callable of the Rust and TypeScript handlers.
    pub fn dotted(&self) -> String {
        self.segments.join(".")
    }

    /// `payments_charge_card`: a flat identifier (Rust module, test file names).
    pub fn flat(&self) -> String {
        self.segments.join("_")
    }

    /// `Payments::ChargeCardHandler`.
    pub fn ruby_constant(&self) -> String {
        let mut parts: Vec<String> = self.namespaces().iter().map(|s| camel(s)).collect();
        parts.push(self.class_name());
        parts.join("::")
    }

    /// `chargeCardHandler`: the exported TypeScript constant.
    pub fn ts_function_name(&self) -> String {
        let class = self.class_name();
        let mut chars = class.chars();
        match chars.next() {
            Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
            None => class,
        }
    }
}

impl fmt::Display for HandlerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.segments.join("/"))
    }
}

/// `Ok` for an event name (`task.completed`, `payment.charged`) or a pattern of them (`payment.*`,
/// `*.failed`, `*`: `*` stands for any run of characters); else why not. Whether a system
/// event's name is in the catalog is checked by the caller.
pub fn check_event_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("is empty".into());
    }
    if let Some(bad) = pattern
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '*')))
    {
        return Err(format!(
            "has '{bad}': event names are lowercase words separated by dots, with '*' as a wildcard"
        ));
    }
    if pattern.split('.').any(str::is_empty) {
        return Err("has an empty word (a leading, trailing or doubled '.')".into());
    }
    if !pattern.contains('*') && !pattern.contains('.') {
        return Err("is not dotted: event names are like 'task.completed' or 'payment.charged'".into());
    }
    Ok(())
}

/// `Ok` for a lowercase snake_case identifier that is no keyword; else why not.
pub fn check_snake(word: &str) -> Result<(), String> {
    let mut chars = word.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_lowercase()) {
        return Err("must start with a lowercase letter (a-z)".into());
    }
    if let Some(bad) = word
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(format!("has '{bad}': only a-z, 0-9 and '_' are allowed"));
    }
    if word.contains("__") || word.ends_with('_') {
        return Err("must not end with '_' or hold '__'".into());
    }
    if RESERVED.contains(&word) {
        return Err("is a keyword in one of the languages: choose another word".into());
    }
    Ok(())
}

/// A project's name, from `--name` or its directory: lowercase letters, digits, `-` and `_`. Its
/// snake_case form is the namespace of the template and the queue of the worker.
pub fn check_project_name(name: &str) -> Result<String, String> {
    let snake = name.replace('-', "_");
    check_snake(&snake).map_err(|why| format!("project name '{name}' {why}; pass --name NAME to choose another"))?;
    Ok(snake)
}

/// `charge_card` → `ChargeCard`.
pub fn camel(snake: &str) -> String {
    snake
        .split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// `Payments::ChargeCard` / `payments.chargeCard` / `charge-card` → `payments/charge_card`: the
/// suggestion shown for a name in another style.
fn to_snake(raw: &str) -> String {
    let mut out = String::new();
    let mut previous_lower = false;
    for c in raw.replace("::", "/").replace('.', "/").chars() {
        if c.is_ascii_uppercase() {
            if previous_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            previous_lower = false;
        } else {
            out.push(if c == '-' || c == ' ' { '_' } else { c });
            previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nested_name_is_spelled_per_language() {
        let name = HandlerName::parse("payments/charge_card").expect("valid");
        assert_eq!(name.leaf(), "charge_card");
        assert_eq!(name.class_name(), "ChargeCardHandler");
        assert_eq!(name.ruby_constant(), "Payments::ChargeCardHandler");
        assert_eq!(name.dotted(), "payments.charge_card");
        assert_eq!(name.flat(), "payments_charge_card");
        assert_eq!(name.ts_function_name(), "chargeCardHandler");
    }

    #[test]
    fn bad_names_are_refused_with_a_suggestion() {
        let e = HandlerName::parse("Payments::ChargeCard").unwrap_err();
        assert!(e.contains("did you mean 'payments/charge_card'?"), "{e}");
        let e = HandlerName::parse("charge-card").unwrap_err();
        assert!(e.contains("'-'") && e.contains("charge_card"), "{e}");
        assert!(HandlerName::parse("a//b").unwrap_err().contains("empty segment"));
        assert!(HandlerName::parse("class").unwrap_err().contains("keyword"));
        assert!(HandlerName::parse("9lives").unwrap_err().contains("lowercase letter"));
    }

    #[test]
    fn event_patterns_are_dotted_words_with_wildcards() {
        for good in ["task.completed", "payment.*", "*.failed", "*", "billing.invoice_sent"] {
            assert_eq!(check_event_pattern(good), Ok(()), "{good}");
        }
        assert!(check_event_pattern("Task.Completed").unwrap_err().contains("'T'"));
        assert!(check_event_pattern("task..completed")
            .unwrap_err()
            .contains("empty word"));
        assert!(check_event_pattern("payment.").unwrap_err().contains("empty word"));
        assert!(check_event_pattern("completed").unwrap_err().contains("not dotted"));
        assert!(check_event_pattern("").unwrap_err().contains("empty"));
        let e = HandlerName::parse_as("subscriber", "Billing::Audit").unwrap_err();
        assert!(
            e.starts_with("subscriber name 'Billing::Audit'") && e.contains("billing/audit"),
            "{e}"
        );
    }

    #[test]
    fn project_names_may_use_dashes() {
        assert_eq!(check_project_name("my-app").as_deref(), Ok("my_app"));
        assert!(check_project_name("My App").unwrap_err().contains("--name"));
    }
}
