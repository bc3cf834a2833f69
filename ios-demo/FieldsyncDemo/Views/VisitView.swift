import FieldsyncFFI
import SwiftUI

struct VisitView: View {
    @StateObject private var model: VisitModel
    @State private var section = 0

    init(repo: FieldRepository, visitId: String, location: LocationProvider) {
        _model = StateObject(wrappedValue: VisitModel(repo: repo, visitId: visitId, location: location))
    }

    private let sections = ["Inventory", "Planogram", "Promotions", "Survey", "Order", "Notes"]

    var body: some View {
        List {
            header
            if let v = model.visit, v.status == .inProgress || v.status == .completed, let list = model.checklist {
                Picker("Section", selection: $section) {
                    ForEach(sections.indices, id: \.self) { Text(sections[$0]).tag($0) }
                }
                .pickerStyle(.segmented)
                switch section {
                case 0: inventory(list)
                case 1: planogram(list)
                case 2: promotions(list)
                case 3: survey(list)
                case 4: order(list)
                default: notes
                }
                if v.status == .inProgress { completeSection }
            }
        }
        .navigationTitle(model.detail?.storeName ?? "Visit")
        .onDisappear { if model.notesDirty { model.saveNotes() } }
    }

    @ViewBuilder private var header: some View {
        Section {
            if let v = model.visit {
                Text(v.status.label).font(.subheadline)
                if !v.plan.instructions.isEmpty { Text("Manager: \(v.plan.instructions)") }
                if let tasks = model.detail?.tasks {
                    Text(tasks.map { "\(taskNames[$0.kind] ?? "") \($0.done)/\($0.total)\($0.required && !$0.complete ? "*" : "")" }.joined(separator: " · "))
                        .font(.caption)
                }
                if model.detail?.storeClosed == true {
                    Label("Head office closed this store: it takes no new visits, and a visit already planned here can still be finished.", systemImage: "xmark.octagon").foregroundStyle(.orange)
                }
                if let w = model.geofenceWarning {
                    Label(w, systemImage: "location.slash").foregroundStyle(.orange)
                }
                if (model.detail?.conflicts.count ?? 0) > 0 {
                    Text("Some fields were changed on two devices at once; the latest value is shown.").font(.caption)
                }
                if v.status == .planned {
                    Button("Check in") { model.checkIn() }.disabled(model.busy)
                }
            } else {
                ProgressView()
            }
            if let e = model.error {
                HStack {
                    Text(e).foregroundStyle(.red)
                    Spacer()
                    Button("OK") { model.error = nil }
                }
            }
        }
    }

    private func stepper(_ value: Int64?, _ step: @escaping (Int64) -> Void) -> some View {
        HStack {
            Button { step(-1) } label: { Image(systemName: "minus.circle") }.buttonStyle(.borderless)
            Text(value.map(String.init) ?? "–").frame(minWidth: 28).monospacedDigit()
            Button { step(+1) } label: { Image(systemName: "plus.circle") }.buttonStyle(.borderless)
        }
        .disabled(!model.editable)
    }

    @ViewBuilder private func inventory(_ list: VisitChecklist) -> some View {
        ForEach(list.productIds, id: \.self) { p in
            let line = model.line(p)
            VStack(alignment: .leading) {
                Text(model.catalog.product(p)).font(.subheadline.bold())
                HStack {
                    Text("Shelf")
                    stepper(line?.shelfQty) { model.stepShelf(p, $0) }
                    Spacer()
                    Toggle("Out of stock", isOn: Binding(get: { line?.outOfStock == true }, set: { model.setOutOfStock(p, $0) }))
                        .labelsHidden()
                    Text("OOS").font(.caption)
                }
            }
        }
    }

    @ViewBuilder private func planogram(_ list: VisitChecklist) -> some View {
        ForEach(list.positions, id: \.positionId) { pos in
            let r = model.visit?.planogram.first { $0.positionId == pos.positionId }
            let present = r?.present ?? false
            let correct = r?.correctPosition ?? false
            let facings = r?.actualFacings ?? Int64(pos.expectedFacings)
            VStack(alignment: .leading) {
                Text(model.catalog.position(pos.positionId)).font(.subheadline.bold())
                HStack {
                    Toggle("Present", isOn: Binding(get: { present }, set: { model.recordPosition(pos.positionId, present: $0, facings: facings, correct: correct) }))
                    Toggle("Right place", isOn: Binding(get: { correct }, set: { model.recordPosition(pos.positionId, present: present, facings: facings, correct: $0) }))
                }
                .disabled(!model.editable)
                HStack {
                    Text("Facings (plan \(pos.expectedFacings))")
                    Spacer()
                    stepper(r?.actualFacings) { model.recordPosition(pos.positionId, present: present, facings: max(0, facings + $0), correct: correct) }
                }
            }
        }
    }

