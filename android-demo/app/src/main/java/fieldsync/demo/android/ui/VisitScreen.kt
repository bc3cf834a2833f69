package fieldsync.demo.android.ui

import android.Manifest
import androidx.activity.compose.rememberLauncherForActivityResult
import androidx.activity.result.contract.ActivityResultContracts
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.PaddingValues
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.layout.width
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.LazyListScope
import androidx.compose.foundation.lazy.items
import androidx.compose.foundation.text.KeyboardOptions
import androidx.compose.material.icons.Icons
import androidx.compose.material.icons.automirrored.filled.ArrowBack
import androidx.compose.material.icons.filled.Add
import androidx.compose.material.icons.filled.Remove
import androidx.compose.material.icons.filled.Warning
import androidx.compose.material3.Button
import androidx.compose.material3.Card
import androidx.compose.material3.CardDefaults
import androidx.compose.material3.FilterChip
import androidx.compose.material3.Icon
import androidx.compose.material3.IconButton
import androidx.compose.material3.LinearProgressIndicator
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.ScrollableTabRow
import androidx.compose.material3.Switch
import androidx.compose.material3.Tab
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.DisposableEffect
import androidx.compose.runtime.LaunchedEffect
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableIntStateOf
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.saveable.rememberSaveable
import androidx.compose.runtime.setValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.focus.onFocusChanged
import androidx.compose.ui.text.input.KeyboardType
import androidx.compose.ui.unit.dp
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import fieldsync.demo.core.VisitState
import fieldsync.demo.core.VisitViewModel
import fieldsync.demo.core.label
import fieldsync.ffi.AnswerType
import fieldsync.ffi.AnswerValue
import fieldsync.ffi.TaskKind
import fieldsync.ffi.VisitStatus

private enum class Section(val title: String) {
    INVENTORY("Inventory"), PLANOGRAM("Planogram"), PROMOTIONS("Promotions"),
    SURVEY("Survey"), ORDER("Order"), NOTES("Notes"),
}

@Composable
fun VisitScreen(vm: VisitViewModel, onBack: () -> Unit) {
    val s by vm.state.collectAsStateWithLifecycle()
    var section by rememberSaveable { mutableIntStateOf(0) }

    // Location permission for check-in: asked when the view model says it is missing,
    // then check-in is retried.
    val permission = rememberLauncherForActivityResult(ActivityResultContracts.RequestMultiplePermissions()) { result ->
        if (result.values.any { it }) vm.checkIn()
    }
    LaunchedEffect(s.locationPermissionNeeded) {
        if (s.locationPermissionNeeded) {
            permission.launch(arrayOf(Manifest.permission.ACCESS_FINE_LOCATION, Manifest.permission.ACCESS_COARSE_LOCATION))
        }
    }
    // Typed notes are stored when the screen goes away.
    DisposableEffect(Unit) { onDispose { if (vm.state.value.notesDirty) vm.saveNotes() } }

    LazyColumn(Modifier.fillMaxSize(), contentPadding = PaddingValues(12.dp), verticalArrangement = Arrangement.spacedBy(8.dp)) {
        item { Header(s, vm, onBack) }
        if (s.status == VisitStatus.IN_PROGRESS || s.status == VisitStatus.COMPLETED) {
            item {
                ScrollableTabRow(selectedTabIndex = section, edgePadding = 0.dp) {
                    Section.entries.forEachIndexed { i, sec ->
                        Tab(selected = section == i, onClick = { section = i }, text = { Text(sec.title + taskBadge(s, sec)) })
                    }
                }
            }
            when (Section.entries[section]) {
                Section.INVENTORY -> inventory(s, vm)
                Section.PLANOGRAM -> planogram(s, vm)
                Section.PROMOTIONS -> promotions(s, vm)
                Section.SURVEY -> survey(s, vm)
                Section.ORDER -> order(s, vm)
                Section.NOTES -> item { Notes(s, vm) }
            }
            if (s.status == VisitStatus.IN_PROGRESS) item { CompleteBar(s, vm) }
        }
    }
}

