//! Reading templates from YAML: one string, one file or a directory tree.
//!
//! A document goes through these stages, each reporting every problem it finds rather than
//! stopping at the first: YAML → JSON value (YAML errors carry line and column), the
//! `environments.<env>.steps[]` overrides merged in, field-by-field type checks (so a bad
//! value is reported with its step and field, which serde alone cannot do through the
//! model's `#[serde(flatten)]` maps), then [`validate_template`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::model::{BackoffKind, StepType, TaskTemplate};
use super::validate::validate_template;
use super::LoadedTemplate;
use crate::error::{TaskerError, TemplateProblem};

/// Environment variable naming the environment whose overrides apply.
const ENV_VAR: &str = "TASKER_ENV";
const DEFAULT_ENV: &str = "development";

const TOP_FIELDS: &[&str] = &[
    "name",
    "namespace_name",
    "version",
    "description",
    "metadata",
    "system_dependencies",
    "domain_events",
    "input_schema",
    "steps",
    "environments",
    "lifecycle",
];
const STEP_FIELDS: &[&str] = &[
    "name",
    "description",
    "handler",
    "dependencies",
    "depends_on",
    "type",
    "retry",
    "timeout_seconds",
    "publishes_events",
    "batch_config",
    "queue",
];
const HANDLER_FIELDS: &[&str] = &["callable", "method", "resolver", "initialization"];
const RETRY_FIELDS: &[&str] = &[
    "retryable",
    "max_attempts",
    "backoff",
    "backoff_base_ms",
    "max_backoff_ms",
];
const ENVIRONMENT_FIELDS: &[&str] = &["steps"];

/// The environment whose overrides apply: `TASKER_ENV` if set and non-empty, else
/// `development`.
pub fn current_env() -> String {
    match std::env::var(ENV_VAR) {
        Ok(env) if !env.trim().is_empty() => env.trim().to_owned(),
        _ => DEFAULT_ENV.to_owned(),
    }
}

/// Parses one template from YAML, merges the overrides of environment `env` and validates
/// it. `source` is only used in messages. The YAML must hold exactly one document;
/// [`load_path`] also accepts multi-document files.
pub fn parse_str(yaml: &str, source: Option<&Path>, env: &str) -> Result<LoadedTemplate, TaskerError> {
    let mut docs = read_documents(yaml, source).map_err(|p| TaskerError::Template(vec![p]))?;
    if docs.len() > 1 {
        return Err(TaskerError::Template(vec![file_problem(
            source,
            format!(
                "the YAML holds {} documents; expected one template (load the file with load_path to read several)",
                docs.len()
            ),
        )]));
    }
    let Some(doc) = docs.pop() else {
        return Err(TaskerError::Template(vec![file_problem(
            source,
            "no template found: the YAML is empty".to_owned(),
        )]));
    };
    load_document(doc, source, env).map_err(TaskerError::Template)
}

/// Loads the template(s) of a file, or of every `*.yaml` / `*.yml` file under a directory
/// (recursively, in sorted path order; hidden files and directories are skipped). A file may
/// hold several templates as YAML documents separated by `---`.
///
/// Every problem of every file is reported in one [`TaskerError::Template`], including two
/// files defining the same `(namespace_name, name, version)`.
pub fn load_path(path: &Path, env: &str) -> Result<Vec<LoadedTemplate>, TaskerError> {
    let mut problems = Vec::new();
    let files = match std::fs::metadata(path) {
        Err(e) => {
            return Err(TaskerError::Template(vec![file_problem(
                Some(path),
                format!("cannot read: {e}"),
            )]))
        }
        Ok(meta) if meta.is_dir() => {
            let mut files = Vec::new();
            let mut visited = HashSet::new();
            collect_yaml_files(path, &mut files, &mut visited, &mut problems);
            files.sort();
            if files.is_empty() && problems.is_empty() {
                problems.push(file_problem(
                    Some(path),
                    format!(
                        "no templates found in {} (looked for *.yaml and *.yml files)",
                        path.display()
                    ),
                ));
            }
            files
        }
        Ok(_) => vec![path.to_path_buf()],
    };

    let mut loaded: Vec<LoadedTemplate> = Vec::new();
    let mut defined_in: HashMap<(String, String, String), PathBuf> = HashMap::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                problems.push(file_problem(Some(&file), format!("cannot read: {e}")));
                continue;
            }
        };
        let docs = match read_documents(&text, Some(&file)) {
            Ok(docs) => docs,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        if docs.is_empty() {
            problems.push(file_problem(
                Some(&file),
                "no template found: the file is empty".to_owned(),
            ));
        }
        for doc in docs {
            let template = match load_document(doc, Some(&file), env) {
                Ok(template) => template,
                Err(found) => {
                    problems.extend(found);
                    continue;
                }
            };
            let t = &template.template;
            let id = (t.namespace_name.clone(), t.name.clone(), t.version.clone());
            if let Some(first) = defined_in.get(&id) {
                let message = if *first == file {
                    format!("template {} is defined twice in {}", t.key(), file.display())
                } else {
                    format!(
                        "template {} is defined in both {} and {}",
                        t.key(),
                        first.display(),
                        file.display()
                    )
                };
                problems.push(TemplateProblem {
                    file: Some(file.clone()),
                    template: Some(t.key()),
                    step: None,
                    field: None,
                    message,
                });
            } else {
                defined_in.insert(id, file.clone());
                loaded.push(template);
            }
        }
    }

    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(TaskerError::Template(problems))
    }
}

