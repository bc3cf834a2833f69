// The one door from the app to the fieldsync library. Every binding call runs on `io`
// (Dispatchers.IO in the app): local calls block on SQLite, sync blocks on the network.
// Pure Kotlin + kotlinx.coroutines; no Android imports (checked by scripts/test-android-demo.sh).
package fieldsync.demo.core

import fieldsync.ffi.FieldObserver
import fieldsync.ffi.FieldStore
import fieldsync.ffi.FieldsyncException
import fieldsync.ffi.RouteEntry
import fieldsync.ffi.StoreFindings
import fieldsync.ffi.StoreInfo
import fieldsync.ffi.Subscription
import fieldsync.ffi.SyncReport
import fieldsync.ffi.SyncState
import fieldsync.ffi.VisitChecklist
import fieldsync.ffi.VisitDetail
import fieldsync.ffi.login
import java.io.File
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.CoroutineDispatcher
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.SupervisorJob
import kotlinx.coroutines.cancel
import kotlinx.coroutines.channels.BufferOverflow
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.flow.MutableSharedFlow
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.SharedFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asSharedFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update
import kotlinx.coroutines.launch
import kotlinx.coroutines.sync.Mutex
import kotlinx.coroutines.sync.withLock
import kotlinx.coroutines.withContext

enum class SyncPhase { IDLE, SYNCING, BACKOFF, FAILED }

/** Everything the sync status bar shows; fed by the library's observer and sync reports. */
data class SyncStatus(
    val phase: SyncPhase = SyncPhase.IDLE,
    val round: Int = 0,
    val progressDone: Long = 0,
    val progressTotal: Long = 0,
    /** Local changes not yet acknowledged by the server (the outbox). */
    val pendingChanges: Long = 0,
    val lastSyncAt: Long? = null,
    val lastError: String? = null,
    /** While retrying: why the last attempt failed. */
    val retryReason: String? = null,
    val quarantined: List<QuarantinedVisit> = emptyList(),
    /** The token was refused: the user must sign in again. */
    val needsSignIn: Boolean = false,
    val lastReport: SyncReport? = null,
) {
    val syncing get() = phase == SyncPhase.SYNCING || phase == SyncPhase.BACKOFF

    /** One line for the status bar; `time` formats a timestamp (ms) for the user. */
    fun headline(time: (Long) -> String): String {
        val parts = ArrayList<String>()
        when (phase) {
            SyncPhase.SYNCING -> parts += if (progressTotal > 0) "Syncing $progressDone/$progressTotal…" else "Syncing…"
            SyncPhase.BACKOFF -> parts += "Retrying${retryReason?.let { " ($it)" } ?: ""}…"
            else -> {}
        }
        parts += when (pendingChanges) {
            0L -> "All changes synced"
            1L -> "1 change waiting"
            else -> "$pendingChanges changes waiting"
        }
        parts += lastSyncAt?.let { "last sync ${time(it)}" } ?: "never synced"
        if (quarantined.isNotEmpty()) {
            parts += if (quarantined.size == 1) "1 visit refused by the server" else "${quarantined.size} visits refused by the server"
        }
        if (phase == SyncPhase.FAILED && lastError != null) parts += "sync failed: $lastError"
        return parts.joinToString(" · ")
    }
}

sealed class SyncOutcome {
    data class Done(val report: SyncReport) : SyncOutcome()
    data class Failed(val error: UiError) : SyncOutcome()
}

