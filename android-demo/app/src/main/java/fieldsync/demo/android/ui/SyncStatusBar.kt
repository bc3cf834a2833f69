package fieldsync.demo.android.ui

import androidx.compose.foundation.clickable
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.layout.size
import androidx.compose.material.icons.Icons
import androidx.compose.material.icons.automirrored.filled.Logout
import androidx.compose.material.icons.filled.Sync
import androidx.compose.material.icons.filled.Warning
import androidx.compose.material3.CircularProgressIndicator
import androidx.compose.material3.Icon
import androidx.compose.material3.IconButton
import androidx.compose.material3.LinearProgressIndicator
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.Surface
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.saveable.rememberSaveable
import androidx.compose.runtime.setValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.unit.dp
import androidx.compose.foundation.layout.statusBarsPadding
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import fieldsync.demo.core.SyncPhase
import fieldsync.demo.core.SyncViewModel

/** Pending changes, last sync, errors and quarantined visits — all from the observer. */
@Composable
fun SyncStatusBar(vm: SyncViewModel, username: String, onSignOut: () -> Unit) {
    val s by vm.status.collectAsStateWithLifecycle()
    var expanded by rememberSaveable { mutableStateOf(false) }
    val alarming = s.phase == SyncPhase.FAILED || s.quarantined.isNotEmpty() || s.needsSignIn
    Surface(
        color = if (alarming) MaterialTheme.colorScheme.errorContainer else MaterialTheme.colorScheme.primaryContainer,
        modifier = Modifier.fillMaxWidth(),
    ) {
        Column(Modifier.statusBarsPadding().padding(horizontal = 12.dp, vertical = 6.dp)) {
            Row(verticalAlignment = Alignment.CenterVertically) {
                if (alarming) Icon(Icons.Filled.Warning, contentDescription = "Sync problem")
                Column(Modifier.weight(1f).padding(start = 8.dp).clickable { expanded = !expanded }) {
                    Text(username, style = MaterialTheme.typography.labelMedium)
                    Text(s.headline(::time), style = MaterialTheme.typography.bodySmall)
                }
                if (s.syncing) {
                    CircularProgressIndicator(Modifier.size(24.dp), strokeWidth = 2.dp)
                } else {
                    IconButton(onClick = { vm.syncNow() }) { Icon(Icons.Filled.Sync, contentDescription = "Sync now") }
                }
                IconButton(onClick = onSignOut) { Icon(Icons.AutoMirrored.Filled.Logout, contentDescription = "Sign out") }
            }
            if (s.syncing && s.progressTotal > 0) {
                LinearProgressIndicator(
                    progress = { s.progressDone.toFloat() / s.progressTotal },
                    modifier = Modifier.fillMaxWidth(),
                )
            }
            if (s.needsSignIn) Text("The server refused this device's token: sign out and sign in again.", style = MaterialTheme.typography.bodySmall)
            if (expanded) {
                s.lastError?.let { Text("Last error: $it", style = MaterialTheme.typography.bodySmall) }
                s.retryReason?.let { Text("Retrying: $it", style = MaterialTheme.typography.bodySmall) }
                for (q in s.quarantined) {
                    Text("Visit ${q.visitId} kept on this phone, refused by the server: ${q.reason}", style = MaterialTheme.typography.bodySmall)
                }
            }
        }
    }
}