private fun taskBadge(s: VisitState, sec: Section): String {
    val kind = when (sec) {
        Section.INVENTORY -> TaskKind.INVENTORY_CHECK
        Section.PLANOGRAM -> TaskKind.PLANOGRAM_CHECK
        Section.PROMOTIONS -> TaskKind.PROMOTION_CHECK
        Section.SURVEY -> TaskKind.SURVEY
        Section.ORDER -> TaskKind.ORDER
        Section.NOTES -> return ""
    }
    val t = s.tasks.firstOrNull { it.kind == kind } ?: return ""
    return " ${t.done}/${t.total}" + if (t.required && !t.complete) "*" else ""
}

@Composable
private fun Header(s: VisitState, vm: VisitViewModel, onBack: () -> Unit) {
    Column(verticalArrangement = Arrangement.spacedBy(6.dp)) {
        Row(verticalAlignment = Alignment.CenterVertically) {
            IconButton(onClick = onBack) { Icon(Icons.AutoMirrored.Filled.ArrowBack, contentDescription = "Back") }
            Column(Modifier.weight(1f)) {
                Text(s.storeName, style = MaterialTheme.typography.titleLarge)
                Text(s.status?.label() ?: "", style = MaterialTheme.typography.labelMedium)
            }
        }
        if (s.loading || s.busy) LinearProgressIndicator(Modifier.fillMaxWidth())
        if (s.instructions.isNotBlank()) Text("Manager: ${s.instructions}", style = MaterialTheme.typography.bodyMedium)
        if (s.conflicts > 0) Text("${s.conflicts} field(s) were changed on two devices at once; the latest value is shown.", style = MaterialTheme.typography.bodySmall)
        if (s.storeClosed) Warning("Head office closed this store: it takes no new visits, and a visit already planned here can still be finished.")
        s.geofenceWarning?.let { Warning(it) }
        s.error?.let { e ->
            Card(colors = CardDefaults.cardColors(containerColor = MaterialTheme.colorScheme.errorContainer)) {
                Row(Modifier.padding(12.dp), verticalAlignment = Alignment.CenterVertically) {
                    Text(e.message, Modifier.weight(1f))
                    OutlinedButton(onClick = vm::dismissError) { Text("OK") }
                }
            }
        }
        if (s.status == VisitStatus.PLANNED) {
            Button(onClick = { vm.checkIn() }, enabled = !s.busy, modifier = Modifier.fillMaxWidth()) { Text("Check in") }
        }
    }
}

@Composable
private fun Warning(text: String) {
    Card(colors = CardDefaults.cardColors(containerColor = MaterialTheme.colorScheme.tertiaryContainer)) {
        Row(Modifier.padding(12.dp), verticalAlignment = Alignment.CenterVertically) {
            Icon(Icons.Filled.Warning, contentDescription = null)
            Text(text, Modifier.padding(start = 8.dp))
        }
    }
}

@Composable
private fun Stepper(value: Long?, enabled: Boolean, onStep: (Long) -> Unit) {
    Row(verticalAlignment = Alignment.CenterVertically) {
        IconButton(onClick = { onStep(-1) }, enabled = enabled) { Icon(Icons.Filled.Remove, contentDescription = "Minus one") }
        Text(value?.toString() ?: "–", Modifier.width(32.dp), style = MaterialTheme.typography.titleMedium)
        IconButton(onClick = { onStep(+1) }, enabled = enabled) { Icon(Icons.Filled.Add, contentDescription = "Plus one") }
    }
}

