//! The HTTP API (axum), named after OpenAI's `/v1/videos` where it fits. JSON bodies map to
//! the same [`GenerateParams`](crate::engine::GenerateParams) the CLI builds, and are validated by the same
//! [`GenerateRequest::new`], so a field and a flag give the same error (named by its JSON key).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request as HttpRequest, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::engine::{GenerateRequest, JobDir, RequestError};
use crate::manifest::ModelSet;

pub use super::body::{CreateVideo, SteerBody};
use super::content;
use super::jobs::{now, JobProgress, JobRecord, JobStatus, Refused, Store};
use super::metrics::Metrics;
use super::replica::Cluster;
use super::worker::Workers;
use super::Limits;

/// What every handler shares.
pub struct App {
    /// In a cluster, what every replica shares (jobs go into its queue, not `store`'s).
    pub cluster: Option<Arc<Cluster>>,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub workers: Arc<Workers>,
    pub set: ModelSet,
    pub limits: Limits,
    pub api_key: Option<String>,
}

pub fn router(app: Arc<App>) -> Router {
    let v1 = Router::new()
        .route("/v1/videos", get(list).post(create))
        .route("/v1/videos/{id}", get(retrieve).delete(cancel))
        .route("/v1/videos/{id}/events", get(events))
        .route("/v1/videos/{id}/prompt", axum::routing::post(steer))
        .route("/v1/videos/{id}/content", get(content::serve))
        .route("/v1/models", get(models))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), authorize));
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(|| async { Json(super::openapi::document()) }),
        )
        .merge(v1)
        .layer(axum::extract::DefaultBodyLimit::max(
            app.limits.max_body_bytes,
        ))
        .with_state(app)
}

/// `{"error": {"type", "message", ...}}` with `status`.
pub fn error(status: StatusCode, kind: &str, message: String, extra: Value) -> Response {
    let mut body = json!({"type": kind, "message": message});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    (status, Json(json!({"error": body}))).into_response()
}

async fn authorize(State(app): State<Arc<App>>, request: HttpRequest, next: Next) -> Response {
    let Some(key) = &app.api_key else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given == Some(key.as_str()) {
        true => next.run(request).await,
        false => {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this server needs `Authorization: Bearer <api key>`".into(),
                Value::Null,
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// A validation error named by its JSON key.
fn invalid(err: &RequestError) -> Response {
    let field = err.field().json_key();
    let message = match err {
        RequestError::Value {
            expected, actual, ..
        } => format!("{field}: expected {expected}, got {actual}"),
        RequestError::File { source, .. } => format!("{field}: {source}"),
    };
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        message,
        json!({"field": field}),
    )
}

async fn create(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let deserializer = &mut serde_json::Deserializer::from_slice(&body);
    let body: CreateVideo = match serde_path_to_error::deserialize(deserializer) {
        Ok(body) => body,
        Err(err) => {
            let field = err.path().to_string();
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                format!("{field}: {}", err.inner()),
                json!({"field": field}),
            );
        }
    };
    if let Some(response) = app.limits.check(&body) {
        return response;
    }
    if let Some(format) = body.format.as_deref().filter(|f| *f != "mp4") {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            format!(
                "format: expected `mp4` (fragmented MP4, playable while it grows), got `{format}`"
            ),
            json!({"field": "format"}),
        );
    }
    if body.enhance == Some(true) && crate::models::lacks_enhancer(&app.set) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            format!(
                "enhance: true needs the enhancer graphs, and the model set {} has none \
                 (a stage-2 set): leave `enhance` out or set it to false",
                app.set.dir.display()
            ),
            json!({"field": "enhance"}),
        );
    }
    let store = &app.store;
    let pruned = store.prune(app.limits.keep_jobs, app.limits.keep_seconds);
    if let Some(cluster) = &app.cluster {
        forget_files(cluster, pruned).await;
    }
    let (id, dir) = match store.reserve() {
        Ok(reserved) => reserved,
        Err(refused) => return refusal(&app, refused),
    };
    let params = body.params(&dir, &app.set);
    let request = match GenerateRequest::new(&params, &app.set) {
        Ok(request) => request,
        Err(err) => {
            let _ = std::fs::remove_dir_all(&dir);
            return invalid(&err);
        }
    };
    // Checkpoints go beside the outputs: a server killed mid-job resumes it when it restarts.
    if let Err(err) = JobDir::create(&super::resume_dir(&dir), &app.set.dir, &params) {
        let _ = std::fs::remove_dir_all(&dir);
        let message = format!("cannot create the job's checkpoint directory: {err}");
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            message,
            Value::Null,
        );
    }
    let record = JobRecord {
        id: id.clone(),
        object: "video".into(),
        status: JobStatus::Queued,
        prompt: body.prompt.clone(),
        frames_requested: request.plan().stage2_frames,
        enhance: request.options().enhance.is_some(),
        created_at: now(),
        started_at: None,
        finished_at: None,
        progress: JobProgress::default(),
        timings: BTreeMap::new(),
        time_to_first_frame_s: None,
        error: None,
        replica: None,
    };
    let submitted = match &app.cluster {
        Some(cluster) => {
            let (cluster, dir) = (cluster.clone(), dir.clone());
            tokio::task::spawn_blocking(move || admit(&cluster, record, &dir))
                .await
                .unwrap_or_else(|err| Err(Refused::Unavailable(err.to_string())))
        }
        None => store.submit(record, dir.clone(), request.into()),
    };
    match submitted {
        Ok(_) => {
            let (record, position) = store.get(&id).expect("just queued");
            (StatusCode::ACCEPTED, Json(describe(&record, position))).into_response()
        }
        Err(refused) => {
            let _ = std::fs::remove_dir_all(&dir);
            refusal(&app, refused)
        }
    }
}

