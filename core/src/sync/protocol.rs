//! The wire format of `POST /v1/sync`, protocol version [`PROTOCOL_VERSION`].
//!
//! Bodies are JSON (`Content-Type: application/json`), optionally compressed with
//! `Content-Encoding: zstd` or `gzip` (the server accepts both and answers in whichever
//! the client lists in `Accept-Encoding`). Automerge changes travel as standard base64
//! (with padding) of the change's binary encoding ([`automerge::Change::bytes`]).
//!
//! # Request ([`SyncRequest`])
//!
//! ```json
//! { "protocol": 1,
//!   "device_id": "phone-7",
//!   "cursor": "1842",                 // opaque; null on the first sync
//!   "epoch": "3f6c…",                 // the server epoch last seen; null on the first sync
//!   "reference_version": 4,           // version of the reference data the device holds
//!   "reference_epoch": "91ad…",       // only when that data came from another epoch
//!   "changes": [ { "visit_id": "v-1", "changes": ["hW9Kgw…", "…"] } ],
//!   "heads":   [ { "visit_id": "v-1", "heads": ["9b1c…"] } ],   // only after an epoch change
//!   "accept_documents": true,         // optional feature, see below
//!   "accept_visits": 1 }              // optional feature, see below
//! ```
//!
//! # Response ([`SyncResponse`])
//!
//! ```json
//! { "protocol": 1,
//!   "epoch": "3f6c…",
//!   "acks": ["<change hash hex>", "…"],
//!   "acked_documents": [ { "visit_id": "v-5", "heads": ["…"] } ],   // pushed documents stored whole
//!   "rejections": [ { "visit_id": "v-2", "hashes": ["…"], "reason": "not allowed: rep may not write plan/rep" } ],
//!   "resend": [ { "visit_id": "v-3", "have": ["<head hex>"] } ],
//!   "changes": [ { "visit_id": "v-1", "changes": ["…"] } ],
//!   "documents": [ { "visit_id": "v-4", "doc": "hW9Kg…", "heads": ["77e0…"],
//!                    "visit": "KLUv/…" } ],   // only when accepted; "visit" see below
//!   "cursor": "1901",
//!   "more": false,
//!   "reference_data": null,            // or the whole (scoped) ReferenceData when newer
//!   "reference_since": 1764000000000,  // with reference_data: when it took effect
//!   "earlier_reference": [ { "since": 1763400000000, "data": { … } } ],   // versions the device missed
//!   "purge": ["v-0"] }
//! ```
//!
//! # Guarantees
//!
//! * **Idempotent.** Changes are content-addressed; a change the server already holds is
//!   acknowledged again and stored once. A device may resend anything at any time.
//! * **Acknowledged = durable.** A hash appears in `acks` only after the transaction that
//!   stored it committed. The device removes a change from its outbox only when acked.
//! * **Per-visit verdicts.** Each visit's changes are authorized, applied to a fork,
//!   checked for field ownership and validated with [`crate::rules`] on their own; a
//!   rejected visit (listed in `rejections` with a readable reason) never blocks another.
//! * **Nothing skipped.** `changes` holds every change in the device's scope after
//!   `cursor` that another device made; the response's `cursor` only covers what was
//!   sent. When a page was cut, `more` is true and the device asks again at once. A
//!   visit that enters the device's scope (new, reassigned, moved into the window) is
//!   sent whole; one that leaves it is listed in `purge`.
//! * **Answers count once they arrive.** What an answer changes in the server's record of
//!   the visits a device holds (visits sent whole, purges) takes effect only when the
//!   device's next request carries that answer's cursor: a lost, duplicated or late answer
//!   never makes the server believe a visit was sent or purged.
//! * **Whole documents (optional feature).** A device that sends `"accept_documents":
//!   true` may receive a visit as its whole Automerge document (`documents`: base64 of the
//!   saved document, one entry instead of one entry per change) wherever
//!   the server would otherwise send every change of the visit: a visit entering the
//!   device's scope, or a log entry that covers a visit's whole history. The device loads
//!   it like a batch of changes (`load_incremental` accepts both; already-held changes are
//!   ignored, so it is idempotent) and checks it then holds every hash in `heads` and
//!   lacks no dependency. Acknowledgements and cursors mean the same. Requests without the
//!   field (older clients) get changes only, and older servers ignore the field.
//! * **Visits sent with documents (optional feature).** A device that sends
//!   `"accept_visits": F`, where `F` is its [`crate::document::VISIT_FORMAT`], gets with
//!   each whole document the server stored in format `F` the visit the server read from
//!   it (`visit`: base64 of [`crate::document::pack_visit`]). The server reads every
//!   document it stores (to check it), and keeps what it read beside it. A device that
//!   does not hold the visit may then store the document without parsing it, which is
//!   most of the cost of taking a visit: it checks the document's checksum and that the
//!   heads the document records are the declared `heads`, and takes the visit for its
//!   screens; Automerge checks the rest when the visit is first opened. A read that does
//!   not fit the document (or does not unpack) is not used: the device then parses and
//!   reads the document as without it. A device that
//!   holds the visit merges the document as before and ignores `visit`. Documents stored
//!   before the server kept visits, or in another format, come without one.
//! * **Whole documents, device → server (optional feature).** A server that takes them
//!   says `"takes_documents": true` in every response. A device that has seen it may push
//!   a visit as its saved document in the request's `documents` (same shape: `visit_id`,
//!   `doc`, `heads`) instead of its unacknowledged changes in `changes`: the document
//!   holds them, and its other changes are ones the server sent or acknowledged (the
//!   client does so for a visit made, or planned and then filled in, on the device). The
//!   server loads one document instead of parsing and applying each change. The verdict
//!   is the one the device's own changes in it would get as changes: every rule is
//!   checked change by change; a change by another device the server lacks (lost in a
//!   restore) is left for that device to resend, as are the changes waiting on it. The
//!   acknowledgements cover every change of the document the server holds after it, and
//!   a rejection all of them. When the server holds all of them, it acknowledges the
//!   document once, in `acked_documents`, with the heads it was pushed with (37 hashes
//!   of a typical visit would be 2.4 KB of answer): the device removes every change it
//!   pushed in that document from its outbox. Otherwise they are listed in `acks`. The
//!   server refuses a document whose `heads` are not its heads.
//! * **Restores.** The server epoch changes whenever the server's database is restored
//!   from a backup. A device that sees an epoch other than the one it stored sends the
//!   `heads` of every visit it holds; the server answers with the changes the device
//!   lacks and, in `resend`, the heads it has for visits where the device holds changes
//!   the server lost. The device then sends its own changes since those heads. The device
//!   adopts the new epoch only once the server asks for nothing more, so nothing
//!   acknowledged before the restore is lost.
//!
//! Errors are HTTP statuses with a JSON body [`ErrorBody`] `{"error": "code", "message": "…"}`:
//! 400 malformed JSON or wrong protocol version, 401 missing/unknown/revoked token,
//! 403 outside the user's scope, 413 body too large, 429 too many failed logins.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::model::{ReferenceData, Role};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Encodes change bytes for the wire.
pub fn encode_change(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Lowercase hex of `bytes`, as the protocol writes change hashes and actors: the same
/// text as `ChangeHash`'s and `ActorId`'s own `to_string`, which build it a `char` at a
/// time (about 4,500 instructions per hash). The server's ingest writes 74 per visit;
/// writing them with this took 2.4 % off its instructions (docs/BENCHMARKS.md).
pub fn hex_of(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    hex::encode_to_slice(bytes, &mut out).expect("the output is twice the input");
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// A change hash as the protocol writes it ([`hex_of`]).
pub fn hash_hex(hash: &automerge::ChangeHash) -> String {
    hex_of(&hash.0)
}

/// Decodes a change from the wire; the error names what is wrong.
pub fn decode_change(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|e| format!("invalid base64: {e}"))
}

/// The changes of one visit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VisitChanges {
    pub visit_id: String,
    /// Base64 of each Automerge change's bytes.
    pub changes: Vec<String>,
}

