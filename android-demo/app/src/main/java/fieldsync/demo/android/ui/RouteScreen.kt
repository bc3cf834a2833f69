package fieldsync.demo.android.ui

import androidx.compose.foundation.clickable
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.items
import androidx.compose.material.icons.Icons
import androidx.compose.material.icons.filled.Refresh
import androidx.compose.material.icons.filled.Store
import androidx.compose.material3.AssistChip
import androidx.compose.material3.Card
import androidx.compose.material3.Icon
import androidx.compose.material3.IconButton
import androidx.compose.material3.LinearProgressIndicator
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.unit.dp
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import fieldsync.demo.core.RouteViewModel

@Composable
fun RouteScreen(vm: RouteViewModel, onVisit: (String) -> Unit, onStore: (String) -> Unit) {
    val s by vm.state.collectAsStateWithLifecycle()
    Column(Modifier.fillMaxSize()) {
        Row(Modifier.fillMaxWidth().padding(16.dp, 8.dp), verticalAlignment = Alignment.CenterVertically) {
            Column(Modifier.weight(1f)) {
                Text("Today's route", style = MaterialTheme.typography.titleLarge)
                Text("${s.done} of ${s.entries.size} visits done", style = MaterialTheme.typography.bodySmall)
            }
            IconButton(onClick = { vm.refresh() }) { Icon(Icons.Filled.Refresh, contentDescription = "Reload") }
        }
        if (s.loading) LinearProgressIndicator(Modifier.fillMaxWidth())
        s.error?.let { Text(it.message, color = MaterialTheme.colorScheme.error, modifier = Modifier.padding(16.dp)) }
        if (!s.loading && s.entries.isEmpty() && s.error == null) {
            Text("No visits planned today. Sync to fetch your manager's plan.", modifier = Modifier.padding(16.dp))
        }
        LazyColumn(contentPadding = androidx.compose.foundation.layout.PaddingValues(12.dp), verticalArrangement = Arrangement.spacedBy(8.dp)) {
            items(s.entries, key = { it.visitId }) { e ->
                Card(Modifier.fillMaxWidth().clickable { onVisit(e.visitId) }) {
                    Row(Modifier.padding(12.dp), verticalAlignment = Alignment.CenterVertically) {
                        Column(Modifier.weight(1f)) {
                            Text(e.storeName, style = MaterialTheme.typography.titleMedium)
                            Text("${time(e.plannedStart)}–${time(e.plannedEnd)} · priority ${e.priority}" + (if (e.adHoc) " · ad hoc" else "") + (if (e.storeClosed) " · store closed" else ""))
                            AssistChip(onClick = { onVisit(e.visitId) }, label = { Text(e.status.label()) })
                        }
                        IconButton(onClick = { onStore(e.storeId) }) { Icon(Icons.Filled.Store, contentDescription = "Store details") }
                    }
                }
            }
        }
    }
}
