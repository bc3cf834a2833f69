//! The dashboard's part of the OpenAPI document ([`crate::openapi::ApiDoc`]): its error
//! answers. (Every API route in the source is documented: `tests/authz_matrix.rs`.)

use std::collections::BTreeMap;
use utoipa::openapi::{RefOr, Response};

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
