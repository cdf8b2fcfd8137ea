//! `tasker generate subscriber`: an event subscriber in one language, written against that
//! language's subscriber API (`tasker_core.events.Subscriber`, `TaskerCore::Subscriber`, the
//! TypeScript `Subscriber` class, the Rust `Subscriber` trait), and a test that hands it an event
//! of each kind it takes through the package's test helpers (no database).
//!
//! The Rails generator `tasker:subscriber` runs this command, so both entry points write the same
//! code. As for handlers, every file is planned first and nothing is written when one exists.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tasker_core::events::{catalog, event_info, pattern_matches};
use tasker_core::TaskerError;

use super::names::{self, HandlerName};
use super::{
    files, insert_before_markers, invalid, new_file, path_words, relative_dir, relative_path, wrap_in_modules,
    write_all, Language, Layout, Planned, SubscriberArgs, WriteMode,
};

/// The categories of the engine's own events: a name in one of them must be in the catalog.
const ENGINE_CATEGORIES: &[&str] = &["task", "step", "operator", "dlq", "worker"];

/// The events a subscriber takes: names and `*` patterns, checked, in the order given.
#[derive(Debug)]
struct Events {
    patterns: Vec<String>,
}

impl Events {
    /// `raw` as `--events` gave it (clap already split it at commas).
    fn parse(raw: &[String]) -> Result<Events, TaskerError> {
        let mut patterns: Vec<String> = Vec::new();
        for pattern in raw.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            names::check_event_pattern(pattern).map_err(|why| {
                invalid(format!(
                    "--events: '{pattern}' {why} (e.g. task.completed, payment.*, *.failed)"
                ))
            })?;
            if !pattern.contains('*') {
                check_known(pattern)?;
            }
            if !patterns.iter().any(|p| p == pattern) {
                patterns.push(pattern.to_owned());
            }
        }
        if patterns.is_empty() {
            return Err(invalid(
                "--events names no event: give names or patterns separated by commas, e.g. task.completed,payment.*",
            ));
        }
        Ok(Events { patterns })
    }

    /// The names without a wildcard: each gets a method of its own.
    fn named(&self) -> Vec<&str> {
        self.patterns
            .iter()
            .filter(|p| !p.contains('*'))
            .map(String::as_str)
            .collect()
    }

    /// The patterns with a wildcard: their events go to the fallback.
    fn wildcards(&self) -> Vec<&str> {
        self.patterns
            .iter()
            .filter(|p| p.contains('*'))
            .map(String::as_str)
            .collect()
    }

    /// The events the test hands the subscriber: each named one, and for each wildcard a catalog
    /// event it matches (else a made-up one that it matches), without repeats.
    fn examples(&self) -> Vec<String> {
        let mut out: Vec<String> = self.named().into_iter().map(str::to_owned).collect();
        for wildcard in self.wildcards() {
            let example = catalog()
                .into_iter()
                .map(|e| e.name)
                .find(|name| pattern_matches(wildcard, name))
                .unwrap_or_else(|| made_up_event(wildcard));
            if pattern_matches(wildcard, &example) && !out.contains(&example) {
                out.push(example);
            }
        }
        out
    }

    /// `task.completed, step.failed and payment.*`, or `every event`.
    fn sentence(&self) -> String {
        match self.patterns.as_slice() {
            [only] if only == "*" => "every event".to_owned(),
            [only] => only.clone(),
            [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
            [] => String::new(),
        }
    }

    /// The patterns as a list literal's items, in `quote`s: `"a", "b"`.
    fn quoted(&self, quote: char) -> String {
        self.patterns
            .iter()
            .map(|p| format!("{quote}{p}{quote}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A name in one of the engine's categories that is not in the catalog is a typo (the engine
/// would never send it); the error lists the category's events.
fn check_known(name: &str) -> Result<(), TaskerError> {
    let category = name.split('.').next().unwrap_or_default();
    if !ENGINE_CATEGORIES.contains(&category) || event_info(name).is_some() {
        return Ok(());
    }
    let known: Vec<String> = catalog()
        .into_iter()
        .filter(|e| e.category == category)
        .map(|e| e.name)
        .collect();
    Err(invalid(format!(
        "--events: '{name}' is not an event of the catalog; the {category} events are {} \
         (`tasker events catalog` lists them all; domain events need a name outside task., step., \
         operator., dlq. and worker.)",
        known.join(", ")
    )))
}

/// An event name `pattern` matches: each `*` becomes a word (`payment.*` → `payment.example`).
fn made_up_event(pattern: &str) -> String {
    let mut words: Vec<String> = pattern
        .split('.')
        .map(|w| match w.replace('*', "") {
            bare if bare.is_empty() => "example".to_owned(),
            bare => bare,
        })
        .collect();
    if words.len() == 1 {
        words.push("example".to_owned());
    }
    words.join(".")
}

/// `task.completed` → `task_completed`: the event in an identifier.
fn event_word(event: &str) -> String {
    event.replace('.', "_")
}

/// `step.retry_scheduled` → `handleStepRetryScheduled`: the method the TypeScript runner routes
/// an event to (`routeMethod` in bindings-node/ts/subscriber.ts).
fn ts_route_method(event: &str) -> String {
    let words: String = event
        .split(['.', '_'])
        .filter(|w| !w.is_empty())
        .map(names::camel)
        .collect();
    format!("handle{words}")
}

/// What `tasker generate subscriber` writes, and what to tell the user afterwards.
struct SubscriberPlan {
    files: Vec<Planned>,
    /// The class (module path) or struct, as code names it.
    constant: String,
    group: String,
    /// How to run it beside the worker, or what to add by hand.
    next_steps: Vec<String>,
}

pub(super) fn generate_subscriber(args: SubscriberArgs) -> Result<ExitCode, TaskerError> {
    let name = HandlerName::parse_as("subscriber", &args.name).map_err(invalid)?;
    let events = Events::parse(&args.events)?;
    let defaults = args.language.subscriber_layout();
    let layout = Layout {
        handlers: relative_dir("--subscribers-dir", args.subscribers_dir.unwrap_or(defaults.handlers))?,
        tests: relative_dir("--tests-dir", args.tests_dir.unwrap_or(defaults.tests))?,
    };
    let mut plan = subscriber_plan(args.language, &name, &events, &layout, &args.dir)?;
    write_all(&args.dir, &mut plan.files)?;
    for f in &plan.files {
        let verb = if f.mode == WriteMode::Replace {
            "updated"
        } else {
            "created"
        };
        println!("{verb} {}", args.dir.join(&f.path).display());
    }
    println!(
        "subscriber {} (group \"{}\") takes {}",
        plan.constant,
        plan.group,
        events.patterns.join(", ")
    );
    for step in &plan.next_steps {
        println!("{step}");
    }
    Ok(ExitCode::SUCCESS)
}

fn subscriber_plan(
    lang: Language,
    name: &HandlerName,
    events: &Events,
    layout: &Layout,
    root: &Path,
) -> Result<SubscriberPlan, TaskerError> {
    let class = format!("{}Subscriber", names::camel(name.leaf()));
    let group = format!("{name}_subscriber");
    let wildcards = events.wildcards().join(", ");
    let render = |file: &str, extra: &[(&str, String)]| -> Result<String, TaskerError> {
        let mut vars: Vec<(&str, String)> = vec![
            ("class_name", class.clone()),
            ("group", group.clone()),
            ("event_list", events.sentence()),
            ("wildcards", wildcards.clone()),
        ];
        vars.extend(extra.iter().cloned());
        files::rendered(&format!("{}/subscriber/{file}", lang.dir()), &vars).map_err(invalid)
    };
    // One rendering of `file` per event, concatenated.
    let per_event = |file: &str, list: &[String], method: &dyn Fn(&str) -> String| -> Result<String, TaskerError> {
        list.iter()
            .map(|e| {
                render(
                    file,
                    &[
                        ("event", e.clone()),
                        ("event_word", event_word(e)),
                        ("method", method(e)),
                        ("function", format!("on_{}", event_word(e))),
                        ("test_name", name.flat()),
                    ],
                )
            })
            .collect()
    };
    let named: Vec<String> = events.named().into_iter().map(str::to_owned).collect();
    let examples = events.examples();
    let has_wildcards = !events.wildcards().is_empty();
    let snake_method = |e: &str| format!("handle_{}", event_word(e));
    let nested = |base: &Path, file: String| -> PathBuf {
        let mut p = base.to_path_buf();
        p.extend(name.namespaces());
        p.join(file)
    };
    let mut files = Vec::new();
    let mut next_steps = Vec::new();
    let constant = match lang {
        Language::Python => {
            let file = nested(&layout.handlers, format!("{}.py", name.leaf()));
            let mut module = path_words("--subscribers-dir", &layout.handlers)?;
            module.extend(name.segments().iter().cloned());
            let module = module.join(".");
            let mut methods = per_event("on_event.py", &named, &snake_method)?;
            if has_wildcards {
                methods.push_str(&render("on_other.py", &[])?);
            }
            let fallback = if has_wildcards {
                ", the others to handle(event)"
            } else {
                ""
            };
            let body = render(
                "subscriber.py",
                &[
                    ("patterns", events.quoted('"')),
                    ("methods", methods),
                    ("fallback_doc", fallback.to_owned()),
                ],
            )?;
            // Each directory down to the subscriber is a package.
            let mut package = layout.handlers.clone();
            let mut packages = vec![package.clone()];
            for ns in name.namespaces() {
                package = package.join(ns);
                packages.push(package.clone());
            }
            for p in packages {
                files.push(Planned {
                    path: p.join("__init__.py"),
                    contents: String::new(),
                    executable: false,
                    mode: WriteMode::IfMissing,
                });
            }
            files.push(new_file(file, Ok(body))?);
            let tests = per_event("test_event.py", &examples, &snake_method)?;
            let test = render(
                "test.py",
                &[
                    ("patterns", events.quoted('"')),
                    ("module", module.clone()),
                    ("test_name", name.flat()),
                    ("tests", tests),
                ],
            )?;
            files.push(new_file(
                layout.tests.join(format!("test_{}_subscriber.py", name.flat())),
                Ok(test),
            )?);
            next_steps.push(format!(
                "run it beside the worker: SubscriberRunner(client, {class}).start()\n  \
                 (from tasker_core.events import SubscriberRunner; from {module} import {class})"
            ));
            class.clone()
        }
        Language::Ruby => {
            let file = nested(&layout.handlers, format!("{}_subscriber.rb", name.leaf()));
            let spec_file = nested(&layout.tests, format!("{}_subscriber_spec.rb", name.leaf()));
            let mut constant: Vec<String> = name.namespaces().iter().map(|s| names::camel(s)).collect();
            constant.push(class.clone());
            let constant = constant.join("::");
            let mut methods = per_event("on_event.rb", &named, &snake_method)?;
            if has_wildcards {
                methods.push_str(&render("on_other.rb", &[])?);
            }
            let fallback = if has_wildcards {
                ", the others to handle(event)"
            } else {
                ""
            };
            let body = render(
                "subscriber.rb",
                &[
                    ("patterns", events.quoted('"')),
                    ("methods", methods),
                    ("fallback_doc", fallback.to_owned()),
                ],
            )?;
            let source = format!(
                "# frozen_string_literal: true\n\n{}",
                wrap_in_modules(name.namespaces(), &body)
            );
            let spec_dir = spec_file.parent().map(Path::to_path_buf).unwrap_or_default();
            let require = relative_path(&spec_dir, &file.with_extension(""));
            let tests = per_event("spec_event.rb", &examples, &snake_method)?;
            let spec = format!(
                "# frozen_string_literal: true\n\nrequire \"tasker_core\"\nrequire \"tasker_core/testing/rspec\"\n\
                 require_relative \"{require}\"\n\n{}",
                render(
                    "spec.rb",
                    &[
                        ("patterns", events.quoted('"')),
                        ("constant", constant.clone()),
                        ("tests", tests),
                    ],
                )?
            );
            next_steps.push(format!(
                "run it beside the worker: TaskerCore::SubscriberRunner.new(client, {constant}).start\n  \
                 (require_relative \"{}\"; in Rails: config.tasker.subscribers << \"{constant}\")",
                file.with_extension("").display()
            ));
            files.push(new_file(file, Ok(source))?);
            files.push(new_file(spec_file, Ok(spec))?);
            constant
        }
        Language::Typescript => {
            let file = nested(&layout.handlers, format!("{}.ts", name.leaf()));
            let test_file = layout.tests.join(format!("{}_subscriber.test.ts", name.flat()));
            let import_path = relative_path(&layout.tests, &file.with_extension(""));
            let mut methods = per_event("on_event.ts", &named, &ts_route_method)?;
            methods.push_str(&render(
                if has_wildcards {
                    "on_other.ts"
                } else {
                    "on_unexpected.ts"
                },
                &[],
            )?);
            let fallback = if has_wildcards {
                ", the others to handle(event)"
            } else {
                ""
            };
            let body = render(
                "subscriber.ts",
                &[
                    ("patterns", events.quoted('\'')),
                    ("methods", methods),
                    ("fallback_doc", fallback.to_owned()),
                ],
            )?;
            let tests = per_event("test_event.ts", &examples, &ts_route_method)?;
            let test = render(
                "test.ts",
                &[
                    ("patterns", events.quoted('\'')),
                    ("import_path", import_path),
                    ("tests", tests),
                ],
            )?;
            let from_src = relative_path(Path::new("src"), &file.with_extension(""));
            next_steps.push(format!(
                "run it beside the worker: await new SubscriberRunner(client, {class}).start();\n  \
                 (import {{ SubscriberRunner }} from 'tasker-core'; import {{ {class} }} from '{from_src}';)"
            ));
            files.push(new_file(file, Ok(body))?);
            files.push(new_file(test_file, Ok(test))?);
            class.clone()
        }
        Language::Rust => {
            let module = name.flat();
            let file = layout.handlers.join(format!("{module}.rs"));
            let functions = per_event("on_event.rs", &named, &snake_method)?;
            let mut dispatch = String::new();
            if named.is_empty() {
                dispatch.push_str("        on_other(event)\n");
            } else {
                dispatch.push_str("        match event.name.as_str() {\n");
                for e in &named {
                    dispatch.push_str(&format!("            \"{e}\" => on_{}(event),\n", event_word(e)));
                }
                if has_wildcards {
                    dispatch.push_str("            _ => on_other(event),\n");
                } else {
                    // Only the names above are subscribed to: another one fails (and ends in the
                    // dead letters) rather than being acknowledged unseen.
                    dispatch.push_str(&format!(
                        "            other => Err(format!(\"{class} has no function for {{other}}\")),\n"
                    ));
                }
                dispatch.push_str("        }\n");
            }
            let mut functions = functions;
            if has_wildcards {
                functions.push_str(&render("on_other.rs", &[])?);
            }
            let fallback = if has_wildcards {
                ", the others to `on_other`"
            } else {
                ""
            };
            let tests = per_event("test_event.rs", &examples, &snake_method)?;
            let body = render(
                "subscriber.rs",
                &[
                    ("patterns", events.quoted('"')),
                    ("dispatch", dispatch),
                    ("functions", functions),
                    ("fallback_doc", fallback.to_owned()),
                    ("tests", tests),
                ],
            )?;
            files.push(new_file(file, Ok(body))?);
            rust_registry(&module, &class, layout, root, &mut files, &mut next_steps)?;
            format!("{module}::{class}")
        }
    };
    Ok(SubscriberPlan {
        files,
        constant,
        group,
        next_steps,
    })
}

/// Adds the subscriber to `src/subscribers/mod.rs`, which the worker of a `tasker init` project
/// starts; creates that file in a project made before it existed, and says what `src/main.rs`
/// then needs.
fn rust_registry(
    module: &str,
    class: &str,
    layout: &Layout,
    root: &Path,
    files: &mut Vec<Planned>,
    next_steps: &mut Vec<String>,
) -> Result<(), TaskerError> {
    let path = layout.handlers.join("mod.rs");
    let lines = [
        ("// tasker:modules", format!("pub mod {module};\n")),
        (
            "        // tasker:subscribers",
            format!("        Box::new({module}::{class}),\n"),
        ),
    ];
    let full = root.join(&path);
    match std::fs::read_to_string(&full) {
        Ok(text) => match insert_before_markers(&text, &lines) {
            Some(contents) => files.push(Planned {
                path,
                contents,
                executable: false,
                mode: WriteMode::Replace,
            }),
            None => {
                for (_, line) in &lines {
                    next_steps.push(format!("add by hand: {}: {}", full.display(), line.trim()));
                }
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let contents = files::rendered(
                "rust/subscribers_mod.rs",
                &[("modules", lines[0].1.clone()), ("entries", lines[1].1.clone())],
            )
            .map_err(invalid)?;
            files.push(new_file(path.clone(), Ok(contents))?);
            next_steps.push(format!(
                "add by hand: src/main.rs: `mod subscribers;` (for {}), and start them beside the worker:\n  \
                 for subscriber in subscribers::all() {{ running.push(tasker_core::events::SubscriberRunner::start(&tasker, subscriber, None).await?); }}",
                path.display()
            ));
        }
        Err(e) => return Err(invalid(format!("cannot read {}: {e}", full.display()))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(list: &[&str]) -> Result<Events, TaskerError> {
        Events::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn events_are_checked_and_each_kind_gets_an_example() {
        let e = events(&["task.completed", "payment.*", " step.failed", "task.completed", ""]).expect("valid");
        assert_eq!(e.patterns, ["task.completed", "payment.*", "step.failed"]);
        assert_eq!(e.named(), ["task.completed", "step.failed"]);
        assert_eq!(e.examples(), ["task.completed", "step.failed", "payment.example"]);
        assert_eq!(e.sentence(), "task.completed, payment.* and step.failed");
        let every = events(&["*"]).expect("valid");
        assert_eq!(every.sentence(), "every event");
        assert_eq!(every.examples().len(), 1);
        assert!(event_info(&every.examples()[0]).is_some(), "a catalog event");

        let typo = events(&["task.compleated"]).unwrap_err().to_string();
        assert!(
            typo.contains("'task.compleated' is not an event of the catalog") && typo.contains("task.completed"),
            "{typo}"
        );
        let bad = events(&["Task Completed"]).unwrap_err().to_string();
        assert!(bad.contains("--events: 'Task Completed' has 'T'"), "{bad}");
        assert!(events(&[""]).unwrap_err().to_string().contains("names no event"));
    }

    #[test]
    fn names_follow_each_languages_routing() {
        assert_eq!(ts_route_method("step.retry_scheduled"), "handleStepRetryScheduled");
        assert_eq!(made_up_event("*.sent"), "example.sent");
        assert_eq!(made_up_event("pay*"), "pay.example");
        assert!(pattern_matches("pay*", &made_up_event("pay*")));
    }
}