class FieldRepository private constructor(
    /** The library handle. Use [local] to call it; never from the main thread. */
    val store: FieldStore,
    val session: SavedSession,
    val io: CoroutineDispatcher,
    private val memoryStore: SyncMemoryStore,
) : AutoCloseable {
    private val scope = CoroutineScope(SupervisorJob() + io)
    private val syncLock = Mutex()
    private val pendingRefresh = Channel<Unit>(Channel.CONFLATED)

    private val _status = MutableStateFlow(
        memoryStore.load().let { SyncStatus(lastSyncAt = it.lastSyncAt, lastError = it.lastError, quarantined = it.quarantined) },
    )
    val status: StateFlow<SyncStatus> = _status.asStateFlow()

    private val _changes = MutableSharedFlow<List<String>>(extraBufferCapacity = 64, onBufferOverflow = BufferOverflow.DROP_OLDEST)
    /** Visits changed on this device (empty list: reference data changed). */
    val dataChanged: SharedFlow<List<String>> = _changes.asSharedFlow()

    @Volatile private var catalogCache: Catalog? = null

    // Callbacks arrive on the thread that caused them (an IO thread here): only touch
    // thread-safe state, never call back into the store from inside a callback.
    private val observer = object : FieldObserver {
        override fun onDataChanged(visitIds: List<String>) {
            if (visitIds.isEmpty()) catalogCache = null
            _changes.tryEmit(visitIds)
            pendingRefresh.trySend(Unit)
        }

        override fun onSyncState(state: SyncState) {
            _status.update {
                when (state) {
                    is SyncState.Syncing -> it.copy(phase = SyncPhase.SYNCING, round = state.round.toInt(), retryReason = null)
                    is SyncState.Backoff -> it.copy(phase = SyncPhase.BACKOFF, retryReason = state.reason)
                    is SyncState.Idle -> it.copy(phase = SyncPhase.IDLE, retryReason = null)
                    is SyncState.Failed -> it.copy(phase = SyncPhase.FAILED, lastError = state.reason, retryReason = null)
                }
            }
        }

        override fun onProgress(done: ULong, total: ULong) {
            _status.update { it.copy(progressDone = done.toLong(), progressTotal = total.toLong()) }
        }
    }

    // Keep the handle: delivery stops when it is dropped.
    private val subscription: Subscription = store.subscribe(observer)

    init {
        scope.launch { for (tick in pendingRefresh) refreshPending() }
        pendingRefresh.trySend(Unit)
    }

    /** Runs a binding call on the IO dispatcher. */
    suspend fun <T> local(block: (FieldStore) -> T): T = withContext(io) { block(store) }

    suspend fun todayRoute(): List<RouteEntry> = local { it.todayRoute() }
    suspend fun routeForDay(dayIso: String): List<RouteEntry> = local { it.routeForDay(dayIso) }
    suspend fun stores(): List<StoreInfo> = local { it.stores() }
    suspend fun visitDetail(visitId: String): VisitDetail = local { it.visitDetail(visitId) }
    suspend fun checklist(visitId: String): VisitChecklist = local { it.visitChecklist(visitId) }
    suspend fun storeFindings(storeId: String): StoreFindings = local { it.storeFindings(storeId) }

    suspend fun catalog(): Catalog =
        catalogCache ?: local { Catalog.fromReferenceJson(it.referenceDataJson()) }.also { catalogCache = it }

    suspend fun refreshPending() {
        val n = try { local { it.outboxLen().toLong() } } catch (e: FieldsyncException) { return }
        _status.update { it.copy(pendingChanges = n) }
    }

    /**
     * Syncs with the server: sends the outbox, receives the manager's changes and new
     * reference data. Never throws for sync failures: they land in [status] and the result.
     * Concurrent calls (button + background worker) run one after the other.
     */
    suspend fun sync(): SyncOutcome = syncLock.withLock {
        _status.update { it.copy(phase = SyncPhase.SYNCING, progressDone = 0, progressTotal = 0) }
        try {
            var report = withContext(io) { store.sync(session.serverUrl, session.token) }
            var rounds = 1
            while (report.incomplete && rounds < 4) {
                report = withContext(io) { store.sync(session.serverUrl, session.token) }
                rounds++
            }
            val now = local { it.now() }
            if (report.referenceUpdated) catalogCache = null
            val kept = _status.value.quarantined.filter { q ->
                q.visitId !in report.purged && report.rejections.none { it.visitId == q.visitId }
            }
            val quarantined = kept + report.rejections.map { QuarantinedVisit(it.visitId, it.reason, now) }
            _status.update {
                it.copy(
                    phase = SyncPhase.IDLE, lastSyncAt = now, lastError = null, retryReason = null,
                    quarantined = quarantined.sortedBy { q -> q.visitId }, needsSignIn = false, lastReport = report,
                )
            }
            remember()
            refreshPending()
            SyncOutcome.Done(report)
        } catch (e: CancellationException) {
            _status.update { it.copy(phase = SyncPhase.IDLE) }
            throw e
        } catch (e: Exception) {
            val error = e.toUiError()
            _status.update {
                it.copy(phase = SyncPhase.FAILED, lastError = error.message, retryReason = null, needsSignIn = error.kind == ErrorKind.SIGN_IN)
            }
            remember()
            refreshPending()
            SyncOutcome.Failed(error)
        }
    }

    private fun remember() {
        val s = _status.value
        memoryStore.save(SyncMemory(s.lastSyncAt, s.lastError, s.quarantined))
    }

    override fun close() {
        subscription.cancel()
        scope.cancel()
        pendingRefresh.close()
        store.close()
    }

    companion object {
        /** Signs in (server URL + username/password → device token), opens the user's store. */
        suspend fun signIn(
            serverUrl: String,
            username: String,
            password: String,
            deviceId: String,
            dataDir: File,
            sessions: SessionStore,
            memory: SyncMemoryStore,
            io: CoroutineDispatcher = Dispatchers.IO,
        ): FieldRepository {
            val url = serverUrl.trim().trimEnd('/')
            val s = withContext(io) { login(url, username.trim(), password, deviceId) }
            val saved = SavedSession(url, s.token, s.userId, s.username, s.role, deviceId)
            val repo = open(saved, dataDir, memory, io)
            sessions.save(saved)
            return repo
        }

        /** Reopens the store of a saved session (app restart): works offline. */
        suspend fun open(
            saved: SavedSession,
            dataDir: File,
            memory: SyncMemoryStore,
            io: CoroutineDispatcher = Dispatchers.IO,
        ): FieldRepository {
            val store = withContext(io) {
                dataDir.mkdirs()
                FieldStore.open(File(dataDir, "${saved.userId}.db").path, saved.userId, saved.deviceId)
            }
            return FieldRepository(store, saved, io, memory)
        }
    }
}

enum class BackgroundResult { SUCCESS, RETRY, SIGN_IN_REQUIRED }

/** One background sync (WorkManager / BGTaskScheduler): what the scheduler should do next. */
suspend fun FieldRepository.backgroundSync(): BackgroundResult = when (val o = sync()) {
    is SyncOutcome.Done -> BackgroundResult.SUCCESS
    is SyncOutcome.Failed -> if (o.error.kind == ErrorKind.SIGN_IN) BackgroundResult.SIGN_IN_REQUIRED else BackgroundResult.RETRY
}
