//! Registered templates: registration, lookup by `(namespace, name, version)`, and an
//! in-process cache of compiled templates (template versions are immutable once stored, so a
//! cached copy never goes stale; see [`TemplateCache`] for the one resolution that can).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};

use crate::error::{Result, TaskerError};
use crate::store::{NewTemplate, Store, TemplateRow};
use crate::template::{self, ContextValidator, LoadedTemplate, StepTemplate, StepType, TaskTemplate};

/// A stored template, parsed and ready to instantiate.
#[derive(Debug)]
pub struct CompiledTemplate {
    pub id: i64,
    pub template: TaskTemplate,
    pub version: semver::Version,
    pub validator: ContextValidator,
    /// For each step (by index), the indices of its dependencies.
    pub parents: Vec<Vec<usize>>,
    /// For each step (by index), the indices of the steps depending on it.
    pub children: Vec<Vec<usize>>,
    /// Step indices, parents before children.
    pub order: Vec<usize>,
    /// For each step (by index), how many decision steps are on the deepest path to it, itself
    /// included.
    pub decision_depth: Vec<usize>,
    /// What each step may publish, and each domain event's payload schema.
    pub domain_events: crate::events::domain::DomainEvents,
    /// For each step (by index), whether any step depends on it.
    has_dependents: Vec<bool>,
    /// Step index by name.
    by_name: HashMap<String, usize>,
}

impl CompiledTemplate {
    pub(crate) fn from_row(row: &TemplateRow) -> Result<Self> {
        let template: TaskTemplate = serde_json::from_value(row.definition.clone()).map_err(|e| {
            TaskerError::Corrupt(format!(
                "stored template {}/{}@{} cannot be read: {e}",
                row.namespace, row.name, row.version
            ))
        })?;
        let version = semver::Version::parse(&template.version)
            .map_err(|e| TaskerError::Corrupt(format!("stored template version '{}': {e}", template.version)))?;
        let validator = ContextValidator::new(template.input_schema.as_ref())?;
        let parents: Vec<Vec<usize>> = template
            .steps
            .iter()
            .map(|s| s.dependencies.iter().filter_map(|d| template.step_index(d)).collect())
            .collect();
        let mut has_dependents = vec![false; template.steps.len()];
        let mut children = vec![Vec::new(); template.steps.len()];
        for (child, ps) in parents.iter().enumerate() {
            for &p in ps {
                has_dependents[p] = true;
                children[p].push(child);
            }
        }
        let order = template.topological_order();
        let mut decision_depth = vec![0usize; template.steps.len()];
        for &i in &order {
            let above = parents[i].iter().map(|&p| decision_depth[p]).max().unwrap_or(0);
            decision_depth[i] = above + usize::from(template.steps[i].step_type == StepType::Decision);
        }
        let by_name = template
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        let domain_events = crate::events::domain::DomainEvents::compile(&template)?;
        Ok(Self {
            id: row.id,
            domain_events,
            template,
            version,
            validator,
            parents,
            children,
            order,
            decision_depth,
            has_dependents,
            by_name,
        })
    }

    /// Index of the template step that the task's step `name` is: the step of that name, or
    /// the batch worker whose instance it is (`<worker>_<digits>`).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        if let Some(&i) = self.by_name.get(name) {
            return Some(i);
        }
        let worker = template::instance_of(&self.template, name)?;
        self.by_name.get(worker).copied()
    }

    /// The template step of the task's step `name` (see [`CompiledTemplate::index_of`]).
    pub fn step(&self, name: &str) -> Option<&StepTemplate> {
        self.template.steps.get(self.index_of(name)?)
    }

    /// Whether the step called `name` has dependencies (`true` for an unknown step: the
    /// engine then reads the database instead of trusting the template).
    pub fn has_dependencies(&self, name: &str) -> bool {
        self.index_of(name).is_none_or(|i| !self.parents[i].is_empty())
    }

    /// Whether any step depends on the step called `name` (`true` for an unknown step).
    pub fn has_dependents(&self, name: &str) -> bool {
        self.index_of(name).is_none_or(|i| self.has_dependents[i])
    }

    /// Whether the template has steps that only exist once a decision or batch creates them.
    pub fn creates_steps_at_run_time(&self) -> bool {
        self.template
            .steps
            .iter()
            .any(|s| matches!(s.step_type, StepType::Decision | StepType::Batchable))
    }

    /// The queue of a step.
    pub fn queue_of(&self, step: &StepTemplate) -> String {
        step.queue_name(&self.template.namespace_name).to_owned()
    }
}

/// What registering one template did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RegisteredTemplate {
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub id: i64,
    /// The queues its steps are dispatched to.
    pub queues: Vec<String>,
    /// Non-fatal findings (e.g. a misspelled field).
    pub warnings: Vec<String>,
}

