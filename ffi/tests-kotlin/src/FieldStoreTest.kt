// The visit journey through the Kotlin bindings on the JVM (JNA), against the real library.
package fieldsync.ffi

import java.nio.file.Files
import java.time.LocalDate
import java.time.ZoneOffset
import java.util.Collections
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNotNull
import org.junit.Assert.assertNull
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.Test

class Recorder : FieldObserver {
    val changed: MutableList<List<String>> = Collections.synchronizedList(mutableListOf())
    val states: MutableList<SyncState> = Collections.synchronizedList(mutableListOf())

    override fun onDataChanged(visitIds: List<String>) {
        changed.add(visitIds)
    }

    override fun onSyncState(state: SyncState) {
        states.add(state)
    }

    override fun onProgress(done: ULong, total: ULong) {}
}

class Throwing : FieldObserver {
    var calls = 0

    override fun onDataChanged(visitIds: List<String>) {
        calls += 1
        throw IllegalStateException("observer bug")
    }

    override fun onSyncState(state: SyncState) = throw IllegalStateException("observer bug")

    override fun onProgress(done: ULong, total: ULong) = throw IllegalStateException("observer bug")
}

class FieldStoreTest {
    private lateinit var store: FieldStore

    @Before
    fun open() {
        val dir = Files.createTempDirectory("fieldsync-kotlin")
        store = FieldStore.open(dir.resolve("rep-1.db").toString(), "rep-1", "phone-1")
        val today = LocalDate.now(ZoneOffset.UTC).toString()
        store.replaceReferenceDataJson(demoReferenceDataJson(7uL, today))
    }

    private fun planVisit(shop: StoreInfo): String {
        val now = store.now()
        return store.createVisit(
            VisitPlan(
                storeId = shop.id,
                repId = "rep-1",
                plannedStart = now,
                plannedEnd = now + 3_600_000,
                priority = 2u,
                instructions = "Check the cola display",
                templateId = "tt-standard",
                adHoc = false,
            ),
        )
    }

    private fun answerFor(q: ChecklistQuestion): AnswerValue = when (q.answerType) {
        AnswerType.BOOLEAN -> AnswerValue.Bool(true)
        AnswerType.NUMBER -> AnswerValue.Number(3.0)
        AnswerType.TEXT -> AnswerValue.Text("Friendly manager")
    }

    @Test
    fun aWholeVisitOffline() {
        val shop = store.stores()[0]
        val visitId = planVisit(shop)
        val route = store.todayRoute()
        assertEquals(listOf(visitId), route.map { it.visitId })
        assertEquals(shop.name, route[0].storeName)
        assertEquals(VisitStatus.PLANNED, route[0].status)

        val checkIn = store.checkIn(visitId, GeoPoint(shop.lat, shop.lng))
        assertFalse(checkIn.outsideGeofence)

        val checklist = store.visitChecklist(visitId)
        val products = checklist.productIds
        products.forEachIndexed { i, product ->
            store.recordInventory(
                visitId,
                product,
                InventoryInput(shelfQty = if (i == 0) 0L else 5L + i, outOfStock = i == 0, facings = 2L),
            )
        }
        val refused = assertThrows(FieldsyncException.Conflict::class.java) { store.complete(visitId) }
        assertTrue(refused.reason, refused.reason.contains("planogram check"))

        checklist.positions.forEachIndexed { i, pos ->
            store.recordPosition(
                visitId,
                pos.positionId,
                PositionInput(present = true, actualFacings = pos.expectedFacings.toLong(), correctPosition = i % 5 != 0),
            )
        }
        for (promo in checklist.promotions) {
            store.recordPromotion(
                visitId,
                promo.promotionId,
                PromotionInput(displayInPlace = true, promoPriceCorrect = true, materialsPresent = false),
            )
        }
        for (q in checklist.questions) store.answerSurvey(visitId, q.questionId, answerFor(q))
        store.setOrderLine(visitId, products[0], 24)
        store.submitOrder(visitId)
        store.setNotes(visitId, "Cola display missing its header card.")
        store.checkOut(visitId, GeoPoint(shop.lat, shop.lng))
        store.complete(visitId)

        val detail = store.visitDetail(visitId)
        assertEquals(VisitStatus.COMPLETED, detail.visit.status)
        assertTrue(detail.tasks.all { it.complete || !it.required })
        assertEquals(products.size, detail.visit.inventory.size)
        assertEquals("Cola display missing its header card.", detail.visit.notes)
        assertTrue(detail.conflicts.isEmpty())

        val history = store.fieldHistory(visitId)
        val shelf = history.first { it.path == "inventory/${products[1]}/shelf" }
        assertEquals("6", shelf.value)
        assertEquals(Author("rep-1", "phone-1"), shelf.author)

        val kpis = store.visitKpis(visitId)
        assertEquals(1.0 / products.size, kpis.audit.outOfStockRate!!, 1e-9)
        assertEquals(1.0, kpis.strikeRate!!, 0.0)
        assertNull(kpis.audit.priceCompliance)
        assertNotNull(kpis.perfectStoreScore)

        assertEquals(listOf(products[0]), store.storeFindings(shop.id).outOfStockProductIds)
        assertTrue(store.outboxLen() > products.size.toULong())
    }

