package fieldsync.demo.android.sync

import android.content.Context
import androidx.work.Constraints
import androidx.work.CoroutineWorker
import androidx.work.ExistingPeriodicWorkPolicy
import androidx.work.ExistingWorkPolicy
import androidx.work.NetworkType
import androidx.work.OneTimeWorkRequestBuilder
import androidx.work.PeriodicWorkRequestBuilder
import androidx.work.WorkManager
import androidx.work.WorkerParameters
import fieldsync.demo.android.FieldsyncDemoApp
import fieldsync.demo.core.BackgroundResult
import fieldsync.demo.core.backgroundSync
import java.util.concurrent.TimeUnit

/** Background sync: runs when a network is available (WorkManager constraint). */
class SyncWorker(context: Context, params: WorkerParameters) : CoroutineWorker(context, params) {
    override suspend fun doWork(): Result {
        val repo = FieldsyncDemoApp.of(applicationContext).repositoryOrRestore() ?: return Result.success()
        // CoroutineWorker runs on Dispatchers.Default; the repository moves binding calls to IO.
        return when (repo.backgroundSync()) {
            BackgroundResult.SUCCESS -> Result.success()
            BackgroundResult.RETRY -> Result.retry() // WorkManager backs off, then waits for a network again
            BackgroundResult.SIGN_IN_REQUIRED -> Result.failure()
        }
    }
}

object SyncScheduler {
    private const val PERIODIC = "fieldsync-periodic-sync"
    private const val WHEN_ONLINE = "fieldsync-sync-when-online"

    private val online = Constraints.Builder().setRequiredNetworkType(NetworkType.CONNECTED).build()

    /** Every 15 minutes (WorkManager's minimum) while a network is up. */
    fun schedulePeriodic(context: Context) {
        val request = PeriodicWorkRequestBuilder<SyncWorker>(15, TimeUnit.MINUTES).setConstraints(online).build()
        WorkManager.getInstance(context).enqueueUniquePeriodicWork(PERIODIC, ExistingPeriodicWorkPolicy.KEEP, request)
    }

    /** One sync as soon as a network appears (immediately if there is one). Called after
     *  local changes, so work recorded offline leaves the phone at the first signal. */
    fun syncWhenOnline(context: Context) {
        val request = OneTimeWorkRequestBuilder<SyncWorker>()
            .setConstraints(online)
            .setInitialDelay(5, TimeUnit.SECONDS) // coalesce a burst of taps into one sync
            .build()
        WorkManager.getInstance(context).enqueueUniqueWork(WHEN_ONLINE, ExistingWorkPolicy.REPLACE, request)
    }

    fun cancelAll(context: Context) {
        WorkManager.getInstance(context).cancelUniqueWork(PERIODIC)
        WorkManager.getInstance(context).cancelUniqueWork(WHEN_ONLINE)
    }
}