fn file_problem(file: Option<&Path>, message: String) -> TemplateProblem {
    TemplateProblem {
        file: file.map(Path::to_path_buf),
        template: None,
        step: None,
        field: None,
        message,
    }
}

/// Appends the YAML files under `dir` to `files`. Symlinks are followed; `visited` (canonical
/// directory paths) stops symlink loops.
fn collect_yaml_files(
    dir: &Path,
    files: &mut Vec<PathBuf>,
    visited: &mut HashSet<PathBuf>,
    problems: &mut Vec<TemplateProblem>,
) {
    if let Ok(canonical) = std::fs::canonicalize(dir) {
        if !visited.insert(canonical) {
            return;
        }
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(file_problem(Some(dir), format!("cannot read directory: {e}")));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                problems.push(file_problem(Some(dir), format!("cannot read directory: {e}")));
                continue;
            }
        };
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // `metadata` follows symlinks; a dangling link is reported like an unreadable file.
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => collect_yaml_files(&path, files, visited, problems),
            Ok(meta) if meta.is_file() && is_yaml_file(&path) => files.push(path),
            Ok(_) => {}
            Err(e) if is_yaml_file(&path) => {
                problems.push(file_problem(Some(&path), format!("cannot read: {e}")));
            }
            Err(_) => {}
        }
    }
}

fn is_yaml_file(path: &Path) -> bool {
    path.extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml"))
}

// ---------------------------------------------------------------------------------------------
// YAML → JSON

/// Parses every YAML document of `yaml` into JSON values, skipping empty documents. YAML merge
/// keys (`<<: *anchor`) are applied.
fn read_documents(yaml: &str, file: Option<&Path>) -> Result<Vec<Value>, TemplateProblem> {
    let yaml_problem = |e: serde_yaml::Error| {
        let mut message = format!("invalid YAML: {e}");
        if let Some(at) = e.location() {
            if !message.contains(" line ") {
                message.push_str(&format!(" at line {} column {}", at.line(), at.column()));
            }
            // Quote the line: it names the field (and usually the step) at fault.
            if let Some(text) = yaml.lines().nth(at.line().saturating_sub(1)) {
                let text = text.trim();
                if !text.is_empty() {
                    let quoted: String = text.chars().take(100).collect();
                    message.push_str(&format!(" (line {}: `{quoted}`)", at.line()));
                }
            }
        }
        file_problem(file, message)
    };
    let mut docs = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let mut value = match serde_yaml::Value::deserialize(document) {
            Ok(v) => v,
            Err(e) => return Err(huge_integer_problem(yaml, index, &e, file).unwrap_or_else(|| yaml_problem(e))),
        };
        value.apply_merge().map_err(yaml_problem)?;
        if value.is_null() {
            continue;
        }
        let json = yaml_to_json(value.clone(), "")
            .map_err(|(field, message)| number_problem(Some(&value), &field, message, file))?;
        docs.push(json);
    }
    Ok(docs)
}

/// A problem with the number at `path` (`steps[N].field…` or any other path), naming the step
/// and, for a numeric step field, the range it allows.
fn number_problem(
    doc: Option<&serde_yaml::Value>,
    path: &str,
    message: String,
    file: Option<&Path>,
) -> TemplateProblem {
    let in_step = path.strip_prefix("steps[").and_then(|rest| {
        let (index, field) = rest.split_once("].")?;
        Some((index.parse::<usize>().ok()?, field))
    });
    let Some((index, field)) = in_step else {
        return TemplateProblem {
            file: file.map(Path::to_path_buf),
            template: None,
            step: None,
            field: (!path.is_empty()).then(|| path.to_owned()),
            message,
        };
    };
    let step = doc
        .and_then(|d| d.get("steps")?.get(index)?.get("name")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("#{}", index + 1));
    let message = match super::validate::allowed_range(field) {
        Some(range) => format!("{message}: out of range, allowed {range}"),
        None => message,
    };
    TemplateProblem {
        file: file.map(Path::to_path_buf),
        template: None,
        step: Some(step),
        field: Some(field.to_owned()),
        message,
    }
}

/// An integer too large for any field (past 64 bits) makes the YAML parser itself fail. Name its
/// step and field anyway: parse the document again with that integer read as 0, only to find
/// the step's name.
fn huge_integer_problem(
    yaml: &str,
    index: usize,
    e: &serde_yaml::Error,
    file: Option<&Path>,
) -> Option<TemplateProblem> {
    let text = e.to_string();
    let (path, rest) = text.split_once(": invalid type: integer `")?;
    let (digits, _) = rest.split_once("` as u128")?;
    let at = e.location()?;
    let line_start: usize = yaml
        .split_inclusive('\n')
        .take(at.line().saturating_sub(1))
        .map(str::len)
        .sum();
    let offset = line_start + yaml[line_start..].find(digits)?;
    let patched = format!("{}0{}", &yaml[..offset], &yaml[offset + digits.len()..]);
    let doc = serde_yaml::Deserializer::from_str(&patched)
        .nth(index)
        .and_then(|d| serde_yaml::Value::deserialize(d).ok());
    Some(number_problem(
        doc.as_ref(),
        path,
        format!("the integer {digits} is too large for any field"),
        file,
    ))
}

