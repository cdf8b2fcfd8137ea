//! The dashboard's derived tables (issue 14): the overview's task counts, kept by triggers in
//! the transaction of every task insert and state change, and the tag rows the task list walks.
//! Each check compares them with the tasks themselves, on both backends.

mod common;

use std::collections::BTreeMap;

use chrono::Utc;
use common::*;
use serde_json::json;
use tasker_core::template::parse_str;
use tasker_core::{TaskFilter, TaskRequest, TaskSummary, Tasker};

on_both_backends!(
    task_counts_follow_every_state_change_and_survive_folding,
    tag_pages_walk_the_tag_newest_first,
);

async fn register(tasker: &Tasker) {
    let yaml = r#"
name: counted
namespace_name: dashboard_counts
version: 1.0.0
steps:
  - { name: only, handler: { callable: math } }
"#;
    let loaded = parse_str(yaml, None, "test").expect("valid template");
    tasker.register_template(&loaded).await.expect("register");
}

fn request(i: usize, tags: Vec<String>) -> TaskRequest {
    TaskRequest {
        namespace: "dashboard_counts".into(),
        name: "counted".into(),
        context: json!({ "value": i }),
        tags,
        ..Default::default()
    }
}

async fn all_tasks(tasker: &Tasker) -> Vec<TaskSummary> {
    tasker
        .list_tasks(&TaskFilter {
            limit: Some(10_000),
            ..TaskFilter::default()
        })
        .await
        .expect("list")
}

/// The overview's counts by state against the tasks' own states, and its chart's total.
async fn assert_counts_match(tasker: &Tasker, what: &str) {
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for t in all_tasks(tasker).await {
        *expected.entry(t.state.clone()).or_default() += 1;
    }
    let overview = tasker.overview(Utc::now()).await.expect("overview");
    let counted: BTreeMap<String, i64> = overview
        .tasks_by_state
        .iter()
        .map(|c| (c.state.clone(), c.count))
        .collect();
    assert_eq!(counted, expected, "{what}: counts by state");
    // Every task was created within the last hour: the chart holds them all, each in a bucket.
    let mut charted: BTreeMap<String, i64> = BTreeMap::new();
    for b in &overview.recent {
        assert!((0..12).contains(&b.bucket), "{what}: bucket {b:?} outside the hour");
        *charted.entry(b.state.clone()).or_default() += b.count;
    }
    assert_eq!(charted, expected, "{what}: the last hour's chart");
}

async fn task_counts_follow_every_state_change_and_survive_folding(db: Db) {
    let test_db = TestDb::new(db).await;
    let tasker = test_db.connect().await;
    register(&tasker).await;
    assert_counts_match(&tasker, "empty").await;

    // Created concurrently: on PostgreSQL each transaction appends its own deltas.
    let creators = (0..40).map(|i| {
        let t = tasker.clone();
        tokio::spawn(async move { t.create_task(request(i, Vec::new())).await })
    });
    let mut ids = Vec::new();
    for c in creators {
        ids.push(c.await.expect("join").expect("create").task.task_uuid);
    }
    assert_counts_match(&tasker, "after creating 40").await;

    // Some cancelled (concurrently), some run to completion.
    let cancellers = ids[..10].iter().map(|&id| {
        let t = tasker.clone();
        tokio::spawn(async move { t.cancel_task(id).await })
    });
    for c in cancellers {
        c.await.expect("join").expect("cancel");
    }
    assert_counts_match(&tasker, "after cancelling 10").await;
    let worker = RunningWorker::start(&tasker, &["dashboard_counts"], 8, math_registry()).await;
    for &id in &ids[10..] {
        wait(&tasker, id).await;
    }
    worker.stop().await;
    assert_counts_match(&tasker, "after running 30").await;

    // Folding every minute (as if they were all older than the chart's window) keeps the
    // totals and empties the chart; folding again changes nothing.
    for _ in 0..2 {
        tasker
            .store()
            .compact_task_counts(Utc::now() + chrono::Duration::hours(3))
            .await
            .expect("fold");
        let overview = tasker.overview(Utc::now()).await.expect("overview");
        let counted: BTreeMap<String, i64> = overview
            .tasks_by_state
            .iter()
            .map(|c| (c.state.clone(), c.count))
            .collect();
        assert_eq!(
            counted,
            BTreeMap::from([("cancelled".to_owned(), 10), ("complete".to_owned(), 30)]),
        );
        assert!(overview.recent.is_empty(), "{:?}", overview.recent);
    }
    // A task created after the fold counts on top of the folded totals.
    let late = tasker.create_task(request(99, Vec::new())).await.expect("create").task;
    tasker.cancel_task(late.task_uuid).await.expect("cancel");
    let overview = tasker.overview(Utc::now()).await.expect("overview");
    let cancelled = overview.tasks_by_state.iter().find(|c| c.state == "cancelled");
    assert_eq!(cancelled.map(|c| c.count), Some(11));
    tasker.close().await;
    test_db.cleanup().await;
}

