//! The scaffolding's source files, embedded in the binary: `cli/templates/` is the one copy of
//! them. The Rails generators reach them through `tasker generate` (they run this binary), so
//! a handler is the same whichever entry point wrote it.

/// `(path under cli/templates/, contents)`.
const FILES: &[(&str, &str)] = &[
    (
        "common/template.yaml",
        include_str!("../../templates/common/template.yaml"),
    ),
    ("common/common.toml", include_str!("../../templates/common/common.toml")),
    ("common/worker.toml", include_str!("../../templates/common/worker.toml")),
    ("common/gitignore", include_str!("../../templates/common/gitignore")),
    // Python
    ("python/README.md", include_str!("../../templates/python/README.md")),
    (
        "python/pyproject.toml",
        include_str!("../../templates/python/pyproject.toml"),
    ),
    ("python/setup.sh", include_str!("../../templates/python/setup.sh")),
    ("python/worker.py", include_str!("../../templates/python/worker.py")),
    (
        "python/handler/standard.py",
        include_str!("../../templates/python/handler/standard.py"),
    ),
    (
        "python/handler/standard_test.py",
        include_str!("../../templates/python/handler/standard_test.py"),
    ),
    (
        "python/handler/decision.py",
        include_str!("../../templates/python/handler/decision.py"),
    ),
    (
        "python/handler/decision_test.py",
        include_str!("../../templates/python/handler/decision_test.py"),
    ),
    (
        "python/handler/batchable.py",
        include_str!("../../templates/python/handler/batchable.py"),
    ),
    (
        "python/handler/batchable_test.py",
        include_str!("../../templates/python/handler/batchable_test.py"),
    ),
    (
        "python/handler/batch_worker.py",
        include_str!("../../templates/python/handler/batch_worker.py"),
    ),
    (
        "python/handler/batch_worker_test.py",
        include_str!("../../templates/python/handler/batch_worker_test.py"),
    ),
    // Ruby
    ("ruby/README.md", include_str!("../../templates/ruby/README.md")),
    ("ruby/boot.rb", include_str!("../../templates/ruby/boot.rb")),
    ("ruby/setup.sh", include_str!("../../templates/ruby/setup.sh")),
    (
        "ruby/spec_helper.rb",
        include_str!("../../templates/ruby/spec_helper.rb"),
    ),
    ("ruby/rspec", include_str!("../../templates/ruby/rspec")),
    ("ruby/rubocop.yml", include_str!("../../templates/ruby/rubocop.yml")),
    ("ruby/worker.rb", include_str!("../../templates/ruby/worker.rb")),
    (
        "ruby/handler/standard.rb",
        include_str!("../../templates/ruby/handler/standard.rb"),
    ),
    (
        "ruby/handler/standard_spec.rb",
        include_str!("../../templates/ruby/handler/standard_spec.rb"),
    ),
    (
        "ruby/handler/decision.rb",
        include_str!("../../templates/ruby/handler/decision.rb"),
    ),
    (
        "ruby/handler/decision_spec.rb",
        include_str!("../../templates/ruby/handler/decision_spec.rb"),
    ),
    (
        "ruby/handler/batchable.rb",
        include_str!("../../templates/ruby/handler/batchable.rb"),
    ),
    (
        "ruby/handler/batchable_spec.rb",
        include_str!("../../templates/ruby/handler/batchable_spec.rb"),
    ),
    (
        "ruby/handler/batch_worker.rb",
        include_str!("../../templates/ruby/handler/batch_worker.rb"),
    ),
    (
        "ruby/handler/batch_worker_spec.rb",
        include_str!("../../templates/ruby/handler/batch_worker_spec.rb"),
    ),
    // TypeScript
    (
        "typescript/README.md",
        include_str!("../../templates/typescript/README.md"),
    ),
    (
        "typescript/package.json",
        include_str!("../../templates/typescript/package.json"),
    ),
    (
        "typescript/tsconfig.json",
        include_str!("../../templates/typescript/tsconfig.json"),
    ),
    (
        "typescript/setup.sh",
        include_str!("../../templates/typescript/setup.sh"),
    ),
    (
        "typescript/worker.ts",
        include_str!("../../templates/typescript/worker.ts"),
    ),
    (
        "typescript/handlers_index.ts",
        include_str!("../../templates/typescript/handlers_index.ts"),
    ),
    (
        "typescript/handler/standard.ts",
        include_str!("../../templates/typescript/handler/standard.ts"),
    ),
    (
        "typescript/handler/standard_test.ts",
        include_str!("../../templates/typescript/handler/standard_test.ts"),
    ),
    (
        "typescript/handler/decision.ts",
        include_str!("../../templates/typescript/handler/decision.ts"),
    ),
    (
        "typescript/handler/decision_test.ts",
        include_str!("../../templates/typescript/handler/decision_test.ts"),
    ),
    (
        "typescript/handler/batchable.ts",
        include_str!("../../templates/typescript/handler/batchable.ts"),
    ),
    (
        "typescript/handler/batchable_test.ts",
        include_str!("../../templates/typescript/handler/batchable_test.ts"),
    ),
    (
        "typescript/handler/batch_worker.ts",
        include_str!("../../templates/typescript/handler/batch_worker.ts"),
    ),
    (
        "typescript/handler/batch_worker_test.ts",
        include_str!("../../templates/typescript/handler/batch_worker_test.ts"),
    ),
    // Rust
    ("rust/README.md", include_str!("../../templates/rust/README.md")),
    ("rust/Cargo.toml", include_str!("../../templates/rust/Cargo.toml")),
    ("rust/gitignore", include_str!("../../templates/rust/gitignore")),
    ("rust/clippy.toml", include_str!("../../templates/rust/clippy.toml")),
    ("rust/main.rs", include_str!("../../templates/rust/main.rs")),
    (
        "rust/handlers_mod.rs",
        include_str!("../../templates/rust/handlers_mod.rs"),
    ),
    (
        "rust/handler/standard.rs",
        include_str!("../../templates/rust/handler/standard.rs"),
    ),
    (
        "rust/handler/decision.rs",
        include_str!("../../templates/rust/handler/decision.rs"),
    ),
    (
        "rust/handler/batchable.rs",
        include_str!("../../templates/rust/handler/batchable.rs"),
    ),
    (
        "rust/handler/batch_worker.rs",
        include_str!("../../templates/rust/handler/batch_worker.rs"),
    ),
    // Subscribers (`tasker generate subscriber`)
    (
        "python/subscriber/subscriber.py",
        include_str!("../../templates/python/subscriber/subscriber.py"),
    ),
    (
        "python/subscriber/on_event.py",
        include_str!("../../templates/python/subscriber/on_event.py"),
    ),
    (
        "python/subscriber/on_other.py",
        include_str!("../../templates/python/subscriber/on_other.py"),
    ),
    (
        "python/subscriber/test.py",
        include_str!("../../templates/python/subscriber/test.py"),
    ),
    (
        "python/subscriber/test_event.py",
        include_str!("../../templates/python/subscriber/test_event.py"),
    ),
    (
        "ruby/subscriber/subscriber.rb",
        include_str!("../../templates/ruby/subscriber/subscriber.rb"),
    ),
    (
        "ruby/subscriber/on_event.rb",
        include_str!("../../templates/ruby/subscriber/on_event.rb"),
    ),
    (
        "ruby/subscriber/on_other.rb",
        include_str!("../../templates/ruby/subscriber/on_other.rb"),
    ),
    (
        "ruby/subscriber/spec.rb",
        include_str!("../../templates/ruby/subscriber/spec.rb"),
    ),
    (
        "ruby/subscriber/spec_event.rb",
        include_str!("../../templates/ruby/subscriber/spec_event.rb"),
    ),
    (
        "typescript/subscriber/subscriber.ts",
        include_str!("../../templates/typescript/subscriber/subscriber.ts"),
    ),
    (
        "typescript/subscriber/on_event.ts",
        include_str!("../../templates/typescript/subscriber/on_event.ts"),
    ),
    (
        "typescript/subscriber/on_other.ts",
        include_str!("../../templates/typescript/subscriber/on_other.ts"),
    ),
    (
        "typescript/subscriber/on_unexpected.ts",
        include_str!("../../templates/typescript/subscriber/on_unexpected.ts"),
    ),
    (
        "typescript/subscriber/test.ts",
        include_str!("../../templates/typescript/subscriber/test.ts"),
    ),
    (
        "typescript/subscriber/test_event.ts",
        include_str!("../../templates/typescript/subscriber/test_event.ts"),
    ),
    (
        "rust/subscriber/subscriber.rs",
        include_str!("../../templates/rust/subscriber/subscriber.rs"),
    ),
    (
        "rust/subscriber/on_event.rs",
        include_str!("../../templates/rust/subscriber/on_event.rs"),
    ),
    (
        "rust/subscriber/on_other.rs",
        include_str!("../../templates/rust/subscriber/on_other.rs"),
    ),
    (
        "rust/subscriber/test_event.rs",
        include_str!("../../templates/rust/subscriber/test_event.rs"),
    ),
    (
        "rust/subscribers_mod.rs",
        include_str!("../../templates/rust/subscribers_mod.rs"),
    ),
];