/// A whole visit document (the `documents` feature, see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VisitDocument {
    pub visit_id: String,
    /// Base64 of the document: its saved bytes in a form [`automerge::Automerge::load`]
    /// accepts, or those bytes in one Zstandard frame (as
    /// [`crate::document::pack_document`] packs them; the server sends documents as it
    /// stores them). The device unpacks at most 16 MiB.
    pub doc: String,
    /// The document's heads (hex change hashes): after loading it the device must hold
    /// every one of them, or it did not get every change.
    pub heads: Vec<String>,
    /// Server → device only (the server ignores it in a request), when the request's
    /// `accept_visits` named the server's
    /// [`crate::document::VISIT_FORMAT`]: base64 of the visit as the server read it from
    /// this document ([`crate::document::pack_visit`]: JSON of
    /// [`crate::visit::Visit`] in one Zstandard frame). Absent for documents the server
    /// stored before it kept their visits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visit: Option<String>,
}

impl VisitDocument {
    /// Visit `visit_id`'s whole document `doc`, saved without compression, with its heads.
    pub fn of(visit_id: &str, doc: &automerge::Automerge) -> Self {
        Self {
            visit_id: visit_id.into(),
            doc: encode_change(&doc.save_nocompress()),
            heads: doc.get_heads().iter().map(hash_hex).collect(),
            visit: None,
        }
    }
}

