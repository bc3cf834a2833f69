"""A whole visit done offline through the Python bindings, and every error as its type."""

import pytest

import fieldsync_ffi as fs
from conftest import at, plan_visit, reference, today_iso


def answer_for(question):
    return {
        fs.AnswerType.BOOLEAN: fs.AnswerValue.BOOL(value=True),
        fs.AnswerType.NUMBER: fs.AnswerValue.NUMBER(value=3.0),
        fs.AnswerType.TEXT: fs.AnswerValue.TEXT(value="Friendly manager"),
    }[question.answer_type]


def test_a_whole_visit_offline(store):
    visit_id, shop = plan_visit(store)

    route = store.today_route()
    assert [e.visit_id for e in route] == [visit_id]
    assert route[0].store_name == shop["name"]
    assert route[0].status == fs.VisitStatus.PLANNED
    assert store.route_for_day(today_iso()) or store.today_route()

    check_in = store.check_in(visit_id, at(shop))
    assert not check_in.outside_geofence
    assert check_in.distance_m < 1.0

    checklist = store.visit_checklist(visit_id)
    products = checklist.product_ids
    assert products and checklist.positions and checklist.questions
    for i, product in enumerate(products):
        store.record_inventory(
            visit_id,
            product,
            fs.InventoryInput(
                shelf_qty=0 if i == 0 else 5 + i,
                backroom_qty=2,
                out_of_stock=i == 0,
                observed_price_cents=None,
                facings=2,
            ),
        )

    # The planogram task is still open: completing is a Conflict naming it.
    with pytest.raises(fs.FieldsyncError.Conflict) as refused:
        store.complete(visit_id)
    assert "planogram check" in refused.value.reason
    assert "planogram check" in str(refused.value)

    for i, pos in enumerate(checklist.positions):
        store.record_position(
            visit_id,
            pos.position_id,
            fs.PositionInput(
                present=True,
                actual_facings=pos.expected_facings,
                correct_position=i % 5 != 0,
            ),
        )
    for promo in checklist.promotions:
        store.record_promotion(
            visit_id,
            promo.promotion_id,
            fs.PromotionInput(
                display_in_place=True,
                promo_price_correct=True,
                materials_present=False,
                observed_price_cents=promo.promo_price_cents,
            ),
        )
    for question in checklist.questions:
        store.answer_survey(visit_id, question.question_id, answer_for(question))
    store.set_order_line(visit_id, products[0], 24)
    store.submit_order(visit_id)
    store.set_notes(visit_id, "Cola display missing its header card.")
    store.edit_notes(visit_id, 0, 4, "Lemon")
    store.check_out(visit_id, at(shop))
    store.complete(visit_id)

    detail = store.visit_detail(visit_id)
    assert detail.visit.status == fs.VisitStatus.COMPLETED
    assert detail.store_name == shop["name"]
    assert all(t.complete or not t.required for t in detail.tasks)
    assert {t.kind for t in detail.tasks} >= {fs.TaskKind.INVENTORY_CHECK, fs.TaskKind.PLANOGRAM_CHECK}
    assert len(detail.visit.inventory) == len(products)
    assert detail.visit.notes == "Lemon display missing its header card."
    assert detail.visit.orders[0].quantity == 24
    assert detail.visit.order_submitted
    assert detail.visit.check_out is not None
    assert detail.conflicts == [] and store.conflicts(visit_id) == []

    history = store.field_history(visit_id)
    shelf = next(h for h in history if h.path == f"inventory/{products[1]}/shelf")
    assert shelf.value == "6"
    assert shelf.author == fs.Author(user_id="rep-1", device_id="phone-1")
    assert any(h.path == "actual/status" and h.value == '"completed"' for h in history)

    kpis = store.visit_kpis(visit_id)
    assert kpis.status == fs.VisitStatus.COMPLETED
    assert kpis.audit.out_of_stock_rate == pytest.approx(1 / len(products))
    assert kpis.audit.on_shelf_availability == pytest.approx(1 - 1 / len(products))
    assert kpis.strike_rate == 1.0
    assert kpis.audit.price_compliance is None  # no prices were recorded
    assert kpis.perfect_store_score is not None

    summary = store.kpi_summary(store.now() - 86_400_000, store.now() + 86_400_000)
    assert summary.visits == 1 and summary.completed == 1

    findings = store.store_findings(shop["id"])
    assert findings.visit_id == visit_id
    assert findings.out_of_stock_product_ids == [products[0]]

    assert store.outbox_len() > len(products)
    assert store.visit_ids() == [visit_id]


