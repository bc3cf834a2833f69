package fieldsync.demo.android.ui

import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.rememberScrollState
import androidx.compose.foundation.verticalScroll
import androidx.compose.material.icons.Icons
import androidx.compose.material.icons.automirrored.filled.ArrowBack
import androidx.compose.material3.Icon
import androidx.compose.material3.IconButton
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.unit.dp
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import fieldsync.demo.core.StoreViewModel

@Composable
fun StoreScreen(vm: StoreViewModel, onBack: () -> Unit, onVisit: (String) -> Unit) {
    val s by vm.state.collectAsStateWithLifecycle()
    Column(
        Modifier.fillMaxSize().verticalScroll(rememberScrollState()).padding(16.dp),
        verticalArrangement = Arrangement.spacedBy(8.dp),
    ) {
        IconButton(onClick = onBack) { Icon(Icons.AutoMirrored.Filled.ArrowBack, contentDescription = "Back") }
        val store = s.store
        Text(store?.name ?: "Store", style = MaterialTheme.typography.titleLarge)
        store?.let { Text("${it.address} · geofence ${it.geofenceRadiusM.toInt()} m · priority ${it.priority}") }
        s.error?.let { Text(it.message, color = MaterialTheme.colorScheme.error) }

        Text("Last findings", style = MaterialTheme.typography.titleMedium)
        val last = s.lastVisitAt
        if (last == null) {
            Text("No visit recorded findings here yet.")
        } else {
            Text("From the visit of ${dayTime(last)}")
            Findings("Out of stock", s.outOfStock)
            Findings("Planogram positions not compliant", s.planogramIssues)
            Findings("Promotions not compliant", s.promotionIssues)
        }

        if (s.todaysVisits.isNotEmpty()) {
            Text("Today", style = MaterialTheme.typography.titleMedium)
            for (v in s.todaysVisits) {
                OutlinedButton(onClick = { onVisit(v.visitId) }) {
                    Text("${time(v.plannedStart)} · ${v.status.label()}")
                }
            }
        }
    }
}

@Composable
private fun Findings(title: String, items: List<String>) {
    Text("$title (${items.size})", style = MaterialTheme.typography.labelLarge)
    if (items.isEmpty()) Text("None", style = MaterialTheme.typography.bodySmall)
    for (i in items) Text("• $i", style = MaterialTheme.typography.bodySmall)
}
