//! Business rules shared by the device and the server: visit lifecycle, input checks,
//! required tasks, and which role owns which fields of a visit document.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::model::{Millis, ReferenceIndex, Role, Store, TaskKind};
use crate::visit::*;

/// The lifecycle actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    CheckIn,
    Record,
    CheckOut,
    Complete,
    Cancel,
    Abandon,
    Reschedule,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::CheckIn => "check in to",
            Action::Record => "record findings in",
            Action::CheckOut => "check out of",
            Action::Complete => "complete",
            Action::Cancel => "cancel",
            Action::Abandon => "abandon",
            Action::Reschedule => "reschedule",
        }
    }
}

/// Checks that `action` is allowed in `status` and returns the status afterwards.
///
/// Planned → InProgress (check in) → Completed; Planned → Canceled; InProgress → Abandoned.
/// Findings are recorded only while in progress.
pub fn transition(status: VisitStatus, action: Action) -> Result<VisitStatus> {
    use VisitStatus::*;
    let next = match (action, status) {
        (Action::CheckIn, Planned) => InProgress,
        (Action::Record | Action::CheckOut, InProgress) => InProgress,
        (Action::Complete, InProgress) => Completed,
        (Action::Cancel, Planned) => Canceled,
        (Action::Abandon, InProgress) => Abandoned,
        (Action::Reschedule, Planned) => Planned,
        _ => {
            let hint = match (action, status) {
                (
                    Action::Record | Action::CheckOut | Action::Complete | Action::Abandon,
                    Planned,
                ) => " (check in first)",
                (Action::Cancel, InProgress) => " (a started visit can be abandoned, not canceled)",
                _ => "",
            };
            return Err(Error::InvalidTransition {
                action: action.verb(),
                status: format!("{status}{hint}"),
            });
        }
    };
    Ok(next)
}

/// Rejects a negative quantity, naming the field.
pub fn non_negative(field: &'static str, value: Option<i64>) -> Result<()> {
    match value {
        Some(v) if v < 0 => Err(Error::NegativeQuantity { field, value: v }),
        _ => Ok(()),
    }
}

/// Checks an inventory input and that the product exists.
pub fn check_inventory(
    refs: &ReferenceIndex<'_>,
    product_id: &str,
    input: &InventoryInput,
) -> Result<()> {
    refs.product(product_id)?;
    non_negative("shelf quantity", input.shelf_qty)?;
    non_negative("backroom quantity", input.backroom_qty)?;
    non_negative("observed price", input.observed_price_cents)?;
    non_negative("facings", input.facings)?;
    Ok(())
}

/// The local calendar day of an instant in a store's time zone (UTC if the zone is unknown).
pub fn local_day(store: &Store, at: Millis) -> NaiveDate {
    let utc = chrono::DateTime::from_timestamp_millis(at).unwrap_or_default();
    crate::tz::local_date(&store.timezone, utc).unwrap_or_else(|| utc.date_naive())
}

/// Progress of one task of a visit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskState {
    pub kind: TaskKind,
    pub required: bool,
    /// Items done (products counted, positions audited, …).
    pub done: u32,
    /// Items to do.
    pub total: u32,
    pub complete: bool,
}

/// Every task of the visit's template with its progress.
///
/// Inventory: every product of the store's assortment has a line with a shelf count or an
/// out-of-stock flag. Planogram: every position has been audited. Promotions: every
/// promotion running that day has been checked. Survey: every required question answered.
/// Order: submitted.
pub fn task_states(visit: &Visit, refs: &ReferenceIndex<'_>) -> Result<Vec<TaskState>> {
    let store = refs.store(&visit.plan.store_id)?;
    let Some(template) = refs.templates.get(visit.plan.template_id.as_str()) else {
        return Ok(Vec::new());
    };
    let day = local_day(store, visit.plan.planned_start);
    let mut out = Vec::new();
    for def in &template.tasks {
        let (done, total) = match def.kind {
            TaskKind::InventoryCheck => {
                let products = refs.assortment_for(store);
                let done = products
                    .iter()
                    .filter(|p| {
                        visit
                            .inventory
                            .get(**p)
                            .is_some_and(|l| l.is_out_of_stock().is_some())
                    })
                    .count();
                (done, products.len())
            }
            TaskKind::PlanogramCheck => {
                let positions = refs
                    .planogram_for(store)
                    .map(|p| p.positions.as_slice())
                    .unwrap_or_default();
                let done = positions
                    .iter()
                    .filter(|p| {
                        visit
                            .planogram
                            .get(&p.id)
                            .is_some_and(|r| r.present.is_some())
                    })
                    .count();
                (done, positions.len())
            }
            TaskKind::PromotionCheck => {
                let promos = refs.promotions_for(store, day);
                let done = promos
                    .iter()
                    .filter(|p| {
                        visit
                            .promotions
                            .get(&p.id)
                            .is_some_and(|c| c.display_in_place.is_some())
                    })
                    .count();
                (done, promos.len())
            }
            TaskKind::Survey => {
                let required: Vec<_> = def.questions.iter().filter(|q| q.required).collect();
                let done = required
                    .iter()
                    .filter(|q| visit.survey.contains_key(&q.id))
                    .count();
                (done, required.len())
            }
            TaskKind::Order => (usize::from(visit.order_submitted), 1),
        };
        out.push(TaskState {
            kind: def.kind,
            required: def.required,
            done: done as u32,
            total: total as u32,
            complete: done >= total,
        });
    }
    Ok(out)
}