/// The response to a job the server could not take.
fn refusal(app: &App, refused: Refused) -> Response {
    match refused {
        Refused::QueueFull { capacity } => {
            app.metrics.rejected();
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "queue_full",
                format!("the queue holds {capacity} jobs already; retry later"),
                json!({"limit": capacity}),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
            response
        }
        Refused::Stopping => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down".into(),
            Value::Null,
        ),
        Refused::Unavailable(why) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_unavailable",
            format!("the cluster's job queue or store cannot be reached: {why}"),
            Value::Null,
        ),
        Refused::NoDirectory(why) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            format!("cannot create the job directory: {why}"),
            Value::Null,
        ),
    }
}

/// A record as the API shows it, with its URLs.
/// Puts a job into the cluster's queue: its record, first event and checkpoint directory go
/// to Redis and the store first, so the replica that takes it finds them; a refused job leaves
/// nothing behind.
fn admit(cluster: &Cluster, record: JobRecord, dir: &std::path::Path) -> Result<usize, Refused> {
    let id = record.id.clone();
    let unavailable = |err: &dyn std::fmt::Display| Refused::Unavailable(err.to_string());
    let queued = super::jobs::JobEvent {
        id: 1,
        name: "queued".into(),
        data: json!({}),
    };
    let shared = cluster
        .jobs
        .write_record(&record)
        .and_then(|()| cluster.jobs.append_event(&id, &queued))
        .map_err(|e| unavailable(&e));
    let stored = shared.and_then(|()| cluster.push(&id, dir, false).map_err(|e| unavailable(&e)));
    let capacity = cluster.queue.bound();
    let admitted = stored.and_then(|()| match cluster.queue.admit(&id) {
        Ok(true) => Ok(0),
        Ok(false) => Err(Refused::QueueFull { capacity }),
        Err(err) => Err(unavailable(&err)),
    });
    if admitted.is_err() {
        let _ = cluster.jobs.forget(&id);
        let _ = cluster.files.delete(&id);
    }
    admitted
}

/// Deletes the shared files of jobs this replica pruned.
async fn forget_files(cluster: &Arc<Cluster>, ids: Vec<String>) {
    if ids.is_empty() {
        return;
    }
    let cluster = cluster.clone();
    let _ = tokio::task::spawn_blocking(move || {
        for id in ids {
            if let Err(err) = cluster.files.delete(&id) {
                tracing::warn!("job {id}: deleting its files from the store: {err}");
            }
        }
    })
    .await;
}

pub fn describe(record: &JobRecord, queue_position: Option<usize>) -> Value {
    let mut value = serde_json::to_value(record).unwrap_or(Value::Null);
    let base = format!("/v1/videos/{}", record.id);
    value["queue_position"] = json!(queue_position);
    value["urls"] = json!({
        "self": base,
        "events": format!("{base}/events"),
        "preview": format!("{base}/content?variant=preview"),
        "final": format!("{base}/content?variant=final"),
    });
    value
}

fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no video `{id}`"),
        Value::Null,
    )
}

