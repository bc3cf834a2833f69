package fieldsync.demo.android.ui

import androidx.lifecycle.ViewModel
import androidx.lifecycle.viewModelScope
import fieldsync.demo.android.BuildConfig
import fieldsync.demo.android.FieldsyncDemoApp
import fieldsync.demo.core.FieldRepository
import fieldsync.demo.core.LocationSource
import fieldsync.demo.core.RouteViewModel
import fieldsync.demo.core.SignInViewModel
import fieldsync.demo.core.StoreViewModel
import fieldsync.demo.core.SyncViewModel
import fieldsync.demo.core.VisitViewModel
import kotlinx.coroutines.Dispatchers

// androidx ViewModels that own the pure-Kotlin view models of :shared and give them
// viewModelScope (Dispatchers.Main.immediate). The repository moves binding calls to
// Dispatchers.IO, so nothing here blocks the main thread.

class SignInHolder(app: FieldsyncDemoApp) : ViewModel() {
    val vm = SignInViewModel(
        scope = viewModelScope,
        dataDir = app.dataDir,
        deviceId = app.deviceId,
        sessions = app.sessions,
        memory = app.syncMemory,
        io = Dispatchers.IO,
        defaultServerUrl = BuildConfig.DEFAULT_SERVER_URL,
    )
}

class SyncHolder(repo: FieldRepository) : ViewModel() {
    val vm = SyncViewModel(repo, viewModelScope)
}

class RouteHolder(repo: FieldRepository) : ViewModel() {
    val vm = RouteViewModel(repo, viewModelScope)
}

class StoreHolder(repo: FieldRepository, storeId: String) : ViewModel() {
    val vm = StoreViewModel(repo, storeId, viewModelScope)
}

class VisitHolder(repo: FieldRepository, visitId: String, location: LocationSource) : ViewModel() {
    val vm = VisitViewModel(repo, visitId, location, viewModelScope)
}
