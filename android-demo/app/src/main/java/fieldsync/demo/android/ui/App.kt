package fieldsync.demo.android.ui

import androidx.compose.foundation.layout.padding
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.Scaffold
import androidx.compose.material3.lightColorScheme
import androidx.compose.runtime.Composable
import androidx.compose.runtime.LaunchedEffect
import androidx.compose.runtime.getValue
import androidx.compose.ui.Modifier
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import androidx.lifecycle.viewmodel.compose.viewModel
import androidx.navigation.compose.NavHost
import androidx.navigation.compose.composable
import androidx.navigation.compose.rememberNavController
import fieldsync.demo.android.FieldsyncDemoApp
import fieldsync.demo.android.platform.AndroidLocationSource
import fieldsync.demo.core.FieldRepository

@Composable
fun FieldsyncApp(app: FieldsyncDemoApp) {
    MaterialTheme(colorScheme = lightColorScheme()) {
        val repo by app.repository.collectAsStateWithLifecycle()
        val signIn: SignInHolder = viewModel { SignInHolder(app) }
        // Offline-first start: a saved session reopens the device store without the network.
        LaunchedEffect(Unit) { app.repositoryOrRestore() }
        val signedIn by signIn.vm.repository.collectAsStateWithLifecycle()
        LaunchedEffect(signedIn) { signedIn?.let(app::signedIn) }

        val current = repo
        if (current == null) {
            SignInScreen(signIn.vm)
        } else {
            MainNav(app, current, onSignOut = {
                signIn.vm.signOut()
                app.signedOut()
            })
        }
    }
}

@Composable
private fun MainNav(app: FieldsyncDemoApp, repo: FieldRepository, onSignOut: () -> Unit) {
    val nav = rememberNavController()
    val user = repo.session.userId
    val sync: SyncHolder = viewModel(key = "sync-$user") { SyncHolder(repo) }
    Scaffold(topBar = { SyncStatusBar(sync.vm, repo.session.username, onSignOut) }) { padding ->
        NavHost(nav, startDestination = "route", modifier = Modifier.padding(padding)) {
            composable("route") {
                val holder: RouteHolder = viewModel(key = "route-$user") { RouteHolder(repo) }
                RouteScreen(
                    holder.vm,
                    onVisit = { nav.navigate("visit/$it") },
                    onStore = { nav.navigate("store/$it") },
                )
            }
            composable("store/{storeId}") { entry ->
                val storeId = entry.arguments?.getString("storeId").orEmpty()
                val holder: StoreHolder = viewModel(key = "store-$storeId") { StoreHolder(repo, storeId) }
                StoreScreen(holder.vm, onBack = { nav.popBackStack() }, onVisit = { nav.navigate("visit/$it") })
            }
            composable("visit/{visitId}") { entry ->
                val visitId = entry.arguments?.getString("visitId").orEmpty()
                val holder: VisitHolder = viewModel(key = "visit-$visitId") {
                    VisitHolder(repo, visitId, AndroidLocationSource(app))
                }
                VisitScreen(holder.vm, onBack = { nav.popBackStack() })
            }
        }
    }
}
