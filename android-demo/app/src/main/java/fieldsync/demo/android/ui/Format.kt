package fieldsync.demo.android.ui

import fieldsync.ffi.VisitStatus
import java.time.Instant
import java.time.ZoneId
import java.time.format.DateTimeFormatter

private val clock = DateTimeFormatter.ofPattern("HH:mm")
private val dayClock = DateTimeFormatter.ofPattern("d MMM HH:mm")

fun time(ms: Long): String = clock.format(Instant.ofEpochMilli(ms).atZone(ZoneId.systemDefault()))
fun dayTime(ms: Long): String = dayClock.format(Instant.ofEpochMilli(ms).atZone(ZoneId.systemDefault()))

fun VisitStatus.label(): String = when (this) {
    VisitStatus.PLANNED -> "Planned"
    VisitStatus.IN_PROGRESS -> "In progress"
    VisitStatus.COMPLETED -> "Completed"
    VisitStatus.CANCELED -> "Canceled"
    VisitStatus.ABANDONED -> "Abandoned"
}

fun cents(c: Long): String = "%d.%02d".format(c / 100, c % 100)
