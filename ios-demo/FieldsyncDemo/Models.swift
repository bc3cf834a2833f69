// Screen logic (the Swift counterpart of the Android demo's :shared view models).
import Combine
import FieldsyncFFI
import Foundation

let taskNames: [TaskKind: String] = [
    .inventoryCheck: "Inventory check", .planogramCheck: "Planogram check",
    .promotionCheck: "Promotion check", .survey: "Survey", .order: "Order",
]

func missingRequired(_ tasks: [TaskState]) -> [String] {
    tasks.filter { $0.required && !$0.complete }.map { "\(taskNames[$0.kind] ?? "Task") (\($0.done) of \($0.total) done)" }
}

@MainActor
final class AppModel: ObservableObject {
    @Published var repository: FieldRepository?
    @Published var serverUrl = "http://192.168.1.10:8080"
    @Published var username = ""
    @Published var password = ""
    @Published var loading = false
    @Published var error: String?

    let deviceId: String = {
        if let id = UserDefaults.standard.string(forKey: "fieldsync.deviceId") { return id }
        let id = "ios-" + UUID().uuidString
        UserDefaults.standard.set(id, forKey: "fieldsync.deviceId")
        return id
    }()

    /// Offline-first start: reopen the saved session without the network.
    func restore() async -> FieldRepository? {
        if let repository { return repository }
        guard let saved = Keychain.load() else { return nil }
        serverUrl = saved.serverUrl
        do {
            let repo = try await FieldRepository.open(saved)
            repository = repo
            return repo
        } catch {
            self.error = describe(error)
            return nil
        }
    }

    func signIn() {
        loading = true
        error = nil
        Task {
            do {
                let repo = try await FieldRepository.signIn(serverUrl: serverUrl, username: username, password: password, deviceId: deviceId)
                await repo.sync() // reference data and the route; a failure shows in the status bar
                repository = repo
                password = ""
                BackgroundSync.schedule()
            } catch {
                self.error = describe(error)
            }
            loading = false
        }
    }

    func signOut() {
        repository = nil
        Keychain.clear()
    }
}

@MainActor
final class RouteModel: ObservableObject {
    @Published var entries: [RouteEntry] = []
    @Published var loading = true
    @Published var error: String?
    private let repo: FieldRepository
    private var bag: AnyCancellable?

    init(repo: FieldRepository) {
        self.repo = repo
        bag = repo.dataChanged.sink { [weak self] _ in self?.refresh() }
        refresh()
    }

    var done: Int { entries.filter { $0.status == .completed }.count }

    func refresh() {
        loading = true
        Task {
            do {
                entries = try await repo.local { try $0.todayRoute() }
                error = nil
            } catch {
                self.error = describe(error)
            }
            loading = false
        }
    }
}

@MainActor
final class StoreModel: ObservableObject {
    @Published var store: StoreInfo?
    @Published var lastVisitAt: Int64?
    @Published var outOfStock: [String] = []
    @Published var planogramIssues: [String] = []
    @Published var promotionIssues: [String] = []
    @Published var error: String?
    private let repo: FieldRepository
    private let storeId: String

    init(repo: FieldRepository, storeId: String) {
        self.repo = repo
        self.storeId = storeId
        refresh()
    }

    func refresh() {
        let id = storeId
        Task {
            do {
                let stores = try await repo.local { $0.stores() }
                let f = try await repo.local { try $0.storeFindings(storeId: id) }
                let c = try await repo.catalog()
                store = stores.first { $0.id == id }
                lastVisitAt = f.visitedAt
                outOfStock = f.outOfStockProductIds.map(c.product)
                planogramIssues = f.nonCompliantPositionIds.map(c.position)
                promotionIssues = f.nonCompliantPromotionIds.map(c.promotion)
            } catch {
                self.error = describe(error)
            }
        }
    }
}

@MainActor
final class VisitModel: ObservableObject {
    @Published var detail: VisitDetail?
    @Published var checklist: VisitChecklist?
    @Published var catalog = Catalog()
    @Published var busy = false
    @Published var error: String?
    @Published var missing: [String] = []
    @Published var notes = ""
    @Published var notesDirty = false
    let visitId: String
    private let repo: FieldRepository
    private let location: LocationProvider
    private var bag: AnyCancellable?
    private var queue: Task<Void, Never>? // actions run one after the other, in tap order