def test_ad_hoc_visit_cancel_and_abandon(store):
    shop = reference(store)["stores"][1]
    ad_hoc = store.create_ad_hoc_visit(shop["id"], "tt-quick")
    assert store.visit(ad_hoc).plan.ad_hoc
    store.check_in(ad_hoc, fs.GeoPoint(lat=shop["lat"] + 0.01, lng=shop["lng"]))
    assert store.visit(ad_hoc).check_in.outside_geofence  # flagged, not refused
    store.abandon(ad_hoc, "store closed for stocktaking")
    assert store.visit(ad_hoc).status == fs.VisitStatus.ABANDONED

    planned, _ = plan_visit(store, 2)
    store.cancel(planned, "road closed", None)
    visit = store.visit(planned)
    assert visit.status == fs.VisitStatus.CANCELED
    assert visit.cancel_reason == "road closed"


def test_each_error_surfaces_as_its_type(store):
    visit_id, shop = plan_visit(store)
    product = store.visit_checklist(visit_id).product_ids[0]

    # Recording before check-in is a state conflict.
    with pytest.raises(fs.FieldsyncError.Conflict):
        store.record_inventory(visit_id, product, fs.InventoryInput(shelf_qty=1))
    store.check_in(visit_id, at(shop))
    before = store.outbox_len()

    with pytest.raises(fs.FieldsyncError.Validation) as negative:
        store.record_inventory(visit_id, product, fs.InventoryInput(shelf_qty=-3))
    assert negative.value.reason == "shelf quantity cannot be negative (got -3)"
    with pytest.raises(fs.FieldsyncError.Validation):
        store.set_order_line(visit_id, product, -1)
    with pytest.raises(fs.FieldsyncError.Validation):
        store.answer_survey(visit_id, "q-manager-met", fs.AnswerValue.NUMBER(value=1.0))
    with pytest.raises(fs.FieldsyncError.Validation):
        store.route_for_day("27/11/2026")
    with pytest.raises(fs.FieldsyncError.Validation):
        store.replace_reference_data_json("{not json")
    with pytest.raises(fs.FieldsyncError.Validation):
        store.check_in(visit_id, fs.GeoPoint(lat=91.0, lng=0.0))

    with pytest.raises(fs.FieldsyncError.NotFound) as unknown:
        store.record_inventory(visit_id, "p-nope", fs.InventoryInput(shelf_qty=3))
    assert "p-nope" in unknown.value.reason
    with pytest.raises(fs.FieldsyncError.NotFound):
        store.visit("v-nope")
    with pytest.raises(fs.FieldsyncError.NotFound):
        store.record_position(visit_id, "pos-nope", fs.PositionInput())
    with pytest.raises(fs.FieldsyncError.NotFound):
        store.record_promotion(visit_id, "promo-nope", fs.PromotionInput())

    with pytest.raises(fs.FieldsyncError.Conflict):
        store.complete(visit_id)
    with pytest.raises(fs.FieldsyncError.Conflict):
        store.check_in(visit_id, at(shop))
    with pytest.raises(fs.FieldsyncError.Conflict):
        store.cancel(visit_id, "store closed", None)

    # Every variant is a FieldsyncError, and nothing above changed the store.
    with pytest.raises(fs.FieldsyncError):
        store.visit("v-nope")
    assert store.outbox_len() == before


def test_opening_needs_an_identity(tmp_path):
    with pytest.raises(fs.FieldsyncError.Validation):
        fs.FieldStore.open(str(tmp_path / "x.db"), " ", "phone-1")


def test_reopening_keeps_everything(tmp_path):
    from conftest import open_store

    path = tmp_path / "rep-1.db"
    store = open_store(path)
    visit_id, _ = plan_visit(store)
    del store
    again = fs.FieldStore.open(str(path), "rep-1", "phone-1")
    assert again.visit_ids() == [visit_id]
    assert again.reference_data_version() == 1