/// Changes the prompt of every chunk not started yet (stage 2 and the enhancer chunks from
/// there on); answers the frame it takes effect from.
async fn steer(State(app): State<Arc<App>>, Path(id): Path<String>, body: Bytes) -> Response {
    let body: SteerBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(err) => {
            let message = format!("expected {{\"prompt\": \"...\"}}: {err}");
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                message,
                json!({"field": "prompt"}),
            );
        }
    };
    if body.prompt.trim().is_empty() || body.prompt.len() > app.limits.max_prompt_bytes {
        let message = format!(
            "prompt: expected 1 to {} bytes of text",
            app.limits.max_prompt_bytes
        );
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            message,
            json!({"field": "prompt"}),
        );
    }
    match app.store.steer(&id, &body.prompt) {
        None => match (app.store.get(&id), &app.cluster) {
            // Another replica's job: the one running it (or taking it) applies the change and
            // logs `prompt_changed` with the frame it starts at.
            (Some((record, _)), Some(cluster)) if !record.status.is_terminal() => {
                match cluster.queue.steer(&id, &body.prompt) {
                    Ok(()) => {
                        let body = json!({"id": id, "from_frame": null, "prompt": body.prompt, "replica": record.replica});
                        (StatusCode::ACCEPTED, Json(body)).into_response()
                    }
                    Err(err) => refusal(&app, Refused::Unavailable(err.to_string())),
                }
            }
            (Some((record, _)), Some(_)) => not_running(&id, record.status),
            _ => not_found(&id),
        },
        Some(Ok(from_frame)) => {
            Json(json!({"id": id, "from_frame": from_frame, "prompt": body.prompt})).into_response()
        }
        Some(Err(status)) => not_running(&id, status),
    }
}

fn not_running(id: &str, status: JobStatus) -> Response {
    error(
        StatusCode::CONFLICT,
        "not_running",
        format!(
            "video `{id}` is {}: its prompt cannot change",
            status.name()
        ),
        Value::Null,
    )
}

async fn retrieve(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match app.store.get(&id) {
        Some((record, position)) => Json(describe(&record, position)).into_response(),
        None => not_found(&id),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn list(State(app): State<Arc<App>>, Query(query): Query<ListQuery>) -> Response {
    let limit = query.limit.unwrap_or(20).clamp(1, 100);
    let (records, has_more) = app.store.list(query.after.as_deref(), limit);
    let data: Vec<Value> = records.iter().map(|r| describe(r, None)).collect();
    let last = records.last().map(|r| r.id.clone());
    Json(json!({"object": "list", "data": data, "has_more": has_more, "last_id": last}))
        .into_response()
}

async fn cancel(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let cancelled = match (app.store.cancel(&id), &app.cluster) {
        // Another replica's job: it sees the flag (or the replica that takes it does).
        (None, Some(cluster)) => match app.store.get(&id) {
            Some((record, _)) if cluster.queue.cancel(&id).is_ok() => Some(record.status),
            _ => None,
        },
        (local, _) => local,
    };
    match cancelled {
        None => not_found(&id),
        Some(before) => {
            let (record, _) = app.store.get(&id).expect("known job");
            let mut body = describe(&record, None);
            body["cancel_requested_from"] = json!(before);
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
    }
}

/// Server-sent events: the job's log from `Last-Event-ID` on, then live until it ends.
async fn events(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if app.store.get(&id).is_none() {
        return not_found(&id);
    }
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let state = (
        app.clone(),
        id,
        after,
        app.store.subscribe(),
        Vec::new(),
        false,
    );
    let stream = futures_util::stream::unfold(
        state,
        |(app, id, mut after, mut rx, mut buffer, mut done)| async move {
            loop {
                if let Some(event) = buffer.pop() {
                    let event: super::jobs::JobEvent = event;
                    after = Some(event.id);
                    let sse = Event::default()
                        .id(event.id.to_string())
                        .event(event.name.clone())
                        .data(event.data.to_string());
                    return Some((
                        Ok::<_, std::convert::Infallible>(sse),
                        (app, id, after, rx, buffer, done),
                    ));
                }
                if done {
                    return None;
                }
                rx.borrow_and_update();
                let (events, ended) = app.store.events_after(&id, after)?;
                if !events.is_empty() {
                    buffer = events.into_iter().rev().collect();
                    done = ended;
                    continue;
                }
                if ended || app.store.is_stopping() {
                    return None;
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response()
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    let workers = &app.workers;
    let ready = workers.ready.load(std::sync::atomic::Ordering::SeqCst);
    let load_error = workers
        .load_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let body = json!({"ready": ready >= workers.count, "workers": workers.count, "workers_ready": ready, "error": load_error});
    match ready >= workers.count && !app.store.is_stopping() {
        true => Json(body).into_response(),
        false => (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response(),
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let (counts, depth) = app.store.counts();
    let text = app.metrics.render(&counts, depth);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn models(State(app): State<Arc<App>>) -> Response {
    let manifest = &app.set.manifest;
    let placements = app
        .workers
        .placements
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let graphs: Vec<Value> = manifest
        .graphs
        .iter()
        .map(|(role, graph)| {
            let provider = placements.iter().find(|p| &p.role == role).map(|p| p.provider.to_string());
            json!({"role": role, "file": graph.file, "precision": format!("{:?}", graph.precision).to_lowercase(), "provider": provider})
        })
        .collect();
    Json(json!({
        "object": "list",
        "data": [{"id": manifest.name, "object": "model", "preset": manifest.preset.to_string(), "graphs": graphs}],
    }))
    .into_response()
}

async fn page() -> Html<&'static str> {
    Html(super::page::PAGE)
}