/// Converts a YAML value to JSON. Scalar mapping keys (numbers, booleans) become strings, as
/// they would in a JSON document. Errors carry the dotted path of the offending value.
fn yaml_to_json(value: serde_yaml::Value, path: &str) -> Result<Value, (String, String)> {
    use serde_yaml::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| (path.to_owned(), format!("the number {n} cannot be represented in JSON")))?
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| yaml_to_json(item, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(mapping) => {
            let mut out = Map::with_capacity(mapping.len());
            for (key, item) in mapping {
                let key = match key {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => {
                        return Err((
                            path.to_owned(),
                            format!("mapping keys must be strings, found {}", yaml_kind(&other)),
                        ))
                    }
                };
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let item = yaml_to_json(item, &child)?;
                out.insert(key, item);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            return Err((
                path.to_owned(),
                format!("YAML tags are not supported (found {})", tagged.tag),
            ))
        }
    })
}

fn yaml_kind(value: &serde_yaml::Value) -> &'static str {
    use serde_yaml::Value as Y;
    match value {
        Y::Null => "null",
        Y::Bool(_) => "a boolean",
        Y::Number(_) => "a number",
        Y::String(_) => "a string",
        Y::Sequence(_) => "a sequence",
        Y::Mapping(_) => "a mapping",
        Y::Tagged(_) => "a tagged value",
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

// ---------------------------------------------------------------------------------------------
// One document → one template

/// Problems and warnings of one template document.
struct Findings<'a> {
    file: Option<&'a Path>,
    template: Option<String>,
    problems: Vec<TemplateProblem>,
    warnings: Vec<TemplateProblem>,
    /// A required field is missing or unreadable: the template cannot be built, so the
    /// semantic checks cannot run.
    fatal: bool,
}

impl Findings<'_> {
    fn make(&self, step: Option<&str>, field: Option<&str>, message: String) -> TemplateProblem {
        TemplateProblem {
            file: self.file.map(Path::to_path_buf),
            template: self.template.clone(),
            step: step.map(str::to_owned),
            field: field.map(str::to_owned),
            message,
        }
    }

    fn problem(&mut self, step: Option<&str>, field: Option<&str>, message: String) {
        let p = self.make(step, field, message);
        self.problems.push(p);
    }

    fn warn(&mut self, step: Option<&str>, field: Option<&str>, message: String) {
        let p = self.make(step, field, message);
        self.warnings.push(p);
    }

    /// A problem when `as_problem`, else a warning (used for overrides of environments other
    /// than the current one: wrong, but harmless here).
    fn report(&mut self, as_problem: bool, step: Option<&str>, field: &str, message: String) {
        if as_problem {
            self.problem(step, Some(field), message);
        } else {
            self.warn(step, Some(field), message);
        }
    }

    /// Checks that `obj[key]` reads as a `T`. A bad optional value is removed (so the rest of
    /// the template can still be checked with its default); a bad or missing required one is
    /// fatal.
    fn check<T: DeserializeOwned>(
        &mut self,
        obj: &mut Map<String, Value>,
        key: &str,
        required: bool,
        step: Option<&str>,
        field: &str,
    ) {
        match obj.get(key) {
            None if required => {
                self.problem(step, Some(field), format!("missing required field '{key}'"));
                self.fatal = true;
            }
            None => {}
            Some(value) => {
                if let Err(e) = T::deserialize(value) {
                    let mut message = e.to_string();
                    // serde says "unknown variant `x`, expected one of …": name the field's kind.
                    if let Some(rest) = message.strip_prefix("unknown variant ") {
                        let kind = if key == "type" { "step type" } else { key };
                        message = format!("unknown {kind} {rest}");
                    }
                    // A number of the wrong kind or size (negative, fractional, past u64):
                    // say what the field allows.
                    if value.is_number() {
                        if let Some(range) = super::validate::allowed_range(field) {
                            message = format!("{value} is out of range: allowed {range} ({message})");
                        }
                    }
                    self.problem(step, Some(field), message);
                    if required {
                        self.fatal = true;
                    } else {
                        obj.remove(key);
                    }
                }
            }
        }
    }
}

/// Turns one YAML document (as JSON) into a validated template.
fn load_document(doc: Value, source: Option<&Path>, env: &str) -> Result<LoadedTemplate, Vec<TemplateProblem>> {
    // The template is stored as JSON and read back by every engine: hold it to the same
    // nesting limit as every other stored value (serde_json reads back at most 128 levels).
    if crate::limits::depth_exceeds(&doc, crate::limits::MAX_JSON_DEPTH) {
        return Err(vec![file_problem(
            source,
            crate::limits::LimitViolation::TooDeep.describe("the template"),
        )]);
    }
    let mut root = match doc {
        Value::Object(root) => root,
        other => {
            return Err(vec![file_problem(
                source,
                format!(
                    "expected a template (a mapping) at the top level, found {}",
                    json_kind(&other)
                ),
            )])
        }
    };
    // `version: 1.0` is a YAML number: keep its text so that the semver check names it.
    if let Some(version) = root.get_mut("version") {
        if version.is_number() {
            *version = Value::String(version.to_string());
        }
    }
    let mut found = Findings {
        file: source,
        template: raw_key(&root),
        problems: Vec::new(),
        warnings: Vec::new(),
        fatal: false,
    };

    apply_environments(&mut root, env, &mut found);
    normalize(&mut root, &mut found);
    warn_misspellings(&root, &mut found);

    let mut value = Value::Object(root);
    let template = match TaskTemplate::deserialize(&value) {
        Ok(template) => Some(template),
        Err(e) => {
            let before = found.problems.len();
            if let Value::Object(root) = &mut value {
                check_types(root, &mut found);
            }
            if found.problems.len() == before {
                // The field checks should have explained it; never hide serde's message.
                found.problem(None, None, format!("cannot read template: {e}"));
                None
            } else if found.fatal {
                None
            } else {
                // Bad optional fields were removed: check the rest.
                TaskTemplate::deserialize(&value).ok()
            }
        }
    };

    if let Some(mut template) = template {
        template.environments.clear();
        dedupe_dependencies(&mut template, &mut found);
        match validate_template(&template, source) {
            Ok(version) if found.problems.is_empty() => {
                return Ok(LoadedTemplate {
                    template,
                    version,
                    source: source.map(Path::to_path_buf),
                    warnings: found.warnings,
                });
            }
            Ok(_) => {}
            Err(problems) => found.problems.extend(problems),
        }
    }
    // Near-miss field names often explain an error ("missing field 'handler'" next to an
    // unknown 'handlr'), so they are listed with the problems.
    let mut problems = found.problems;
    problems.extend(found.warnings);
    Err(problems)
}

