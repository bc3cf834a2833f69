"""Observers (including one that raises) and calls from several threads at once."""

import gc
import threading

import fieldsync_ffi as fs
from conftest import at, plan_visit


class Recorder(fs.FieldObserver):
    def __init__(self):
        self.changed = []
        self.states = []
        self.progress = []
        self.lock = threading.Lock()

    def on_data_changed(self, visit_ids):
        with self.lock:
            self.changed.append(list(visit_ids))

    def on_sync_state(self, state):
        self.states.append(state)

    def on_progress(self, done, total):
        self.progress.append((done, total))


class Raising(fs.FieldObserver):
    def __init__(self):
        self.calls = 0

    def on_data_changed(self, visit_ids):
        self.calls += 1
        raise RuntimeError("observer bug")

    def on_sync_state(self, state):
        raise RuntimeError("observer bug")

    def on_progress(self, done, total):
        raise RuntimeError("observer bug")


def test_observer_receives_data_changed_until_cancelled(store):
    recorder = Recorder()
    subscription = store.subscribe(recorder)
    visit_id, shop = plan_visit(store)
    store.check_in(visit_id, at(shop))
    assert recorder.changed == [[visit_id], [visit_id]]

    # A failed call changes nothing and notifies nobody.
    try:
        store.check_in(visit_id, at(shop))
    except fs.FieldsyncError.Conflict:
        pass
    assert len(recorder.changed) == 2

    subscription.cancel()
    subscription.cancel()  # harmless
    store.set_notes(visit_id, "after cancel")
    assert len(recorder.changed) == 2


def test_dropping_the_subscription_stops_delivery(store):
    recorder = Recorder()
    subscription = store.subscribe(recorder)
    visit_id, _ = plan_visit(store)
    assert recorder.changed == [[visit_id]]
    del subscription
    gc.collect()
    store.set_notes(visit_id, "after drop")
    assert recorder.changed == [[visit_id]]


def test_a_raising_observer_does_not_break_the_store(store):
    raising, recorder = Raising(), Recorder()
    subscriptions = [store.subscribe(raising), store.subscribe(recorder)]
    visit_id, shop = plan_visit(store)
    store.check_in(visit_id, at(shop))
    store.set_notes(visit_id, "still fine")
    assert raising.calls == 3
    assert len(recorder.changed) == 3  # the others still hear everything
    assert store.visit(visit_id).notes == "still fine"
    assert len(subscriptions) == 2


def test_concurrent_calls_from_several_threads(store):
    visits = []
    for i in range(4):
        visit_id, shop = plan_visit(store, i)
        store.check_in(visit_id, at(shop))
        visits.append(visit_id)
    recorder = Recorder()
    subscription = store.subscribe(recorder)
    errors = []

    def work(visit_id):
        try:
            for product in store.visit_checklist(visit_id).product_ids:
                store.record_inventory(visit_id, product, fs.InventoryInput(shelf_qty=4, facings=1))
                store.visit_detail(visit_id)  # readers interleave with writers
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(v,)) for v in visits for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for visit_id in visits:
        expected = store.visit_checklist(visit_id).product_ids
        lines = store.visit(visit_id).inventory
        assert [line.product_id for line in lines] == sorted(expected)
        assert all(line.shelf_qty == 4 for line in lines)
    total = sum(len(store.visit_checklist(v).product_ids) for v in visits)
    assert len(recorder.changed) == 2 * total
    subscription.cancel()


def test_an_observer_may_call_back_into_the_store(store):
    class Reloader(fs.FieldObserver):
        def __init__(self):
            self.notes = []

        def on_data_changed(self, visit_ids):
            for visit_id in visit_ids:
                self.notes.append(store.visit(visit_id).notes)

        def on_sync_state(self, state):
            pass

        def on_progress(self, done, total):
            pass

    reloader = Reloader()
    subscription = store.subscribe(reloader)
    visit_id, _ = plan_visit(store)
    store.set_notes(visit_id, "seen from the callback")
    assert reloader.notes == ["", "seen from the callback"]
    subscription.cancel()
