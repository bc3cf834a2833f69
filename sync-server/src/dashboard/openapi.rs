//! The dashboard's part of the OpenAPI document: the report API, the CSV exports and the
//! session-authenticated planning routes, added to [`crate::openapi::document`].

use serde_json::{Value, json};

/// Every JSON/CSV route of the dashboard: (path, method). A test checks each is documented.
pub const ROUTES: &[(&str, &str)] = &[
    ("/v1/reports/context", "get"),
    ("/v1/reports/overview", "get"),
    ("/v1/reports/trends", "get"),
    ("/v1/reports/visits", "get"),
    ("/v1/reports/visits/{id}", "get"),
    ("/v1/reports/stores/{id}", "get"),
    ("/v1/reports/changes", "get"),
    ("/v1/reports/export/visits.csv", "get"),
    ("/v1/reports/export/inventory.csv", "get"),
    ("/v1/dashboard/visits", "post"),
    ("/v1/dashboard/visits/{id}", "patch"),
];

fn errors() -> Value {
    let e = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}});
    json!({"400": e, "401": e, "403": e, "404": e})
}

fn q(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

fn filters() -> Vec<Value> {
    let date = json!({"type": "string", "format": "date"});
    let s = json!({"type": "string"});
    vec![
        q(
            "from",
            "first store-local day (default: 6 days before `to`)",
            date.clone(),
        ),
        q("to", "last store-local day (default: today, UTC)", date),
        q(
            "territory",
            "one territory (must be one of the viewer's)",
            s.clone(),
        ),
        q("rep", "one rep id", s.clone()),
        q("store", "one store id", s),
        q(
            "status",
            "one visit status",
            json!({"enum": ["planned", "in_progress", "completed", "canceled", "abandoned"]}),
        ),
    ]
}

fn id_param() -> Value {
    json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}})
}

fn report(summary: &str, schema: &str, params: Vec<Value>) -> Value {
    let mut responses = errors();
    responses["200"] = json!({"description": "ok", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    json!({"summary": summary, "tags": ["reports"], "parameters": params, "responses": responses,
           "security": [{"session": []}, {"bearer": []}]})
}

fn csv(summary: &str) -> Value {
    let mut responses = errors();
    responses["200"] = json!({"description": "CSV with a header row (attachment)", "content": {"text/csv": {"schema": {"type": "string"}}}});
    json!({"summary": summary, "tags": ["reports"], "parameters": filters(), "responses": responses,
           "security": [{"session": []}, {"bearer": []}]})
}

fn planning(summary: &str, body: &str, with_id: bool) -> Value {
    let mut responses = errors();
    responses["200"] = json!({"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/VisitOut"}}}});
    if !with_id {
        responses["201"] = responses["200"].clone();
    }
    let mut params = vec![
        json!({"name": "X-CSRF-Token", "in": "header", "required": true, "schema": {"type": "string"},
               "description": "the session's CSRF token (the page's `csrf-token` meta tag)"}),
    ];
    if with_id {
        params.push(id_param());
    }
    json!({"summary": summary, "tags": ["dashboard"], "parameters": params,
           "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{body}")}}}},
           "responses": responses, "security": [{"session": []}]})
}