private fun LazyListScope.inventory(s: VisitState, vm: VisitViewModel) {
    items(s.inventory, key = { "inv-" + it.productId }) { row ->
        Card(Modifier.fillMaxWidth()) {
            Column(Modifier.padding(8.dp)) {
                Text(row.name, style = MaterialTheme.typography.titleSmall)
                Row(verticalAlignment = Alignment.CenterVertically) {
                    Text("Shelf", Modifier.width(64.dp))
                    Stepper(row.shelfQty, s.editable) { vm.stepShelf(row.productId, it) }
                    Text("Back", Modifier.padding(start = 8.dp))
                    Stepper(row.backroomQty, s.editable) { vm.stepBackroom(row.productId, it) }
                }
                Row(verticalAlignment = Alignment.CenterVertically) {
                    Text("Out of stock", Modifier.weight(1f))
                    Switch(checked = row.outOfStock == true, onCheckedChange = { vm.setOutOfStock(row.productId, it) }, enabled = s.editable)
                }
            }
        }
    }
}

private fun LazyListScope.planogram(s: VisitState, vm: VisitViewModel) {
    items(s.positions, key = { "pos-" + it.positionId }) { p ->
        Card(Modifier.fillMaxWidth()) {
            Column(Modifier.padding(8.dp)) {
                Text(p.label, style = MaterialTheme.typography.titleSmall)
                val present = p.present ?: false
                val correct = p.correctPosition ?: false
                Row(verticalAlignment = Alignment.CenterVertically) {
                    FilterChip(selected = present, onClick = { vm.recordPosition(p.positionId, !present, p.actualFacings ?: p.expectedFacings, correct) }, label = { Text("Present") }, enabled = s.editable)
                    FilterChip(selected = correct, onClick = { vm.recordPosition(p.positionId, present, p.actualFacings ?: p.expectedFacings, !correct) }, label = { Text("Right place") }, enabled = s.editable, modifier = Modifier.padding(start = 8.dp))
                }
                Row(verticalAlignment = Alignment.CenterVertically) {
                    Text("Facings (plan ${p.expectedFacings})", Modifier.weight(1f))
                    Stepper(p.actualFacings, s.editable) { d ->
                        vm.recordPosition(p.positionId, present, ((p.actualFacings ?: p.expectedFacings) + d).coerceAtLeast(0), correct)
                    }
                }
            }
        }
    }
}

private fun LazyListScope.promotions(s: VisitState, vm: VisitViewModel) {
    if (s.promotions.isEmpty()) item { Text("No promotion runs in this store today.") }
    items(s.promotions, key = { "promo-" + it.promotionId }) { p ->
        val display = p.displayInPlace ?: false
        val price = p.promoPriceCorrect ?: false
        val materials = p.materialsPresent ?: false
        Card(Modifier.fillMaxWidth()) {
            Column(Modifier.padding(8.dp)) {
                Text("${p.name} · promo price ${cents(p.promoPriceCents)}", style = MaterialTheme.typography.titleSmall)
                Row {
                    FilterChip(selected = display, onClick = { vm.recordPromotion(p.promotionId, !display, price, materials) }, label = { Text("Display") }, enabled = s.editable)
                    FilterChip(selected = price, onClick = { vm.recordPromotion(p.promotionId, display, !price, materials) }, label = { Text("Price") }, enabled = s.editable, modifier = Modifier.padding(start = 8.dp))
                    FilterChip(selected = materials, onClick = { vm.recordPromotion(p.promotionId, display, price, !materials) }, label = { Text("Materials") }, enabled = s.editable, modifier = Modifier.padding(start = 8.dp))
                }
            }
        }
    }
}

