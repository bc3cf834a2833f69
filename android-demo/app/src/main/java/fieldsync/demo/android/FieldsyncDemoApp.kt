package fieldsync.demo.android

import android.app.Application
import android.content.Context
import fieldsync.demo.core.FieldRepository
import fieldsync.demo.core.SavedSession
import fieldsync.demo.core.SessionStore
import fieldsync.demo.core.SyncMemoryStore
import fieldsync.demo.android.platform.EncryptedSessionStore
import fieldsync.demo.android.platform.PrefsSyncMemoryStore
import fieldsync.demo.android.sync.SyncScheduler
import java.io.File
import java.util.UUID
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.MainScope
import kotlinx.coroutines.flow.distinctUntilChanged
import kotlinx.coroutines.flow.filter
import kotlinx.coroutines.flow.map
import kotlinx.coroutines.launch
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.sync.Mutex
import kotlinx.coroutines.sync.withLock

/**
 * Process-wide objects: the one open [FieldRepository] (the UI and the background worker
 * share it, so their syncs never overlap), the session and sync-memory stores.
 */
class FieldsyncDemoApp : Application() {
    lateinit var sessions: SessionStore
        private set
    lateinit var syncMemory: SyncMemoryStore
        private set
    val dataDir: File by lazy { File(filesDir, "fieldsync") }
    val deviceId: String by lazy { stableDeviceId(this) }

    private val _repository = MutableStateFlow<FieldRepository?>(null)
    val repository: StateFlow<FieldRepository?> = _repository
    private val openLock = Mutex()
    private val appScope = MainScope()
    private var watcher: Job? = null

    override fun onCreate() {
        super.onCreate()
        sessions = EncryptedSessionStore(this)
        syncMemory = PrefsSyncMemoryStore(this)
        SyncScheduler.schedulePeriodic(this)
    }

    fun signedIn(repo: FieldRepository) {
        _repository.value = repo
        watch(repo)
        SyncScheduler.syncWhenOnline(this)
    }

    /** Work recorded offline leaves the phone when a network appears: whenever the outbox
     *  grows, a one-time WorkManager sync constrained to a connected network is queued. */
    private fun watch(repo: FieldRepository) {
        watcher?.cancel()
        watcher = appScope.launch {
            repo.status.map { it.pendingChanges }.distinctUntilChanged().filter { it > 0 }.collect {
                SyncScheduler.syncWhenOnline(this@FieldsyncDemoApp)
            }
        }
    }

    fun signedOut() {
        watcher?.cancel()
        _repository.value?.close()
        _repository.value = null
        sessions.clear()
        SyncScheduler.cancelAll(this)
    }

    /** The open repository, reopening the saved session if the process was restarted
     *  (for the worker, which can run without any activity). Null when signed out. */
    suspend fun repositoryOrRestore(): FieldRepository? = openLock.withLock {
        _repository.value ?: sessions.load()?.let { saved: SavedSession ->
            FieldRepository.open(saved, dataDir, syncMemory, Dispatchers.IO).also {
                _repository.value = it
                watch(it)
            }
        }
    }

    companion object {
        fun of(context: Context) = context.applicationContext as FieldsyncDemoApp

        private fun stableDeviceId(context: Context): String {
            val prefs = context.getSharedPreferences("device", Context.MODE_PRIVATE)
            return prefs.getString("id", null) ?: ("android-" + UUID.randomUUID()).also {
                prefs.edit().putString("id", it).apply()
            }
        }
    }
}
