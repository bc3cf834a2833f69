// Screen logic as plain Kotlin classes over StateFlow. The Android app wraps each in an
// androidx ViewModel and passes viewModelScope; tests pass their own scope.
// Each public action returns the Job it launched (the UI ignores it; tests join it).
package fieldsync.demo.core

import fieldsync.ffi.AnswerType
import fieldsync.ffi.AnswerValue
import fieldsync.ffi.CheckPoint
import fieldsync.ffi.FieldsyncException
import fieldsync.ffi.InventoryInput
import fieldsync.ffi.PositionInput
import fieldsync.ffi.PromotionInput
import fieldsync.ffi.RouteEntry
import fieldsync.ffi.StoreInfo
import fieldsync.ffi.TaskState
import fieldsync.ffi.VisitChecklist
import fieldsync.ffi.VisitDetail
import fieldsync.ffi.VisitStatus
import java.io.File
import kotlinx.coroutines.CoroutineDispatcher
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update
import kotlinx.coroutines.launch
import kotlinx.coroutines.sync.Mutex
import kotlinx.coroutines.sync.withLock
import kotlin.math.roundToLong

// ------------------------------------------------------------------ sign-in

data class SignInState(
    val serverUrl: String = "",
    val username: String = "",
    val password: String = "",
    val loading: Boolean = false,
    val error: UiError? = null,
    val signedInAs: String? = null,
) {
    val canSubmit get() = !loading && serverUrl.isNotBlank() && username.isNotBlank() && password.isNotEmpty()
}

class SignInViewModel(
    private val scope: CoroutineScope,
    private val dataDir: File,
    private val deviceId: String,
    private val sessions: SessionStore,
    private val memory: SyncMemoryStore,
    private val io: CoroutineDispatcher = Dispatchers.IO,
    defaultServerUrl: String = "",
) {
    private val _state = MutableStateFlow(SignInState(serverUrl = sessions.load()?.serverUrl ?: defaultServerUrl))
    val state: StateFlow<SignInState> = _state.asStateFlow()

    private val _repository = MutableStateFlow<FieldRepository?>(null)
    /** Set once signed in (or restored); the app switches to the route screen. */
    val repository: StateFlow<FieldRepository?> = _repository.asStateFlow()

    fun onServerUrl(v: String) = _state.update { it.copy(serverUrl = v, error = null) }
    fun onUsername(v: String) = _state.update { it.copy(username = v, error = null) }
    fun onPassword(v: String) = _state.update { it.copy(password = v, error = null) }

    /** Reopens the saved session without the network (offline-first app start). */
    fun restore(): Job = scope.launch {
        val saved = sessions.load() ?: return@launch
        _state.update { it.copy(loading = true) }
        try {
            _repository.value = FieldRepository.open(saved, dataDir, memory, io)
            _state.update { it.copy(loading = false, signedInAs = saved.username) }
        } catch (e: Exception) {
            _state.update { it.copy(loading = false, error = e.toUiError()) }
        }
    }

    /** Signs in, then runs the first sync (reference data and route) — a failed first
     *  sync still signs in; the status bar shows why. */
    fun signIn(): Job {
        val s = _state.value
        _state.update { it.copy(loading = true, error = null) }
        return scope.launch {
            try {
                val repo = FieldRepository.signIn(s.serverUrl, s.username, s.password, deviceId, dataDir, sessions, memory, io)
                repo.sync()
                _repository.value = repo
                _state.update { it.copy(loading = false, password = "", signedInAs = repo.session.username) }
            } catch (e: Exception) {
                if (e is kotlinx.coroutines.CancellationException) throw e
                _state.update { it.copy(loading = false, error = e.toUiError()) }
            }
        }
    }

    fun signOut() {
        _repository.value?.close()
        _repository.value = null
        sessions.clear()
        _state.update { SignInState(serverUrl = it.serverUrl, username = it.username) }
    }
}

// ------------------------------------------------------------------ route

data class RouteState(
    val loading: Boolean = true,
    val entries: List<RouteEntry> = emptyList(),
    val error: UiError? = null,
) {
    val done get() = entries.count { it.status == VisitStatus.COMPLETED }
}

class RouteViewModel(private val repo: FieldRepository, private val scope: CoroutineScope) {
    private val _state = MutableStateFlow(RouteState())
    val state: StateFlow<RouteState> = _state.asStateFlow()

