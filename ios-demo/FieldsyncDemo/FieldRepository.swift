// The one door from the app to the fieldsync library, like the Android demo's
// FieldRepository. Blocking binding calls run on a background queue (never the main
// actor); sync is async in the bindings. State for the status bar is published on the
// main actor.
import Combine
import FieldsyncFFI
import Foundation

struct SavedSession: Codable, Equatable {
    var serverUrl: String
    var token: String
    var userId: String
    var username: String
    var deviceId: String
}

struct QuarantinedVisit: Codable, Equatable, Identifiable {
    var visitId: String
    var reason: String
    var at: Int64
    var id: String { visitId }
}

enum SyncPhase { case idle, syncing, backoff, failed }

struct SyncStatus: Equatable {
    var phase: SyncPhase = .idle
    var progressDone: UInt64 = 0
    var progressTotal: UInt64 = 0
    var pendingChanges: UInt64 = 0
    var lastSyncAt: Int64?
    var lastError: String?
    var retryReason: String?
    var quarantined: [QuarantinedVisit] = []
    var needsSignIn = false

    var syncing: Bool { phase == .syncing || phase == .backoff }

    func headline(_ time: (Int64) -> String) -> String {
        var parts: [String] = []
        switch phase {
        case .syncing: parts.append(progressTotal > 0 ? "Syncing \(progressDone)/\(progressTotal)…" : "Syncing…")
        case .backoff: parts.append("Retrying\(retryReason.map { " (\($0))" } ?? "")…")
        default: break
        }
        switch pendingChanges {
        case 0: parts.append("All changes synced")
        case 1: parts.append("1 change waiting")
        default: parts.append("\(pendingChanges) changes waiting")
        }
        parts.append(lastSyncAt.map { "last sync \(time($0))" } ?? "never synced")
        if !quarantined.isEmpty {
            parts.append(quarantined.count == 1 ? "1 visit refused by the server" : "\(quarantined.count) visits refused by the server")
        }
        if phase == .failed, let e = lastError { parts.append("sync failed: \(e)") }
        return parts.joined(separator: " · ")
    }
}

/// What the user should read for an error.
func describe(_ error: Error) -> String {
    guard let e = error as? FieldsyncError else { return error.localizedDescription }
    switch e {
    case .Validation(let r), .NotFound(let r), .Conflict(let r): return r
    case .Network(let r): return "Server not reachable — your work is saved on this phone (\(r))"
    case .Unauthorized(let r): return "Please sign in again (\(r))"
    case .Storage(let r): return "Device storage problem: \(r)"
    case .Internal(let r): return "Unexpected error: \(r)"
    }
}

/// Product, promotion and position names from the reference data JSON.
struct Catalog {
    var products: [String: String] = [:]
    var promotions: [String: String] = [:]
    var positions: [String: String] = [:]

    init() {}

    init(json: String) {
        guard let data = json.data(using: .utf8),
              let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return }
        func list(_ key: String) -> [[String: Any]] { root[key] as? [[String: Any]] ?? [] }
        for p in list("products") { if let id = p["id"] as? String { products[id] = p["name"] as? String ?? id } }
        for p in list("promotions") { if let id = p["id"] as? String { promotions[id] = p["name"] as? String ?? id } }
        for pg in list("planograms") {
            for pos in pg["positions"] as? [[String: Any]] ?? [] {
                guard let id = pos["id"] as? String else { continue }
                let product = (pos["product_id"] as? String).flatMap { products[$0] } ?? ""
                positions[id] = "Shelf \(pos["shelf"] ?? "?") · position \(pos["position"] ?? "?") · \(product)"
            }
        }
    }

    func product(_ id: String) -> String { products[id] ?? id }
    func promotion(_ id: String) -> String { promotions[id] ?? id }
    func position(_ id: String) -> String { positions[id] ?? id }
}

final class FieldRepository: @unchecked Sendable {
    let store: FieldStore
    let session: SavedSession
    /// Visits changed (empty: reference data changed); delivered on the main queue.
    let dataChanged = PassthroughSubject<[String], Never>()
    @MainActor let status: SyncStatusModel

    private let queue = DispatchQueue(label: "fieldsync.io", qos: .userInitiated, attributes: .concurrent)
    private var subscription: Subscription?
    private let catalogLock = NSLock()
    private var catalogCache: Catalog?

    @MainActor
    init(store: FieldStore, session: SavedSession) {
        self.store = store
        self.session = session
        self.status = SyncStatusModel(memory: SyncMemory.load())
        self.subscription = store.subscribe(observer: Bridge(self))
        Task { await refreshPending() }
    }

    deinit { subscription?.cancel() }

    /// Runs a blocking binding call off the main actor.
    func local<T>(_ body: @escaping @Sendable (FieldStore) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { cont in
            queue.async { cont.resume(with: Result { try body(self.store) }) }
        }
    }

    func catalog() async throws -> Catalog {
        catalogLock.lock()
        let cached = catalogCache
        catalogLock.unlock()
        if let cached { return cached }
        let c = Catalog(json: try await local { try $0.referenceDataJson() })
        catalogLock.lock()
        catalogCache = c
        catalogLock.unlock()
        return c
    }

    fileprivate func invalidateCatalog() {
        catalogLock.lock()
        catalogCache = nil
        catalogLock.unlock()
    }

    func refreshPending() async {
        guard let n = try? await local({ try $0.outboxLen() }) else { return }
        await MainActor.run { status.value.pendingChanges = n }
    }