/// A registered template version as the client APIs of every language show it
/// ([`crate::Tasker::list_templates`], [`crate::Tasker::get_template`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TemplateInfo {
    /// The stored version's id.
    pub id: i64,
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    /// Step names, in template order.
    pub steps: Vec<String>,
    /// The queues its steps are dispatched to.
    pub queues: Vec<String>,
    /// The file it was registered from, when it came from one.
    pub source_path: Option<String>,
    pub registered_at: chrono::DateTime<chrono::Utc>,
    /// Hash of the stored definition: registering other content under this version is refused.
    pub content_hash: String,
    /// The whole template (after the environment merge), as stored.
    pub definition: serde_json::Value,
}

impl TemplateInfo {
    pub(crate) fn from_row(row: TemplateRow) -> Result<Self> {
        let template: TaskTemplate = serde_json::from_value(row.definition.clone()).map_err(|e| {
            TaskerError::Corrupt(format!(
                "stored template {}/{}@{} cannot be read: {e}",
                row.namespace, row.name, row.version
            ))
        })?;
        let mut queues: Vec<String> = template
            .steps
            .iter()
            .map(|s| s.queue_name(&template.namespace_name).to_owned())
            .collect();
        queues.sort();
        queues.dedup();
        Ok(Self {
            id: row.id,
            namespace: row.namespace,
            name: row.name,
            version: row.version,
            description: template.description.clone(),
            steps: template.steps.iter().map(|s| s.name.clone()).collect(),
            queues,
            source_path: row.source_path,
            registered_at: row.created_at,
            content_hash: row.content_hash,
            definition: row.definition,
        })
    }
}

/// Compiled templates by id, and which version a name without a version resolves to.
///
/// A stored version never changes, so a template cached by id or by its full key is never
/// stale. "The highest version" can be: another process may register a higher one. So that
/// resolution is cached only for task creation, which stores the task on condition that no
/// newer version of the name exists (`NewTask::newest_template_id`) and resolves again when one
/// does; every other caller reads the versions from the store.
#[derive(Debug, Default)]
pub(crate) struct TemplateCache {
    by_id: RwLock<HashMap<i64, Arc<CompiledTemplate>>>,
    /// `(namespace, name, version)` → id.
    by_key: RwLock<HashMap<(String, String, String), i64>>,
    /// `(namespace, name)` → the newest version's resolution.
    latest: RwLock<HashMap<(String, String), Latest>>,
}

/// What an unversioned name resolved to, and the largest template id of the name then.
#[derive(Debug, Clone, Copy)]
struct Latest {
    id: i64,
    newest_id: i64,
}

/// A template resolved for task creation.
pub(crate) struct ForCreation {
    pub template: Arc<CompiledTemplate>,
    /// Set when the resolution of a name without a version came from the cache: the largest
    /// template id of the name when it was read. The task is stored only if the name still has
    /// no larger one.
    pub newest_template_id: Option<i64>,
}

impl TemplateCache {
    pub(crate) async fn get(&self, store: &dyn Store, id: i64) -> Result<Arc<CompiledTemplate>> {
        if let Some(t) = self.cached(id) {
            return Ok(t);
        }
        let row = store
            .template_by_id(id)
            .await?
            .ok_or_else(|| TaskerError::Corrupt(format!("template id {id} referenced but missing")))?;
        self.insert(&row)
    }

    fn cached(&self, id: i64) -> Option<Arc<CompiledTemplate>> {
        self.by_id.read().ok().and_then(|m| m.get(&id).cloned())
    }

    pub(crate) fn insert(&self, row: &TemplateRow) -> Result<Arc<CompiledTemplate>> {
        let compiled = Arc::new(CompiledTemplate::from_row(row)?);
        if let Ok(mut m) = self.by_id.write() {
            m.insert(row.id, compiled.clone());
        }
        if let Ok(mut m) = self.by_key.write() {
            m.insert((row.namespace.clone(), row.name.clone(), row.version.clone()), row.id);
        }
        Ok(compiled)
    }