    init {
        refresh()
        // Any change (a local action, a sync bringing the manager's plan) reloads the route.
        scope.launch { repo.dataChanged.collect { refresh() } }
    }

    fun refresh(): Job = scope.launch {
        _state.update { it.copy(loading = true) }
        try {
            val entries = repo.todayRoute()
            _state.value = RouteState(loading = false, entries = entries)
        } catch (e: Exception) {
            _state.update { it.copy(loading = false, error = e.toUiError()) }
        }
    }
}

// ------------------------------------------------------------------ store detail

data class StoreState(
    val loading: Boolean = true,
    val store: StoreInfo? = null,
    val lastVisitAt: Long? = null,
    val outOfStock: List<String> = emptyList(),
    val planogramIssues: List<String> = emptyList(),
    val promotionIssues: List<String> = emptyList(),
    val todaysVisits: List<RouteEntry> = emptyList(),
    val error: UiError? = null,
)

class StoreViewModel(private val repo: FieldRepository, private val storeId: String, private val scope: CoroutineScope) {
    private val _state = MutableStateFlow(StoreState())
    val state: StateFlow<StoreState> = _state.asStateFlow()

    init {
        refresh()
        scope.launch { repo.dataChanged.collect { refresh() } }
    }

    fun refresh(): Job = scope.launch {
        try {
            val store = repo.stores().firstOrNull { it.id == storeId }
            val findings = repo.storeFindings(storeId)
            val catalog = repo.catalog()
            _state.value = StoreState(
                loading = false,
                store = store,
                lastVisitAt = findings.visitedAt,
                outOfStock = findings.outOfStockProductIds.map(catalog::product),
                planogramIssues = findings.nonCompliantPositionIds.map(catalog::position),
                promotionIssues = findings.nonCompliantPromotionIds.map(catalog::promotion),
                todaysVisits = repo.todayRoute().filter { it.storeId == storeId },
            )
        } catch (e: Exception) {
            _state.update { it.copy(loading = false, error = e.toUiError()) }
        }
    }
}

// ------------------------------------------------------------------ visit

data class InventoryRow(val productId: String, val name: String, val shelfQty: Long?, val backroomQty: Long?, val outOfStock: Boolean?)
data class PositionRow(
    val positionId: String, val label: String, val expectedFacings: Long,
    val present: Boolean?, val actualFacings: Long?, val correctPosition: Boolean?,
)
data class PromotionRow(
    val promotionId: String, val name: String, val promoPriceCents: Long,
    val displayInPlace: Boolean?, val promoPriceCorrect: Boolean?, val materialsPresent: Boolean?,
)
data class QuestionRow(val questionId: String, val text: String, val type: AnswerType, val required: Boolean, val answer: AnswerValue?)
data class OrderRow(val productId: String, val name: String, val quantity: Long)

data class VisitState(
    val loading: Boolean = true,
    /** A binding call is running (buttons show progress, never block the main thread). */
    val busy: Boolean = false,
    val visitId: String = "",
    val storeName: String = "",
    /** Head office closed the store after this visit was planned (it can still be finished). */
    val storeClosed: Boolean = false,
    val instructions: String = "",
    val status: VisitStatus? = null,
    val checkIn: CheckPoint? = null,
    /** Set when the check-in position is outside the store's geofence (flagged, not refused). */
    val geofenceWarning: String? = null,
    /** Check-in needs the location permission: the UI asks for it, then calls checkIn() again. */
    val locationPermissionNeeded: Boolean = false,
    val tasks: List<TaskState> = emptyList(),
    val inventory: List<InventoryRow> = emptyList(),
    val positions: List<PositionRow> = emptyList(),
    val promotions: List<PromotionRow> = emptyList(),
    val questions: List<QuestionRow> = emptyList(),
    val orderLines: List<OrderRow> = emptyList(),
    val orderSubmitted: Boolean = false,
    val notes: String = "",
    val notesDirty: Boolean = false,
    /** Required tasks still open, named — shown when completing is refused. */
    val missingRequired: List<String> = emptyList(),
    val conflicts: Int = 0,
    val error: UiError? = null,
) {
    val editable get() = status == VisitStatus.IN_PROGRESS
}