/// The heads (hex change hashes) of one visit document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VisitHeads {
    pub visit_id: String,
    pub heads: Vec<String>,
}

/// Device → server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncRequest {
    /// Must equal [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// Must equal the device id the token was issued to.
    pub device_id: String,
    /// The cursor of the previous response; `None` asks for everything in scope.
    #[serde(default)]
    pub cursor: Option<String>,
    /// The server epoch the device last saw.
    #[serde(default)]
    pub epoch: Option<String>,
    /// Version of the reference data the device holds (0 for none).
    #[serde(default)]
    pub reference_version: i64,
    /// The server epoch of the answer that brought that reference data, when it is not
    /// `epoch`; absent, it is `epoch`. Versions count anew in a restored database, so a
    /// device whose `epoch` is not the server's (it is reconciling after a restore) gets
    /// the reference data again unless this names the server's current epoch: the data
    /// came in an earlier answer of the reconciliation, and its later rounds need not
    /// carry it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_epoch: Option<String>,
    /// Unacknowledged local changes, grouped by visit.
    #[serde(default)]
    pub changes: Vec<VisitChanges>,
    /// Heads of every visit held; sent when the epoch differs from the one last seen.
    #[serde(default)]
    pub heads: Option<Vec<VisitHeads>>,
    /// The device can load whole documents (`documents` in the response).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_documents: bool,
    /// The device takes a visit new to it with the visit the server read from its
    /// document (`visit` in `documents`) when they are in this format, its
    /// [`crate::document::VISIT_FORMAT`] (see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_visits: Option<u32>,
    /// Visits pushed as their whole document instead of as changes (see the module docs).
    /// Only to a server that answered `takes_documents`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub documents: Vec<VisitDocument>,
}

/// Why the changes of one visit were refused.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rejection {
    pub visit_id: String,
    /// Hashes of the refused changes (those that could be parsed).
    pub hashes: Vec<String>,
    /// A readable reason, e.g. `not allowed: a rep may not write plan/rep`.
    pub reason: String,
}

/// The server lacks changes of a visit: the device must send its changes since `have`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resend {
    pub visit_id: String,
    /// The server's heads for the visit (empty when it has nothing).
    pub have: Vec<String>,
}

