//! `tasker init` (a runnable project in one language) and `tasker generate handler|template`.
//!
//! Every file comes from `cli/templates/` (embedded, see [`files`]). A command plans all its
//! files first and writes nothing when any of them already exists, so a failed run leaves the
//! directory as it was. The Rails generator `tasker:step_handler` runs `tasker generate handler
//! --language ruby`, so both entry points write the same code.

mod files;
pub mod names;
mod subscriber;

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use tasker_core::TaskerError;

use names::HandlerName;
use subscriber::generate_subscriber;

/// The languages a project or handler can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Language {
    Python,
    Ruby,
    #[value(alias = "ts", alias = "node")]
    Typescript,
    Rust,
}

impl Language {
    fn dir(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Ruby => "ruby",
            Language::Typescript => "typescript",
            Language::Rust => "rust",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Language::Python => "py",
            Language::Ruby => "rb",
            Language::Typescript => "ts",
            Language::Rust => "rs",
        }
    }

    /// Where handlers and their tests go in a project of this language.
    fn default_layout(self) -> Layout {
        let (handlers, tests) = match self {
            Language::Python => ("handlers", "tests"),
            Language::Ruby => ("handlers", "spec/handlers"),
            Language::Typescript => ("src/handlers", "test"),
            // Rust tests live in the handler's file.
            Language::Rust => ("src/handlers", "src/handlers"),
        };
        Layout {
            handlers: PathBuf::from(handlers),
            tests: PathBuf::from(tests),
        }
    }

    /// Where subscribers and their tests go in a project of this language.
    fn subscriber_layout(self) -> Layout {
        let (subscribers, tests) = match self {
            Language::Python => ("subscribers", "tests"),
            Language::Ruby => ("subscribers", "spec/subscribers"),
            Language::Typescript => ("src/subscribers", "test"),
            // Rust tests live in the subscriber's file.
            Language::Rust => ("src/subscribers", "src/subscribers"),
        };
        Layout {
            handlers: PathBuf::from(subscribers),
            tests: PathBuf::from(tests),
        }
    }

    /// The commands a project's README gives: set up, test, run.
    fn commands(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Language::Python => ("bin/setup", ".venv/bin/python -m pytest", ".venv/bin/python worker.py"),
            Language::Ruby => ("bin/setup", "rspec", "ruby worker.rb"),
            Language::Typescript => ("bin/setup", "npm test", "npm run worker"),
            Language::Rust => ("", "cargo test", "cargo run"),
        }
    }
}

/// The step types a handler can be generated for (`deferred_convergence` handlers are standard
/// ones reading several dependency results).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HandlerKind {
    Standard,
    Decision,
    Batchable,
    #[value(name = "batch_worker")]
    BatchWorker,
}

impl HandlerKind {
    fn file_stem(self) -> &'static str {
        match self {
            HandlerKind::Standard => "standard",
            HandlerKind::Decision => "decision",
            HandlerKind::Batchable => "batchable",
            HandlerKind::BatchWorker => "batch_worker",
        }
    }

    /// The step lines a template needs for a handler of this type, beside `name` and `handler`.
    fn template_hint(self) -> &'static str {
        match self {
            HandlerKind::Standard => "",
            HandlerKind::Decision => "\n    type: decision          # its branches: steps with dependencies: [this step]",
            HandlerKind::Batchable => "\n    type: batchable         # and a batch_worker step depending on it",
            HandlerKind::BatchWorker => {
                "\n    type: batch_worker\n    dependencies: [the_batchable_step]\n    batch_config: {checkpoint_interval: 100}"
            }
        }
    }
}

#[derive(Args)]
#[command(after_help = "Examples:
  tasker init orders --language python     a Python project in ./orders
  tasker init --language rust              a Rust project in the current (empty) directory
  TASKER_SOURCE=~/src/tasker tasker init shop --language typescript

