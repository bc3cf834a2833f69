// What the core layer needs from the platform. The Android app implements these with
// SharedPreferences / EncryptedSharedPreferences and LocationManager; the JVM tests with
// the in-memory versions below. No Android types appear here.
package fieldsync.demo.core

import fieldsync.ffi.GeoPoint
import fieldsync.ffi.Role

/** A signed-in user as kept between app starts (the token belongs in secure storage). */
data class SavedSession(
    val serverUrl: String,
    val token: String,
    val userId: String,
    val username: String,
    val role: Role,
    val deviceId: String,
)

interface SessionStore {
    fun load(): SavedSession?
    fun save(session: SavedSession)
    fun clear()
}

/** A visit whose changes the server refused; kept aside on the device (the bindings
 *  report these once, in `SyncReport.rejections`, so the app remembers them). */
data class QuarantinedVisit(val visitId: String, val reason: String, val at: Long)

/** Sync facts the status bar shows after a restart. */
data class SyncMemory(
    val lastSyncAt: Long? = null,
    val lastError: String? = null,
    val quarantined: List<QuarantinedVisit> = emptyList(),
)

interface SyncMemoryStore {
    fun load(): SyncMemory
    fun save(memory: SyncMemory)
}

/** Where the phone is, for check-in. */
sealed class LocationFix {
    data class At(val point: GeoPoint, val accuracyM: Double? = null) : LocationFix()
    /** The user has not granted location permission: the UI asks for it, then retries. */
    object PermissionDenied : LocationFix()
    /** Permission granted but no fix (GPS off, indoors). */
    data class Unavailable(val why: String) : LocationFix()
}

interface LocationSource {
    suspend fun current(): LocationFix
}

class InMemorySessionStore(private var session: SavedSession? = null) : SessionStore {
    @Synchronized override fun load() = session
    @Synchronized override fun save(session: SavedSession) { this.session = session }
    @Synchronized override fun clear() { session = null }
}

class InMemorySyncMemoryStore(private var memory: SyncMemory = SyncMemory()) : SyncMemoryStore {
    @Synchronized override fun load() = memory
    @Synchronized override fun save(memory: SyncMemory) { this.memory = memory }
}
