//! `/openapi.json`: the API as OpenAPI 3.0, its schemas generated from the request and response
//! types themselves (schemars), so the document cannot drift from what the server parses.

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use super::api::{CreateVideo, SteerBody};
use super::jobs::JobRecord;

/// A `$ref` to a component schema, registering the type.
fn schema_ref<T: JsonSchema>(generator: &mut schemars::SchemaGenerator) -> Value {
    serde_json::to_value(generator.subschema_for::<T>()).unwrap_or(Value::Null)
}

fn json_body(schema: &Value) -> Value {
    json!({"content": {"application/json": {"schema": schema}}})
}

pub fn document() -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let create = schema_ref::<CreateVideo>(&mut generator);
    let steer = schema_ref::<SteerBody>(&mut generator);
    let record = schema_ref::<JobRecord>(&mut generator);
    let mut schemas: Map<String, Value> = generator.take_definitions(true);
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "properties": {"error": {"type": "object", "properties": {
            "type": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"},
            "limit": {"type": "number"}, "value": {"type": "number"}}}}}),
    );
    let error = json!({"$ref": "#/components/schemas/Error"});
    let err = |text: &str| json!({"description": text, "content": {"application/json": {"schema": error}}});
    let id = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    let video =
        json!({"description": "the job", "content": {"application/json": {"schema": record}}});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "st2v serve", "version": env!("CARGO_PKG_VERSION"),
                 "description": "StreamingT2V long text-to-video generation; videos play while they are generated."},
        "paths": {
            "/v1/videos": {
                "post": {"summary": "Queue a video", "requestBody": json_body(&create),
                         "responses": {"202": video, "401": err("no or wrong API key"),
                                       "422": err("a field is invalid or over a limit"),
                                       "429": err("the queue is full (Retry-After)")}},
                "get": {"summary": "List videos, newest first",
                        "parameters": [{"name": "after", "in": "query", "schema": {"type": "string"}},
                                       {"name": "limit", "in": "query", "schema": {"type": "integer"}}],
                        "responses": {"200": {"description": "a page of videos"}}}
            },
            "/v1/videos/{id}": {
                "get": {"summary": "A video's status, progress and timings", "parameters": id,
                        "responses": {"200": video, "404": err("unknown id")}},
                "delete": {"summary": "Cancel; finished frames stay downloadable", "parameters": id,
                           "responses": {"202": video, "404": err("unknown id")}}
            },
            "/v1/videos/{id}/events": {
                "get": {"summary": "Server-sent events (Last-Event-ID resumes)", "parameters": id,
                        "responses": {"200": {"description": "text/event-stream"}}}
            },
            "/v1/videos/{id}/content": {
                "get": {"summary": "The preview or final fragmented MP4, streamed while it grows; Range on finished files",
                        "parameters": [id[0].clone(), {"name": "variant", "in": "query",
                                       "schema": {"type": "string", "enum": ["preview", "final"]}}],
                        "responses": {"200": {"description": "video/mp4"}, "206": {"description": "a byte range"},
                                      "404": err("no such video or no frames")}}
            },
            "/v1/videos/{id}/prompt": {
                "post": {"summary": "Steer: change the prompt of every chunk not started yet", "parameters": id,
                         "requestBody": json_body(&steer),
                         "responses": {"200": {"description": "the frame it takes effect from"},
                                       "409": err("the job ended")}}
            },
            "/v1/models": {"get": {"summary": "The model set, precision and provider per graph",
                                   "responses": {"200": {"description": "models"}}}},
            "/healthz": {"get": {"responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"responses": {"200": {"description": "every worker loaded"},
                                              "503": {"description": "loading or stopping"}}}},
            "/metrics": {"get": {"responses": {"200": {"description": "Prometheus text"}}}}
        },
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}
    })
}