    private let syncGate = AsyncGate()

    /// Sync on demand or in the background; failures land in `status`, never thrown.
    @discardableResult
    func sync() async -> Bool {
        await syncGate.run {
            await MainActor.run { self.status.value.phase = .syncing }
            do {
                var report = try await self.store.sync(baseUrl: self.session.serverUrl, token: self.session.token)
                var rounds = 1
                while report.incomplete && rounds < 4 {
                    report = try await self.store.sync(baseUrl: self.session.serverUrl, token: self.session.token)
                    rounds += 1
                }
                if report.referenceUpdated { self.invalidateCatalog() }
                let now = self.store.now()
                await MainActor.run {
                    var s = self.status.value
                    var q = s.quarantined.filter { v in
                        !report.purged.contains(v.visitId) && !report.rejections.contains { $0.visitId == v.visitId }
                    }
                    q += report.rejections.map { QuarantinedVisit(visitId: $0.visitId, reason: $0.reason, at: now) }
                    s.phase = .idle
                    s.lastSyncAt = now
                    s.lastError = nil
                    s.retryReason = nil
                    s.needsSignIn = false
                    s.quarantined = q.sorted { $0.visitId < $1.visitId }
                    self.status.value = s
                    self.status.remember()
                }
                await self.refreshPending()
                return true
            } catch {
                var signIn = false
                if let e = error as? FieldsyncError, case .Unauthorized = e { signIn = true }
                await MainActor.run {
                    self.status.value.phase = .failed
                    self.status.value.lastError = describe(error)
                    self.status.value.needsSignIn = signIn
                    self.status.remember()
                }
                await self.refreshPending()
                return false
            }
        }
    }

    // MARK: sign-in

    static func signIn(serverUrl: String, username: String, password: String, deviceId: String) async throws -> FieldRepository {
        let url = serverUrl.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        let s = try await login(baseUrl: url, username: username, password: password, deviceId: deviceId)
        let saved = SavedSession(serverUrl: url, token: s.token, userId: s.userId, username: s.username, deviceId: deviceId)
        let repo = try await open(saved)
        Keychain.save(saved)
        return repo
    }

    static func open(_ saved: SavedSession) async throws -> FieldRepository {
        let dir = FileManager.default.urls(for: .applicationSupportDirectory, in: .userDomainMask)[0]
            .appendingPathComponent("fieldsync", isDirectory: true)
        let store: FieldStore = try await Task.detached(priority: .userInitiated) {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            return try FieldStore.open(path: dir.appendingPathComponent("\(saved.userId).db").path, userId: saved.userId, deviceId: saved.deviceId)
        }.value
        return await MainActor.run { FieldRepository(store: store, session: saved) }
    }
}

/// Runs async blocks one at a time (the sync button and the background task never overlap).
actor AsyncGate {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func run<T: Sendable>(_ body: @Sendable () async -> T) async -> T {
        while busy { await withCheckedContinuation { waiters.append($0) } }
        busy = true
        defer {
            busy = false
            if !waiters.isEmpty { waiters.removeFirst().resume() }
        }
        return await body()
    }
}

/// The library's observer: callbacks arrive on the thread that caused them.
private final class Bridge: FieldObserver, @unchecked Sendable {
    weak var repo: FieldRepository?
    init(_ repo: FieldRepository) { self.repo = repo }

    func onDataChanged(visitIds: [String]) throws {
        guard let repo else { return }
        if visitIds.isEmpty { repo.invalidateCatalog() }
        DispatchQueue.main.async { repo.dataChanged.send(visitIds) }
        Task { await repo.refreshPending() }
    }

    func onSyncState(state: SyncState) throws {
        guard let repo else { return }
        Task { @MainActor in
            switch state {
            case .syncing: repo.status.value.phase = .syncing; repo.status.value.retryReason = nil
            case .backoff(_, _, let reason): repo.status.value.phase = .backoff; repo.status.value.retryReason = reason
            case .idle: repo.status.value.phase = .idle; repo.status.value.retryReason = nil
            case .failed(let reason): repo.status.value.phase = .failed; repo.status.value.lastError = reason
            }
        }
    }

    func onProgress(done: UInt64, total: UInt64) throws {
        guard let repo else { return }
        Task { @MainActor in
            repo.status.value.progressDone = done
            repo.status.value.progressTotal = total
        }
    }
}

/// Last sync, last error and quarantined visits, kept across launches.
struct SyncMemory: Codable {
    var lastSyncAt: Int64?
    var lastError: String?
    var quarantined: [QuarantinedVisit] = []

    static func load() -> SyncMemory {
        guard let d = UserDefaults.standard.data(forKey: "fieldsync.syncMemory"),
              let m = try? JSONDecoder().decode(SyncMemory.self, from: d) else { return SyncMemory() }
        return m
    }

    func save() {
        if let d = try? JSONEncoder().encode(self) { UserDefaults.standard.set(d, forKey: "fieldsync.syncMemory") }
    }
}

@MainActor
final class SyncStatusModel: ObservableObject {
    @Published var value: SyncStatus

    init(memory: SyncMemory) {
        value = SyncStatus(lastSyncAt: memory.lastSyncAt, lastError: memory.lastError, quarantined: memory.quarantined)
    }

    func remember() {
        SyncMemory(lastSyncAt: value.lastSyncAt, lastError: value.lastError, quarantined: value.quarantined).save()
    }
}
