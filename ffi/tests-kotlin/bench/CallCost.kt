// The cost of one inventory line through the Kotlin bindings (JNA), not a JUnit test.
// Same workload as `cargo run --release -p fieldsync-ffi --example call_cost` and
// `ffi/tests-python/call_cost.py`; run all three with `scripts/call-cost.sh`.
package fieldsync.ffi

import java.nio.file.Files
import java.time.LocalDate
import java.time.ZoneOffset

private fun report(name: String, nanos: LongArray) {
    val sorted = nanos.sortedArray()
    val median = sorted[sorted.size / 2] / 1000.0
    val mean = sorted.average() / 1000.0
    println("$name: median %.1f µs, mean %.1f µs over ${nanos.size} calls".format(median, mean))
}

fun main(args: Array<String>) {
    val calls = args.firstOrNull()?.toInt() ?: 500
    // The JIT compiles the binding's converters after a few thousand calls; the warm-up
    // store is thrown away so the measured one starts empty like the other harnesses'.
    val warmUp = Files.createTempDirectory("fieldsync-callcost-warmup")
    measure(FieldStore.open(warmUp.resolve("bench.db").toString(), "rep-1", "phone-1"), calls, print = false)
    val dir = Files.createTempDirectory("fieldsync-callcost")
    measure(FieldStore.open(dir.resolve("bench.db").toString(), "rep-1", "phone-1"), calls, print = true)
}

private fun measure(store: FieldStore, calls: Int, print: Boolean) {
    val today = LocalDate.now(ZoneOffset.UTC).toString()
    store.replaceReferenceDataJson(demoReferenceDataJson(7uL, today))
    val shop = store.stores()[0]
    val visit = store.createAdHocVisit(shop.id, "tt-standard")
    store.checkIn(visit, GeoPoint(lat = shop.lat, lng = shop.lng))
    val products = store.visitChecklist(visit).productIds

    val times = LongArray(calls)
    for (i in 0 until calls) {
        val line = InventoryInput(shelfQty = (i % 17).toLong(), facings = 2L)
        val start = System.nanoTime()
        store.recordInventory(visit, products[i % products.size], line)
        times[i] = System.nanoTime() - start
    }
    if (print) report("record_inventory (Kotlin bindings)", times)

    // The error path: the arguments cross, the product is unknown, nothing is written.
    val refused = { line: InventoryInput ->
        try {
            store.recordInventory(visit, "no-such-product", line)
            throw IllegalStateException("an unknown product was accepted")
        } catch (e: FieldsyncException.NotFound) {
        }
    }
    for (i in 0 until calls) {
        val line = InventoryInput(shelfQty = (i % 17).toLong(), facings = 2L)
        val start = System.nanoTime()
        refused(line)
        times[i] = System.nanoTime() - start
    }
    if (print) report("record_inventory error path (Kotlin bindings)", times)

    // The same error path, each time right after a durable call (not timed): what the
    // crossing costs once the library's real work has been through the caches.
    for (i in 0 until calls) {
        val line = InventoryInput(shelfQty = (i % 17).toLong(), facings = 2L)
        store.recordInventory(visit, products[i % products.size], line)
        val start = System.nanoTime()
        refused(line)
        times[i] = System.nanoTime() - start
    }
    if (print) report("record_inventory error path after a durable call (Kotlin bindings)", times)

    val now = LongArray(calls * 20)
    for (i in now.indices) {
        val start = System.nanoTime()
        store.now()
        now[i] = System.nanoTime() - start
    }
    if (print) report("now() (Kotlin bindings)", now)
    store.close()
}