fn obj(props: &[(&str, Value)]) -> Value {
    let p: serde_json::Map<String, Value> = props
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    json!({"type": "object", "properties": p})
}

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// Adds the dashboard's paths, schemas and the session security scheme to `doc`.
pub fn extend(doc: &mut Value) {
    let paths = json!({
        "/v1/reports/context": {"get": report("The viewer, their territories, reps, stores, templates, KPI targets and the latest change", "ReportContext", vec![])},
        "/v1/reports/overview": {"get": report("KPIs of a date range and filters, per rep and per store", "Overview", filters())},
        "/v1/reports/trends": {"get": report("KPIs per store-local day of the range", "Trends", filters())},
        "/v1/reports/visits": {"get": report("The visits of the range, one row each", "VisitList", filters())},
        "/v1/reports/visits/{id}": {"get": report("One visit: tasks, lines, field history (user, device, time) and conflicts", "VisitReport", vec![id_param()])},
        "/v1/reports/stores/{id}": {"get": report("One store: KPIs, last visits, out-of-stock products, non-compliant positions, promotions", "StoreReport",
            { let mut p = filters(); p.retain(|x| x["name"] == "from" || x["name"] == "to"); p.push(id_param()); p })},
        "/v1/reports/changes": {"get": report("The latest change sequence number and the visits changed after `since` (poll this)", "Changes",
            vec![q("since", "a `latest_seq` seen before", json!({"type": "integer"})), q("describe", "describe up to 20 changed visits", json!({"type": "boolean"}))])},
        "/v1/reports/export/visits.csv": {"get": csv("CSV of the visits of the range and filters")},
        "/v1/reports/export/inventory.csv": {"get": csv("CSV of the inventory lines of those visits")},
        "/v1/dashboard/visits": {"post": planning("Plan a visit (as POST /v1/visits) with the dashboard session", "CreateVisit", false)},
        "/v1/dashboard/visits/{id}": {"patch": planning("Assign, reschedule or cancel a planned visit (as PATCH /v1/visits/{id}) with the dashboard session", "PatchVisit", true)},
    });
    let i = json!({"type": "integer"});
    let s = json!({"type": "string"});
    let n = json!({"type": ["number", "null"]});
    let ratio = obj(&[("num", i.clone()), ("den", i.clone()), ("pct", n.clone())]);
    let kpis = obj(&[
        ("visits", i.clone()),
        ("planned", i.clone()),
        ("ad_hoc", i.clone()),
        ("completed", i.clone()),
        ("canceled", i.clone()),
        ("open", i.clone()),
        ("abandoned", i.clone()),
        ("visit_compliance", r("Ratio")),
        ("out_of_stock", r("Ratio")),
        ("on_shelf_availability", r("Ratio")),
        ("planogram_compliance", r("Ratio")),
        ("promotion_compliance", r("Ratio")),
        ("price_compliance", r("Ratio")),
        ("share_of_shelf", r("Ratio")),
        ("strike_rate", r("Ratio")),
        ("perfect_store_score", n.clone()),
        ("avg_time_in_store_min", n),
    ]);
    let visit_row = obj(&[
        ("visit_id", s.clone()),
        ("day", s.clone()),
        ("territory_id", s.clone()),
        ("store_id", s.clone()),
        ("store_name", s.clone()),
        ("rep_id", s.clone()),
        ("rep_name", s.clone()),
        ("status", s.clone()),
        ("planned_start", i.clone()),
        ("planned_end", i.clone()),
        ("check_in_at", json!({"type": ["integer", "null"]})),
        ("out_of_stock", r("Ratio")),
        ("planogram_compliance", r("Ratio")),
        ("promotion_compliance", r("Ratio")),
        ("price_compliance", r("Ratio")),
        ("perfect_store_score", json!({"type": ["number", "null"]})),
    ]);
    let arr = |x: Value| json!({"type": "array", "items": x});
    let range = |extra: &[(&str, Value)]| {
        let mut v = vec![
            ("from", s.clone()),
            ("to", s.clone()),
            ("latest_seq", i.clone()),
        ];
        v.extend(extra.iter().cloned());
        obj(&v)
    };
    let schemas = json!({
        "Ratio": ratio,
        "Kpis": kpis,
        "VisitRow": visit_row,
        "ReportContext": obj(&[("user", json!({"type": "object"})), ("today", s.clone()), ("territories", arr(json!({"type": "object"}))),
            ("reps", arr(json!({"type": "object"}))), ("stores", arr(json!({"type": "object"}))), ("templates", arr(json!({"type": "object"}))),
            ("targets", json!({"type": "object", "additionalProperties": {"type": "number"}})), ("latest_seq", i.clone())]),
        "Overview": range(&[("as_of", i.clone()), ("summary", r("Kpis")),
            ("reps", arr(obj(&[("rep_id", s.clone()), ("name", s.clone()), ("summary", r("Kpis"))]))),
            ("stores", arr(obj(&[("store_id", s.clone()), ("name", s.clone()), ("territory_id", s.clone()), ("last_visit_day", json!({"type": ["string", "null"]})), ("summary", r("Kpis"))])))]),
        "Trends": range(&[("summary", r("Kpis")), ("days", arr(obj(&[("day", s.clone()), ("summary", r("Kpis"))])))]),
        "VisitList": range(&[("visits", arr(r("VisitRow")))]),
        "StoreReport": range(&[("store", json!({"type": "object"})), ("summary", r("Kpis")), ("visits", arr(r("VisitRow"))),
            ("out_of_stock", arr(json!({"type": "object"}))), ("positions", arr(json!({"type": "object"}))), ("promotions", arr(json!({"type": "object"})))]),
        "VisitReport": obj(&[("visit_id", s.clone()), ("visit", json!({"type": "object"})), ("summary", r("Kpis")), ("tasks", arr(json!({"type": "object"}))),
            ("inventory", arr(json!({"type": "object"}))), ("planogram", arr(json!({"type": "object"}))), ("promotions", arr(json!({"type": "object"}))),
            ("history", arr(obj(&[("path", s.clone()), ("value", s.clone()), ("at", i.clone()), ("user_id", s.clone()), ("user_name", s.clone()), ("device_id", s.clone()), ("conflict", json!({"type": "boolean"}))]))),
            ("conflicts", arr(obj(&[("path", s.clone()), ("values", arr(json!({"type": "object"})))])))]),
        "Changes": obj(&[("since", i.clone()), ("latest_seq", i), ("changed", arr(s)), ("visits", arr(r("VisitRow")))]),
    });
    if let (Some(p), Value::Object(add)) = (doc["paths"].as_object_mut(), paths) {
        p.extend(add);
    }
    if let (Some(c), Value::Object(add)) = (doc["components"]["schemas"].as_object_mut(), schemas) {
        c.extend(add);
    }
    if let Some(sec) = doc["components"]["securitySchemes"].as_object_mut() {
        sec.insert(
            "session".into(),
            json!({"type": "apiKey", "in": "cookie", "name": "fs_session",
                   "description": "dashboard session from POST /login (HttpOnly, SameSite=Strict)"}),
        );
    }
}
