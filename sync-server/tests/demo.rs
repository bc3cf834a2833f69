//! `serve --demo`: what a manager sees on the dashboard once the simulated reps have synced.
//! Each rep's phone records the past week as it happened (most visits completed within
//! their windows, some late, canceled, abandoned or missed) and works today's visits live,
//! inside their windows, checking out before completing. A demo started again with fresh
//! phones leaves the history as it was.

mod common;

use common::Server;
use fieldsync_server::demo::{DemoRep, DemoUser, PastVisits, Step, seeded_accounts};
use serde_json::Value;
use std::time::Duration;

/// The report range (from, to), fixed once at the start: the test may run across midnight.
type Range = (chrono::NaiveDate, chrono::NaiveDate);

/// Rep `rep_id`'s summary over the last eight days, as the dashboard's overview gives it,
/// and the server's latest change-log sequence number. Reports count a visit on its
/// store's local day; the demo's stores are in Berlin and Lyon, where the day starts an
/// hour or two before it does in UTC (from 22:00 or 23:00 UTC on, a live visit belongs to
/// tomorrow's UTC date). The range ends a day after today's UTC date so that it holds the
/// stores' today at any hour; later days hold only visits not yet due.
async fn summary(server: &Server, token: &str, rep_id: &str, (from, to): Range) -> (Value, i64) {
    let resp = common::http()
        .get(server.url(&format!(
            "/v1/reports/overview?from={from}&to={to}&rep={rep_id}"
        )))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let rep = body["reps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rep_id"] == rep_id)
        .unwrap_or_else(|| panic!("no summary for {rep_id}: {body}"))
        .clone();
    (rep["summary"].clone(), body["latest_seq"].as_i64().unwrap())
}

fn count(summary: &Value, key: &str) -> u64 {
    summary[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {summary}"))
}

fn ratio(summary: &Value, key: &str) -> (u64, u64) {
    (count(&summary[key], "num"), count(&summary[key], "den"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_reps_sync_a_week_of_history_and_work_today_within_the_windows() {
    let today = chrono::Utc::now().date_naive();
    let range = (today - chrono::Days::new(8), today + chrono::Days::new(1));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with(&data, 0, &["--demo", "--no-simulation"]);
    let users: Vec<DemoUser> = seeded_accounts(&data)
        .unwrap()
        .expect("the demo's accounts");
    let user = |name: &str| users.iter().find(|u| u.username == name).unwrap().clone();
    let (rep1, manager) = (user("rep1"), user("manager1"));
    let session = fieldsync_core::sync::login(&server.base, "manager1", &manager.password, "t")
        .await
        .unwrap();
    let token = session.token;

    let mut rep = DemoRep::start(&server.base, &rep1, 0, &dir.path().join("phone-1"))
        .await
        .unwrap();
    let past = rep.past.clone();
    assert!(past.on_time > 0, "{past:?}");
    assert!(
        past.late + past.canceled + past.abandoned + past.missed > 0,
        "a realistic week has some visits not done as planned: {past:?}"
    );
    let (s, _) = summary(&server, &token, &rep1.user_id, range).await;
    assert_eq!(count(&s, "completed") as usize, past.on_time + past.late);
    assert_eq!(count(&s, "canceled") as usize, past.canceled);
    assert_eq!(count(&s, "abandoned") as usize, past.abandoned);
    let due = past.on_time + past.late + past.canceled + past.abandoned + past.missed;
    assert_eq!(
        ratio(&s, "visit_compliance"),
        (past.on_time as u64, due as u64),
        "checked in within the window counts, late does not: {s}"
    );
    // Checked out 20–45 minutes after checking in.
    let minutes = s["avg_time_in_store_min"].as_f64().expect("time in store");
    assert!((20.0..=45.0).contains(&minutes), "{minutes}");
    assert!(
        ratio(&s, "out_of_stock").0 > 0,
        "some shelves are empty: {s}"
    );

    // Today, live: check in to the first visit, then record, check out and complete it. Its
    // window is open now, so it counts as compliant.
    let first = match rep.step().await.unwrap() {
        Step::CheckedIn(id, _) => id,
        other => panic!("{other:?}"),
    };
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps < 200, "the visit never completed");
        match rep.step().await.unwrap() {
            Step::Recorded(id) => assert_eq!(id, first),
            Step::Completed(id, _) => {
                assert_eq!(id, first);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    // A few findings per step: a visit takes a few minutes of a rep's steps.
    assert!(steps > 20, "{steps}");
    rep.sync().await.unwrap();
    let (s, seq) = summary(&server, &token, &rep1.user_id, range).await;
    assert_eq!(
        count(&s, "completed") as usize,
        past.on_time + past.late + 1
    );
    assert_eq!(
        ratio(&s, "visit_compliance"),
        (past.on_time as u64 + 1, due as u64 + 1),
        "{s}"
    );
    // Checked out too: the live visit (seconds in the store) joins the average.
    let now_minutes = s["avg_time_in_store_min"].as_f64().unwrap();
    assert!(now_minutes < minutes, "{now_minutes} vs {minutes}");

    // The demo started again: a fresh phone finds the history done and changes nothing
    // (the visits that were missed stay missed).
    let again = DemoRep::start(&server.base, &rep1, 0, &dir.path().join("phone-2"))
        .await
        .unwrap();
    assert_eq!(
        again.past,
        PastVisits {
            missed: past.missed,
            ..PastVisits::default()
        }
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (after, seq_after) = summary(&server, &token, &rep1.user_id, range).await;
    assert_eq!((after, seq_after), (s, seq));
}
