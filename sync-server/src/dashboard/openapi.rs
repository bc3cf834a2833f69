//! The dashboard's part of the OpenAPI document ([`crate::openapi::ApiDoc`]): its error
//! answers, and the list of its JSON and CSV routes that a test finds documented.

use std::collections::BTreeMap;
use utoipa::openapi::{RefOr, Response};

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

/// The error answers of the report routes.
#[derive(Debug)]
pub struct ReportErrors;

impl utoipa::IntoResponses for ReportErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        crate::openapi::error_responses(&[
            (400, "a filter is malformed (the message names it)"),
            (401, "no session and no valid device token"),
            (
                403,
                "a territory, store or visit outside the viewer's territories",
            ),
            (404, "no such visit or store"),
        ])
    }
}

/// The error answers of the dashboard's planning routes: those of the planning API
/// ([`crate::openapi::PlanningErrors`]), signed in with the session.
#[derive(Debug)]
pub struct SessionPlanningErrors;

impl utoipa::IntoResponses for SessionPlanningErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut r = <crate::openapi::PlanningErrors as utoipa::IntoResponses>::responses();
        r.extend(crate::openapi::error_responses(&[
            (401, "no session, or an expired one"),
            (
                403,
                "a missing or wrong `X-CSRF-Token`; not a manager or admin, or outside their territories",
            ),
        ]));
        r
    }
}
