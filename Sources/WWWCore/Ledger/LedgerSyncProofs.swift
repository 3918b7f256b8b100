/// Equivocation proofs travel with every ledger sync message.
///
/// A Scuttlebutt digest `{author: highest contiguous authorSeq}` cannot show that an author
/// equivocated: two ledgers that hold the same chain, one of them also holding the second,
/// conflicting event, have equal digests and exchange nothing. So every sync (request and
/// answer) also carries both events of up to `maxProofs` proofs the sender holds; the
/// receiver feeds them to `Ledger.receive`, which detects the equivocation itself.
public enum LedgerSyncProofs {
    /// Proofs per message (2 events each).
    public static let maxProofs = 8

    /// The events to attach: both events of each proof, oldest authors first (bounded).
    public static func carried(by ledger: Ledger) -> [LedgerEvent] {
        ledger.equivocationProofs.prefix(maxProofs).flatMap { [$0.first, $0.second] }
    }
}