/// `namespace/name@version` from whatever the document has, for messages written before the
/// template is built.
fn raw_key(root: &Map<String, Value>) -> Option<String> {
    let part = |key: &str| root.get(key).and_then(Value::as_str);
    let (namespace, name, version) = (part("namespace_name"), part("name"), part("version"));
    if namespace.is_none() && name.is_none() && version.is_none() {
        return None;
    }
    Some(format!(
        "{}/{}@{}",
        namespace.unwrap_or("?"),
        name.unwrap_or("?"),
        version.unwrap_or("?")
    ))
}

/// How a step is named in messages: its name, or `#n` (1-based).
fn step_label(step: &Value, index: usize) -> String {
    match step.get("name").and_then(Value::as_str) {
        Some(name) if !name.trim().is_empty() => name.to_owned(),
        _ => format!("#{}", index + 1),
    }
}

/// Merges `environments.<env>.steps[]` into the steps and removes `environments`. Overrides
/// of other environments are checked too, their mistakes reported as warnings.
fn apply_environments(root: &mut Map<String, Value>, env: &str, found: &mut Findings<'_>) {
    let environments = match root.remove("environments") {
        None | Some(Value::Null) => return,
        Some(Value::Object(environments)) => environments,
        Some(other) => {
            found.problem(
                None,
                Some("environments"),
                format!(
                    "expected a mapping of environment names to overrides, found {}",
                    json_kind(&other)
                ),
            );
            return;
        }
    };
    for (name, block) in environments {
        let active = name == env;
        let field = format!("environments.{name}");
        let block = match block {
            Value::Null => continue,
            Value::Object(block) => block,
            other => {
                found.report(
                    active,
                    None,
                    &field,
                    format!("expected a mapping with 'steps' overrides, found {}", json_kind(&other)),
                );
                continue;
            }
        };
        for key in block.keys().filter(|k| !ENVIRONMENT_FIELDS.contains(&k.as_str())) {
            found.warn(
                None,
                Some(&format!("{field}.{key}")),
                format!(
                    "unknown key '{key}' in environment '{name}' is ignored (only 'steps' overrides are supported)"
                ),
            );
        }
        let overrides = match block.get("steps") {
            None | Some(Value::Null) => continue,
            Some(Value::Array(overrides)) => overrides,
            Some(other) => {
                found.report(
                    active,
                    None,
                    &format!("{field}.steps"),
                    format!("expected a list of step overrides, found {}", json_kind(other)),
                );
                continue;
            }
        };
        for (i, entry) in overrides.iter().enumerate() {
            let entry_field = format!("{field}.steps[{i}]");
            let Value::Object(entry) = entry else {
                found.report(
                    active,
                    None,
                    &entry_field,
                    format!(
                        "expected a step override (a mapping with 'name'), found {}",
                        json_kind(entry)
                    ),
                );
                continue;
            };
            let Some(step_name) = entry.get("name").and_then(Value::as_str) else {
                found.report(
                    active,
                    None,
                    &entry_field,
                    "a step override needs the 'name' of the step it overrides".to_owned(),
                );
                continue;
            };
            let target = root.get_mut("steps").and_then(Value::as_array_mut).and_then(|steps| {
                steps
                    .iter_mut()
                    .find(|s| s.get("name").and_then(Value::as_str) == Some(step_name))
            });
            match target {
                None => found.report(
                    active,
                    Some(step_name),
                    &entry_field,
                    format!("environment '{name}' overrides unknown step '{step_name}'"),
                ),
                Some(Value::Object(step)) if active => merge_step(step, entry),
                Some(_) => {}
            }
        }
    }
}

/// Deep-merges one override into a step: mappings merge key by key, anything else (lists
/// included) replaces. `dependencies` and its alias `depends_on` replace each other.
fn merge_step(step: &mut Map<String, Value>, entry: &Map<String, Value>) {
    for (key, value) in entry {
        match key.as_str() {
            "name" => {}
            "dependencies" | "depends_on" => {
                step.remove("dependencies");
                step.remove("depends_on");
                step.insert(key.clone(), value.clone());
            }
            _ => match step.get_mut(key) {
                Some(base) => deep_merge(base, value),
                None => {
                    step.insert(key.clone(), value.clone());
                }
            },
        }
    }
}

fn deep_merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(key) {
                    Some(existing) => deep_merge(existing, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, over) => *base = over.clone(),
    }
}