/// Refuses to complete a visit while a required task is open, naming the open tasks.
pub fn check_can_complete(visit: &Visit, refs: &ReferenceIndex<'_>) -> Result<()> {
    transition(visit.status, Action::Complete)?;
    let open: Vec<String> = task_states(visit, refs)?
        .into_iter()
        .filter(|t| t.required && !t.complete)
        .map(|t| format!("{} ({} of {} done)", t.kind.label(), t.done, t.total))
        .collect();
    if open.is_empty() {
        Ok(())
    } else {
        Err(Error::RequiredTasksOpen { open })
    }
}

/// Problems with a visit's content against reference data: unknown store, products,
/// positions, promotions or questions, and negative quantities. The server rejects a
/// change that leaves a visit with problems.
pub fn visit_problems(visit: &Visit, refs: &ReferenceIndex<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(store) = refs.store(&visit.plan.store_id) else {
        out.push(format!("unknown store {:?}", visit.plan.store_id));
        return out;
    };
    if visit.plan.planned_end < visit.plan.planned_start {
        out.push("planned end is before planned start".into());
    }
    if !visit.plan.template_id.is_empty()
        && !refs.templates.contains_key(visit.plan.template_id.as_str())
    {
        out.push(format!(
            "unknown task template {:?}",
            visit.plan.template_id
        ));
    }
    for (pid, line) in &visit.inventory {
        if refs.product(pid).is_err() {
            out.push(format!("inventory line for unknown product {pid:?}"));
        }
        for (name, v) in [
            ("shelf quantity", line.shelf_qty),
            ("backroom quantity", line.backroom_qty),
            ("observed price", line.observed_price_cents),
            ("facings", line.facings),
        ] {
            if v.is_some_and(|v| v < 0) {
                out.push(format!("negative {name} for product {pid:?}"));
            }
        }
    }
    let positions: BTreeSet<&str> = refs
        .planogram_for(store)
        .map(|p| p.positions.iter().map(|x| x.id.as_str()).collect())
        .unwrap_or_default();
    for (pos, r) in &visit.planogram {
        if !positions.contains(pos.as_str()) {
            out.push(format!("unknown planogram position {pos:?} for this store"));
        }
        if r.actual_facings.is_some_and(|f| f < 0) {
            out.push(format!("negative facings for position {pos:?}"));
        }
    }
    for promo in visit.promotions.keys() {
        if !refs.promotions.contains_key(promo.as_str()) {
            out.push(format!("unknown promotion {promo:?}"));
        }
    }
    for (pid, line) in &visit.orders {
        if refs.product(pid).is_err() {
            out.push(format!("order line for unknown product {pid:?}"));
        }
        if line.quantity < 0 {
            out.push(format!("negative order quantity for product {pid:?}"));
        }
    }
    // What a device's own API refuses (the position's range, finite numbers), for
    // documents written by other means.
    for (what, point) in [("check-in", visit.check_in), ("check-out", visit.check_out)] {
        let Some(point) = point else { continue };
        if !point.position.on_earth() {
            out.push(format!(
                "{what} position ({}, {}) is not on Earth",
                point.position.lat, point.position.lng
            ));
        }
        if !(point.distance_m.is_finite() && point.distance_m >= 0.0) {
            out.push(format!(
                "{what} distance {} m is no distance",
                point.distance_m
            ));
        }
    }
    for (question, answer) in &visit.survey {
        if let AnswerValue::Number(n) = answer.value
            && !n.is_finite()
        {
            out.push(format!(
                "survey answer to {question:?} is not a finite number"
            ));
        }
    }
    out
}