/// Server → device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncResponse {
    pub protocol: u32,
    /// The server's epoch (changes when the server is restored from a backup).
    pub epoch: String,
    /// Hashes stored by the server (now or before): remove them from the outbox.
    pub acks: Vec<String>,
    /// Documents pushed in the request (`documents`) whose every change the server now
    /// holds, with the heads they were pushed with: remove every change pushed in them
    /// from the outbox (their hashes are not repeated in `acks`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acked_documents: Vec<VisitHeads>,
    pub rejections: Vec<Rejection>,
    pub resend: Vec<Resend>,
    /// Changes in scope the device may lack, grouped by visit.
    pub changes: Vec<VisitChanges>,
    /// Whole documents of visits in scope (only when the request accepted them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub documents: Vec<VisitDocument>,
    /// Opaque; send it back in the next request.
    pub cursor: String,
    /// True when a page was cut: sync again at once.
    pub more: bool,
    /// The device's reference data (filtered to its scope), when it changed.
    #[serde(default)]
    pub reference_data: Option<ReferenceData>,
    /// With `reference_data`: when it took effect on the server (its import, ms since the
    /// epoch). The device judges visits worked before that with the data it held then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_since: Option<i64>,
    /// With `reference_data`: the versions in effect between the one the device holds and
    /// it, within the device's window, oldest first (a fresh device holds none, so it gets
    /// every version its window's visits were worked with). The device judges visits
    /// worked in their time with them, as the dashboard does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_reference: Vec<ReferenceVersion>,
    /// Visits that left the device's scope; remove them once their outbox is empty.
    #[serde(default)]
    pub purge: Vec<String>,
    /// The server takes whole documents in the request's `documents`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub takes_documents: bool,
}

/// A version of the reference data and when it took effect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReferenceVersion {
    /// When it took effect (its import on the server, ms since the epoch); it stayed in
    /// effect until the next version's `since`.
    pub since: i64,
    pub data: ReferenceData,
}

/// `POST /v1/auth/login` body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    pub device_id: String,
}

/// The signed-in user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginUser {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub territories: Vec<String>,
}

/// `POST /v1/auth/login` answer: a device token to send as `Authorization: Bearer …`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginResponse {
    pub token: String,
    /// Id of the token, for `admin revoke --token-id`.
    pub token_id: String,
    pub user: LoginUser,
}

/// The body of every error answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// A stable machine-readable code (`bad_request`, `unauthorized`, `forbidden`, …).
    pub error: String,
    /// A readable explanation.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_actors_are_written_as_automerge_writes_them() {
        for seed in [0u8, 7, 0xa5, 0xff] {
            let bytes: [u8; 32] = std::array::from_fn(|i| seed.wrapping_mul(i as u8 + 1) ^ i as u8);
            let hash = automerge::ChangeHash(bytes);
            assert_eq!(hash_hex(&hash), hash.to_string());
            let actor = automerge::ActorId::from(&bytes[..16]);
            assert_eq!(hex_of(actor.to_bytes()), actor.to_hex_string());
        }
        assert_eq!(hex_of(&[]), "");
    }

    #[test]
    fn request_round_trips_and_defaults() {
        let r: SyncRequest = serde_json::from_str(r#"{"protocol":1,"device_id":"d"}"#).unwrap();
        assert_eq!(r.cursor, None);
        assert!(r.changes.is_empty() && r.heads.is_none() && !r.accept_documents);
        // The feature flag and the documents are left out when unused (old peers).
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("accept_documents"), "{json}");
        let resp: SyncResponse = serde_json::from_str(
            r#"{"protocol":1,"epoch":"e","acks":[],"rejections":[],"resend":[],"changes":[],"cursor":"1","more":false}"#,
        )
        .unwrap();
        assert!(resp.documents.is_empty() && !resp.takes_documents);
        let json = serde_json::to_string(&resp).unwrap();
        assert!(!json.contains("documents"), "{json}");
        assert!(r.documents.is_empty());
        assert!(!serde_json::to_string(&r).unwrap().contains("documents"));
        let bytes = vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3];
        assert_eq!(decode_change(&encode_change(&bytes)).unwrap(), bytes);
        assert!(
            decode_change("not base64!")
                .unwrap_err()
                .contains("invalid base64")
        );
    }
}