/// `key:` with no value means "the default" for fields that have one; and a step may not give
/// both `dependencies` and `depends_on`.
fn normalize(root: &mut Map<String, Value>, found: &mut Findings<'_>) {
    fn drop_nulls(obj: &mut Map<String, Value>, keys: &[&str]) {
        for key in keys {
            if obj.get(*key).is_some_and(Value::is_null) {
                obj.remove(*key);
            }
        }
    }
    let Some(Value::Array(steps)) = root.get_mut("steps") else {
        return;
    };
    for (i, step) in steps.iter_mut().enumerate() {
        let label = step_label(step, i);
        let Value::Object(step) = step else { continue };
        drop_nulls(step, &["dependencies", "depends_on", "type", "retry"]);
        if step.contains_key("dependencies") && step.contains_key("depends_on") {
            found.problem(
                Some(&label),
                Some("depends_on"),
                "give either 'dependencies' or its alias 'depends_on', not both".to_owned(),
            );
            step.remove("depends_on");
        }
        if let Some(Value::Object(handler)) = step.get_mut("handler") {
            drop_nulls(handler, &["method", "initialization"]);
        }
        if let Some(Value::Object(retry)) = step.get_mut("retry") {
            drop_nulls(retry, RETRY_FIELDS);
        }
    }
}

/// Type-checks every known field, one by one, so that each bad value is reported with its step
/// and field. Only called when deserializing the whole template failed.
fn check_types(root: &mut Map<String, Value>, found: &mut Findings<'_>) {
    found.check::<String>(root, "name", true, None, "name");
    found.check::<String>(root, "namespace_name", true, None, "namespace_name");
    found.check::<String>(root, "version", true, None, "version");
    found.check::<Option<String>>(root, "description", false, None, "description");
    let steps = match root.get_mut("steps") {
        Some(Value::Array(steps)) => steps,
        None => {
            found.problem(None, Some("steps"), "missing required field 'steps'".to_owned());
            found.fatal = true;
            return;
        }
        Some(other) => {
            found.problem(
                None,
                Some("steps"),
                format!("expected a list of steps, found {}", json_kind(other)),
            );
            found.fatal = true;
            return;
        }
    };
    for (i, step) in steps.iter_mut().enumerate() {
        let label = step_label(step, i);
        let Value::Object(step) = step else {
            found.problem(
                Some(&label),
                None,
                format!("expected a step (a mapping), found {}", json_kind(step)),
            );
            found.fatal = true;
            continue;
        };
        check_step_types(step, &label, found);
    }
}

fn check_step_types(step: &mut Map<String, Value>, label: &str, found: &mut Findings<'_>) {
    let s = Some(label);
    found.check::<String>(step, "name", true, s, "name");
    found.check::<Option<String>>(step, "description", false, s, "description");
    match step.get_mut("handler") {
        None => {
            found.problem(s, Some("handler"), "missing required field 'handler'".to_owned());
            found.fatal = true;
        }
        Some(Value::Object(handler)) => {
            found.check::<String>(handler, "callable", true, s, "handler.callable");
            found.check::<String>(handler, "method", false, s, "handler.method");
            found.check::<Option<String>>(handler, "resolver", false, s, "handler.resolver");
        }
        Some(other) => {
            found.problem(
                s,
                Some("handler"),
                format!(
                    "expected a mapping with at least 'callable', found {}",
                    json_kind(other)
                ),
            );
            found.fatal = true;
        }
    }
    found.check::<Vec<String>>(step, "dependencies", false, s, "dependencies");
    found.check::<Vec<String>>(step, "depends_on", false, s, "depends_on");
    found.check::<StepType>(step, "type", false, s, "type");
    match step.get_mut("retry") {
        None => {}
        Some(Value::Object(retry)) => {
            found.check::<bool>(retry, "retryable", false, s, "retry.retryable");
            found.check::<u32>(retry, "max_attempts", false, s, "retry.max_attempts");
            found.check::<BackoffKind>(retry, "backoff", false, s, "retry.backoff");
            found.check::<u64>(retry, "backoff_base_ms", false, s, "retry.backoff_base_ms");
            found.check::<u64>(retry, "max_backoff_ms", false, s, "retry.max_backoff_ms");
        }
        Some(other) => {
            found.problem(
                s,
                Some("retry"),
                format!("expected a mapping, found {}", json_kind(other)),
            );
            step.remove("retry");
        }
    }
    found.check::<Option<u64>>(step, "timeout_seconds", false, s, "timeout_seconds");
    found.check::<Option<String>>(step, "queue", false, s, "queue");
}

