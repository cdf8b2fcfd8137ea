//! `--polyglot`: the mixed-language `order_fulfillment` workflow (5 steps: validate in Python →
//! reserve in Ruby and charge in TypeScript, in parallel → ship in Python → notify in Ruby),
//! each language's steps run by its own worker process on its own queue, all sharing the
//! benchmark's database. The workers are the test fixtures' (`tests/workers/*`, handlers from
//! `tests/handlers/*/polyglot_handlers.*`), the same ones `tests/e2e/bench_polyglot.py` starts.
//!
//! * W1: one order at a time, create → complete as the client sees it (`wait_for_task`).
//! * W2: `--polyglot-tasks` orders submitted at once; wall time and steps/s.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use tasker_core::{TaskRequest, Tasker, TaskerError};
use tokio::process::Command;

use super::completion::Finished;
use super::processes::{ReadyOn, WorkerProcesses};
use super::report::{Latency, Out, PolyglotFigures};
use super::workloads::{self, W1_WARM_UP};

pub const STEPS_PER_ORDER: usize = 5;

const TEMPLATE: &str = "tests/fixtures/templates/order_fulfillment_polyglot.yaml";

/// An extension bigger than this is most likely a debug build (the debug Python extension is
/// about 135 MB; release builds are a tenth of that).
const DEBUG_BUILD_SIZE: u64 = 60 * 1024 * 1024;

pub struct PolyglotOptions {
    pub runs: usize,
    pub tasks: usize,
    pub concurrency: usize,
}

/// The three language packages, checked before anything is measured.
pub struct Packages {
    repo: PathBuf,
    python: PathBuf,
    /// What could be told of each package's build, for the report.
    pub descriptions: Vec<String>,
}

/// Checks that the worker programs and the three packages they load are there, and says what
/// to build when they are not.
pub fn find_packages(repo: &Path) -> Result<Packages, TaskerError> {
    if !repo.join("tests/workers/python_worker.py").exists() {
        return Err(TaskerError::InvalidArgument(format!(
            "--polyglot needs the checkout's tests/workers/ (not found under {}); run from the checkout or pass --repo DIR",
            repo.display()
        )));
    }
    let mut missing = Vec::new();
    let mut descriptions = Vec::new();

    let python = repo.join("bindings-python/.venv/bin/python");
    let extension = std::process::Command::new(&python)
        .args(["-c", "import tasker_core._native as n; print(n.__file__)"])
        .current_dir(repo)
        .output();
    match extension {
        Ok(o) if o.status.success() => {
            let path = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            descriptions.push(format!("python {}", describe_library(&path)));
        }
        _ => missing.push(format!(
            "the Python package: {} cannot import tasker_core (build the venv and the extension: \
             scripts/build-packages.sh, or `maturin develop --release` in bindings-python/.venv)",
            python.display()
        )),
    }

    let ruby_extension = repo.join("bindings-ruby/lib/tasker_core/tasker_core_native.so");
    if !runs("ruby", &["--version"]) {
        missing.push("ruby (apt-get install ruby ruby-dev rake, or scripts/build-packages.sh)".into());
    }
    if ruby_extension.exists() {
        descriptions.push(format!("ruby {}", describe_library(&ruby_extension)));
    } else {
        missing.push(format!(
            "the Ruby extension {} (build it with `rake compile` or scripts/build-packages.sh)",
            ruby_extension.display()
        ));
    }

    let node_native = std::fs::read_dir(repo.join("bindings-node/native"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "node"));
    if !runs("node", &["--version"]) {
        missing.push("node (Node.js >= 20.17; scripts/build-packages.sh says how to get it)".into());
    }
    let node_built = repo.join("bindings-node/dist/index.js").exists() && repo.join("node_modules/tsx").exists();
    match node_native {
        Some(native) if node_built => descriptions.push(format!("node {}", describe_library(&native))),
        _ => missing.push(
            "the Node package: node_modules/tsx, bindings-node/dist and bindings-node/native/*.node \
             (build them with `npm install && npm run build`, or scripts/build-packages.sh)"
                .into(),
        ),
    }

    if missing.is_empty() {
        Ok(Packages {
            repo: repo.to_owned(),
            python,
            descriptions,
        })
    } else {
        Err(TaskerError::InvalidArgument(format!(
            "--polyglot runs Python, Ruby and TypeScript worker processes; missing:\n  - {}\n\
             scripts/build-packages.sh builds all three (release builds)",
            missing.join("\n  - ")
        )))
    }
}

