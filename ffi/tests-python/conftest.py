"""Shared fixtures: the generated bindings in ffi/bindings/python (scripts/bindings.sh)."""

import datetime
import os
import sys

import pytest

BINDINGS = os.environ.get(
    "FIELDSYNC_PY_BINDINGS",
    os.path.join(os.path.dirname(__file__), "..", "bindings", "python"),
)
sys.path.insert(0, os.path.abspath(BINDINGS))

import fieldsync_ffi as fs  # noqa: E402

REP = "rep-1"


def today_iso():
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


def open_store(path, user=REP, device="phone-1"):
    store = fs.FieldStore.open(str(path), user, device)
    store.replace_reference_data_json(fs.demo_reference_data_json(7, today_iso()))
    return store


def plan_visit(store, store_index=0, template="tt-standard"):
    """Plans a visit for the rep now at the demo data's n-th store; returns (id, shop)."""
    shop = reference(store)["stores"][store_index]
    now = store.now()
    plan = fs.VisitPlan(
        store_id=shop["id"],
        rep_id=store.identity().user_id,
        planned_start=now,
        planned_end=now + 3_600_000,
        priority=2,
        instructions="Check the cola display",
        template_id=template,
        ad_hoc=False,
    )
    return store.create_visit(plan), shop


def reference(store):
    import json

    return json.loads(store.reference_data_json())


def at(shop):
    return fs.GeoPoint(lat=shop["lat"], lng=shop["lng"])


@pytest.fixture
def store(tmp_path):
    return open_store(tmp_path / "rep-1.db")