The project's packages come from a Tasker checkout (there is no registry release): --tasker-source,
else $TASKER_SOURCE, else the checkout this binary was built from. Build them there first with
scripts/build-packages.sh (Python, Ruby, TypeScript); Rust needs only the sources.")]
pub struct InitArgs {
    /// The project's directory (created; it must be empty if it exists).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The language of the handlers and the worker.
    #[arg(long, short = 'l', value_enum)]
    language: Language,
    /// The project's name [default: the directory's name]; its snake_case form is the template's
    /// namespace and the worker's queue.
    #[arg(long)]
    name: Option<String>,
    /// The Tasker checkout whose packages the project uses [default: $TASKER_SOURCE, else the
    /// checkout this binary was built from].
    #[arg(long, env = "TASKER_SOURCE")]
    tasker_source: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum GenerateCommand {
    /// Write a step handler and its test, in a project's layout.
    #[command(after_help = "Examples:
  tasker generate handler charge_card --language python
  tasker generate handler payments/route_order --language ruby --type decision
  tasker generate handler imports/split --language rust --type batchable
  tasker generate handler imports/process_batch --language typescript --type batch_worker

NAME is snake_case words separated by '/': the last one names the step, the others are
namespaces (Python packages, Ruby modules, directories). Rust and TypeScript handlers are also
added to src/handlers/mod.rs / src/handlers/index.ts. Nothing is overwritten.")]
    Handler(HandlerArgs),
    /// Write an event subscriber and its test, in a project's layout.
    #[command(after_help = "Examples:
  tasker generate subscriber audit --language python --events task.completed,step.failed
  tasker generate subscriber billing/ledger --language ruby --events 'payment.*'
  tasker generate subscriber notify --language typescript --events task.failed,task.completed
  tasker generate subscriber metrics --language rust --events '*'

NAME is snake_case words separated by '/' (as for a handler): the last one names the class
(audit: AuditSubscriber), the others are namespaces. Its group is NAME_subscriber. Each event
named in --events gets a method of its own; the patterns with '*' go to a fallback. The test
hands it an event of each kind through the package's test helpers (no database). Rust
subscribers are also added to src/subscribers/mod.rs, which the worker starts. Nothing is
overwritten.")]
    Subscriber(SubscriberArgs),
    /// Write a task template with one step.
    #[command(after_help = "Examples:
  tasker generate template refund --namespace payments
  tasker generate template refund --language ruby --step check_refund

The namespace defaults to that of the templates already in templates/.")]
    Template(TemplateArgs),
}

#[derive(Args)]
pub struct HandlerArgs {
    /// The handler's name, e.g. charge_card or payments/charge_card.
    name: String,
    #[arg(long, short = 'l', value_enum)]
    language: Language,
    /// The step type the handler serves.
    #[arg(long = "type", value_enum, default_value = "standard")]
    kind: HandlerKind,
    /// The project's root.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Where handlers go, under the root [default: handlers (Python, Ruby), src/handlers (Rust,
    /// TypeScript)].
    #[arg(long)]
    handlers_dir: Option<PathBuf>,
    /// Where tests go, under the root [default: tests (Python), spec/handlers (Ruby), test
    /// (TypeScript); Rust tests are in the handler's file].
    #[arg(long)]
    tests_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct SubscriberArgs {
    /// The subscriber's name, e.g. audit or billing/audit.
    name: String,
    #[arg(long, short = 'l', value_enum)]
    language: Language,
    /// The events it takes, separated by commas: names (task.completed, payment.charged) or
    /// patterns with '*' (payment.*, *.failed, *).
    #[arg(long, value_delimiter = ',', default_value = "*")]
    events: Vec<String>,
    /// The project's root.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Where subscribers go, under the root [default: subscribers (Python, Ruby),
    /// src/subscribers (Rust, TypeScript)].
    #[arg(long)]
    subscribers_dir: Option<PathBuf>,
    /// Where tests go, under the root [default: tests (Python), spec/subscribers (Ruby), test
    /// (TypeScript); Rust tests are in the subscriber's file].
    #[arg(long)]
    tests_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct TemplateArgs {
    /// The template's name (snake_case), e.g. process_refund.
    name: String,
    /// Its namespace (and the queue of its steps) [default: that of templates/*.yaml].
    #[arg(long)]
    namespace: Option<String>,
    /// Spell the step's callable for this language's handler [default: dotted, as Rust and
    /// TypeScript handlers are named].
    #[arg(long, short = 'l', value_enum)]
    language: Option<Language>,
    /// The name of its one step.
    #[arg(long, default_value = "first_step")]
    step: String,
    /// The project's root; the file goes to <DIR>/templates/<NAME>.yaml.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

/// Where handlers and tests go, relative to the project's root.
#[derive(Debug, Clone)]
struct Layout {
    handlers: PathBuf,
    tests: PathBuf,
}

/// A file a command will write.
#[derive(Debug)]
struct Planned {
    /// Relative to the root.
    path: PathBuf,
    contents: String,
    executable: bool,
    mode: WriteMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteMode {
    /// A new file: the command fails if it exists.
    Create,
    /// Written only if missing (a Python package's `__init__.py`).
    IfMissing,
    /// An existing file, edited (a handler registry).
    Replace,
}

/// What `tasker generate handler` writes, and what to tell the user afterwards.
struct HandlerPlan {
    files: Vec<Planned>,
    callable: String,
    handler_file: PathBuf,
    /// Lines the user must add by hand (a registry file without its markers).
    manual_steps: Vec<String>,
}

fn invalid(message: impl Into<String>) -> TaskerError {
    TaskerError::InvalidArgument(message.into())
}

/// `tasker init`.
pub fn init(args: InitArgs) -> Result<ExitCode, TaskerError> {
    let source = tasker_source(args.tasker_source.as_deref())?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => project_dir_name(&args.dir)?,
    };
    let namespace = names::check_project_name(&name).map_err(invalid)?;
    check_empty_dir(&args.dir)?;

    let lang = args.language;
    let template_name = "greeting";
    let handler = HandlerName::parse("say_hello").map_err(invalid)?;
    let layout = lang.default_layout();
    let plan = handler_plan(lang, HandlerKind::Standard, &handler, &layout, None)?;
    let source_text = source.display().to_string();
    let vars: Vec<(&str, String)> = vec![
        ("project", name.clone()),
        ("package_name", name.clone()),
        ("namespace", namespace.clone()),
        ("template_name", template_name.to_owned()),
        ("step_name", handler.leaf().to_owned()),
        ("callable", plan.callable.clone()),
        ("description", "Greets the name in the task's context.".to_owned()),
        ("step_description", "Greets the name in the task's context.".to_owned()),
        ("handler_file", plan.handler_file.display().to_string()),
        ("tasker_source", source_text.clone()),
    ];

    let mut files = vec![
        planned(
            "config/tasker/base/common.toml",
            files::rendered("common/common.toml", &vars),
        ),
        planned(
            "config/tasker/base/worker.toml",
            files::rendered("common/worker.toml", &vars),
        ),
        planned(
            &format!("templates/{template_name}.yaml"),
            files::rendered("common/template.yaml", &vars),
        ),
        planned(
            "README.md",
            files::rendered(&format!("{}/README.md", lang.dir()), &vars),
        ),
    ];
    let mut gitignore = files::rendered("common/gitignore", &vars).map_err(invalid)?;
    match lang {
        Language::Python => {
            gitignore.push_str(".venv/\n__pycache__/\n.pytest_cache/\n.ruff_cache/\n");
            files.push(planned(
                "pyproject.toml",
                files::rendered("python/pyproject.toml", &vars),
            ));
            files.push(executable("bin/setup", files::rendered("python/setup.sh", &vars)));
            files.push(planned("worker.py", files::rendered("python/worker.py", &vars)));
        }
        Language::Ruby => {
            files.push(planned(".rspec", files::rendered("ruby/rspec", &vars)));
            files.push(planned(".rubocop.yml", files::rendered("ruby/rubocop.yml", &vars)));
            files.push(executable("bin/setup", files::rendered("ruby/setup.sh", &vars)));
            files.push(planned("config/boot.rb", files::rendered("ruby/boot.rb", &vars)));
            files.push(planned(
                "spec/spec_helper.rb",
                files::rendered("ruby/spec_helper.rb", &vars),
            ));
            files.push(planned("worker.rb", files::rendered("ruby/worker.rb", &vars)));
        }
        Language::Typescript => {
            gitignore.push_str("node_modules/\n");
            files.push(planned(
                "package.json",
                files::rendered("typescript/package.json", &vars),
            ));
            files.push(planned(
                "tsconfig.json",
                files::rendered("typescript/tsconfig.json", &vars),
            ));
            files.push(executable("bin/setup", files::rendered("typescript/setup.sh", &vars)));
            files.push(planned("src/worker.ts", files::rendered("typescript/worker.ts", &vars)));
            let index = files::rendered(
                "typescript/handlers_index.ts",
                &[("imports", String::new()), ("entries", String::new())],
            )
            .map_err(invalid)?;
            files.push(planned("src/handlers/index.ts", Ok(index)));
        }
        Language::Rust => {
            gitignore.push_str(&files::rendered("rust/gitignore", &vars).map_err(invalid)?);
            files.push(planned("Cargo.toml", files::rendered("rust/Cargo.toml", &vars)));
            files.push(planned("clippy.toml", files::rendered("rust/clippy.toml", &vars)));
            files.push(planned("src/main.rs", files::rendered("rust/main.rs", &vars)));
            let module = files::rendered(
                "rust/handlers_mod.rs",
                &[("modules", String::new()), ("registrations", String::new())],
            )
            .map_err(invalid)?;
            files.push(planned("src/handlers/mod.rs", Ok(module)));
            let subscribers = files::rendered(
                "rust/subscribers_mod.rs",
                &[("modules", String::new()), ("entries", String::new())],
            )
            .map_err(invalid)?;
            files.push(planned("src/subscribers/mod.rs", Ok(subscribers)));
            // The versions of the dependencies tasker-core is tested with in that checkout.
            if let Ok(lock) = std::fs::read_to_string(source.join("Cargo.lock")) {
                files.push(planned("Cargo.lock", Ok(lock)));
            }
        }
    }
    files.push(planned(".gitignore", Ok(gitignore)));
    let mut files: Vec<Planned> = files.into_iter().collect::<Result<_, _>>()?;
    files.extend(plan.files);
    // The handler goes into the fresh registry file (Rust, TypeScript) planned above.
    apply_registry_edits(lang, &handler, &layout, &mut files)?;

    write_all(&args.dir, &mut files)?;
    let (setup, test, run) = lang.commands();
    println!("created a {} project '{name}' in {}:", lang.dir(), args.dir.display());
    for f in &files {
        println!("  {}", f.path.display());
    }
    if let Some(missing) = missing_build(lang, &source) {
        println!(
            "note: {missing}: run scripts/build-packages.sh in {} first",
            source.display()
        );
    }
    println!("next:");
    if args.dir != Path::new(".") {
        println!("  cd {}", args.dir.display());
    }
    if !setup.is_empty() {
        println!("  {setup}          # once: links the Tasker packages of {source_text}");
    }
    println!("  {test}");
    println!("  {run}");
    Ok(ExitCode::SUCCESS)
}

/// `tasker generate handler|template`.
pub fn generate(cmd: GenerateCommand) -> Result<ExitCode, TaskerError> {
    match cmd {
        GenerateCommand::Handler(args) => generate_handler(args),
        GenerateCommand::Template(args) => generate_template(args),
        GenerateCommand::Subscriber(args) => generate_subscriber(args),
    }
}

fn generate_handler(args: HandlerArgs) -> Result<ExitCode, TaskerError> {
    let name = HandlerName::parse(&args.name).map_err(invalid)?;
    let defaults = args.language.default_layout();
    let layout = Layout {
        handlers: relative_dir("--handlers-dir", args.handlers_dir.unwrap_or(defaults.handlers))?,
        tests: relative_dir("--tests-dir", args.tests_dir.unwrap_or(defaults.tests))?,
    };
    let mut plan = handler_plan(args.language, args.kind, &name, &layout, Some(&args.dir))?;
    write_all(&args.dir, &mut plan.files)?;
    for f in &plan.files {
        let verb = if f.mode == WriteMode::Replace {
            "updated"
        } else {
            "created"
        };
        println!("{verb} {}", args.dir.join(&f.path).display());
    }
    for step in &plan.manual_steps {
        println!("add by hand: {step}");
    }
    println!(
        "use it in a template:\n  - name: {}\n    handler: {{ callable: {} }}{}",
        name.leaf(),
        plan.callable,
        args.kind.template_hint()
    );
    Ok(ExitCode::SUCCESS)
}

fn generate_template(args: TemplateArgs) -> Result<ExitCode, TaskerError> {
    names::check_snake(&args.name).map_err(|why| invalid(format!("template name '{}' {why}", args.name)))?;
    let step = HandlerName::parse(&args.step).map_err(|e| invalid(format!("--step: {e}")))?;
    let namespace = match args.namespace {
        Some(ns) => {
            names::check_snake(&ns).map_err(|why| invalid(format!("--namespace '{ns}' {why}")))?;
            ns
        }
        None => existing_namespace(&args.dir.join("templates"))?,
    };
    let callable = match args.language {
        Some(lang) => handler_plan(lang, HandlerKind::Standard, &step, &lang.default_layout(), None)?.callable,
        None => step.dotted(),
    };
    let vars = vec![
        ("template_name", args.name.clone()),
        ("namespace", namespace),
        ("step_name", step.leaf().to_owned()),
        ("callable", callable),
        ("description", format!("The {} workflow.", args.name.replace('_', " "))),
        (
            "step_description",
            format!("The {} step.", step.leaf().replace('_', " ")),
        ),
    ];
    let mut files = vec![planned(
        &format!("templates/{}.yaml", args.name),
        files::rendered("common/template.yaml", &vars),
    )?];
    write_all(&args.dir, &mut files)?;
    println!("created {}", args.dir.join(&files[0].path).display());
    println!(
        "its handler: tasker generate handler {} --language …; check it: tasker template validate {}",
        step,
        args.dir.join(&files[0].path).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The files of one handler and its test. `root` is the existing project whose registry file
/// (Rust, TypeScript) gets the handler; `None` while `tasker init` plans a fresh project.
fn handler_plan(
    lang: Language,
    kind: HandlerKind,
    name: &HandlerName,
    layout: &Layout,
    root: Option<&Path>,
) -> Result<HandlerPlan, TaskerError> {
    let source = |suffix: &str| {
        format!(
            "{}/handler/{}{suffix}.{}",
            lang.dir(),
            kind.file_stem(),
            lang.extension()
        )
    };
    let mut files = Vec::new();
    let mut manual_steps = Vec::new();
    let namespaces = name.namespaces();
    let nested = |base: &Path, file: String| -> PathBuf {
        let mut p = base.to_path_buf();
        p.extend(namespaces);
        p.join(file)
    };
    let (callable, handler_file) = match lang {
        Language::Python => {
            let handler_file = nested(&layout.handlers, format!("{}.py", name.leaf()));
            let mut module: Vec<String> = path_words("--handlers-dir", &layout.handlers)?;
            module.extend(name.segments().iter().cloned());
            let module = module.join(".");
            let class = name.class_name();
            let vars = vec![
                ("step_name", name.leaf().to_owned()),
                ("class_name", class.clone()),
                ("module", module.clone()),
                ("test_name", name.flat()),
            ];
            // Each directory down to the handler is a package.
            let mut package = layout.handlers.clone();
            let mut packages = vec![package.clone()];
            for ns in namespaces {
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
            files.push(new_file(handler_file.clone(), files::rendered(&source(""), &vars))?);
            files.push(new_file(
                layout.tests.join(format!("test_{}.py", name.flat())),
                files::rendered(&source("_test"), &vars),
            )?);
            (format!("{module}.{class}"), handler_file)
        }
        Language::Ruby => {
            let handler_file = nested(&layout.handlers, format!("{}_handler.rb", name.leaf()));
            let spec_file = nested(&layout.tests, format!("{}_handler_spec.rb", name.leaf()));
            let vars = vec![
                ("step_name", name.leaf().to_owned()),
                ("class_name", name.class_name()),
                ("constant", name.ruby_constant()),
            ];
            let body = files::rendered(&source(""), &vars).map_err(invalid)?;
            let handler = format!(
                "# frozen_string_literal: true\n\n{}",
                wrap_in_modules(namespaces, &body)
            );
            let spec_dir = spec_file.parent().map(Path::to_path_buf).unwrap_or_default();
            let require = relative_path(&spec_dir, &handler_file.with_extension(""));
            let spec = format!(
                "# frozen_string_literal: true\n\nrequire \"tasker_core\"\nrequire \"tasker_core/testing/rspec\"\n\
                 require_relative \"{require}\"\n\n{}",
                files::rendered(&source("_spec"), &vars).map_err(invalid)?
            );
            files.push(new_file(handler_file.clone(), Ok(handler))?);
            files.push(new_file(spec_file, Ok(spec))?);
            (name.ruby_constant(), handler_file)
        }
        Language::Typescript => {
            let handler_file = nested(&layout.handlers, format!("{}.ts", name.leaf()));
            let test_file = layout.tests.join(format!("{}.test.ts", name.flat()));
            let import_path = relative_path(&layout.tests, &handler_file.with_extension(""));
            let vars = vec![
                ("step_name", name.leaf().to_owned()),
                ("function_name", name.ts_function_name()),
                ("callable", name.dotted()),
                ("import_path", import_path),
            ];
            files.push(new_file(handler_file.clone(), files::rendered(&source(""), &vars))?);
            files.push(new_file(test_file, files::rendered(&source("_test"), &vars))?);
            (name.dotted(), handler_file)
        }
        Language::Rust => {
            let handler_file = layout.handlers.join(format!("{}.rs", name.flat()));
            let vars = vec![("step_name", name.leaf().to_owned()), ("callable", name.dotted())];
            files.push(new_file(handler_file.clone(), files::rendered(&source(""), &vars))?);
            (name.dotted(), handler_file)
        }
    };
    if let Some(root) = root {
        registry_edit(lang, name, layout, root, &mut files, &mut manual_steps)?;
    }
    Ok(HandlerPlan {
        files,
        callable,
        handler_file,
        manual_steps,
    })
}

/// The registry file of a Rust or TypeScript project, and the lines a handler adds to it:
/// `(path, [(marker, line)])`.
fn registry_lines(
    lang: Language,
    name: &HandlerName,
    layout: &Layout,
) -> Option<(PathBuf, Vec<(&'static str, String)>)> {
    match lang {
        Language::Typescript => {
            let mut import = String::from("./");
            for ns in name.namespaces() {
                import.push_str(ns);
                import.push('/');
            }
            import.push_str(name.leaf());
            let function = name.ts_function_name();
            Some((
                layout.handlers.join("index.ts"),
                vec![
                    (
                        "// tasker:imports",
                        format!("import {{ {function} }} from '{import}';\n"),
                    ),
                    ("  // tasker:handlers", format!("  {function},\n")),
                ],
            ))
        }
        Language::Rust => {
            let module = name.flat();
            Some((
                layout.handlers.join("mod.rs"),
                vec![
                    ("// tasker:modules", format!("pub mod {module};\n")),
                    ("    // tasker:register", format!("    {module}::register(registry);\n")),
                ],
            ))
        }
        Language::Python | Language::Ruby => None,
    }
}

/// `text` with each line inserted before its marker line, or `None` when a marker is missing.
fn insert_before_markers(text: &str, lines: &[(&str, String)]) -> Option<String> {
    let mut out = text.to_owned();
    for (marker, line) in lines {
        let at = out.lines().scan(0usize, |offset, l| {
            let start = *offset;
            *offset += l.len() + 1;
            Some((start, l))
        });
        let position = at.filter(|(_, l)| l == marker).map(|(start, _)| start).next()?;
        out.insert_str(position, line);
    }
    Some(out)
}

/// For `tasker generate handler` in an existing project: edits its registry file, or says
/// what to add by hand when the file or its markers are missing.
fn registry_edit(
    lang: Language,
    name: &HandlerName,
    layout: &Layout,
    root: &Path,
    files: &mut Vec<Planned>,
    manual_steps: &mut Vec<String>,
) -> Result<(), TaskerError> {
    let Some((path, lines)) = registry_lines(lang, name, layout) else {
        return Ok(());
    };
    let full = root.join(&path);
    let edited = std::fs::read_to_string(&full)
        .ok()
        .and_then(|text| insert_before_markers(&text, &lines));
    match edited {
        Some(contents) => files.push(Planned {
            path,
            contents,
            executable: false,
            mode: WriteMode::Replace,
        }),
        None => {
            for (_, line) in &lines {
                manual_steps.push(format!("{}: {}", full.display(), line.trim()));
            }
        }
    }
    Ok(())
}

/// `tasker init`: the registry files are fresh, so the edits apply to the planned contents.
fn apply_registry_edits(
    lang: Language,
    name: &HandlerName,
    layout: &Layout,
    files: &mut [Planned],
) -> Result<(), TaskerError> {
    let Some((path, lines)) = registry_lines(lang, name, layout) else {
        return Ok(());
    };
    let file = files
        .iter_mut()
        .find(|f| f.path == path)
        .ok_or_else(|| invalid(format!("the scaffolding plans no {} (a bug in tasker)", path.display())))?;
    file.contents = insert_before_markers(&file.contents, &lines)
        .ok_or_else(|| invalid(format!("{} has no tasker: markers (a bug in tasker)", path.display())))?;
    Ok(())
}

/// Nested `module … end` lines around `body`, each level indented by two spaces.
fn wrap_in_modules(namespaces: &[String], body: &str) -> String {
    namespaces.iter().rev().fold(body.to_owned(), |inner, ns| {
        let indented: String = inner
            .lines()
            .map(|l| {
                if l.is_empty() {
                    "\n".to_owned()
                } else {
                    format!("  {l}\n")
                }
            })
            .collect();
        format!("module {}\n{indented}end\n", names::camel(ns))
    })
}

/// `to` (a path under the root, without extension) as seen from the directory `from`, as an
/// import wants it: `./x`, `../a/x`.
fn relative_path(from: &Path, to: &Path) -> String {
    let from: Vec<_> = from.components().filter(|c| *c != Component::CurDir).collect();
    let to: Vec<_> = to.components().filter(|c| *c != Component::CurDir).collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_owned(); from.len() - common];
    parts.extend(
        to[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    let joined = parts.join("/");
    if joined.starts_with("..") {
        joined
    } else {
        format!("./{joined}")
    }
}

/// The words of a relative directory (`src/handlers` → `["src", "handlers"]`), for a Python
/// module path; each must be an identifier.
fn path_words(flag: &str, dir: &Path) -> Result<Vec<String>, TaskerError> {
    dir.components()
        .filter(|c| *c != Component::CurDir)
        .map(|c| {
            let word = c.as_os_str().to_string_lossy().into_owned();
            names::check_snake(&word).map(|()| word.clone()).map_err(|why| {
                invalid(format!(
                    "{flag} {}: '{word}' {why} (it becomes a Python package)",
                    dir.display()
                ))
            })
        })
        .collect()
}

/// A directory flag's value: relative, and inside the project.
fn relative_dir(flag: &str, dir: PathBuf) -> Result<PathBuf, TaskerError> {
    if dir.is_absolute() || dir.components().any(|c| c == Component::ParentDir) {
        return Err(invalid(format!(
            "{flag} {}: give a directory inside the project, relative to --dir",
            dir.display()
        )));
    }
    Ok(dir)
}

fn planned(path: &str, contents: Result<String, String>) -> Result<Planned, TaskerError> {
    Ok(Planned {
        path: PathBuf::from(path),
        contents: contents.map_err(invalid)?,
        executable: false,
        mode: WriteMode::Create,
    })
}

fn executable(path: &str, contents: Result<String, String>) -> Result<Planned, TaskerError> {
    let mut p = planned(path, contents)?;
    p.executable = true;
    Ok(p)
}

/// A new file: the command fails if it exists.
fn new_file(path: PathBuf, contents: Result<String, String>) -> Result<Planned, TaskerError> {
    Ok(Planned {
        path,
        contents: contents.map_err(invalid)?,
        executable: false,
        mode: WriteMode::Create,
    })
}

/// Writes every planned file under `root`, or none: a file that would be overwritten stops the
/// command before anything is written. `IfMissing` files that exist
/// are dropped from the plan.
fn write_all(root: &Path, files: &mut Vec<Planned>) -> Result<(), TaskerError> {
    files.retain(|f| !(f.mode == WriteMode::IfMissing && root.join(&f.path).exists()));
    let clashes: Vec<String> = files
        .iter()
        .filter(|f| f.mode == WriteMode::Create && root.join(&f.path).exists())
        .map(|f| root.join(&f.path).display().to_string())
        .collect();
    if !clashes.is_empty() {
        return Err(invalid(format!(
            "refusing to overwrite {} (nothing was written): remove {} or choose another name",
            clashes.join(", "),
            if clashes.len() == 1 { "it" } else { "them" }
        )));
    }
    for f in files.iter() {
        let path = root.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| invalid(format!("cannot create directory {}: {e}", parent.display())))?;
        }
        std::fs::write(&path, &f.contents).map_err(|e| invalid(format!("cannot write {}: {e}", path.display())))?;
        #[cfg(unix)]
        if f.executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| invalid(format!("cannot make {} executable: {e}", path.display())))?;
        }
    }
    Ok(())
}

/// The Tasker checkout a project uses: the flag (or `TASKER_SOURCE`), else the checkout this
/// binary was compiled from. It must hold the core's sources.
fn tasker_source(given: Option<&Path>) -> Result<PathBuf, TaskerError> {
    let (candidate, origin) = match given {
        Some(p) => (p.to_path_buf(), "--tasker-source (or TASKER_SOURCE)"),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
            "the checkout this tasker binary was built from",
        ),
    };
    let resolved = candidate.canonicalize().map_err(|e| {
        invalid(format!(
            "{} ({origin}): {e}; pass --tasker-source DIR or set TASKER_SOURCE to a Tasker checkout",
            candidate.display()
        ))
    })?;
    if !resolved.join("core").join("Cargo.toml").is_file() {
        return Err(invalid(format!(
            "{} ({origin}) is not a Tasker checkout: it has no core/Cargo.toml",
            resolved.display()
        )));
    }
    Ok(resolved)
}

/// What is not built yet in `source` for a project in `lang`, if anything.
fn missing_build(lang: Language, source: &Path) -> Option<String> {
    let has = |dir: &str, pred: &dyn Fn(&str) -> bool| {
        std::fs::read_dir(source.join(dir))
            .map(|entries| entries.flatten().any(|e| pred(&e.file_name().to_string_lossy())))
            .unwrap_or(false)
    };
    match lang {
        Language::Python
            if !has("bindings-python/python/tasker_core", &|n| {
                n.starts_with("_native") && n.ends_with(".so")
            }) =>
        {
            Some("the Python package is not built".into())
        }
        Language::Ruby
            if !has("bindings-ruby/lib/tasker_core", &|n| {
                n.ends_with(".so") || n.ends_with(".bundle")
            }) =>
        {
            Some("the Ruby gem's native extension is not built".into())
        }
        Language::Typescript if !has("bindings-node/native", &|n| n.ends_with(".node")) => {
            Some("the TypeScript package is not built".into())
        }
        _ => None,
    }
}

/// The project's name from its directory (the current one for `.`).
fn project_dir_name(dir: &Path) -> Result<String, TaskerError> {
    let absolute = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| invalid(format!("cannot read the current directory: {e}")))?
            .join(dir)
    };
    absolute
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .next_back()
        .ok_or_else(|| {
            invalid(format!(
                "{}: no directory name to name the project after; pass --name",
                dir.display()
            ))
        })
}

/// `tasker init` creates a project only where nothing is: an absent or empty directory.
fn check_empty_dir(dir: &Path) -> Result<(), TaskerError> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.is_dir() {
        return Err(invalid(format!("{} exists and is not a directory", dir.display())));
    }
    let mut entries: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| invalid(format!("cannot read {}: {e}", dir.display())))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    entries.sort();
    let shown: Vec<&str> = entries.iter().take(3).map(String::as_str).collect();
    let mut message = format!(
        "{} is not empty ({}{}): tasker init writes only into a new or empty directory",
        dir.display(),
        shown.join(", "),
        if entries.len() > 3 { ", …" } else { "" }
    );
    let _ = write!(
        message,
        "; in an existing project, use `tasker generate handler|template`"
    );
    Err(invalid(message))
}