/// A dependency listed twice would count twice towards a step's pending parents: keep one.
fn dedupe_dependencies(template: &mut TaskTemplate, found: &mut Findings<'_>) {
    for step in &mut template.steps {
        let mut seen = HashSet::new();
        let mut repeated = Vec::new();
        step.dependencies.retain(|dep| {
            let first = seen.insert(dep.clone());
            if !first {
                repeated.push(dep.clone());
            }
            first
        });
        for dep in repeated {
            found.warn(
                Some(&step.name),
                Some("dependencies"),
                format!("dependency '{dep}' is listed more than once; the repeats are ignored"),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Misspelled field names

/// Warns about unknown fields that look like misspellings of known ones (or known fields of
/// another level, such as `max_attempts` directly under a step). Other unknown fields are kept
/// silently in the model's `extra` maps.
fn warn_misspellings(root: &Map<String, Value>, found: &mut Findings<'_>) {
    warn_level(root, TOP_FIELDS, &[], None, "", found);
    let Some(Value::Array(steps)) = root.get("steps") else {
        return;
    };
    for (i, step) in steps.iter().enumerate() {
        let label = step_label(step, i);
        let Value::Object(step) = step else { continue };
        let s = Some(label.as_str());
        warn_level(
            step,
            STEP_FIELDS,
            &[("handler", HANDLER_FIELDS), ("retry", RETRY_FIELDS)],
            s,
            "",
            found,
        );
        if let Some(Value::Object(handler)) = step.get("handler") {
            warn_level(handler, HANDLER_FIELDS, &[], s, "handler.", found);
        }
        if let Some(Value::Object(retry)) = step.get("retry") {
            warn_level(retry, RETRY_FIELDS, &[], s, "retry.", found);
        }
    }
}

fn warn_level(
    obj: &Map<String, Value>,
    known: &[&str],
    nested: &[(&str, &[&str])],
    step: Option<&str>,
    prefix: &str,
    found: &mut Findings<'_>,
) {
    for key in obj.keys().filter(|k| !known.contains(&k.as_str())) {
        let field = format!("{prefix}{key}");
        if let Some(suggestion) = closest_field(key, known) {
            found.warn(
                step,
                Some(&field),
                format!("unknown field '{key}': did you mean '{suggestion}'? (unknown fields are kept but not used)"),
            );
        } else if let Some((parent, _)) = nested.iter().find(|(_, fields)| fields.contains(&key.as_str())) {
            found.warn(
                step,
                Some(&field),
                format!(
                    "unknown field '{key}' here: did you mean '{parent}.{key}'? (unknown fields are kept but not used)"
                ),
            );
        }
    }
}

/// The known field `key` most likely misspells: edit distance at most 2 (at most 1 for names
/// of four letters or fewer, where 2 edits turn most words into others), ignoring case.
fn closest_field<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let key = key.to_ascii_lowercase();
    known
        .iter()
        .filter_map(|&name| {
            let limit = if name.len() <= 4 { 1 } else { 2 };
            let d = edit_distance(&key, name);
            (d <= limit).then_some((d, name))
        })
        .min_by_key(|&(d, _)| d)
        .map(|(_, name)| name)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and transpositions
/// of adjacent characters each cost 1.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::StepType;
    use serde_json::json;

    const BASE: &str = r#"
name: process_order
namespace_name: orders
version: 1.0.0
steps:
  - name: validate
    handler:
      callable: orders.Validate
      initialization:
        url: https://example.com
        params: {a: 1, b: 2}
  - name: charge
    depends_on: [validate]
    handler: {callable: orders.Charge}
    retry: {max_attempts: 5, backoff: linear}
"#;

    fn parse(yaml: &str) -> Result<LoadedTemplate, Vec<TemplateProblem>> {
        parse_str(yaml, Some(Path::new("t.yaml")), "development").map_err(|e| match e {
            TaskerError::Template(problems) => problems,
            other => panic!("unexpected error {other}"),
        })
    }

    fn parse_err(yaml: &str) -> Vec<String> {
        parse(yaml)
            .expect_err("should fail")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("dependecies", "dependencies"), 1);
        assert_eq!(edit_distance("max_atempts", "max_attempts"), 1);
        assert_eq!(edit_distance("handlr", "handler"), 1);
        assert_eq!(edit_distance("nmae", "name"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn closest_fields() {
        assert_eq!(closest_field("handlr", STEP_FIELDS), Some("handler"));
        assert_eq!(closest_field("Name", STEP_FIELDS), Some("name"));
        assert_eq!(closest_field("retyr", STEP_FIELDS), Some("retry"));
        assert_eq!(closest_field("tags", STEP_FIELDS), None);
        assert_eq!(closest_field("node", TOP_FIELDS), None);
        assert_eq!(closest_field("owner", TOP_FIELDS), None);
    }

    #[test]
    fn current_env_reads_tasker_env() {
        // The only test that touches TASKER_ENV.
        std::env::set_var(ENV_VAR, "staging");
        assert_eq!(current_env(), "staging");
        std::env::set_var(ENV_VAR, "");
        assert_eq!(current_env(), "development");
        std::env::remove_var(ENV_VAR);
        assert_eq!(current_env(), "development");
    }

    #[test]
    fn parses_defaults_and_alias() {
        let t = parse(BASE).expect("valid");
        assert_eq!(t.version, semver::Version::new(1, 0, 0));
        assert_eq!(t.source.as_deref(), Some(Path::new("t.yaml")));
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
        let steps = &t.template.steps;
        assert_eq!(steps[0].handler.method, "call");
        assert_eq!(steps[0].retry.max_attempts, 3);
        assert_eq!(steps[1].dependencies, vec!["validate"]);
        assert_eq!(steps[1].retry.max_attempts, 5);
        assert_eq!(steps[1].handler.initialization, json!({}));
        assert!(steps[1].extra.is_empty(), "{:?}", steps[1].extra);
    }

    #[test]
    fn environment_overrides_deep_merge() {
        let yaml = format!(
            "{BASE}environments:
  test:
    steps:
      - name: validate
        handler:
          initialization:
            url: http://localhost
            params: {{b: 20, c: 30}}
        retry: {{max_attempts: 1}}
      - name: charge
        dependencies: []
  production:
    steps:
      - name: charge
        timeout_seconds: 9
"
        );
        let t = parse_str(&yaml, None, "test").expect("valid");
        let steps = &t.template.steps;
        assert_eq!(
            steps[0].handler.initialization,
            json!({"url": "http://localhost", "params": {"a": 1, "b": 20, "c": 30}})
        );
        assert_eq!(steps[0].handler.callable, "orders.Validate");
        assert_eq!(steps[0].retry.max_attempts, 1);
        assert!(steps[1].dependencies.is_empty());
        assert_eq!(steps[1].timeout_seconds, None);
        assert!(t.template.environments.is_empty());

        let prod = parse_str(&yaml, None, "production").expect("valid");
        assert_eq!(prod.template.steps[1].timeout_seconds, Some(9));
        assert_eq!(prod.template.steps[1].dependencies, vec!["validate"]);
        assert_eq!(
            prod.template.steps[0].handler.initialization["url"],
            "https://example.com"
        );

        let dev = parse_str(&yaml, None, "development").expect("valid");
        assert_eq!(dev.template.steps[0].retry.max_attempts, 3);
    }

    #[test]
    fn override_of_unknown_step() {
        let yaml = format!(
            "{BASE}environments:
  test:
    steps:
      - name: refund
        retry: {{max_attempts: 1}}
"
        );
        let err = parse_str(&yaml, Some(Path::new("t.yaml")), "test").expect_err("unknown");
        let text = err.to_string();
        assert!(text.contains("step 'refund'"), "{text}");
        assert!(
            text.contains("environment 'test' overrides unknown step 'refund'"),
            "{text}"
        );
        assert!(text.contains("environments.test.steps[0]"), "{text}");

        // In another environment the same mistake is only a warning.
        let t = parse_str(&yaml, None, "development").expect("valid");
        assert_eq!(t.warnings.len(), 1);
        assert!(t.warnings[0].message.contains("'refund'"));
    }

    #[test]
    fn override_without_name_and_unknown_env_keys() {
        let yaml = format!(
            "{BASE}environments:
  test:
    stepz: []
    steps:
      - retry: {{max_attempts: 1}}
"
        );
        let problems = parse_str(&yaml, None, "test").expect_err("no name").to_string();
        assert!(problems.contains("needs the 'name'"), "{problems}");
        assert!(problems.contains("unknown key 'stepz'"), "{problems}");
    }

    #[test]
    fn misspelled_fields_warn_and_are_kept() {
        let yaml = r#"
name: t
namespace_name: ns
version: 0.1.0
descripton: typo at the top
owner: team-a
steps:
  - name: a
    handler: {callable: x, initialisation: {}}
    retry: {max_atempts: 2}
    dependecies: []
    max_attempts: 4
    custom_flag: true
"#;
        let t = parse(yaml).expect("valid");
        let fields: Vec<&str> = t.warnings.iter().filter_map(|w| w.field.as_deref()).collect();
        assert_eq!(
            fields,
            vec![
                "descripton",
                "dependecies",
                "max_attempts",
                "handler.initialisation",
                "retry.max_atempts"
            ]
        );
        assert!(t.warnings[1].message.contains("did you mean 'dependencies'"));
        assert_eq!(t.warnings[1].step.as_deref(), Some("a"));
        assert!(t.warnings[2].message.contains("'retry.max_attempts'"));
        assert_eq!(t.template.extra["owner"], json!("team-a"));
        assert_eq!(t.template.steps[0].extra["custom_flag"], json!(true));
        assert_eq!(t.template.steps[0].retry.extra["max_atempts"], json!(2));
        assert_eq!(t.template.steps[0].retry.max_attempts, 3);
    }

    #[test]
    fn misspelled_required_field_is_explained() {
        let msgs =
            parse_err("name: t\nnamespace_name: ns\nversion: 1.0.0\nsteps:\n  - name: a\n    handlr: {callable: x}\n");
        assert!(
            msgs.iter()
                .any(|m| m.contains("step 'a': field 'handler': missing required field")),
            "{msgs:#?}"
        );
        assert!(msgs.iter().any(|m| m.contains("did you mean 'handler'")), "{msgs:#?}");
    }

    #[test]
    fn type_errors_name_step_and_field_and_all_are_reported() {
        let yaml = r#"
name: t
namespace_name: ns
version: 1.0.0
steps:
  - name: a
    type: parallel
    handler: {callable: x}
    retry: {max_attempts: -1, backoff: quadratic}
  - name: b
    dependencies: a
    handler: {callable: y}
    timeout_seconds: soon
  - name: c
    handler: {callable: z}
    dependencies: [nope]
"#;
        let problems = parse(yaml).expect_err("invalid");
        let find = |step: &str, field: &str| {
            problems
                .iter()
                .find(|p| p.step.as_deref() == Some(step) && p.field.as_deref() == Some(field))
                .unwrap_or_else(|| panic!("no {step}/{field} in {problems:#?}"))
                .message
                .clone()
        };
        let ty = find("a", "type");
        for allowed in [
            "standard",
            "decision",
            "deferred_convergence",
            "batchable",
            "batch_worker",
        ] {
            assert!(ty.contains(allowed), "{ty}");
        }
        assert!(ty.contains("parallel"), "{ty}");
        assert!(find("a", "retry.max_attempts").contains("-1"));
        assert!(find("a", "retry.backoff").contains("quadratic"));
        assert!(find("b", "dependencies").contains("\"a\""));
        assert!(find("b", "timeout_seconds").contains("soon"));
        // The semantic checks still ran on the rest.
        assert_eq!(find("c", "dependencies"), "depends on unknown step 'nope'");
        assert_eq!(problems.len(), 6, "{problems:#?}");
        assert!(problems.iter().all(|p| p.file.as_deref() == Some(Path::new("t.yaml"))));
        assert!(problems.iter().all(|p| p.template.as_deref() == Some("ns/t@1.0.0")));
    }

    #[test]
    fn structural_errors() {
        let msgs = parse_err("- just\n- a list\n");
        assert!(msgs[0].contains("expected a template (a mapping)"), "{msgs:?}");
        let msgs = parse_err("name: t\nnamespace_name: ns\nversion: 1.0.0\nsteps: {a: 1}\n");
        assert!(
            msgs[0].contains("field 'steps'") && msgs[0].contains("expected a list"),
            "{msgs:?}"
        );
        let msgs = parse_err("name: t\nnamespace_name: ns\nversion: 1.0.0\n");
        assert!(msgs[0].contains("missing required field 'steps'"), "{msgs:?}");
        let msgs = parse_err("name: t\nnamespace_name: ns\nversion: 1.0.0\nsteps:\n  - name: a\n    handler: x.Y\n");
        assert!(
            msgs[0].contains("step 'a': field 'handler': expected a mapping"),
            "{msgs:?}"
        );
        let msgs = parse_err("name: [t]\nnamespace_name: ns\nversion: 1.0.0\nsteps: []\n");
        assert!(msgs[0].contains("field 'name': invalid type: sequence"), "{msgs:?}");
    }

    #[test]
    fn both_dependency_spellings_is_a_problem() {
        let msgs = parse_err(
            "name: t\nnamespace_name: ns\nversion: 1.0.0\nsteps:\n  - {name: a, handler: {callable: x}}\n  - {name: b, handler: {callable: x}, dependencies: [a], depends_on: [a]}\n",
        );
        assert_eq!(msgs.len(), 1, "{msgs:#?}");
        assert!(msgs[0].contains("step 'b': field 'depends_on'"), "{msgs:?}");
    }

    #[test]
    fn numeric_version_is_named() {
        let msgs =
            parse_err("name: t\nnamespace_name: ns\nversion: 1.0\nsteps:\n  - {name: a, handler: {callable: x}}\n");
        assert_eq!(msgs.len(), 1, "{msgs:#?}");
        assert!(
            msgs[0].contains("field 'version'") && msgs[0].contains("'1.0'"),
            "{msgs:?}"
        );
    }

    #[test]
    fn null_means_default() {
        let t = parse(
            "name: t\nnamespace_name: ns\nversion: 1.0.0\nsteps:\n  - name: a\n    dependencies:\n    type:\n    retry:\n    handler: {callable: x, initialization: ~}\n",
        )
        .expect("valid");
        let step = &t.template.steps[0];
        assert!(step.dependencies.is_empty());
        assert_eq!(step.step_type, StepType::Standard);
        assert_eq!(step.handler.initialization, json!({}));
    }

    #[test]
    fn duplicate_dependencies_are_merged_with_a_warning() {
        let t = parse(
            "name: t\nnamespace_name: ns\nversion: 1.0.0\nsteps:\n  - {name: a, handler: {callable: x}}\n  - {name: b, handler: {callable: x}, dependencies: [a, a]}\n",
        )
        .expect("valid");
        assert_eq!(t.template.steps[1].dependencies, vec!["a"]);
        assert_eq!(t.warnings.len(), 1);
        assert_eq!(t.warnings[0].field.as_deref(), Some("dependencies"));
    }

    #[test]
    fn yaml_errors_have_a_location() {
        let msgs = parse_err("name: t\nsteps:\n  - name: [a\n    handler: {}\n");
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].starts_with("t.yaml: invalid YAML"), "{msgs:?}");
        assert!(msgs[0].contains("line "), "{msgs:?}");
        let msgs = parse_err("name: t\nname: u\n");
        assert!(msgs[0].contains("duplicate entry"), "{msgs:?}");
    }

    #[test]
    fn yaml_features() {
        // Anchors and merge keys, numeric keys in free-form config.
        let t = parse(
            r#"
name: t
namespace_name: ns
version: 1.0.0
x-defaults: &defaults
  handler: {callable: shared.Handler, initialization: {codes: {200: ok}}}
  retry: {max_attempts: 7}
steps:
  - <<: *defaults
    name: a
  - <<: *defaults
    name: b
    depends_on: [a]
"#,
        )
        .expect("valid");
        assert_eq!(t.template.steps[1].handler.callable, "shared.Handler");
        assert_eq!(t.template.steps[1].retry.max_attempts, 7);
        assert_eq!(t.template.steps[0].handler.initialization["codes"]["200"], "ok");
        assert!(t.template.extra.contains_key("x-defaults"));

        let msgs = parse_err("name: !custom t\n");
        assert!(msgs[0].contains("field 'name'") && msgs[0].contains("tags are not supported"));
        let msgs = parse_err("name: t\nmetadata: {x: .inf}\n");
        assert!(msgs[0].contains("field 'metadata.x'"), "{msgs:?}");
    }

    #[test]
    fn loaded_template_round_trips_through_json() {
        // The engine stores `serde_json::to_value(template)` and reads it back.
        let yaml = format!(
            "{BASE}owner: team\nenvironments:\n  development:\n    steps:\n      - {{name: charge, timeout_seconds: 5}}\n"
        );
        let t = parse(&yaml).expect("valid").template;
        let stored = serde_json::to_value(&t).expect("serialize");
        assert!(stored.get("environments").is_none());
        assert_eq!(stored["steps"][1]["dependencies"], json!(["validate"]));
        let back: TaskTemplate = serde_json::from_value(stored).expect("deserialize");
        assert_eq!(back, t);
    }

    #[test]
    fn document_counts() {
        assert!(parse_err("")[0].contains("empty"));
        assert!(parse_err("# nothing\n")[0].contains("empty"));
        let two = format!("{BASE}---\n{BASE}");
        assert!(parse_err(&two)[0].contains("2 documents"));
        // A trailing `---` is not a second template.
        assert!(parse(&format!("{BASE}---\n")).is_ok());
    }
}