    init(repo: FieldRepository, visitId: String, location: LocationProvider) {
        self.repo = repo
        self.visitId = visitId
        self.location = location
        bag = repo.dataChanged.sink { [weak self] ids in
            guard let self, ids.contains(visitId) else { return }
            self.act {}
        }
        act {}
    }

    var visit: Visit? { detail?.visit }
    var editable: Bool { visit?.status == .inProgress }

    var geofenceWarning: String? {
        guard let c = visit?.checkIn, c.outsideGeofence else { return nil }
        return "Checked in \(Int(c.distanceM.rounded())) m from the store — outside its geofence; the visit is flagged for your manager"
    }

    /// Runs one action off the main actor, then reloads the visit.
    private func act(_ body: @escaping () async throws -> Void) {
        let previous = queue
        busy = true
        queue = Task {
            await previous?.value
            do {
                try await body()
                let id = visitId
                if checklist == nil { checklist = try await repo.local { try $0.visitChecklist(visitId: id) } }
                let d = try await repo.local { try $0.visitDetail(visitId: id) }
                catalog = try await repo.catalog()
                detail = d
                if !notesDirty { notes = d.visit.notes }
                if !missing.isEmpty { missing = missingRequired(d.tasks) }
            } catch {
                self.error = describe(error)
            }
            busy = false
        }
    }

    func checkIn() {
        act { [self] in
            switch await location.current() {
            case .permissionDenied: error = "Allow location access in Settings to check in at the store"
            case .unavailable(let why): error = "No GPS position yet (\(why))"
            case .at(let p):
                let id = visitId
                _ = try await repo.local { try $0.checkIn(visitId: id, position: p) }
            }
        }
    }

    private func call(_ f: @escaping @Sendable (FieldStore, String) throws -> Void) {
        let id = visitId
        act { [repo] in try await repo.local { try f($0, id) } }
    }

    func line(_ product: String) -> InventoryLine? { visit?.inventory.first { $0.productId == product } }

    func stepShelf(_ product: String, _ delta: Int64) {
        act { [self] in
            let qty = max(0, (line(product)?.shelfQty ?? 0) + delta)
            let id = visitId
            try await repo.local { try $0.recordInventory(visitId: id, productId: product, input: InventoryInput(shelfQty: qty, outOfStock: qty > 0 ? false : nil)) }
        }
    }

    func setOutOfStock(_ product: String, _ oos: Bool) {
        call { try $0.recordInventory(visitId: $1, productId: product, input: InventoryInput(shelfQty: oos ? 0 : nil, outOfStock: oos)) }
    }

    func recordPosition(_ position: String, present: Bool, facings: Int64?, correct: Bool) {
        call { try $0.recordPosition(visitId: $1, positionId: position, input: PositionInput(present: present, actualFacings: facings, correctPosition: correct)) }
    }

    func recordPromotion(_ promotion: String, display: Bool, price: Bool, materials: Bool) {
        call { try $0.recordPromotion(visitId: $1, promotionId: promotion, input: PromotionInput(displayInPlace: display, promoPriceCorrect: price, materialsPresent: materials)) }
    }

    func answer(_ question: String, _ value: AnswerValue) {
        call { try $0.answerSurvey(visitId: $1, questionId: question, value: value) }
    }

    func orderQuantity(_ product: String) -> Int64 { visit?.orders.first { $0.productId == product }?.quantity ?? 0 }

    func stepOrder(_ product: String, _ delta: Int64) {
        act { [self] in
            let qty = max(0, orderQuantity(product) + delta)
            let id = visitId
            try await repo.local { try $0.setOrderLine(visitId: id, productId: product, quantity: qty) }
        }
    }

    func submitOrder() { call { try $0.submitOrder(visitId: $1) } }

    func saveNotes() {
        let text = notes
        notesDirty = false
        call { try $0.setNotes(visitId: $1, text: text) }
    }

    func complete() {
        if notesDirty { saveNotes() }
        act { [self] in
            let id = visitId
            do {
                try await repo.local { try $0.complete(visitId: id) }
                missing = []
            } catch FieldsyncError.Conflict(let reason) {
                let d = try await repo.local { try $0.visitDetail(visitId: id) }
                missing = missingRequired(d.tasks)
                error = missing.isEmpty ? reason : "Finish before completing: " + missing.joined(separator: ", ")
            }
        }
    }
}
