// Keychain for the device token, CoreLocation for check-in, BGTaskScheduler for
// background sync.
import BackgroundTasks
import CoreLocation
import FieldsyncFFI
import Foundation
import Security

enum Keychain {
    private static let account = "fieldsync.session"

    static func save(_ s: SavedSession) {
        guard let data = try? JSONEncoder().encode(s) else { return }
        let query: [String: Any] = [kSecClass as String: kSecClassGenericPassword, kSecAttrAccount as String: account]
        SecItemDelete(query as CFDictionary)
        var add = query
        add[kSecValueData as String] = data
        // Background sync runs while the phone is locked, after the first unlock.
        add[kSecAttrAccessible as String] = kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly
        SecItemAdd(add as CFDictionary, nil)
    }

    static func load() -> SavedSession? {
        let query: [String: Any] = [
            kSecClass as String: kSecClassGenericPassword, kSecAttrAccount as String: account,
            kSecReturnData as String: true, kSecMatchLimit as String: kSecMatchLimitOne,
        ]
        var out: CFTypeRef?
        guard SecItemCopyMatching(query as CFDictionary, &out) == errSecSuccess, let data = out as? Data else { return nil }
        return try? JSONDecoder().decode(SavedSession.self, from: data)
    }

    static func clear() {
        SecItemDelete([kSecClass as String: kSecClassGenericPassword, kSecAttrAccount as String: account] as CFDictionary)
    }
}

enum LocationFix {
    case at(GeoPoint)
    case permissionDenied
    case unavailable(String)
}

/// One fresh position for check-in, asking for "when in use" permission the first time.
@MainActor
final class LocationProvider: NSObject, CLLocationManagerDelegate {
    private let manager = CLLocationManager()
    private var authContinuation: CheckedContinuation<Void, Never>?
    private var fixContinuation: CheckedContinuation<LocationFix, Never>?

    override init() {
        super.init()
        manager.delegate = self
        manager.desiredAccuracy = kCLLocationAccuracyNearestTenMeters
    }

    func current() async -> LocationFix {
        if manager.authorizationStatus == .notDetermined {
            await withCheckedContinuation { c in
                authContinuation = c
                manager.requestWhenInUseAuthorization()
            }
        }
        switch manager.authorizationStatus {
        case .authorizedWhenInUse, .authorizedAlways: break
        default: return .permissionDenied
        }
        return await withCheckedContinuation { c in
            fixContinuation = c
            manager.requestLocation()
        }
    }

    nonisolated func locationManagerDidChangeAuthorization(_ manager: CLLocationManager) {
        Task { @MainActor in
            guard manager.authorizationStatus != .notDetermined else { return }
            authContinuation?.resume()
            authContinuation = nil
        }
    }

    nonisolated func locationManager(_ manager: CLLocationManager, didUpdateLocations locations: [CLLocation]) {
        guard let l = locations.last else { return }
        let point = GeoPoint(lat: l.coordinate.latitude, lng: l.coordinate.longitude)
        Task { @MainActor in
            fixContinuation?.resume(returning: .at(point))
            fixContinuation = nil
        }
    }

    nonisolated func locationManager(_ manager: CLLocationManager, didFailWithError error: Error) {
        let why = error.localizedDescription
        Task { @MainActor in
            fixContinuation?.resume(returning: .unavailable(why))
            fixContinuation = nil
        }
    }
}

/// Background sync with BGTaskScheduler: a processing task that requires the network
/// (iOS runs it when it sees fit, typically when a network is up and the app is idle).
enum BackgroundSync {
    static let identifier = "dev.fieldsync.demo.sync"

    /// Call once, before the app finishes launching.
    static func register(repository: @escaping @MainActor () async -> FieldRepository?) {
        BGTaskScheduler.shared.register(forTaskWithIdentifier: identifier, using: nil) { task in
            schedule() // keep the chain going
            let work = Task { @MainActor in
                guard let repo = await repository() else { return true }
                return await repo.sync()
            }
            task.expirationHandler = { work.cancel() } // cancelling a sync loses nothing
            Task {
                let ok = await work.value
                task.setTaskCompleted(success: ok)
            }
        }
    }

    static func schedule() {
        let request = BGProcessingTaskRequest(identifier: identifier)
        request.requiresNetworkConnectivity = true
        request.earliestBeginDate = Date(timeIntervalSinceNow: 15 * 60)
        try? BGTaskScheduler.shared.submit(request)
    }
}
