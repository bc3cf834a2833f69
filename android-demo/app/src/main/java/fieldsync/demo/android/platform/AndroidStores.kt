package fieldsync.demo.android.platform

import android.content.Context
import android.content.SharedPreferences
import androidx.security.crypto.EncryptedSharedPreferences
import androidx.security.crypto.MasterKey
import fieldsync.demo.core.QuarantinedVisit
import fieldsync.demo.core.SavedSession
import fieldsync.demo.core.SessionStore
import fieldsync.demo.core.SyncMemory
import fieldsync.demo.core.SyncMemoryStore
import fieldsync.ffi.Role

/** The device token lives in EncryptedSharedPreferences (Android Keystore master key). */
class EncryptedSessionStore(context: Context) : SessionStore {
    private val prefs: SharedPreferences = EncryptedSharedPreferences.create(
        context,
        "fieldsync-session",
        MasterKey.Builder(context).setKeyScheme(MasterKey.KeyScheme.AES256_GCM).build(),
        EncryptedSharedPreferences.PrefKeyEncryptionScheme.AES256_SIV,
        EncryptedSharedPreferences.PrefValueEncryptionScheme.AES256_GCM,
    )

    override fun load(): SavedSession? {
        val token = prefs.getString("token", null) ?: return null
        return SavedSession(
            serverUrl = prefs.getString("serverUrl", null) ?: return null,
            token = token,
            userId = prefs.getString("userId", null) ?: return null,
            username = prefs.getString("username", "") ?: "",
            role = runCatching { Role.valueOf(prefs.getString("role", "REP")!!) }.getOrDefault(Role.REP),
            deviceId = prefs.getString("deviceId", null) ?: return null,
        )
    }

    override fun save(session: SavedSession) {
        prefs.edit()
            .putString("serverUrl", session.serverUrl)
            .putString("token", session.token)
            .putString("userId", session.userId)
            .putString("username", session.username)
            .putString("role", session.role.name)
            .putString("deviceId", session.deviceId)
            .apply()
    }

    override fun clear() {
        prefs.edit().clear().apply()
    }
}

/** Last sync, last error and quarantined visits, kept across app restarts. */
class PrefsSyncMemoryStore(context: Context) : SyncMemoryStore {
    private val prefs = context.getSharedPreferences("fieldsync-sync", Context.MODE_PRIVATE)

    override fun load(): SyncMemory {
        val last = prefs.getLong("lastSyncAt", -1L).takeIf { it >= 0 }
        val quarantined = prefs.getStringSet("quarantined", emptySet()).orEmpty().mapNotNull { line ->
            // visitId \t at \t reason
            val parts = line.split('\t', limit = 3)
            if (parts.size == 3) QuarantinedVisit(parts[0], parts[2], parts[1].toLongOrNull() ?: 0) else null
        }.sortedBy { it.visitId }
        return SyncMemory(last, prefs.getString("lastError", null), quarantined)
    }

    override fun save(memory: SyncMemory) {
        prefs.edit()
            .putLong("lastSyncAt", memory.lastSyncAt ?: -1L)
            .putString("lastError", memory.lastError)
            .putStringSet("quarantined", memory.quarantined.map { "${it.visitId}\t${it.at}\t${it.reason}" }.toSet())
            .apply()
    }
}
