import FieldsyncFFI
import SwiftUI

struct RouteView: View {
    @StateObject private var model: RouteModel

    init(repo: FieldRepository) {
        _model = StateObject(wrappedValue: RouteModel(repo: repo))
    }

    var body: some View {
        List {
            if let e = model.error { Text(e).foregroundStyle(.red) }
            if !model.loading && model.entries.isEmpty && model.error == nil {
                Text("No visits planned today. Sync to fetch your manager's plan.")
            }
            ForEach(model.entries, id: \.visitId) { e in
                NavigationLink(value: Destination.visit(e.visitId)) {
                    VStack(alignment: .leading, spacing: 2) {
                        Text(e.storeName).font(.headline)
                        Text("\(time(e.plannedStart))–\(time(e.plannedEnd)) · priority \(e.priority)\(e.adHoc ? " · ad hoc" : "")\(e.storeClosed ? " · store closed" : "")")
                            .font(.subheadline)
                        Text(e.status.label).font(.caption).foregroundStyle(.secondary)
                    }
                }
                .swipeActions {
                    NavigationLink(value: Destination.store(e.storeId)) { Label("Store", systemImage: "building.2") }
                }
            }
        }
        .overlay { if model.loading && model.entries.isEmpty { ProgressView() } }
        .refreshable { model.refresh() }
        .navigationTitle("Today · \(model.done)/\(model.entries.count)")
    }
}
