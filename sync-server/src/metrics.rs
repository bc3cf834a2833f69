//! Prometheus metrics: requests, sync latency, changes applied, rejections, visits pushed
//! whole, devices seen, the gates' load (requests turned away busy, slots in use), and
//! where the reports' visits came from.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::collections::HashSet;
use std::sync::Mutex;

/// The server's metrics, in their own registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `fieldsync_http_requests_total{method, path, status}`.
    pub requests: IntCounterVec,
    /// `fieldsync_sync_seconds`: time to serve one sync request.
    pub sync_latency: Histogram,
    /// `fieldsync_changes_applied_total`: changes newly stored.
    pub changes_applied: IntCounter,
    /// `fieldsync_rejections_total`: visits whose changes were refused.
    pub rejections: IntCounter,
    /// `fieldsync_documents_pushed_total`: visits devices pushed as their whole document
    /// (`SyncRequest::documents`) instead of as changes.
    pub documents_pushed: IntCounter,
    /// `fieldsync_devices_seen`: distinct devices that synced since the start.
    pub devices: IntGauge,
    /// `fieldsync_busy_total{gate}`: requests answered 503 "busy" because every slot of a
    /// gate ([`crate::auth::Gate`]) stayed taken for the whole wait; `gate` is `sync`
    /// (`POST /v1/sync`) or `sign_in` (password checks of the API and the dashboard).
    pub busy: IntCounterVec,
    /// `fieldsync_gate_slots_in_use{gate}`: slots of a gate held when the metrics were read.
    pub gate_in_use: IntGaugeVec,
    /// `fieldsync_gate_slots{gate}`: slots of a gate (how many may hold one at once).
    pub gate_slots: IntGaugeVec,
    /// `fieldsync_report_visits_read_total{from}`: visits the dashboard's reports used,
    /// `from` = `kept` (read by an earlier request, bytes unchanged), `stored` (the read the
    /// server stored with the document) or `document` (read from the stored document now:
    /// documents stored before the server kept their reads). Many `stored` or `document`
    /// reads while no visits change mean `--report-visits-kept` is smaller than the
    /// reports' ranges.
    pub report_visits_read: IntCounterVec,
    seen: Mutex<HashSet<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "fieldsync_http_requests_total",
                "HTTP requests by method, route and status",
            ),
            &["method", "path", "status"],
        )
        .expect("valid metric");
        let sync_latency = Histogram::with_opts(
            HistogramOpts::new("fieldsync_sync_seconds", "Time to serve one sync request").buckets(
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            ),
        )
        .expect("valid metric");
        let changes_applied =
            IntCounter::new("fieldsync_changes_applied_total", "Changes newly stored")
                .expect("valid metric");
        let rejections = IntCounter::new(
            "fieldsync_rejections_total",
            "Visits whose changes were rejected",
        )
        .expect("valid metric");
        let documents_pushed = IntCounter::new(
            "fieldsync_documents_pushed_total",
            "Visits pushed as their whole document instead of as changes",
        )
        .expect("valid metric");
        let devices = IntGauge::new(
            "fieldsync_devices_seen",
            "Distinct devices that synced since start",
        )
        .expect("valid metric");
        let busy = IntCounterVec::new(
            Opts::new(
                "fieldsync_busy_total",
                "Requests answered 503 busy because every slot of the gate stayed taken",
            ),
            &["gate"],
        )
        .expect("valid metric");
        let gate_in_use = IntGaugeVec::new(
            Opts::new("fieldsync_gate_slots_in_use", "Slots of the gate in use"),
            &["gate"],
        )
        .expect("valid metric");
        let gate_slots = IntGaugeVec::new(
            Opts::new("fieldsync_gate_slots", "Slots of the gate"),
            &["gate"],
        )
        .expect("valid metric");
        let report_visits_read = IntCounterVec::new(
            Opts::new(
                "fieldsync_report_visits_read_total",
                "Visits the reports used: kept from an earlier read, stored with the document, or read from the document",
            ),
            &["from"],
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(sync_latency.clone()),
            Box::new(changes_applied.clone()),
            Box::new(rejections.clone()),
            Box::new(documents_pushed.clone()),
            Box::new(devices.clone()),
            Box::new(busy.clone()),
            Box::new(gate_in_use.clone()),
            Box::new(gate_slots.clone()),
            Box::new(report_visits_read.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        Self {
            registry,
            requests,
            sync_latency,
            changes_applied,
            rejections,
            documents_pushed,
            devices,
            busy,
            gate_in_use,
            gate_slots,
            report_visits_read,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// Counts a device once.
    pub fn devices_seen(&self, device_id: &str) {
        let mut s = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if s.insert(device_id.to_string()) {
            self.devices.set(s.len() as i64);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
