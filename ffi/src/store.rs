//! [`FieldStore`]: the device store as the app sees it.

use std::sync::Arc;

use fieldsync_core::model::ReferenceData;
use fieldsync_core::store::DeviceStore;

use crate::error::{FieldsyncError, Result};
use crate::observer::{FieldObserver, Observers, Subscription};
use crate::types::*;

/// The device's local database for one user: reference data, the route, visits and
/// every check, KPIs, field history and the outbox of changes waiting for the server.
///
/// Every method blocks until its work is durable and is safe to call from several
/// threads at once; call it off the UI thread.
#[derive(Debug, uniffi::Object)]
pub struct FieldStore {
    pub(crate) inner: Arc<DeviceStore>,
    pub(crate) observers: Arc<Observers>,
}

impl FieldStore {
    /// Runs a mutating call and, when it succeeded, tells the observers which visit
    /// changed.
    fn changed<T>(&self, visit_id: &str, result: fieldsync_core::Result<T>) -> Result<T> {
        let value = result?;
        self.observers.data_changed(&[visit_id.to_string()]);
        Ok(value)
    }
}

#[uniffi::export]
impl FieldStore {
    /// Opens (creating or upgrading) the store at `path` for a user on a device.
    #[uniffi::constructor]
    pub fn open(path: String, user_id: String, device_id: String) -> Result<Arc<Self>> {
        let inner = DeviceStore::open(path, &user_id, &device_id)?;
        Ok(Arc::new(Self {
            inner: Arc::new(inner),
            observers: Arc::default(),
        }))
    }

    /// The user and device this store belongs to.
    pub fn identity(&self) -> Identity {
        self.inner.identity().clone().into()
    }

    /// The device time now (ms since the Unix epoch).
    pub fn now(&self) -> Millis {
        self.inner.now()
    }

    /// Subscribes an observer; keep the returned handle, delivery stops when it is
    /// cancelled or dropped.
    pub fn subscribe(&self, observer: Arc<dyn FieldObserver>) -> Arc<Subscription> {
        self.observers.add(observer)
    }

    // ------------------------------------------------------------ reference data

    /// Replaces all reference data with `json` (the server's reference data document).
    /// It is validated first; nothing changes when it is invalid.
    pub fn replace_reference_data_json(&self, json: String) -> Result<()> {
        let data: ReferenceData = serde_json::from_str(&json).map_err(|e| {
            FieldsyncError::validation(format!("reference data is not valid JSON: {e}"))
        })?;
        self.inner.replace_reference_data(data)?;
        self.observers.data_changed(&[]);
        Ok(())
    }

    /// The reference data held on the device, as JSON.
    pub fn reference_data_json(&self) -> Result<String> {
        let refs = self.inner.reference_data();
        Ok(serde_json::to_string(&*refs).map_err(fieldsync_core::Error::from)?)
    }

    /// The version of the reference data held (0 before any was loaded).
    pub fn reference_data_version(&self) -> i64 {
        self.inner.reference_data().version
    }

    /// Every store in the reference data, in reference data order (a store head office
    /// closed is listed, `closed`, while a visit there is open).
    pub fn stores(&self) -> Vec<StoreInfo> {
        let closed = self.inner.closed_stores();
        self.inner
            .reference_data()
            .stores
            .iter()
            .map(|s| StoreInfo::of(s, closed.contains(&s.id)))
            .collect()
    }

    /// What a visit asks the rep to check: the store's assortment, planogram positions,
    /// the promotions running on the visit's local day and the template's questions.
    pub fn visit_checklist(&self, visit_id: String) -> Result<VisitChecklist> {
        Ok(self.inner.visit_checklist(&visit_id)?.into())
    }

    // ------------------------------------------------------------ route and reads

    /// The rep's visits planned for `day_iso` (`YYYY-MM-DD`) in each store's own time
    /// zone, ordered by planned start.
    pub fn route_for_day(&self, day_iso: String) -> Result<Vec<RouteEntry>> {
        let day = parse_day(&day_iso)?;
        Ok(into_vec(self.inner.route_for_day(day)?))
    }

