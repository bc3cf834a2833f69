import SwiftUI

/// Pending changes, last sync, errors and quarantined visits — fed by the library's observer.
struct SyncStatusBar: View {
    let repo: FieldRepository
    @ObservedObject var status: SyncStatusModel
    let onSignOut: () -> Void
    @State private var expanded = false

    var body: some View {
        let s = status.value
        let alarming = s.phase == .failed || !s.quarantined.isEmpty || s.needsSignIn
        VStack(alignment: .leading, spacing: 4) {
            HStack {
                if alarming { Image(systemName: "exclamationmark.triangle.fill") }
                VStack(alignment: .leading) {
                    Text(repo.session.username).font(.caption.bold())
                    Text(s.headline(time)).font(.caption)
                }
                .onTapGesture { expanded.toggle() }
                Spacer()
                if s.syncing {
                    ProgressView()
                } else {
                    Button { Task { await repo.sync() } } label: { Image(systemName: "arrow.triangle.2.circlepath") }
                        .accessibilityLabel("Sync now")
                }
                Button(action: onSignOut) { Image(systemName: "rectangle.portrait.and.arrow.right") }
                    .accessibilityLabel("Sign out")
            }
            if s.syncing && s.progressTotal > 0 {
                ProgressView(value: Double(s.progressDone), total: Double(s.progressTotal))
            }
            if s.needsSignIn { Text("The server refused this device's token: sign out and sign in again.").font(.caption) }
            if expanded {
                if let e = s.lastError { Text("Last error: \(e)").font(.caption) }
                if let r = s.retryReason { Text("Retrying: \(r)").font(.caption) }
                ForEach(s.quarantined) { q in
                    Text("Visit \(q.visitId) kept on this phone, refused by the server: \(q.reason)").font(.caption)
                }
            }
        }
        .padding(.horizontal, 12).padding(.vertical, 6)
        .background(alarming ? Color.red.opacity(0.15) : Color.accentColor.opacity(0.12))
    }
}
