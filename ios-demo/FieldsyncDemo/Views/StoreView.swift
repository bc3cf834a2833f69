import SwiftUI

struct StoreView: View {
    @StateObject private var model: StoreModel

    init(repo: FieldRepository, storeId: String) {
        _model = StateObject(wrappedValue: StoreModel(repo: repo, storeId: storeId))
    }

    var body: some View {
        List {
            if let s = model.store {
                Section {
                    Text(s.address)
                    Text("Geofence \(Int(s.geofenceRadiusM)) m · priority \(s.priority)")
                }
            }
            if let e = model.error { Text(e).foregroundStyle(.red) }
            Section("Last findings") {
                if let at = model.lastVisitAt {
                    Text("From the visit of \(dayTime(at))")
                    findings("Out of stock", model.outOfStock)
                    findings("Planogram positions not compliant", model.planogramIssues)
                    findings("Promotions not compliant", model.promotionIssues)
                } else {
                    Text("No visit recorded findings here yet.")
                }
            }
        }
        .navigationTitle(model.store?.name ?? "Store")
    }

    @ViewBuilder
    private func findings(_ title: String, _ items: [String]) -> some View {
        Text("\(title) (\(items.count))").font(.subheadline.bold())
        ForEach(items, id: \.self) { Text("• \($0)").font(.caption) }
    }
}
