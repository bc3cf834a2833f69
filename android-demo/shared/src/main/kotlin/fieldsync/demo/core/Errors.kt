package fieldsync.demo.core

import fieldsync.ffi.FieldsyncException
import fieldsync.ffi.TaskKind
import fieldsync.ffi.TaskState

/** How the UI should treat a failure. */
enum class ErrorKind { VALIDATION, NOT_FOUND, CONFLICT, OFFLINE, SIGN_IN, STORAGE, INTERNAL }

data class UiError(val kind: ErrorKind, val message: String)

fun Throwable.toUiError(): UiError = when (this) {
    is FieldsyncException.Validation -> UiError(ErrorKind.VALIDATION, reason)
    is FieldsyncException.NotFound -> UiError(ErrorKind.NOT_FOUND, reason)
    is FieldsyncException.Conflict -> UiError(ErrorKind.CONFLICT, reason)
    is FieldsyncException.Network -> UiError(ErrorKind.OFFLINE, "Server not reachable — your work is saved on this phone ($reason)")
    is FieldsyncException.Unauthorized -> UiError(ErrorKind.SIGN_IN, "Please sign in again ($reason)")
    is FieldsyncException.Storage -> UiError(ErrorKind.STORAGE, "Device storage problem: $reason")
    is FieldsyncException.Internal -> UiError(ErrorKind.INTERNAL, "Unexpected error: $reason")
    else -> UiError(ErrorKind.INTERNAL, message ?: toString())
}

fun TaskKind.label(): String = when (this) {
    TaskKind.INVENTORY_CHECK -> "Inventory check"
    TaskKind.PLANOGRAM_CHECK -> "Planogram check"
    TaskKind.PROMOTION_CHECK -> "Promotion check"
    TaskKind.SURVEY -> "Survey"
    TaskKind.ORDER -> "Order"
}

/** Required tasks still open, named for the rep, e.g. "Planogram check (3 of 12 done)". */
fun missingRequired(tasks: List<TaskState>): List<String> =
    tasks.filter { it.required && !it.complete }.map { "${it.kind.label()} (${it.done} of ${it.total} done)" }
