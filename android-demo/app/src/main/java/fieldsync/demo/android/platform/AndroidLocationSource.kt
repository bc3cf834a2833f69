package fieldsync.demo.android.platform

import android.Manifest
import android.annotation.SuppressLint
import android.content.Context
import android.content.pm.PackageManager
import android.location.Location
import android.location.LocationManager
import android.os.CancellationSignal
import androidx.core.content.ContextCompat
import androidx.core.location.LocationManagerCompat
import fieldsync.demo.core.LocationFix
import fieldsync.demo.core.LocationSource
import fieldsync.ffi.GeoPoint
import kotlin.coroutines.resume
import kotlinx.coroutines.suspendCancellableCoroutine
import kotlinx.coroutines.withTimeoutOrNull

/** A fresh fix from the platform LocationManager (no Play services needed). */
class AndroidLocationSource(context: Context) : LocationSource {
    private val context = context.applicationContext

    private fun granted(permission: String) =
        ContextCompat.checkSelfPermission(context, permission) == PackageManager.PERMISSION_GRANTED

    @SuppressLint("MissingPermission") // checked just above the calls
    override suspend fun current(): LocationFix {
        if (!granted(Manifest.permission.ACCESS_FINE_LOCATION) && !granted(Manifest.permission.ACCESS_COARSE_LOCATION)) {
            return LocationFix.PermissionDenied
        }
        val lm = context.getSystemService(LocationManager::class.java)
        if (!LocationManagerCompat.isLocationEnabled(lm)) return LocationFix.Unavailable("location is turned off")
        val provider = listOf(LocationManager.GPS_PROVIDER, LocationManager.NETWORK_PROVIDER)
            .firstOrNull { lm.isProviderEnabled(it) }
            ?: return LocationFix.Unavailable("no location provider")
        val fresh: Location? = withTimeoutOrNull(15_000) {
            suspendCancellableCoroutine { cont ->
                val signal = CancellationSignal()
                cont.invokeOnCancellation { signal.cancel() }
                LocationManagerCompat.getCurrentLocation(lm, provider, signal, ContextCompat.getMainExecutor(context)) { loc ->
                    if (cont.isActive) cont.resume(loc)
                }
            }
        }
        val loc = fresh ?: lm.getLastKnownLocation(provider) ?: return LocationFix.Unavailable("no fix within 15 s")
        return LocationFix.At(GeoPoint(loc.latitude, loc.longitude), loc.accuracy.toDouble())
    }
}