class VisitViewModel(
    private val repo: FieldRepository,
    private val visitId: String,
    private val location: LocationSource,
    private val scope: CoroutineScope,
) {
    private val _state = MutableStateFlow(VisitState(visitId = visitId))
    val state: StateFlow<VisitState> = _state.asStateFlow()
    private var checklist: VisitChecklist? = null
    // Actions (and reloads) run one at a time, in tap order: two quick taps on a stepper
    // give +2, not +1, and a slow reload never paints over a newer state.
    private val actions = Mutex()

    init {
        reload()
        // Changes from sync (the manager edited this visit) show up while the screen is open.
        scope.launch { repo.dataChanged.collect { ids -> if (visitId in ids) reload() } }
    }

    fun reload(): Job = scope.launch {
        actions.withLock {
            try {
                val list = checklist ?: repo.checklist(visitId).also { checklist = it }
                val detail = repo.visitDetail(visitId)
                render(list, detail, repo.catalog())
            } catch (e: Exception) {
                if (e is kotlinx.coroutines.CancellationException) throw e
                _state.update { it.copy(loading = false, error = e.toUiError()) }
            }
        }
    }

    private fun render(list: VisitChecklist, d: VisitDetail, catalog: Catalog) {
        val v = d.visit
        val inv = v.inventory.associateBy { it.productId }
        val pos = v.planogram.associateBy { it.positionId }
        val promo = v.promotions.associateBy { it.promotionId }
        val answers = v.survey.associateBy { it.questionId }
        val orders = v.orders.associateBy { it.productId }
        _state.update { s ->
            s.copy(
                loading = false,
                storeName = d.storeName,
                storeClosed = d.storeClosed,
                instructions = v.plan.instructions,
                status = v.status,
                checkIn = v.checkIn,
                geofenceWarning = v.checkIn?.let(::geofenceWarning),
                tasks = d.tasks,
                inventory = list.productIds.map { p ->
                    val l = inv[p]
                    InventoryRow(p, catalog.product(p), l?.shelfQty, l?.backroomQty, l?.outOfStock)
                },
                positions = list.positions.map { p ->
                    val r = pos[p.positionId]
                    PositionRow(p.positionId, catalog.position(p.positionId), p.expectedFacings.toLong(), r?.present, r?.actualFacings, r?.correctPosition)
                },
                promotions = list.promotions.map { p ->
                    val r = promo[p.promotionId]
                    PromotionRow(p.promotionId, p.name, p.promoPriceCents, r?.displayInPlace, r?.promoPriceCorrect, r?.materialsPresent)
                },
                questions = list.questions.map { q -> QuestionRow(q.questionId, q.text, q.answerType, q.required, answers[q.questionId]?.value) },
                orderLines = (list.productIds.map { p -> OrderRow(p, catalog.product(p), orders[p]?.quantity ?: 0) }),
                orderSubmitted = v.orderSubmitted,
                notes = if (s.notesDirty) s.notes else v.notes,
                conflicts = d.conflicts.size,
                missingRequired = if (s.missingRequired.isEmpty()) emptyList() else missingRequired(d.tasks),
            )
        }
    }

    /** One user action: the binding call on IO, then a reload; errors land in the state. */
    private fun act(block: suspend () -> Unit): Job {
        _state.update { it.copy(busy = true, error = null) }
        return scope.launch(start = CoroutineStart.UNDISPATCHED) { actions.withLock {
            try {
                block()
                val list = checklist ?: repo.checklist(visitId).also { checklist = it }
                render(list, repo.visitDetail(visitId), repo.catalog())
                _state.update { it.copy(busy = false) }
            } catch (e: Exception) {
                if (e is kotlinx.coroutines.CancellationException) throw e
                _state.update { it.copy(busy = false, error = e.toUiError()) }
            }
        } }
    }

    fun dismissError() = _state.update { it.copy(error = null) }

    fun checkIn(): Job = act {
        when (val fix = location.current()) {
            is LocationFix.PermissionDenied -> _state.update {
                it.copy(locationPermissionNeeded = true, error = UiError(ErrorKind.VALIDATION, "Allow location access to check in at the store"))
            }
            is LocationFix.Unavailable -> _state.update {
                it.copy(error = UiError(ErrorKind.VALIDATION, "No GPS position yet (${fix.why}); try again near a window"))
            }
            is LocationFix.At -> {
                _state.update { it.copy(locationPermissionNeeded = false) }
                repo.local { it.checkIn(visitId, fix.point) }
            }
        }
    }

    fun checkOut(): Job = act {
        val fix = location.current()
        if (fix is LocationFix.At) repo.local { it.checkOut(visitId, fix.point) }
        else _state.update { it.copy(error = UiError(ErrorKind.VALIDATION, "A position is needed to check out")) }
    }

    /** Quick stepper: shelf quantity ± delta (never below 0); a positive count clears out-of-stock. */
    fun stepShelf(productId: String, delta: Long): Job = act {
        val current = _state.value.inventory.firstOrNull { it.productId == productId }?.shelfQty ?: 0
        val qty = (current + delta).coerceAtLeast(0)
        repo.local { it.recordInventory(visitId, productId, InventoryInput(shelfQty = qty, outOfStock = if (qty > 0) false else null)) }
    }

    fun stepBackroom(productId: String, delta: Long): Job = act {
        val current = _state.value.inventory.firstOrNull { it.productId == productId }?.backroomQty ?: 0
        repo.local { it.recordInventory(visitId, productId, InventoryInput(backroomQty = (current + delta).coerceAtLeast(0))) }
    }

    /** Out-of-stock toggle: out of stock means nothing on the shelf. */
    fun setOutOfStock(productId: String, outOfStock: Boolean): Job = act {
        repo.local { it.recordInventory(visitId, productId, InventoryInput(outOfStock = outOfStock, shelfQty = if (outOfStock) 0 else null)) }
    }

    fun recordPosition(positionId: String, present: Boolean, actualFacings: Long?, correctPosition: Boolean): Job = act {
        repo.local { it.recordPosition(visitId, positionId, PositionInput(present = present, actualFacings = actualFacings, correctPosition = correctPosition)) }
    }

    fun recordPromotion(promotionId: String, displayInPlace: Boolean, promoPriceCorrect: Boolean, materialsPresent: Boolean): Job = act {
        repo.local {
            it.recordPromotion(visitId, promotionId, PromotionInput(displayInPlace = displayInPlace, promoPriceCorrect = promoPriceCorrect, materialsPresent = materialsPresent))
        }
    }

    fun answer(questionId: String, value: AnswerValue): Job = act { repo.local { it.answerSurvey(visitId, questionId, value) } }

    fun setOrderQuantity(productId: String, quantity: Long): Job = act {
        repo.local { it.setOrderLine(visitId, productId, quantity.coerceAtLeast(0)) }
    }

    fun stepOrder(productId: String, delta: Long): Job = act {
        val current = _state.value.orderLines.firstOrNull { it.productId == productId }?.quantity ?: 0
        repo.local { it.setOrderLine(visitId, productId, (current + delta).coerceAtLeast(0)) }
    }

    fun submitOrder(): Job = act { repo.local { it.submitOrder(visitId) } }

    /** Typing only edits the screen state; [saveNotes] stores it (on focus loss / leaving). */
    fun editNotes(text: String) = _state.update { it.copy(notes = text, notesDirty = true) }

    fun saveNotes(): Job = act {
        val text = _state.value.notes
        repo.local { it.setNotes(visitId, text) }
        _state.update { it.copy(notesDirty = false) }
    }

    /** Completes the visit; when required tasks are open, names them instead. */
    fun complete(): Job = act {
        if (_state.value.notesDirty) {
            val text = _state.value.notes
            repo.local { it.setNotes(visitId, text) }
            _state.update { it.copy(notesDirty = false) }
        }
        try {
            repo.local { it.complete(visitId) }
            _state.update { it.copy(missingRequired = emptyList()) }
        } catch (e: FieldsyncException.Conflict) {
            val missing = missingRequired(repo.visitDetail(visitId).tasks)
            if (missing.isEmpty()) throw e
            _state.update {
                it.copy(missingRequired = missing, error = UiError(ErrorKind.CONFLICT, "Finish before completing: " + missing.joinToString(", ")))
            }
        }
    }

    fun abandon(reason: String): Job = act { repo.local { it.abandon(visitId, reason) } }

    private fun geofenceWarning(c: CheckPoint): String? =
        if (!c.outsideGeofence) null
        else "Checked in ${c.distanceM.roundToLong()} m from the store — outside its geofence; the visit is flagged for your manager"
}

// ------------------------------------------------------------------ sync status bar

class SyncViewModel(private val repo: FieldRepository, private val scope: CoroutineScope) {
    val status: StateFlow<SyncStatus> = repo.status

    /** Sync on demand (the status bar's button). */
    fun syncNow(): Job = scope.launch { repo.sync() }
}