/// Whether a role may write a document path.
///
/// * everyone: `notes`, and their own actor's entry under `actors/`;
/// * manager: `plan/*`, and cancelling (`actual/status`, `actual/cancel_*`);
/// * rep: `actual/*` and every task section (`inventory`, `planogram`, `promotions`,
///   `survey`, `orders`); the plan only in the change that creates an ad-hoc visit;
/// * admin: everything.
///
/// `creating` is true for the change that creates the document (it writes `v`, `id` and
/// every container).
pub fn role_may_write(role: Role, path: &str, own_actor_hex: &str, creating: bool) -> bool {
    let mut parts = path.splitn(3, '/');
    let top = parts.next().unwrap_or("");
    let second = parts.next().unwrap_or("");
    if role == Role::Admin {
        return top != "?";
    }
    match top {
        "notes" => true,
        "actors" => second == own_actor_hex || (creating && second.is_empty()),
        "v" | "id" => creating,
        // A rep writes the plan only when creating an ad-hoc visit (the server also checks
        // that it is ad hoc and their own).
        "plan" => role == Role::Manager || creating,
        "actual" => match role {
            Role::Rep => true,
            Role::Manager => {
                second.is_empty() && creating
                    || matches!(
                        second,
                        "status" | "cancel_reason" | "cancel_lat" | "cancel_lng"
                    )
            }
            Role::Admin => true,
        },
        "inventory" | "planogram" | "promotions" | "survey" | "orders" => {
            role == Role::Rep || (creating && second.is_empty())
        }
        _ => false,
    }
}

/// The first path (in path order) of `paths` the role may not write, if any: the same
/// whatever order `paths` come in, and however often each.
pub fn forbidden_path<'p>(
    role: Role,
    paths: impl IntoIterator<Item = &'p String>,
    own_actor_hex: &str,
    creating: bool,
) -> Option<&'p String> {
    paths
        .into_iter()
        .filter(|p| !role_may_write(role, p, own_actor_hex, creating))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forbidden_path_named_is_the_first_in_path_order_whatever_the_order_of_the_ops() {
        let ops: Vec<String> = [
            "plan/store",
            "actual/in_at",
            "notes",
            "plan/rep",
            "plan/store",
        ]
        .map(String::from)
        .into();
        let mut reversed = ops.clone();
        reversed.reverse();
        for paths in [&ops, &reversed] {
            let found = forbidden_path(Role::Rep, paths.iter(), "aa", false);
            assert_eq!(found.map(String::as_str), Some("plan/rep"));
            // A manager may write the plan, not a check-in.
            let found = forbidden_path(Role::Manager, paths.iter(), "aa", false);
            assert_eq!(found.map(String::as_str), Some("actual/in_at"));
        }
        assert_eq!(forbidden_path(Role::Admin, ops.iter(), "aa", false), None);
    }

    #[test]
    fn lifecycle() {
        use VisitStatus::*;
        assert_eq!(transition(Planned, Action::CheckIn).unwrap(), InProgress);
        assert_eq!(transition(InProgress, Action::Complete).unwrap(), Completed);
        assert_eq!(transition(Planned, Action::Cancel).unwrap(), Canceled);
        assert_eq!(transition(InProgress, Action::Abandon).unwrap(), Abandoned);
        let e = transition(Completed, Action::CheckIn).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot check in to a visit that is completed"
        );
        let e = transition(InProgress, Action::Cancel).unwrap_err();
        assert!(e.to_string().contains("abandoned, not canceled"), "{e}");
        let e = transition(Planned, Action::Record).unwrap_err();
        assert!(e.to_string().contains("check in first"), "{e}");
        assert!(transition(Canceled, Action::Record).is_err());
        assert!(transition(Abandoned, Action::Complete).is_err());
    }

    #[test]
    fn ownership() {
        let me = "aa";
        assert!(role_may_write(Role::Rep, "inventory/p1/shelf", me, false));
        assert!(!role_may_write(Role::Rep, "plan/rep", me, false));
        assert!(role_may_write(Role::Rep, "plan/rep", me, true));
        assert!(role_may_write(Role::Manager, "plan/rep", me, false));
        assert!(!role_may_write(Role::Manager, "actual/in_at", me, false));
        assert!(role_may_write(Role::Manager, "actual/status", me, false));
        assert!(!role_may_write(
            Role::Manager,
            "inventory/p1/shelf",
            me,
            false
        ));
        assert!(role_may_write(Role::Manager, "notes", me, false));
        assert!(role_may_write(Role::Rep, "actors/aa/u", me, false));
        assert!(!role_may_write(Role::Rep, "actors/bb/u", me, false));
        // The creating change makes the registry itself.
        assert!(role_may_write(Role::Rep, "actors", me, true));
        assert!(!role_may_write(Role::Rep, "actors", me, false));
        assert!(!role_may_write(Role::Rep, "v", me, false));
        assert!(!role_may_write(Role::Rep, "?", me, false));
        assert!(!role_may_write(Role::Admin, "?", me, false));
        assert!(role_may_write(Role::Admin, "plan/store", me, false));
    }
}
