//! `GET /v1/videos/{id}/content?variant=preview|final`: the stage-2 preview or the enhanced
//! video. While the job runs, the growing fragmented MP4 (`<name>.partial.mp4`) is streamed as
//! it is written (a browser plays it as it arrives) until the job ends; a finished file is
//! served whole or by HTTP `Range`. In a cluster, a job another replica runs (or ran) is served
//! from the shared store: a finished video through a local copy, a growing one as the store
//! receives it (at each checkpoint).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::api::{error, App};
use super::jobs::JobStatus;
use super::replica::Cluster;

#[derive(Debug, Deserialize)]
pub struct ContentQuery {
    variant: Option<String>,
}

const CHUNK: usize = 64 * 1024;

pub async fn serve(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(query): Query<ContentQuery>,
    headers: HeaderMap,
) -> Response {
    let variant = query.variant.as_deref().unwrap_or("final");
    let name = match variant {
        "final" => "video",
        "preview" => "preview",
        other => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                format!("variant: expected `preview` or `final`, got `{other}`"),
                json!({"field": "variant"}),
            )
        }
    };
    let Some((dir, _)) = app.store.job_dir(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no video `{id}`"),
            Value::Null,
        );
    };
    if let Some(cluster) = app.cluster.clone().filter(|_| !app.store.holds(&id)) {
        return from_store(app, cluster, id, dir, name, variant, &headers).await;
    }
    let finished = dir.join(format!("{name}.mp4"));
    let partial = dir.join(format!("{name}.partial.mp4"));
    // Wait for the first bytes of a queued or running job.
    loop {
        let status = app.store.job_dir(&id).map(|(_, s)| s);
        if finished.exists() && status.is_some_and(JobStatus::is_terminal) {
            return whole_or_range(&finished, &headers).await;
        }
        if partial.exists() || finished.exists() {
            let path = if partial.exists() { partial } else { finished };
            return growing(app.clone(), id, &path).await;
        }
        if status.is_none_or(JobStatus::is_terminal) || app.store.is_stopping() {
            return error(
                StatusCode::NOT_FOUND,
                "no_content",
                format!("video `{id}` has no {variant} frames"),
                Value::Null,
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn no_content(id: &str, variant: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no_content",
        format!("video `{id}` has no {variant} frames"),
        Value::Null,
    )
}

/// Runs blocking store calls off the async threads.
async fn blocking<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(call).await.ok()
}

/// Another replica's video, from the shared store.
async fn from_store(
    app: Arc<App>,
    cluster: Arc<Cluster>,
    id: String,
    dir: std::path::PathBuf,
    name: &'static str,
    variant: &str,
    headers: &HeaderMap,
) -> Response {
    let finished = format!("{name}.mp4");
    let partial = format!("{name}.partial.mp4");
    loop {
        let ended = app.store.job_dir(&id).is_none_or(|(_, s)| s.is_terminal());
        if ended {
            let (files, id2, local) = (cluster.files.clone(), id.clone(), dir.join(&finished));
            let fetched = blocking(move || files.fetch(&id2, &finished, &local)).await;
            return match fetched {
                Some(Ok(true)) => whole_or_range(&dir.join(format!("{name}.mp4")), headers).await,
                Some(Ok(false)) => no_content(&id, variant),
                Some(Err(err)) => store_unavailable(&err.to_string()),
                None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            };
        }
        let (files, id2, object) = (cluster.files.clone(), id.clone(), partial.clone());
        if let Some(Ok(Some(_))) = blocking(move || files.size(&id2, &object)).await {
            return growing_in_store(app, cluster, id, name);
        }
        if app.store.is_stopping() {
            return no_content(&id, variant);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn store_unavailable(why: &str) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        format!("the cluster's shared store cannot be read: {why}"),
        Value::Null,
    )
}

/// Streams another replica's growing video from the store: the partial object's new bytes
/// as they arrive, then the rest of the final one once the job ends.
fn growing_in_store(app: Arc<App>, cluster: Arc<Cluster>, id: String, name: &str) -> Response {
    let names = (format!("{name}.partial.mp4"), format!("{name}.mp4"));
    // The offset read up to; `None` after an error ends the stream.
    let state = (app, cluster, id, names, Some(0u64));
    let stream = futures_util::stream::unfold(state, |state| async move {
        let (app, cluster, id, names, offset) = state;
        let offset = offset?;
        loop {
            let ended = app.store.job_dir(&id).is_none_or(|(_, s)| s.is_terminal());
            let object = if ended {
                names.1.clone()
            } else {
                names.0.clone()
            };
            let (files, job) = (cluster.files.clone(), id.clone());
            let read = blocking(move || -> Result<Option<Vec<u8>>, String> {
                let size = files.size(&job, &object).map_err(|e| e.to_string())?;
                match size {
                    Some(size) if size > offset => {
                        let end = size.min(offset + 16 * CHUNK as u64);
                        let bytes = files.read_range(&job, &object, offset..end);
                        bytes.map(Some).map_err(|e| e.to_string())
                    }
                    _ => Ok(None),
                }
            })
            .await?;
            match read {
                Ok(Some(bytes)) => {
                    let next = offset + bytes.len() as u64;
                    let chunk = Ok::<_, std::io::Error>(Bytes::from(bytes));
                    return Some((chunk, (app, cluster, id, names, Some(next))));
                }
                Ok(None) if ended || app.store.is_stopping() => return None,
                Ok(None) => tokio::time::sleep(Duration::from_millis(500)).await,
                Err(err) => {
                    let err = std::io::Error::other(err);
                    return Some((Err(err), (app, cluster, id, names, None)));
                }
            }
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    mp4_headers(&mut response);
    response
}

fn mp4_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, "video/mp4".parse().expect("valid"));
    headers.insert(header::ACCEPT_RANGES, "bytes".parse().expect("valid"));
    headers.insert(header::CACHE_CONTROL, "no-store".parse().expect("valid"));
}

/// Streams a file that is still being written, until its job ends and every byte is sent.
async fn growing(app: Arc<App>, id: String, path: &std::path::Path) -> Response {
    let Ok(file) = tokio::fs::File::open(path).await else {
        return error(
            StatusCode::NOT_FOUND,
            "no_content",
            "not written yet".into(),
            Value::Null,
        );
    };
    let stream = futures_util::stream::unfold((file, app, id), |(mut file, app, id)| async move {
        let mut buffer = vec![0u8; CHUNK];
        loop {
            let ended = app.store.job_dir(&id).is_none_or(|(_, s)| s.is_terminal());
            match file.read(&mut buffer).await {
                Ok(0) if ended || app.store.is_stopping() => return None,
                Ok(0) => tokio::time::sleep(Duration::from_millis(150)).await,
                Ok(n) => {
                    buffer.truncate(n);
                    return Some((
                        Ok::<_, std::io::Error>(Bytes::from(buffer)),
                        (file, app, id),
                    ));
                }
                Err(err) => return Some((Err(err), (file, app, id))),
            }
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    mp4_headers(&mut response);
    response
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` against a length: the inclusive range, or `Err` when
/// it cannot be satisfied.
pub fn parse_range(value: &str, length: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.strip_prefix("bytes=")?;
    if spec.contains(',') || length == 0 {
        return Some(Err(()));
    }
    let (start, end) = spec.split_once('-')?;
    let range = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            (length.saturating_sub(n), length - 1)
        }
        (start, "") => (start.parse().ok()?, length - 1),
        (start, end) => (
            start.parse().ok()?,
            end.parse::<u64>().ok()?.min(length - 1),
        ),
    };
    Some(match range.0 <= range.1 && range.0 < length {
        true => Ok(range),
        false => Err(()),
    })
}

async fn whole_or_range(path: &std::path::Path, headers: &HeaderMap) -> Response {
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return error(
            StatusCode::NOT_FOUND,
            "no_content",
            "gone".into(),
            Value::Null,
        );
    };
    let length = file.metadata().await.map_or(0, |m| m.len());
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_range(v, length));
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, length.saturating_sub(1)),
        Some(Ok((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end),
        Some(Err(())) => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            let value = format!("bytes */{length}");
            response
                .headers_mut()
                .insert(header::CONTENT_RANGE, value.parse().expect("valid"));
            return response;
        }
    };
    if file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let count = if length == 0 { 0 } else { end - start + 1 };
    let stream = futures_util::stream::unfold((file, count), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buffer = vec![0u8; CHUNK.min(left as usize)];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((
                    Ok::<_, std::io::Error>(Bytes::from(buffer)),
                    (file, left - n as u64),
                ))
            }
            Err(err) => Some((Err(err), (file, 0))),
        }
    });
    let mut response = (status, Body::from_stream(stream)).into_response();
    mp4_headers(&mut response);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_LENGTH,
        count.to_string().parse().expect("valid"),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {start}-{end}/{length}");
        headers.insert(header::CONTENT_RANGE, value.parse().expect("valid"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn byte_ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some(Ok((0, 99))));
        assert_eq!(parse_range("bytes=900-", 1000), Some(Ok((900, 999))));
        assert_eq!(parse_range("bytes=-100", 1000), Some(Ok((900, 999))));
        assert_eq!(parse_range("bytes=990-2000", 1000), Some(Ok((990, 999))));
        assert_eq!(parse_range("bytes=1000-", 1000), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Some(Err(())));
        assert_eq!(parse_range("items=0-1", 1000), None);
    }
}
