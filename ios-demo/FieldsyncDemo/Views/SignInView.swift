import SwiftUI

struct SignInView: View {
    @EnvironmentObject var model: AppModel

    var body: some View {
        Form {
            Section("fieldsync") {
                TextField("Server URL", text: $model.serverUrl)
                    .keyboardType(.URL).textInputAutocapitalization(.never).autocorrectionDisabled()
                TextField("Username", text: $model.username)
                    .textInputAutocapitalization(.never).autocorrectionDisabled()
                SecureField("Password", text: $model.password)
            }
            if let e = model.error { Text(e).foregroundStyle(.red) }
            Button {
                model.signIn()
            } label: {
                if model.loading { ProgressView() } else { Text("Sign in") }
            }
            .disabled(model.loading || model.serverUrl.isEmpty || model.username.isEmpty || model.password.isEmpty)
        }
    }
}