    /// Today's route: visits planned for today in each store's own time zone.
    pub fn today_route(&self) -> Result<Vec<RouteEntry>> {
        Ok(into_vec(self.inner.today_route()?))
    }

    /// Every visit held on the device, by id.
    pub fn visit_ids(&self) -> Result<Vec<String>> {
        Ok(self.inner.visit_ids()?)
    }

    /// Visit ids planned between two instants (ms), ordered by planned start.
    pub fn visit_ids_between(&self, from: Millis, to: Millis) -> Result<Vec<String>> {
        Ok(self.inner.visit_ids_between(from, to)?)
    }

    /// A visit, resolved.
    pub fn visit(&self, visit_id: String) -> Result<Visit> {
        Ok(self.inner.visit(&visit_id)?.into())
    }

    /// A visit with its store name, task progress and conflicts.
    pub fn visit_detail(&self, visit_id: String) -> Result<VisitDetail> {
        Ok(self.inner.visit_detail(&visit_id)?.into())
    }

    /// Which user and device changed which field of the visit, when.
    pub fn field_history(&self, visit_id: String) -> Result<Vec<FieldChange>> {
        Ok(into_vec(self.inner.field_history(&visit_id)?))
    }

    /// Fields of the visit changed concurrently, with every value and the winner marked.
    pub fn conflicts(&self, visit_id: String) -> Result<Vec<FieldConflict>> {
        Ok(into_vec(self.inner.conflicts(&visit_id)?))
    }

    /// The KPIs of one visit.
    pub fn visit_kpis(&self, visit_id: String) -> Result<VisitKpis> {
        Ok(self.inner.visit_kpis(&visit_id)?.into())
    }

    /// KPIs over every visit planned between two instants (ms).
    pub fn kpi_summary(&self, from: Millis, to: Millis) -> Result<KpiSummary> {
        Ok(self.inner.kpi_summary(from, to)?.into())
    }

    /// The findings of the store's most recent visit that recorded any.
    pub fn store_findings(&self, store_id: String) -> Result<StoreFindings> {
        Ok(self.inner.store_findings(&store_id)?.into())
    }

    /// Local changes waiting for the server's acknowledgement.
    pub fn outbox_len(&self) -> Result<u64> {
        Ok(self.inner.outbox_len()?)
    }

    /// What a sync status bar shows: pending changes, the last successful sync, the last
    /// error and the visits the server refused with its reasons. Read from the store, so
    /// it survives restarts and includes syncs made by a background worker.
    pub fn sync_status(&self) -> Result<SyncStatusInfo> {
        Ok(fieldsync_core::sync::status(&self.inner)?.into())
    }

    /// Sends a quarantined visit's refused changes again on the next sync (after the
    /// cause was fixed, e.g. the manager reassigned the visit back).
    pub fn retry_quarantined(&self, visit_id: String) -> Result<()> {
        Ok(self.inner.clear_quarantine(&visit_id)?)
    }

    // ------------------------------------------------------------ actions

    /// Plans a visit (a manager's action, or an ad-hoc visit). Returns its id.
    pub fn create_visit(&self, plan: VisitPlan) -> Result<String> {
        let id = self.inner.create_visit(plan.into())?;
        self.observers.data_changed(std::slice::from_ref(&id));
        Ok(id)
    }

    /// Starts an ad-hoc visit at a store now, for this rep, with the given template.
    /// Returns its id.
    pub fn create_ad_hoc_visit(&self, store_id: String, template_id: String) -> Result<String> {
        let id = self.inner.create_ad_hoc_visit(&store_id, &template_id)?;
        self.observers.data_changed(std::slice::from_ref(&id));
        Ok(id)
    }

    /// Checks in at the store: the visit starts. A position outside the store's geofence
    /// is flagged, not refused.
    pub fn check_in(&self, visit_id: String, position: GeoPoint) -> Result<CheckPoint> {
        let r = self.inner.check_in(&visit_id, position.into());
        self.changed(&visit_id, r).map(Into::into)
    }