    /// Resolves `(namespace, name, version)` from the store; without a version, the highest
    /// semver wins.
    pub(crate) async fn resolve(
        &self,
        store: &dyn Store,
        namespace: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Arc<CompiledTemplate>> {
        Ok(self.resolve_from_store(store, namespace, name, version).await?.0)
    }

    /// [`Self::resolve`] for task creation, from the cache where it can (see the type's
    /// documentation). `fresh` skips the cached "highest version" (a creation with it was
    /// refused).
    pub(crate) async fn resolve_for_creation(
        &self,
        store: &dyn Store,
        namespace: &str,
        name: &str,
        version: Option<&str>,
        fresh: bool,
    ) -> Result<ForCreation> {
        let cached = match version {
            Some(v) => self
                .by_key
                .read()
                .ok()
                .and_then(|m| m.get(&(namespace.to_owned(), name.to_owned(), v.to_owned())).copied())
                .and_then(|id| self.cached(id))
                .map(|template| ForCreation {
                    template,
                    newest_template_id: None,
                }),
            None if fresh => None,
            None => self
                .latest
                .read()
                .ok()
                .and_then(|m| m.get(&(namespace.to_owned(), name.to_owned())).copied())
                .and_then(|l| {
                    Some(ForCreation {
                        template: self.cached(l.id)?,
                        newest_template_id: Some(l.newest_id),
                    })
                }),
        };
        if let Some(found) = cached {
            return Ok(found);
        }
        // Just read from the store: as fresh as the guard would make it.
        let template = self.resolve(store, namespace, name, version).await?;
        Ok(ForCreation {
            template,
            newest_template_id: None,
        })
    }

    /// Forgets which version `namespace/name` resolves to (a version was registered here).
    pub(crate) fn forget_latest(&self, namespace: &str, name: &str) {
        if let Ok(mut m) = self.latest.write() {
            m.remove(&(namespace.to_owned(), name.to_owned()));
        }
    }

    /// The resolution and the largest template id of the name; an unversioned one is cached.
    async fn resolve_from_store(
        &self,
        store: &dyn Store,
        namespace: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<(Arc<CompiledTemplate>, i64)> {
        let not_found = || TaskerError::TemplateNotFound {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            version: version.map(str::to_owned),
        };
        let rows = store.template_versions(namespace, name).await?;
        let newest_id = rows.iter().map(|r| r.id).max().unwrap_or(0);
        let chosen = match version {
            Some(v) => rows.iter().find(|r| r.version == v),
            None => rows
                .iter()
                .filter_map(|r| semver::Version::parse(&r.version).ok().map(|v| (v, r)))
                .max_by(|a, b| a.0.cmp(&b.0))
                .map(|(_, r)| r),
        }
        .ok_or_else(not_found)?;
        let template = match self.cached(chosen.id) {
            Some(t) => t,
            None => self.insert(chosen)?,
        };
        if version.is_none() {
            if let Ok(mut m) = self.latest.write() {
                m.insert(
                    (namespace.to_owned(), name.to_owned()),
                    Latest {
                        id: chosen.id,
                        newest_id,
                    },
                );
            }
        }
        Ok((template, newest_id))
    }
}

/// Stores loaded templates, all or none (one transaction), then makes sure their queues exist.
pub(crate) async fn register(
    store: &dyn Store,
    cache: &TemplateCache,
    loaded: &[LoadedTemplate],
) -> Result<Vec<RegisteredTemplate>> {
    let new_templates = loaded.iter().map(new_template).collect::<Result<Vec<_>>>()?;
    let rows = store.register_templates(&new_templates).await?;
    let mut registered = Vec::with_capacity(rows.len());
    for (row, loaded) in rows.iter().zip(loaded) {
        let compiled = cache.insert(row)?;
        cache.forget_latest(&row.namespace, &row.name);
        let mut queues: Vec<String> = compiled.template.steps.iter().map(|s| compiled.queue_of(s)).collect();
        queues.sort();
        queues.dedup();
        for q in &queues {
            store.ensure_queue(q).await?;
        }
        let t = &loaded.template;
        registered.push(RegisteredTemplate {
            namespace: t.namespace_name.clone(),
            name: t.name.clone(),
            version: t.version.clone(),
            id: row.id,
            queues,
            warnings: loaded.warnings.iter().map(|w| w.to_string()).collect(),
        });
    }
    Ok(registered)
}

/// The row to store for a loaded template, with the hash that tells a re-registration of the
/// same content from a conflicting one.
fn new_template(loaded: &LoadedTemplate) -> Result<NewTemplate> {
    let t = &loaded.template;
    let definition = serde_json::to_value(t).map_err(|e| TaskerError::InvalidArgument(e.to_string()))?;
    // serde_json's map is ordered, so equal templates serialise identically.
    let content_hash = format!("{:x}", Sha256::digest(definition.to_string().as_bytes()));
    Ok(NewTemplate {
        namespace: t.namespace_name.clone(),
        name: t.name.clone(),
        version: t.version.clone(),
        definition,
        content_hash,
        source_path: loaded.source.as_ref().map(|p| p.display().to_string()),
    })
}

/// Loads and validates every template under `path` for the current `TASKER_ENV`.
pub(crate) fn load(path: &Path) -> Result<Vec<LoadedTemplate>> {
    template::load_path(path, &template::current_env())
}