/// The embedded file `path` (relative to `cli/templates/`).
pub fn source(path: &str) -> Result<&'static str, String> {
    FILES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, text)| *text)
        .ok_or_else(|| format!("the scaffolding has no file {path} (a bug in tasker: please report it)"))
}

/// `text` with every `{{key}}` replaced by its value in `vars`. A key without a value is an
/// error naming it and the file, so a template and its caller cannot drift apart silently.
pub fn render(name: &str, text: &str, vars: &[(&str, String)]) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("{name}: '{{{{' without a closing '}}}}'"))?;
        let key = &after[..end];
        let value = vars
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| format!("{name}: no value for {{{{{key}}}}} (a bug in tasker: please report it)"))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The embedded file `path`, rendered with `vars`.
pub fn rendered(path: &str, vars: &[(&str, String)]) -> Result<String, String> {
    render(path, source(path)?, vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_and_unknown_ones_refused() {
        let vars = [("a", "1".to_owned())];
        assert_eq!(render("t", "x{{a}}y{a}", &vars).as_deref(), Ok("x1y{a}"));
        assert!(render("t", "{{b}}", &vars).unwrap_err().contains("no value for {{b}}"));
        assert!(render("t", "{{a", &vars).unwrap_err().contains("without a closing"));
    }

    #[test]
    fn every_embedded_file_is_listed_once() {
        let mut paths: Vec<&str> = FILES.iter().map(|(p, _)| *p).collect();
        paths.sort_unstable();
        let before = paths.len();
        paths.dedup();
        assert_eq!(before, paths.len());
    }
}