fn runs(program: &str, args: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn describe_library(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match std::fs::metadata(path) {
        Ok(m) => {
            let guess = if m.len() > DEBUG_BUILD_SIZE {
                ", looks like a debug build"
            } else {
                ""
            };
            format!("{name} {:.0} MB{guess}", m.len() as f64 / 1e6)
        }
        Err(_) => name,
    }
}

fn order(order_id: usize) -> TaskRequest {
    TaskRequest {
        namespace: "polyglot".into(),
        name: "order_fulfillment".into(),
        context: json!({
            "order_id": order_id,
            "customer_email": format!("customer{order_id}@example.com"),
            "items": [
                { "sku": "WIDGET", "quantity": 2, "price": 9.5 },
                { "sku": "GADGET", "quantity": 1, "price": 20.25 },
            ],
        }),
        ..Default::default()
    }
}

/// One worker process per language, each on its queue.
async fn start_workers(packages: &Packages, url: &str, concurrency: usize) -> Result<WorkerProcesses, TaskerError> {
    let repo = &packages.repo;
    let mut workers = WorkerProcesses::default();
    let languages: [(&str, &str, Command); 3] = [
        ("python", "polyglot_python", {
            let mut c = Command::new(&packages.python);
            c.arg(repo.join("tests/workers/python_worker.py"));
            c
        }),
        ("ruby", "polyglot_ruby", {
            let mut c = Command::new("ruby");
            c.arg("-I")
                .arg(repo.join("bindings-ruby/lib"))
                .arg(repo.join("tests/workers/ruby_worker.rb"));
            c
        }),
        ("typescript", "polyglot_node", {
            let mut c = Command::new("node");
            c.args(["--import", "tsx"])
                .arg(repo.join("tests/workers/node_worker.ts"));
            c
        }),
    ];
    for (language, queue, mut command) in languages {
        command
            .args(["--database-url", url, "--queue", queue, "--concurrency"])
            .arg(concurrency.to_string())
            .current_dir(repo)
            // The handlers print a line per step unless told not to.
            .env("TASKER_QUIET", "1");
        let started = workers
            .start(&format!("{language} worker"), command, ReadyOn::Stdout)
            .await;
        if let Err(e) = started {
            workers.stop().await;
            return Err(e);
        }
    }
    Ok(workers)
}

pub async fn run(
    tasker: &Tasker,
    url: &str,
    packages: &Packages,
    options: &PolyglotOptions,
    out: Out,
) -> Result<PolyglotFigures, TaskerError> {
    tasker.register_templates(packages.repo.join(TEMPLATE)).await?;
    out.say(format!(
        "  {}: polyglot workflow, Python + Ruby + TypeScript worker processes ({} slots each)",
        tasker.backend().as_str(),
        options.concurrency
    ));
    let workers = start_workers(packages, url, options.concurrency).await?;
    let result = measure(tasker, options).await;
    workers.stop().await;
    let (w1, w2, completion) = result?;
    Ok(PolyglotFigures {
        steps_per_task: STEPS_PER_ORDER,
        concurrency_per_worker: options.concurrency,
        w1,
        w2_tasks: options.tasks,
        w2_wall_s: w2.as_ref().map(|t| t.wall_s),
        w2_steps_per_s: w2.as_ref().map(|t| t.steps_per_s),
        completion,
        packages: packages.descriptions.clone(),
    })
}

type Measured = (Option<Latency>, Option<workloads::Throughput>, &'static str);

async fn measure(tasker: &Tasker, options: &PolyglotOptions) -> Result<Measured, TaskerError> {
    let mut latencies = Vec::with_capacity(options.runs);
    if options.runs > 0 {
        for i in 0..(W1_WARM_UP + options.runs) {
            let start = Instant::now();
            let id = tasker.create_task(order(i)).await?.task.task_uuid;
            let done = tasker.wait_for_task(id, Duration::from_secs(30)).await?;
            if done.task.state != "complete" {
                return Err(TaskerError::InvalidArgument(format!(
                    "polyglot W1 task {id} ended {}",
                    done.task.state
                )));
            }
            if i >= W1_WARM_UP {
                latencies.push(start.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    let finished = Finished::other_processes(tasker);
    let w2 = if options.tasks > 0 {
        let create = workloads::create_many_with(tasker, options.tasks, |i| order(10_000 + i));
        Some(workloads::throughput(tasker, &finished, options.tasks * STEPS_PER_ORDER, create).await?)
    } else {
        None
    };
    Ok((Latency::from_samples(latencies), w2, finished.describe()))
}
