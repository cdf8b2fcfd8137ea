//! `GET /v1/events/stream`: the durable event log as Server-Sent Events.
//!
//! Each connection is a member of a subscriber group of its own, created for it and deleted
//! when the client goes away. Every SSE message's `id` is the event's position in the log: a
//! client that reconnects with `Last-Event-ID` gets a group that starts right after it, so it
//! misses nothing that was written meanwhile (within the log's retention).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use tasker_core::events::{EventSubscription, SubscriptionOptions};
use tasker_core::Tasker;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Debug, Clone, Deserialize, IntoParams)]
pub struct StreamQuery {
    /// Comma-separated event name patterns (`task.*,payment.charged`); default every event.
    pub patterns: Option<String>,
    /// Only this task's events.
    pub task: Option<Uuid>,
}

/// The stream's subscription, and the group to delete when the stream is dropped.
struct Reader {
    subscription: EventSubscription,
    task: Option<Uuid>,
    tasker: Tasker,
    group: String,
}

impl Drop for Reader {
    fn drop(&mut self) {
        let (tasker, group) = (self.tasker.clone(), std::mem::take(&mut self.group));
        tokio::spawn(async move {
            // Let the member leave first (its Drop asked it to); then the group goes.
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Err(e) = tasker.delete_event_group(&group).await {
                tracing::warn!(group = %group, error = %e, "could not delete an event stream's group");
            }
        });
    }
}

/// Events as they are written, as Server-Sent Events (`event:` the name, `data:` the event as
/// JSON, `id:` its position). Send `Last-Event-ID` to resume after a disconnection.
#[utoipa::path(get, path = "/v1/events/stream", tag = "events", params(StreamQuery),
    responses((status = 200, description = "text/event-stream of events", content_type = "text/event-stream")))]
pub async fn stream_events(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    principal.require("events:read")?;
    let patterns: Vec<String> = query
        .patterns
        .as_deref()
        .unwrap_or("*")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    let start_after = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|p| *p >= 0)
                .ok_or_else(|| {
                    ApiError::bad_request("Last-Event-ID must be the id (a position) of an event this stream sent")
                })?,
        ),
    };
    let group = format!("sse-{}", Uuid::now_v7().simple());
    let mut options = SubscriptionOptions::new(group.clone(), patterns);
    options.start_after = start_after;
    let subscription = state.tasker.subscribe(options).await?;
    let reader = Reader {
        subscription,
        task: query.task,
        tasker: state.tasker.clone(),
        group,
    };
    let events = stream::unfold(reader, |reader| async move {
        loop {
            let delivery = match reader.subscription.poll_async(Duration::from_secs(1)).await {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "event stream stopped");
                    return None;
                }
            };
            if reader.subscription.ack(delivery.delivery_id).is_err() {
                return None;
            }
            let event = delivery.event;
            if reader.task.is_some() && event.task_uuid != reader.task {
                continue;
            }
            let mut message = SseEvent::default().event(event.name.clone());
            if let Some(p) = event.position {
                message = message.id(p.to_string());
            }
            let message = message
                .json_data(event.to_json())
                .unwrap_or_else(|_| SseEvent::default());
            return Some((Ok(message), reader));
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
