import FieldsyncFFI
import SwiftUI

@main
struct FieldsyncDemoApp: App {
    @StateObject private var model: AppModel
    @Environment(\.scenePhase) private var phase

    init() {
        let model = AppModel()
        _model = StateObject(wrappedValue: model)
        // BGTaskScheduler handlers must be registered before launch finishes.
        BackgroundSync.register { await model.restore() }
    }

    var body: some Scene {
        WindowGroup {
            RootView()
                .environmentObject(model)
                .task { _ = await model.restore() }
        }
        .onChange(of: phase) { p in
            if p == .background, model.repository != nil { BackgroundSync.schedule() }
        }
    }
}

struct RootView: View {
    @EnvironmentObject var model: AppModel

    var body: some View {
        if let repo = model.repository {
            SignedInView(repo: repo, status: repo.status)
        } else {
            SignInView()
        }
    }
}

struct SignedInView: View {
    let repo: FieldRepository
    @ObservedObject var status: SyncStatusModel
    @EnvironmentObject var model: AppModel
    @StateObject private var location = LocationHolder()

    var body: some View {
        VStack(spacing: 0) {
            SyncStatusBar(repo: repo, status: status) { model.signOut() }
            NavigationStack {
                RouteView(repo: repo)
                    .navigationDestination(for: Destination.self) { d in
                        switch d {
                        case .store(let id): StoreView(repo: repo, storeId: id)
                        case .visit(let id): VisitView(repo: repo, visitId: id, location: location.provider)
                        }
                    }
            }
        }
    }
}

enum Destination: Hashable {
    case store(String)
    case visit(String)
}

@MainActor
final class LocationHolder: ObservableObject {
    let provider = LocationProvider()
}

func time(_ ms: Int64) -> String {
    Date(timeIntervalSince1970: TimeInterval(ms) / 1000).formatted(date: .omitted, time: .shortened)
}

func dayTime(_ ms: Int64) -> String {
    Date(timeIntervalSince1970: TimeInterval(ms) / 1000).formatted(date: .abbreviated, time: .shortened)
}

extension VisitStatus {
    var label: String {
        switch self {
        case .planned: return "Planned"
        case .inProgress: return "In progress"
        case .completed: return "Completed"
        case .canceled: return "Canceled"
        case .abandoned: return "Abandoned"
        }
    }
}