    /// Checks out of the store (the visit stays in progress until completed).
    pub fn check_out(&self, visit_id: String, position: GeoPoint) -> Result<CheckPoint> {
        let r = self.inner.check_out(&visit_id, position.into());
        self.changed(&visit_id, r).map(Into::into)
    }

    /// Records one product's inventory line (only the fields given).
    pub fn record_inventory(
        &self,
        visit_id: String,
        product_id: String,
        input: InventoryInput,
    ) -> Result<()> {
        let r = self
            .inner
            .record_inventory(&visit_id, &product_id, &input.into());
        self.changed(&visit_id, r)
    }

    /// Records one planogram position's result.
    pub fn record_position(
        &self,
        visit_id: String,
        position_id: String,
        input: PositionInput,
    ) -> Result<()> {
        let r = self
            .inner
            .record_position(&visit_id, &position_id, &input.into());
        self.changed(&visit_id, r)
    }

    /// Records one promotion check.
    pub fn record_promotion(
        &self,
        visit_id: String,
        promotion_id: String,
        input: PromotionInput,
    ) -> Result<()> {
        let r = self
            .inner
            .record_promotion(&visit_id, &promotion_id, &input.into());
        self.changed(&visit_id, r)
    }

    /// Answers a survey question of the visit's template.
    pub fn answer_survey(
        &self,
        visit_id: String,
        question_id: String,
        value: AnswerValue,
    ) -> Result<()> {
        let r = self
            .inner
            .answer_survey(&visit_id, &question_id, &value.into());
        self.changed(&visit_id, r)
    }

    /// Sets an order line's quantity (0 or more).
    pub fn set_order_line(
        &self,
        visit_id: String,
        product_id: String,
        quantity: i64,
    ) -> Result<()> {
        let r = self.inner.set_order_line(&visit_id, &product_id, quantity);
        self.changed(&visit_id, r)
    }

    /// Submits the order (an order with no lines means "no order today").
    pub fn submit_order(&self, visit_id: String) -> Result<()> {
        let r = self.inner.submit_order(&visit_id);
        self.changed(&visit_id, r)
    }

    /// Replaces the visit's notes (stored as a minimal text edit so concurrent edits merge).
    pub fn set_notes(&self, visit_id: String, text: String) -> Result<()> {
        let r = self.inner.set_notes(&visit_id, &text);
        self.changed(&visit_id, r)
    }

    /// Inserts `insert` at character `pos` of the notes after deleting `delete` characters.
    pub fn edit_notes(
        &self,
        visit_id: String,
        pos: u32,
        delete: u32,
        insert: String,
    ) -> Result<()> {
        let r = self.inner.edit_notes(&visit_id, pos, delete, &insert);
        self.changed(&visit_id, r)
    }

    /// Completes the visit; refused with `FieldsyncError.Conflict` while a required task
    /// is open.
    pub fn complete(&self, visit_id: String) -> Result<()> {
        let r = self.inner.complete(&visit_id);
        self.changed(&visit_id, r)
    }

    /// Cancels a planned visit, with a reason and optionally where the rep was.
    pub fn cancel(
        &self,
        visit_id: String,
        reason: String,
        position: Option<GeoPoint>,
    ) -> Result<()> {
        let r = self
            .inner
            .cancel(&visit_id, &reason, position.map(Into::into));
        self.changed(&visit_id, r)
    }

    /// Abandons a started visit, with a reason.
    pub fn abandon(&self, visit_id: String, reason: String) -> Result<()> {
        let r = self.inner.abandon(&visit_id, &reason);
        self.changed(&visit_id, r)
    }

    /// Changes a planned visit's plan (a manager's action on the device).
    pub fn update_plan(&self, visit_id: String, plan: VisitPlan) -> Result<()> {
        let r = self.inner.update_plan(&visit_id, &plan.into());
        self.changed(&visit_id, r)
    }
}

fn into_vec<T, U: From<T>>(v: Vec<T>) -> Vec<U> {
    v.into_iter().map(U::from).collect()
}
