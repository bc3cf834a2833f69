//! The OpenAPI 3.1 document served at `/v1/openapi.json`, built from the route table and
//! the protocol's types in code.

use serde_json::{Value, json};

fn error_responses() -> Value {
    let e = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}});
    json!({"400": e, "401": e, "403": e, "413": e, "429": e})
}

fn op(summary: &str, body: Option<&str>, ok: &str, secured: bool) -> Value {
    let mut responses = error_responses();
    responses["200"] = json!({"description": "ok", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{ok}")}}}});
    let mut o = json!({"summary": summary, "responses": responses});
    if let Some(b) = body {
        o["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{b}")}}}});
    }
    if secured {
        o["security"] = json!([{"bearer": []}]);
    }
    o
}

fn obj(props: &[(&str, Value)], required: &[&str]) -> Value {
    let p: serde_json::Map<String, Value> = props
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    json!({"type": "object", "properties": p, "required": required})
}

/// The document.
pub fn document() -> Value {
    let s = json!({"type": "string"});
    let strings = json!({"type": "array", "items": {"type": "string"}});
    let i = json!({"type": "integer"});
    let visit_changes = obj(
        &[
            ("visit_id", s.clone()),
            (
                "changes",
                json!({"type": "array", "items": {"type": "string", "contentEncoding": "base64"}}),
            ),
        ],
        &["visit_id", "changes"],
    );
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "fieldsync sync server", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Offline-first sync of visit documents (Automerge). See fieldsync_core::sync::protocol."},
        "paths": {
            "/v1/auth/login": {"post": op("Sign in; returns a device token", Some("LoginRequest"), "LoginResponse", false)},
            "/v1/sync": {"post": op("One sync round trip (push outbox, pull changes)", Some("SyncRequest"), "SyncResponse", true)},
            "/v1/visits": {"post": op("Plan a visit (manager)", Some("CreateVisit"), "VisitOut", true)},
            "/v1/visits/{id}": {
                "get": op("A visit in the caller's scope", None, "VisitOut", true),
                "patch": op("Assign, reschedule or cancel a planned visit (manager)", Some("PatchVisit"), "VisitOut", true)
            },
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "ok"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition format"}}}}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "ErrorBody": obj(&[("error", s.clone()), ("message", s.clone())], &["error", "message"]),
                "LoginRequest": obj(&[("username", s.clone()), ("password", s.clone()), ("device_id", s.clone())], &["username", "password", "device_id"]),
                "LoginResponse": obj(&[("token", s.clone()), ("token_id", s.clone()), ("user", obj(&[("id", s.clone()), ("username", s.clone()), ("role", json!({"enum": ["rep", "manager", "admin"]})), ("territories", strings.clone())], &[]))], &["token", "token_id", "user"]),
                "VisitChanges": visit_changes,
                "SyncRequest": obj(&[
                    ("protocol", json!({"const": fieldsync_core::sync::PROTOCOL_VERSION})), ("device_id", s.clone()),
                    ("cursor", json!({"type": ["string", "null"]})), ("epoch", json!({"type": ["string", "null"]})),
                    ("reference_version", i.clone()), ("reference_epoch", json!({"type": ["string", "null"]})),
                    ("changes", json!({"type": "array", "items": {"$ref": "#/components/schemas/VisitChanges"}})),
                    ("heads", json!({"type": ["array", "null"], "items": obj(&[("visit_id", s.clone()), ("heads", strings.clone())], &[])})),
                    ("accept_documents", json!({"type": "boolean"})),
                    ("documents", json!({"type": "array", "items": {"$ref": "#/components/schemas/VisitDocument"}}))
                ], &["protocol", "device_id"]),
                "VisitDocument": obj(&[("visit_id", s.clone()), ("doc", s.clone()), ("heads", strings.clone())], &["visit_id", "doc", "heads"]),
                "SyncResponse": obj(&[
                    ("protocol", i.clone()), ("epoch", s.clone()), ("acks", strings.clone()),
                    ("acked_documents", json!({"type": "array", "items": obj(&[("visit_id", s.clone()), ("heads", strings.clone())], &["visit_id", "heads"])})),
                    ("rejections", json!({"type": "array", "items": obj(&[("visit_id", s.clone()), ("hashes", strings.clone()), ("reason", s.clone())], &[])})),
                    ("resend", json!({"type": "array", "items": obj(&[("visit_id", s.clone()), ("have", strings.clone())], &[])})),
                    ("changes", json!({"type": "array", "items": {"$ref": "#/components/schemas/VisitChanges"}})),
                    ("documents", json!({"type": "array", "items": {"$ref": "#/components/schemas/VisitDocument"}})),
                    ("cursor", s.clone()), ("more", json!({"type": "boolean"})),
                    ("reference_data", json!({"type": ["object", "null"]})), ("purge", strings.clone()),
                    ("takes_documents", json!({"type": "boolean"}))
                ], &["protocol", "epoch", "acks", "rejections", "resend", "changes", "cursor", "more"]),
                "CreateVisit": obj(&[("store_id", s.clone()), ("rep_id", s.clone()), ("planned_start", i.clone()), ("planned_end", i.clone()),
                    ("priority", i.clone()), ("instructions", s.clone()), ("template_id", s.clone()), ("visit_id", s.clone())],
                    &["store_id", "rep_id", "planned_start", "planned_end", "template_id"]),
                "PatchVisit": obj(&[("rep_id", s.clone()), ("planned_start", i.clone()), ("planned_end", i.clone()), ("priority", i.clone()),
                    ("instructions", s.clone()), ("status", json!({"enum": ["canceled"]})), ("cancel_reason", s.clone())], &[]),
                "VisitOut": obj(&[("visit_id", s.clone()), ("visit", json!({"type": "object"}))], &["visit_id", "visit"])
            }
        }
    });
    // Sign-ins share a bounded number of password checks, syncs a bounded number of slots
    // (`crate::auth::Gate`): whatever finds no room in time is told to come back.
    let busy = |what: &str| {
        json!({
            "description": format!("{what}: retry after `Retry-After` seconds (nothing was changed)"),
            "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        })
    };
    doc["paths"]["/v1/auth/login"]["post"]["responses"]["503"] = busy("too many sign-ins at once");
    doc["paths"]["/v1/sync"]["post"]["responses"]["503"] =
        busy("too many syncs at once (`serve --max-concurrent-syncs`)");
    crate::dashboard::openapi::extend(&mut doc);
    doc
}
