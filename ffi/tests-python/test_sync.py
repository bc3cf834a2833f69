"""Sign-in and sync through a real fieldsync-server on 127.0.0.1: two devices converge."""

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading

import pytest

import fieldsync_ffi as fs
from conftest import today_iso

PASSWORD = "correct-horse-1"
SERVER_BIN = os.environ.get("FIELDSYNC_SERVER_BIN") or shutil.which("fieldsync-server")


def admin(data, *args):
    subprocess.run([SERVER_BIN, "admin", "--data-dir", str(data), *args], check=True, capture_output=True)


def new_server_data(data):
    """A data directory with the demo reference data, rep1 and manager1."""
    refs = data / "refs.json"
    refs.write_text(fs.demo_reference_data_json(7, today_iso()))
    admin(data, "import", str(refs))
    admin(data, "create-user", "--username", "rep1", "--role", "rep", "--territories", "t-1", "--password", PASSWORD)
    admin(data, "create-user", "--username", "manager1", "--role", "manager", "--territories", "t-1", "--password", PASSWORD)


@contextlib.contextmanager
def serving(data):
    """The server on `data`, on a free port of 127.0.0.1; yields its URL."""
    proc = subprocess.Popen(
        [SERVER_BIN, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "listening on " in line, line
        yield line.split("listening on ")[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def needs_server():
    if not SERVER_BIN:
        pytest.fail("set FIELDSYNC_SERVER_BIN (scripts/test-bindings.sh does)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    needs_server()
    data = tmp_path_factory.mktemp("server")
    new_server_data(data)
    with serving(data) as url:
        yield url


def device(tmp_path, session, device_id):
    return fs.FieldStore.open(str(tmp_path / f"{device_id}.db"), session.user_id, device_id)


class Recorder(fs.FieldObserver):
    def __init__(self):
        self.changed, self.states, self.progress = [], [], []

    def on_data_changed(self, visit_ids):
        self.changed.append(list(visit_ids))

    def on_sync_state(self, state):
        self.states.append(state)

    def on_progress(self, done, total):
        self.progress.append((done, total))


def test_manager_and_rep_devices_converge(server, tmp_path):
    async def scenario():
        manager = await fs.login(server, "manager1", PASSWORD, "tablet-1")
        rep = await fs.login(server, "rep1", PASSWORD, "phone-1")
        assert manager.role == fs.Role.MANAGER and rep.role == fs.Role.REP
        assert rep.user_id == "rep-1" and rep.territory_ids == ["t-1"]

        tablet, phone = device(tmp_path, manager, "tablet-1"), device(tmp_path, rep, "phone-1")
        report = await tablet.sync(server, manager.token)
        assert report.reference_updated and tablet.reference_data_version() >= 1

        # The manager plans today's visit for the rep.
        shop = next(s for s in tablet.stores() if s.territory_id == "t-1")
        now = tablet.now()
        visit_id = tablet.create_visit(
            fs.VisitPlan(
                store_id=shop.id,
                rep_id="rep-1",
                planned_start=now,
                planned_end=now + 3_600_000,
                priority=1,
                instructions="Rebuild the cola display",
                template_id="tt-standard",
                ad_hoc=False,
            )
        )
        report = await tablet.sync(server, manager.token)
        assert report.acked >= 1 and report.rejections == []
        assert tablet.outbox_len() == 0

        # The rep's phone receives it, with events for the app.
        recorder = Recorder()
        subscription = phone.subscribe(recorder)
        await phone.sync(server, rep.token)
        assert [e.visit_id for e in phone.today_route()] == [visit_id]
        assert [visit_id] in recorder.changed
        assert fs.SyncState.SYNCING(round=1) in recorder.states
        assert recorder.states[-1] == fs.SyncState.IDLE()

        phone.check_in(visit_id, fs.GeoPoint(lat=shop.lat, lng=shop.lng))
        product = phone.visit_checklist(visit_id).product_ids[0]
        phone.record_inventory(visit_id, product, fs.InventoryInput(shelf_qty=0, out_of_stock=True))
        phone.set_notes(visit_id, "Display gone")
        pending = phone.outbox_len()
        recorder.progress.clear()
        report = await phone.sync(server, rep.token)
        assert report.acked == pending and report.rejections == []
        status = phone.sync_status()
        assert status.pending_changes == 0 and status.last_error is None
        assert status.last_sync_at is not None and status.quarantined == []
        assert recorder.progress and recorder.progress[-1][0] == pending
        subscription.cancel()

        await tablet.sync(server, manager.token)
        assert tablet.visit(visit_id) == phone.visit(visit_id)
        assert tablet.visit(visit_id).status == fs.VisitStatus.IN_PROGRESS
        assert tablet.store_findings(shop.id).out_of_stock_product_ids == [product]
        history = tablet.field_history(visit_id)
        assert any(h.path == "notes" and h.author.device_id == "phone-1" for h in history)

    asyncio.run(scenario())


def test_bad_credentials_and_tokens_are_unauthorized(server, tmp_path):
    async def scenario():
        with pytest.raises(fs.FieldsyncError.Unauthorized):
            await fs.login(server, "rep1", "wrong-password", "phone-9")
        store = fs.FieldStore.open(str(tmp_path / "x.db"), "rep-1", "phone-9")
        with pytest.raises(fs.FieldsyncError.Unauthorized):
            await store.sync(server, "not-a-token")
        assert "unauthorized" in store.sync_status().last_error
        with pytest.raises(fs.FieldsyncError.Network):
            await fs.login("http://127.0.0.1:1", "rep1", PASSWORD, "phone-9")

    asyncio.run(scenario())


def test_a_sync_can_be_cancelled(server, tmp_path):
    # A server that accepts the connection and never answers.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(silent.accept()), daemon=True).start()
    url = "http://127.0.0.1:%d" % silent.getsockname()[1]

    async def scenario():
        rep = await fs.login(server, "rep1", PASSWORD, "phone-2")
        store = device(tmp_path, rep, "phone-2")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(store.sync(url, rep.token), timeout=0.5)
        # The store is fine, and the next sync against the real server works.
        report = await store.sync(server, rep.token)
        assert report.reference_updated

    try:
        asyncio.run(scenario())
    finally:
        silent.close()


def test_a_store_closed_by_head_office_stays_while_the_rep_works_there(tmp_path):
    needs_server()
    data = tmp_path / "server"
    data.mkdir()
    new_server_data(data)

    async def scenario():
        with serving(data) as url:
            rep = await fs.login(url, "rep1", PASSWORD, "phone-3")
            phone = device(tmp_path, rep, "phone-3")
            await phone.sync(url, rep.token)
            shop = next(s for s in phone.stores() if s.territory_id == "t-1")
            assert not shop.closed
            visit_id = phone.create_ad_hoc_visit(shop.id, "tt-quick")
            phone.check_in(visit_id, fs.GeoPoint(lat=shop.lat, lng=shop.lng))
            report = await phone.sync(url, rep.token)
            assert report.rejections == []

        # Head office closes the store while the rep is in it.
        refs = json.loads((data / "refs.json").read_text())
        refs["stores"] = [s for s in refs["stores"] if s["id"] != shop.id]
        closing = data / "closing.json"
        closing.write_text(json.dumps(refs))
        admin(data, "import", str(closing), "--allow-removals")

        with serving(data) as url:
            report = await phone.sync(url, rep.token)
            assert report.reference_updated
            # The phone keeps the store while the visit is open, and says it is closed.
            [entry] = [e for e in phone.today_route() if e.visit_id == visit_id]
            assert entry.store_closed
            assert phone.visit_detail(visit_id).store_closed
            [kept] = [s for s in phone.stores() if s.id == shop.id]
            assert kept.closed
            assert not any(s.closed for s in phone.stores() if s.id != shop.id)
            with pytest.raises(fs.FieldsyncError.Validation) as refused:
                phone.create_ad_hoc_visit(shop.id, "tt-quick")
            assert "closed by head office" in refused.value.reason

            # The rep finishes the visit and the server takes it. Done, the visit keeps its
            # store on the route while the phone holds it (retention drops both later).
            phone.check_out(visit_id, fs.GeoPoint(lat=shop.lat, lng=shop.lng))
            phone.complete(visit_id)
            report = await phone.sync(url, rep.token)
            assert report.rejections == [] and phone.outbox_len() == 0
            assert phone.visit(visit_id).status == fs.VisitStatus.COMPLETED
            [entry] = [e for e in phone.today_route() if e.visit_id == visit_id]
            assert entry.store_closed and entry.store_name == shop.name

    asyncio.run(scenario())
