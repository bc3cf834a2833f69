// A rep's full day through the demo app's repository and view models, on the JVM, against
// the real fieldsync library (generated Kotlin bindings + JNA) and a real fieldsync-server
// on 127.0.0.1: sign in, route, visits recorded offline, a failed sync, sync, a refused
// change quarantined, the manager's plan changes arriving in the route.
package fieldsync.demo.core

import fieldsync.ffi.AnswerType
import fieldsync.ffi.AnswerValue
import fieldsync.ffi.FieldObserver
import fieldsync.ffi.GeoPoint
import fieldsync.ffi.Role
import fieldsync.ffi.StoreInfo
import fieldsync.ffi.SyncState
import fieldsync.ffi.VisitStatus
import fieldsync.ffi.demoReferenceDataJson
import java.io.File
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.nio.file.Files
import java.time.LocalDate
import java.time.ZoneOffset
import java.util.Collections
import java.util.concurrent.Executors
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.SupervisorJob
import kotlinx.coroutines.asCoroutineDispatcher
import kotlinx.coroutines.cancel
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeoutOrNull
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNotNull
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.BeforeClass
import org.junit.Test

class RepDayTest {
    companion object {
        const val PASSWORD = "correct-horse-1"
        lateinit var bin: String
        lateinit var dir: File
        lateinit var data: String
        var server: Process? = null
        var port = 0
        val url get() = "http://127.0.0.1:$port"

        @BeforeClass
        @JvmStatic
        fun setUp() {
            bin = System.getenv("FIELDSYNC_SERVER_BIN") ?: error("set FIELDSYNC_SERVER_BIN (scripts/test-android-demo.sh does)")
            dir = Files.createTempDirectory("fieldsync-android-demo").toFile()
            val refs = File(dir, "refs.json")
            refs.writeText(demoReferenceDataJson(11uL, LocalDate.now(ZoneOffset.UTC).toString()))
            data = File(dir, "server").path
            fun admin(vararg args: String) {
                val p = ProcessBuilder(bin, "admin", "--data-dir", data, *args).redirectErrorStream(true).start()
                val out = p.inputStream.bufferedReader().readText()
                assertEquals(out, 0, p.waitFor())
            }
            admin("import", refs.path)
            admin("create-user", "--username", "rep1", "--role", "rep", "--territories", "t-1", "--password", PASSWORD)
            admin("create-user", "--username", "manager1", "--role", "manager", "--territories", "t-1", "--password", PASSWORD)
            startServer()
        }

        fun startServer() {
            val listen = "127.0.0.1:$port"
            val p = ProcessBuilder(bin, "serve", "--listen", listen, "--data-dir", data)
                .redirectError(ProcessBuilder.Redirect.DISCARD)
                .start()
            server = p
            Runtime.getRuntime().addShutdownHook(Thread { p.destroy() }) // never orphan a server
            val line = p.inputStream.bufferedReader().readLine() ?: error("the server did not start")
            assertTrue(line, line.contains("listening on "))
            port = URI(line.substringAfter("listening on ").trim()).port
        }

        fun stopServer() {
            server?.destroy()
            server?.waitFor()
            server = null
        }

        @AfterClass
        @JvmStatic
        fun tearDown() {
            stopServer()
            dir.deleteRecursively()
        }
    }

    // ---------------------------------------------------------------- manager's side (HTTP planning API)

    private val http = HttpClient.newHttpClient()

    private fun api(method: String, path: String, token: String, body: String?): String {
        val req = HttpRequest.newBuilder(URI("$url$path"))
            .header("authorization", "Bearer $token")
            .header("content-type", "application/json")
            .method(method, body?.let { HttpRequest.BodyPublishers.ofString(it) } ?: HttpRequest.BodyPublishers.noBody())
            .build()
        val resp = http.send(req, HttpResponse.BodyHandlers.ofString())
        assertTrue("$method $path → ${resp.statusCode()}: ${resp.body()}", resp.statusCode() in 200..299)
        return resp.body()
    }