async fn tag_pages_walk_the_tag_newest_first(db: Db) {
    let test_db = TestDb::new(db).await;
    let tasker = test_db.connect().await;
    register(&tasker).await;
    // Task i carries "all", "odd" when i is odd, and "third" twice when i % 3 == 0 (a repeated
    // tag is one row).
    for i in 0..30 {
        let mut tags = vec!["all".to_owned()];
        if i % 2 == 1 {
            tags.push("odd".to_owned());
        }
        if i % 3 == 0 {
            tags.extend(["third".to_owned(), "third".to_owned()]);
        }
        tasker.create_task(request(i, tags)).await.expect("create");
    }
    // As stored (SQLite keeps milliseconds), which is what the filters compare.
    let created = all_tasks(&tasker).await;
    let newest_first = |keep: &dyn Fn(&TaskSummary) -> bool| {
        let mut v: Vec<_> = created.iter().filter(|t| keep(t)).cloned().collect();
        v.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.task_uuid)));
        v.into_iter().map(|t| t.task_uuid).collect::<Vec<_>>()
    };
    for (tag, expected) in [
        ("all", newest_first(&|_| true)),
        ("odd", newest_first(&|t| t.tags.iter().any(|g| g == "odd"))),
        ("third", newest_first(&|t| t.tags.iter().any(|g| g == "third"))),
        ("none", Vec::new()),
    ] {
        // Pages of 4 through cursors.
        let mut filter = TaskFilter {
            tag: Some(tag.into()),
            limit: Some(4),
            ..TaskFilter::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = tasker.list_tasks(&filter).await.expect("page");
            for t in &page {
                assert!(t.tags.iter().any(|g| g == tag), "{tag}: {:?}", t.tags);
            }
            seen.extend(page.iter().map(|t| t.task_uuid));
            match page.last() {
                Some(last) if page.len() == 4 => filter.after = Some((last.created_at, last.task_uuid)),
                _ => break,
            }
        }
        assert_eq!(seen, expected, "tag {tag}");
    }
    // With other filters: a tag and a state, a tag and a time range, a tag and a template.
    let cancelled = created
        .iter()
        .find(|t| t.tags.iter().any(|g| g == "third"))
        .expect("a task tagged third")
        .task_uuid;
    tasker.cancel_task(cancelled).await.expect("cancel");
    let both = tasker
        .list_tasks(&TaskFilter {
            tag: Some("third".into()),
            state: Some(tasker_core::state::TaskState::Cancelled),
            ..TaskFilter::default()
        })
        .await
        .expect("tag and state");
    assert_eq!(both.iter().map(|t| t.task_uuid).collect::<Vec<_>>(), vec![cancelled]);
    let since = created[20].created_at;
    let recent = tasker
        .list_tasks(&TaskFilter {
            tag: Some("odd".into()),
            created_after: Some(since),
            ..TaskFilter::default()
        })
        .await
        .expect("tag and time");
    assert_eq!(
        recent.iter().map(|t| t.task_uuid).collect::<Vec<_>>(),
        newest_first(&|t| t.created_at >= since && t.tags.iter().any(|g| g == "odd")),
    );
    let by_template = tasker
        .list_tasks(&TaskFilter {
            tag: Some("all".into()),
            namespace: Some("dashboard_counts".into()),
            name: Some("counted".into()),
            limit: Some(3),
            ..TaskFilter::default()
        })
        .await
        .expect("tag and template");
    assert_eq!(by_template.len(), 3);
    tasker.close().await;
    test_db.cleanup().await;
}
