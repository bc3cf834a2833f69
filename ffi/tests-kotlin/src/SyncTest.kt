// Sign-in and sync through the Kotlin bindings against a real fieldsync-server.
package fieldsync.ffi

import java.io.File
import java.net.ServerSocket
import java.nio.file.Files
import java.time.LocalDate
import java.time.ZoneOffset
import kotlinx.coroutines.TimeoutCancellationException
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.BeforeClass
import org.junit.Test

class SyncTest {
    companion object {
        const val PASSWORD = "correct-horse-1"
        private var server: Process? = null
        lateinit var url: String
        lateinit var dir: File

        @BeforeClass
        @JvmStatic
        fun startServer() {
            val bin = System.getenv("FIELDSYNC_SERVER_BIN")
            assumeTrue("set FIELDSYNC_SERVER_BIN (scripts/test-bindings.sh does)", bin != null)
            dir = Files.createTempDirectory("fieldsync-kotlin-sync").toFile()
            val refs = File(dir, "refs.json")
            refs.writeText(demoReferenceDataJson(7uL, LocalDate.now(ZoneOffset.UTC).toString()))
            val data = File(dir, "server").path
            fun admin(vararg args: String) {
                val p = ProcessBuilder(bin, "admin", "--data-dir", data, *args).inheritIO().start()
                assertEquals(0, p.waitFor())
            }
            admin("import", refs.path)
            admin("create-user", "--username", "rep1", "--role", "rep", "--territories", "t-1", "--password", PASSWORD)
            admin("create-user", "--username", "manager1", "--role", "manager", "--territories", "t-1", "--password", PASSWORD)
            val p = ProcessBuilder(bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", data)
                .redirectError(ProcessBuilder.Redirect.DISCARD)
                .start()
            server = p
            val line = p.inputStream.bufferedReader().readLine()
            assertTrue(line, line.contains("listening on "))
            url = line.substringAfter("listening on ").trim()
        }

        @AfterClass
        @JvmStatic
        fun stopServer() {
            server?.destroy()
            server?.waitFor()
        }
    }

    private fun device(session: Session, deviceId: String) =
        FieldStore.open(File(dir, "$deviceId.db").path, session.userId, deviceId)

    @Test
    fun managerAndRepDevicesConverge() = runBlocking {
        val manager = login(url, "manager1", PASSWORD, "tablet-k")
        val rep = login(url, "rep1", PASSWORD, "phone-k")
        assertEquals(Role.REP, rep.role)
        val tablet = device(manager, "tablet-k")
        val phone = device(rep, "phone-k")
        assertTrue(tablet.sync(url, manager.token).referenceUpdated)

        val shop = tablet.stores().first { it.territoryId == "t-1" }
        val now = tablet.now()
        val visitId = tablet.createVisit(
            VisitPlan(shop.id, "rep-1", now, now + 3_600_000, 1u, "Rebuild the cola display", "tt-standard", false),
        )
        tablet.sync(url, manager.token)

        val recorder = Recorder()
        val subscription = phone.subscribe(recorder)
        phone.sync(url, rep.token)
        assertTrue(phone.todayRoute().any { it.visitId == visitId })
        assertTrue(recorder.changed.contains(listOf(visitId)))
        assertEquals(SyncState.Idle, recorder.states.last())

        phone.checkIn(visitId, GeoPoint(shop.lat, shop.lng))
        val product = phone.visitChecklist(visitId).productIds[0]
        phone.recordInventory(visitId, product, InventoryInput(shelfQty = 0, outOfStock = true))
        val report = phone.sync(url, rep.token)
        assertTrue(report.rejections.isEmpty())
        assertEquals(0uL, phone.outboxLen())
        subscription.cancel()

        tablet.sync(url, manager.token)
        assertEquals(phone.visit(visitId), tablet.visit(visitId))
        assertEquals(listOf(product), tablet.storeFindings(shop.id).outOfStockProductIds)
    }

    @Test
    fun wrongPasswordIsUnauthorized() {
        assertThrows(FieldsyncException.Unauthorized::class.java) {
            runBlocking { login(url, "rep1", "wrong-password", "phone-x") }
        }
    }

    @Test
    fun aSyncCanBeCancelled() {
        ServerSocket(0).use { silent ->
            val store = FieldStore.open(File(dir, "cancel.db").path, "rep-1", "phone-c")
            val rep = runBlocking { login(url, "rep1", PASSWORD, "phone-c") }
            assertThrows(TimeoutCancellationException::class.java) {
                runBlocking { withTimeout(500) { store.sync("http://127.0.0.1:${silent.localPort}", rep.token) } }
            }
            assertTrue(runBlocking { store.sync(url, rep.token) }.referenceUpdated)
        }
    }
}