    private fun planVisit(token: String, id: String, storeId: String, start: Long, instructions: String) = api(
        "POST", "/v1/visits", token,
        """{"visit_id":"$id","store_id":"$storeId","rep_id":"rep-1","planned_start":$start,"planned_end":${start + 3_600_000},""" +
            """"priority":2,"instructions":"$instructions","template_id":"tt-standard"}""",
    )

    // ---------------------------------------------------------------- helpers

    private class FakeLocation(@Volatile var fix: LocationFix) : LocationSource {
        override suspend fun current() = fix
    }

    private suspend fun <T> StateFlow<T>.await(what: String, timeoutMs: Long = 30_000, p: (T) -> Boolean): T =
        withTimeoutOrNull(timeoutMs) { first(p) } ?: run { fail("timed out waiting for $what; last state: $value"); error("unreachable") }

    private fun at(s: StoreInfo) = GeoPoint(s.lat, s.lng)

    @Test
    fun aRepsFullDay() = runBlocking {
        // The "main thread": view models run here; binding calls must not.
        val mainExecutor = Executors.newSingleThreadExecutor { Thread(it, "ui-main") }
        val main = mainExecutor.asCoroutineDispatcher()
        val ioExecutor = Executors.newFixedThreadPool(4) { Thread(it, "io-worker").apply { isDaemon = true } }
        val io = ioExecutor.asCoroutineDispatcher()
        val ui = CoroutineScope(SupervisorJob() + main)
        val sessions = InMemorySessionStore()
        val memory = InMemorySyncMemoryStore()
        val phoneDir = File(dir, "phone")

        // The manager plans three visits for rep-1 today, before the rep signs in.
        val manager = fieldsync.ffi.login(url, "manager1", PASSWORD, "dashboard")
        assertEquals(Role.MANAGER, manager.role)
        val now = System.currentTimeMillis()
        val refs = Catalog.fromReferenceJson(demoReferenceDataJson(11uL, LocalDate.now(ZoneOffset.UTC).toString()))
        assertTrue(refs.productNames.isNotEmpty())
        planVisit(manager.token, "v-a", "st-001", now - 60_000, "Rebuild the cola display")
        planVisit(manager.token, "v-b", "st-002", now, "Check the new chips facings")
        planVisit(manager.token, "v-c", "st-003", now + 60_000, "Meet the store manager")

        // ---- sign-in: wrong password, then right
        val signIn = SignInViewModel(ui, phoneDir, "phone-demo", sessions, memory, io, defaultServerUrl = url)
        signIn.onUsername("rep1")
        signIn.onPassword("wrong-password")
        assertTrue(signIn.state.value.canSubmit)
        val failing = signIn.signIn()
        assertTrue("loading while signing in", signIn.state.value.loading)
        failing.join()
        assertFalse(signIn.state.value.loading)
        assertEquals(ErrorKind.SIGN_IN, signIn.state.value.error?.kind)
        assertNull(signIn.repository.value)
        assertNull(sessions.load())

        signIn.onPassword(PASSWORD)
        signIn.signIn().join()
        assertNull(signIn.state.value.error?.toString(), signIn.state.value.error)
        val repo = signIn.repository.value ?: error("not signed in")
        assertEquals("rep-1", repo.session.userId)
        assertEquals(url, sessions.load()?.serverUrl)

        // Every data-changed callback arrives on the thread that made the binding call:
        // none may be the UI thread.
        val callbackThreads = Collections.synchronizedSet(HashSet<String>())
        val states = Collections.synchronizedList(ArrayList<SyncState>())
        val probe = repo.store.subscribe(object : FieldObserver {
            override fun onDataChanged(visitIds: List<String>) { callbackThreads += Thread.currentThread().name }
            override fun onSyncState(state: SyncState) { states += state }
            override fun onProgress(done: ULong, total: ULong) {}
        })

        val sync = SyncViewModel(repo, ui)
        val first = sync.status.value
        assertNotNull("first sync done at sign-in", first.lastSyncAt)
        assertNull(first.lastError)
        assertEquals(0L, first.pendingChanges)
        assertTrue(first.headline { "t" }, first.headline { "t" }.startsWith("All changes synced · last sync t"))

        // ---- today's route
        val route = RouteViewModel(repo, ui)
        route.state.await("route with the 3 planned visits") { !it.loading && it.entries.size == 3 }
        assertEquals(listOf("v-a", "v-b", "v-c"), route.state.value.entries.map { it.visitId })
        assertTrue(route.state.value.entries.all { it.status == VisitStatus.PLANNED })

        val stores = repo.stores().associateBy { it.id }
        val shopA = stores.getValue("st-001")
        val shopB = stores.getValue("st-002")

        // ---- offline from here: the server goes away
        stopServer()

        // ---- visit A, by the book
        val gps = FakeLocation(LocationFix.At(at(shopA)))
        val a = VisitViewModel(repo, "v-a", gps, ui)
        a.state.await("visit A loaded") { !it.loading }
        assertEquals(shopA.name, a.state.value.storeName)
        assertEquals("Rebuild the cola display", a.state.value.instructions)
        assertEquals(VisitStatus.PLANNED, a.state.value.status)

        a.checkIn().join()
        assertEquals(VisitStatus.IN_PROGRESS, a.state.value.status)
        assertNull(a.state.value.geofenceWarning)
        assertNotNull(a.state.value.checkIn)

        // Completing now is refused, and the open required tasks are named.
        a.complete().join()
        var s = a.state.value
        assertEquals(VisitStatus.IN_PROGRESS, s.status)
        assertEquals(ErrorKind.CONFLICT, s.error?.kind)
        assertTrue(s.missingRequired.toString(), s.missingRequired.any { it.startsWith("Inventory check") })
        assertTrue(s.missingRequired.toString(), s.missingRequired.any { it.startsWith("Planogram check") })
        assertTrue(s.error!!.message, s.error!!.message.contains("Inventory check"))

        // Inventory: steppers and the out-of-stock toggle.
        val products = s.inventory.map { it.productId }
        assertTrue(products.size >= 3)
        assertEquals(refs.product(products[0]), s.inventory[0].name)
        a.setOutOfStock(products[0], true).join()
        for (p in products.drop(1)) {
            a.stepShelf(p, +1)
            a.stepShelf(p, +1).join()
        }
        a.stepShelf(products[1], +5).join()
        a.stepShelf(products[1], -2).join()
        a.stepBackroom(products[2], +4).join()
        s = a.state.value
        assertNull(s.error)
        val inv = s.inventory.associateBy { it.productId }
        assertEquals(0L, inv.getValue(products[0]).shelfQty)
        assertEquals(true, inv.getValue(products[0]).outOfStock)
        assertEquals(5L, inv.getValue(products[1]).shelfQty)
        assertEquals(false, inv.getValue(products[1]).outOfStock)
        assertEquals(4L, inv.getValue(products[2]).backroomQty)
        // A negative stepper never reaches the store as a negative quantity.
        a.stepShelf(products[2], -10).join()
        assertEquals(0L, a.state.value.inventory.first { it.productId == products[2] }.shelfQty)
        a.stepShelf(products[2], +2).join()

        // Planogram: one position missing, the rest as planned.
        val positions = a.state.value.positions
        assertTrue(positions.isNotEmpty())
        a.recordPosition(positions[0].positionId, present = false, actualFacings = 0, correctPosition = false)
        for (p in positions.drop(1)) a.recordPosition(p.positionId, true, p.expectedFacings, true)
        // Promotions, survey, order, notes.
        for (p in a.state.value.promotions) a.recordPromotion(p.promotionId, true, true, true)
        for (q in a.state.value.questions) {
            a.answer(
                q.questionId,
                when (q.type) {
                    AnswerType.BOOLEAN -> AnswerValue.Bool(true)
                    AnswerType.NUMBER -> AnswerValue.Number(3.0)
                    AnswerType.TEXT -> AnswerValue.Text("Endcap free next week")
                },
            )
        }
        a.stepOrder(products[0], +12).join()
        a.stepOrder(products[3], +6).join()
        a.stepOrder(products[3], -1).join()
        a.submitOrder().join()
        a.editNotes("Cola display rebuilt; asked for a second endcap.")
        assertTrue(a.state.value.notesDirty)
        a.saveNotes().join()
        s = a.state.value
        assertNull(s.error)
        assertFalse(s.notesDirty)
        assertEquals("Cola display rebuilt; asked for a second endcap.", s.notes)
        assertEquals(false, s.positions[0].present)
        assertTrue(s.promotions.all { it.displayInPlace == true })
        assertTrue(s.questions.all { it.answer != null })
        assertEquals(12L, s.orderLines.first { it.productId == products[0] }.quantity)
        assertEquals(5L, s.orderLines.first { it.productId == products[3] }.quantity)
        assertTrue(s.orderSubmitted)

        a.complete().join()
        s = a.state.value
        assertNull(s.error?.message, s.error)
        assertEquals(VisitStatus.COMPLETED, s.status)
        assertTrue(s.missingRequired.isEmpty())
        assertTrue(s.tasks.filter { it.required }.all { it.complete })

        // ---- visit B: no location permission yet, then a check-in across the road
        val gpsB = FakeLocation(LocationFix.PermissionDenied)
        val b = VisitViewModel(repo, "v-b", gpsB, ui)
        b.state.await("visit B loaded") { !it.loading }
        b.checkIn().join()
        assertTrue(b.state.value.locationPermissionNeeded)
        assertEquals(VisitStatus.PLANNED, b.state.value.status)
        gpsB.fix = LocationFix.At(GeoPoint(shopB.lat + 0.01, shopB.lng)) // ~1.1 km north
        b.checkIn().join()
        s = b.state.value
        assertFalse(s.locationPermissionNeeded)
        assertEquals(VisitStatus.IN_PROGRESS, s.status)
        assertNotNull("geofence warning", s.geofenceWarning)
        assertTrue(s.geofenceWarning!!, s.geofenceWarning!!.contains("outside its geofence"))
        b.setOutOfStock(s.inventory[0].productId, true).join()

        // The route reflects the day so far (observer → dataChanged → refresh).
        route.state.await("route shows A completed, B in progress") { r ->
            r.entries.firstOrNull { it.visitId == "v-a" }?.status == VisitStatus.COMPLETED &&
                r.entries.firstOrNull { it.visitId == "v-b" }?.status == VisitStatus.IN_PROGRESS
        }
        assertEquals(1, route.state.value.done)

        // Pending changes counted by the status bar, fed by the observer.
        val pending = sync.status.await("pending changes counted") { it.pendingChanges > 20 }.pendingChanges
        assertEquals(pending, repo.store.outboxLen().toLong())

        // ---- sync while offline: fails after retries, nothing lost
        sync.syncNow().join()
        var st = sync.status.value
        assertEquals(SyncPhase.FAILED, st.phase)
        assertTrue(st.lastError!!, st.lastError!!.startsWith("Server not reachable"))
        assertEquals(pending, st.pendingChanges)
        assertTrue("backoff reported", states.any { it is SyncState.Backoff })
        assertTrue(st.headline { "t" }, st.headline { "t" }.contains("$pending changes waiting"))
        assertTrue(st.headline { "t" }.contains("sync failed"))

        // ---- back online: everything goes up
        startServer()
        sync.syncNow().join()
        st = sync.status.value
        assertEquals(SyncPhase.IDLE, st.phase)
        assertNull(st.lastError)
        assertTrue(st.lastSyncAt!! > first.lastSyncAt!!)
        assertTrue(st.quarantined.isEmpty())
        assertEquals(pending, st.lastReport!!.acked.toLong())
        sync.status.await("outbox empty") { it.pendingChanges == 0L }
        val serverA = api("GET", "/v1/visits/v-a", manager.token, null)
        assertTrue(serverA, serverA.contains("\"completed\"") || serverA.contains("\"Completed\""))

        // Store detail shows the last findings of visit A, by name.
        val storeA = StoreViewModel(repo, "st-001", ui)
        storeA.state.await("store A findings") { !it.loading && it.lastVisitAt != null }
        assertEquals(shopA.name, storeA.state.value.store?.name)
        assertTrue(storeA.state.value.outOfStock.toString(), refs.product(products[0]) in storeA.state.value.outOfStock)
        assertTrue(storeA.state.value.planogramIssues.toString(), storeA.state.value.planogramIssues.size == 1)
        assertEquals(listOf("v-a"), storeA.state.value.todaysVisits.map { it.visitId })

        // ---- the manager changes the plan: C moves to tomorrow, D is added today
        api("PATCH", "/v1/visits/v-c", manager.token, """{"planned_start":${now + 86_400_000},"planned_end":${now + 90_000_000}}""")
        planVisit(manager.token, "v-d", "st-004", now + 30_000, "Urgent: competitor launch")
        sync.syncNow().join()
        assertNull(sync.status.value.lastError)
        assertTrue(sync.status.value.lastReport!!.applied > 0uL)
        route.state.await("route shows the manager's changes") { r ->
            r.entries.map { it.visitId }.toSet() == setOf("v-a", "v-b", "v-d")
        }
        val d = VisitViewModel(repo, "v-d", gps, ui)
        d.state.await("visit D") { !it.loading && it.status == VisitStatus.PLANNED }
        assertEquals("Urgent: competitor launch", d.state.value.instructions)

        // ---- a change the server refuses is quarantined, with its reason
        val planD = repo.local { it.visit("v-d").plan }
        repo.local { it.updatePlan("v-d", planD.copy(instructions = "rep edited the plan")) }
        sync.syncNow().join()
        st = sync.status.value
        assertNull(st.lastError)
        assertEquals(listOf("v-d"), st.quarantined.map { it.visitId })
        assertTrue(st.quarantined[0].reason, st.quarantined[0].reason.contains("not allowed"))
        assertTrue(st.headline { "t" }.contains("1 visit refused by the server"))
        assertEquals(st.quarantined, memory.load().quarantined)
        // The next sync keeps showing it; other visits still sync.
        b.stepShelf(b.state.value.inventory[1].productId, +3).join()
        assertEquals(BackgroundResult.SUCCESS, repo.backgroundSync())
        assertEquals(listOf("v-d"), sync.status.value.quarantined.map { it.visitId })

        // No binding call ever ran on the UI thread.
        assertTrue(callbackThreads.toString(), callbackThreads.isNotEmpty())
        assertFalse(callbackThreads.toString(), "ui-main" in callbackThreads)
        probe.cancel()

        // ---- app restart: the saved session reopens offline, the day is still there
        ui.cancel()
        repo.close()
        stopServer()
        val ui2 = CoroutineScope(SupervisorJob() + main)
        val again = SignInViewModel(ui2, phoneDir, "phone-demo", sessions, memory, io)
        again.restore().join()
        val repo2 = again.repository.value ?: error("session not restored")
        val route2 = RouteViewModel(repo2, ui2)
        route2.state.await("route after restart") { !it.loading && it.entries.size == 3 }
        assertEquals(listOf("v-d"), repo2.status.value.quarantined.map { it.visitId })
        assertEquals(BackgroundResult.RETRY, repo2.backgroundSync())
        ui2.cancel()
        repo2.close()
        startServer()
        mainExecutor.shutdown()
        ioExecutor.shutdown()
    }
}