    @ViewBuilder private func promotions(_ list: VisitChecklist) -> some View {
        if list.promotions.isEmpty { Text("No promotion runs in this store today.") }
        ForEach(list.promotions, id: \.promotionId) { p in
            let r = model.visit?.promotions.first { $0.promotionId == p.promotionId }
            let d = r?.displayInPlace ?? false, pr = r?.promoPriceCorrect ?? false, m = r?.materialsPresent ?? false
            VStack(alignment: .leading) {
                Text(p.name).font(.subheadline.bold())
                Toggle("Display in place", isOn: Binding(get: { d }, set: { model.recordPromotion(p.promotionId, display: $0, price: pr, materials: m) }))
                Toggle("Promo price correct", isOn: Binding(get: { pr }, set: { model.recordPromotion(p.promotionId, display: d, price: $0, materials: m) }))
                Toggle("Materials present", isOn: Binding(get: { m }, set: { model.recordPromotion(p.promotionId, display: d, price: pr, materials: $0) }))
            }
            .disabled(!model.editable)
        }
    }

    @ViewBuilder private func survey(_ list: VisitChecklist) -> some View {
        if list.questions.isEmpty { Text("This visit has no survey.") }
        ForEach(list.questions, id: \.questionId) { q in
            let answer = model.visit?.survey.first { $0.questionId == q.questionId }?.value
            VStack(alignment: .leading) {
                Text(q.text + (q.required ? " *" : "")).font(.subheadline.bold())
                switch q.answerType {
                case .boolean:
                    Picker("", selection: Binding(
                        get: { if case .bool(let v) = answer { return v ? 1 : 0 } else { return -1 } },
                        set: { model.answer(q.questionId, .bool(value: $0 == 1)) })) {
                        Text("Yes").tag(1)
                        Text("No").tag(0)
                    }
                    .pickerStyle(.segmented)
                case .number:
                    AnswerField(initial: { if case .number(let v) = answer { return String(v) } else { return "" } }(), keyboard: .decimalPad) { text in
                        if let n = Double(text.replacingOccurrences(of: ",", with: ".")) { model.answer(q.questionId, .number(value: n)) }
                    }
                case .text:
                    AnswerField(initial: { if case .text(let v) = answer { return v } else { return "" } }(), keyboard: .default) { text in
                        if !text.isEmpty { model.answer(q.questionId, .text(value: text)) }
                    }
                }
            }
            .disabled(!model.editable)
        }
    }

    @ViewBuilder private func order(_ list: VisitChecklist) -> some View {
        let submitted = model.visit?.orderSubmitted ?? false
        let lines = model.visit?.orders.filter { $0.quantity > 0 } ?? []
        HStack {
            Text(submitted ? "Order submitted · \(lines.count) lines" : "\(lines.count) lines")
            Spacer()
            Button(lines.isEmpty ? "No order today" : "Submit order") { model.submitOrder() }
                .disabled(!model.editable || submitted)
        }
        ForEach(list.productIds, id: \.self) { p in
            HStack {
                Text(model.catalog.product(p))
                Spacer()
                stepper(model.orderQuantity(p)) { model.stepOrder(p, $0) }.disabled(submitted)
            }
        }
    }

    @ViewBuilder private var notes: some View {
        TextEditor(text: Binding(get: { model.notes }, set: { model.notes = $0; model.notesDirty = true }))
            .frame(minHeight: 120)
            .disabled(!model.editable)
        if model.notesDirty { Button("Save notes") { model.saveNotes() } }
    }

    @ViewBuilder private var completeSection: some View {
        Section {
            ForEach(model.missing, id: \.self) { Text("• \($0)").foregroundStyle(.red) }
            Button("Complete visit") { model.complete() }.disabled(model.busy)
        }
    }
}

/// A text field that stores its answer when editing ends.
private struct AnswerField: View {
    @State var text: String
    let keyboard: UIKeyboardType
    let commit: (String) -> Void

    init(initial: String, keyboard: UIKeyboardType, commit: @escaping (String) -> Void) {
        _text = State(initialValue: initial)
        self.keyboard = keyboard
        self.commit = commit
    }

    var body: some View {
        TextField("Answer", text: $text)
            .keyboardType(keyboard)
            .onSubmit { commit(text) }
    }
}