    @Test
    fun eachErrorIsItsType() {
        val shop = store.stores()[0]
        val visitId = planVisit(shop)
        val product = store.visitChecklist(visitId).productIds[0]
        assertThrows(FieldsyncException.Conflict::class.java) {
            store.recordInventory(visitId, product, InventoryInput(shelfQty = 1))
        }
        store.checkIn(visitId, GeoPoint(shop.lat, shop.lng))
        val negative = assertThrows(FieldsyncException.Validation::class.java) {
            store.recordInventory(visitId, product, InventoryInput(shelfQty = -3))
        }
        assertEquals("shelf quantity cannot be negative (got -3)", negative.reason)
        assertThrows(FieldsyncException.NotFound::class.java) {
            store.recordInventory(visitId, "p-nope", InventoryInput(shelfQty = 3))
        }
        assertThrows(FieldsyncException.NotFound::class.java) { store.visit("v-nope") }
        assertThrows(FieldsyncException.Validation::class.java) { store.routeForDay("27/11/2026") }
        assertThrows(FieldsyncException.Conflict::class.java) { store.complete(visitId) }
        // Every variant is a FieldsyncException with a readable message.
        val e = assertThrows(FieldsyncException::class.java) { store.visit("v-nope") }
        assertTrue(e.message!!.contains("v-nope"))
    }

    @Test
    fun observersAndAThrowingOne() {
        val recorder = Recorder()
        val throwing = Throwing()
        val sub = store.subscribe(recorder)
        val bad = store.subscribe(throwing)
        val shop = store.stores()[0]
        val visitId = planVisit(shop)
        store.checkIn(visitId, GeoPoint(shop.lat, shop.lng))
        assertEquals(listOf(listOf(visitId), listOf(visitId)), recorder.changed.toList())
        assertEquals(2, throwing.calls)
        sub.cancel()
        bad.close() // releasing the handle stops delivery too
        store.setNotes(visitId, "after cancel")
        assertEquals(2, recorder.changed.size)
        assertEquals(2, throwing.calls)
        assertEquals("after cancel", store.visit(visitId).notes)
    }

    @Test
    fun concurrentCallsFromSeveralThreads() {
        val shops = store.stores().take(4)
        val visits = shops.map { shop ->
            planVisit(shop).also { store.checkIn(it, GeoPoint(shop.lat, shop.lng)) }
        }
        val pool = Executors.newFixedThreadPool(8)
        val futures = (visits + visits).map { visitId ->
            pool.submit {
                for (p in store.visitChecklist(visitId).productIds) {
                    store.recordInventory(visitId, p, InventoryInput(shelfQty = 4, facings = 1))
                    store.visitDetail(visitId)
                }
            }
        }
        futures.forEach { it.get() }
        pool.shutdown()
        assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS))
        for (visitId in visits) {
            val expected = store.visitChecklist(visitId).productIds.sorted()
            assertEquals(expected, store.visit(visitId).inventory.map { it.productId })
        }
    }
}
