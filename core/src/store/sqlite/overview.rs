//! SQLite statements of the dashboard's overview: task counts by state, recent tasks by time
//! bucket, throughput and queue depths. Each is one indexed read, off the hot path.
//!
//! The counts come from `tasker_task_counts` (migration 0010), which triggers keep in the
//! transaction of every task insert and state change: a read sums a few hundred rows, however
//! many tasks there are, instead of counting the tasks.

use sqlx::Row;

use super::{ms, SqliteStore};
use crate::error::Result;
use crate::store::records::*;

/// Every task by state: the sum of each state's minutes.
const BY_STATE: &str = "SELECT state, SUM(n) AS count FROM tasker_task_counts GROUP BY state \
     HAVING SUM(n) <> 0 ORDER BY state";

/// ?1 since (ms, a whole minute), ?2 bucket width (ms): the minutes since `since`, each
/// in its bucket.
const RECENT: &str = "SELECT (minute * 60000 - ?1) / ?2 AS bucket, state, SUM(n) AS count \
     FROM tasker_task_counts WHERE minute >= ?1 / 60000 GROUP BY bucket, state HAVING SUM(n) <> 0 \
     ORDER BY bucket, state";

/// ?1 since, ?2 recently (ms): a range of `tasker_tasks_by_completed`.
const COMPLETED: &str = "SELECT COALESCE(SUM(state = 'complete'), 0), \
     COALESCE(SUM(state = 'complete' AND completed_at >= ?2), 0) \
     FROM tasker_tasks WHERE completed_at >= ?1";

/// ?1 the first minute kept apart: every older minute's counts are added to minute 0...
const FOLD: &str = "INSERT INTO tasker_task_counts (minute, state, n) \
     SELECT 0, state, SUM(n) FROM tasker_task_counts WHERE minute > 0 AND minute < ?1 GROUP BY state \
     ON CONFLICT (minute, state) DO UPDATE SET n = n + excluded.n";
/// ... then removed, with the rows that count nothing.
const FOLDED: &str = "DELETE FROM tasker_task_counts WHERE (minute > 0 AND minute < ?1) OR n = 0";

impl SqliteStore {
    pub(super) async fn overview_rows(&self, w: &OverviewWindow) -> Result<Overview> {
        let tasks_by_state = self
            .read(sqlx::query(BY_STATE))
            .await?
            .iter()
            .map(|r| {
                Ok(StateCount {
                    state: r.try_get(0)?,
                    count: r.try_get(1)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let recent = self
            .read(sqlx::query(RECENT).bind(ms(w.since)).bind(w.bucket_ms.max(1)))
            .await?
            .iter()
            .map(|r| {
                Ok(BucketCount {
                    bucket: r.try_get(0)?,
                    state: r.try_get(1)?,
                    count: r.try_get(2)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let completed = self
            .read(sqlx::query(COMPLETED).bind(ms(w.since)).bind(ms(w.recent_since)))
            .await?;
        let (completed_since, completed_recently) = match completed.first() {
            Some(r) => (r.try_get(0)?, r.try_get(1)?),
            None => (0, 0),
        };
        Ok(Overview {
            tasks_by_state,
            recent,
            completed_since,
            completed_recently,
            // Filled by the caller from `Store::queue_stats`.
            queues: Vec::new(),
        })
    }

    /// Folds the counts of minutes before `before` into minute 0 (one write transaction of two
    /// statements over a table of a few hundred rows).
    pub(super) async fn fold_task_counts(&self, before: chrono::DateTime<chrono::Utc>) -> Result<()> {
        let minute = ms(before).div_euclid(60_000);
        let mut tx = self.transaction().await?;
        for statement in [FOLD, FOLDED] {
            let sql = tx.sql(statement);
            if let Err(e) = sqlx::query(&sql).bind(minute).execute(tx.conn()?).await {
                tx.end("ROLLBACK").await?;
                return Err(e.into());
            }
        }
        tx.end("COMMIT").await
    }
}