/// The namespace of the templates already in `dir`, for a new one beside them.
fn existing_namespace(dir: &Path) -> Result<String, TaskerError> {
    let no_default = || {
        invalid(format!(
            "no templates in {} to take the namespace from: pass --namespace NAME",
            dir.display()
        ))
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|_| no_default())?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    paths.sort();
    for path in paths {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        if let Ok(doc) = serde_yaml::from_str::<serde_json::Value>(&text) {
            if let Some(ns) = doc.get("namespace_name").and_then(|v| v.as_str()) {
                return Ok(ns.to_owned());
            }
        }
    }
    Err(no_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_import_ready() {
        assert_eq!(
            relative_path(Path::new("test"), Path::new("src/handlers/a")),
            "../src/handlers/a"
        );
        assert_eq!(
            relative_path(Path::new("src"), Path::new("src/handlers/a")),
            "./handlers/a"
        );
        assert_eq!(
            relative_path(Path::new("spec/handlers/pay"), Path::new("handlers/pay/x_handler")),
            "../../../handlers/pay/x_handler"
        );
    }

    #[test]
    fn lines_go_before_their_markers() {
        let text = "a\n// m1\nb\n  // m2\n";
        let edited = insert_before_markers(text, &[("// m1", "x\n".into()), ("  // m2", "  y\n".into())]);
        assert_eq!(edited.as_deref(), Some("a\nx\n// m1\nb\n  y\n  // m2\n"));
        assert_eq!(insert_before_markers("no markers", &[("// m1", "x\n".into())]), None);
    }

    #[test]
    fn modules_wrap_a_ruby_class() {
        let wrapped = wrap_in_modules(&["payments".into(), "cards".into()], "class A\nend\n");
        assert_eq!(
            wrapped,
            "module Payments\n  module Cards\n    class A\n    end\n  end\nend\n"
        );
    }
}