private fun LazyListScope.survey(s: VisitState, vm: VisitViewModel) {
    if (s.questions.isEmpty()) item { Text("This visit has no survey.") }
    items(s.questions, key = { "q-" + it.questionId }) { q ->
        Card(Modifier.fillMaxWidth()) {
            Column(Modifier.padding(8.dp)) {
                Text(q.text + if (q.required) " *" else "", style = MaterialTheme.typography.titleSmall)
                when (q.type) {
                    AnswerType.BOOLEAN -> Row {
                        val v = (q.answer as? AnswerValue.Bool)?.value
                        FilterChip(selected = v == true, onClick = { vm.answer(q.questionId, AnswerValue.Bool(true)) }, label = { Text("Yes") }, enabled = s.editable)
                        FilterChip(selected = v == false, onClick = { vm.answer(q.questionId, AnswerValue.Bool(false)) }, label = { Text("No") }, enabled = s.editable, modifier = Modifier.padding(start = 8.dp))
                    }
                    AnswerType.NUMBER -> {
                        val current = (q.answer as? AnswerValue.Number)?.value
                        var text by remember(current) { mutableStateOf(current?.let { if (it % 1.0 == 0.0) it.toLong().toString() else it.toString() } ?: "") }
                        OutlinedTextField(
                            value = text, onValueChange = { text = it }, enabled = s.editable, singleLine = true,
                            keyboardOptions = KeyboardOptions(keyboardType = KeyboardType.Decimal),
                            modifier = Modifier.fillMaxWidth().onFocusChanged { f ->
                                val n = text.replace(',', '.').toDoubleOrNull()
                                if (!f.isFocused && n != null && n != current) vm.answer(q.questionId, AnswerValue.Number(n))
                            },
                        )
                    }
                    AnswerType.TEXT -> {
                        val current = (q.answer as? AnswerValue.Text)?.value
                        var text by remember(current) { mutableStateOf(current ?: "") }
                        OutlinedTextField(
                            value = text, onValueChange = { text = it }, enabled = s.editable,
                            modifier = Modifier.fillMaxWidth().onFocusChanged { f ->
                                if (!f.isFocused && text.isNotBlank() && text != current) vm.answer(q.questionId, AnswerValue.Text(text))
                            },
                        )
                    }
                }
            }
        }
    }
}

private fun LazyListScope.order(s: VisitState, vm: VisitViewModel) {
    item {
        val lines = s.orderLines.filter { it.quantity > 0 }
        Row(verticalAlignment = Alignment.CenterVertically) {
            Text(
                if (s.orderSubmitted) "Order submitted · ${lines.size} lines" else "${lines.size} lines · ${lines.sumOf { it.quantity }} units",
                Modifier.weight(1f),
            )
            Button(onClick = { vm.submitOrder() }, enabled = s.editable && !s.orderSubmitted) {
                Text(if (lines.isEmpty()) "No order today" else "Submit order")
            }
        }
    }
    items(s.orderLines, key = { "order-" + it.productId }) { line ->
        Row(Modifier.fillMaxWidth(), verticalAlignment = Alignment.CenterVertically) {
            Text(line.name, Modifier.weight(1f))
            Stepper(line.quantity, s.editable && !s.orderSubmitted) { vm.stepOrder(line.productId, it) }
        }
    }
}

@Composable
private fun Notes(s: VisitState, vm: VisitViewModel) {
    Column {
        OutlinedTextField(
            value = s.notes, onValueChange = vm::editNotes, enabled = s.editable, label = { Text("Notes") },
            minLines = 4,
            modifier = Modifier.fillMaxWidth().onFocusChanged { if (!it.isFocused && s.notesDirty) vm.saveNotes() },
        )
        if (s.notesDirty) OutlinedButton(onClick = { vm.saveNotes() }) { Text("Save notes") }
    }
}

@Composable
private fun CompleteBar(s: VisitState, vm: VisitViewModel) {
    Column(verticalArrangement = Arrangement.spacedBy(4.dp)) {
        if (s.missingRequired.isNotEmpty()) {
            Text("Still required:", style = MaterialTheme.typography.labelLarge, color = MaterialTheme.colorScheme.error)
            for (m in s.missingRequired) Text("• $m", color = MaterialTheme.colorScheme.error)
        }
        val open = s.tasks.filter { it.required && !it.complete }
        Button(onClick = { vm.complete() }, enabled = !s.busy, modifier = Modifier.fillMaxWidth()) {
            Text(if (open.isEmpty()) "Complete visit" else "Complete visit (${open.size} required open: ${open.joinToString { it.kind.label() }})")
        }
    }
}
