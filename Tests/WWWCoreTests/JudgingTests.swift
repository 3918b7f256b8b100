import Testing
@testable import WWWCore
import Foundation

@Suite("Judging: verdict parsing, both orders, reference judge")
struct JudgingTests {
    @Test("one verdict token decides; none, several or junk is a tie", arguments: [
        ("Assistant A is more detailed. [[A]]", PairwisePreference.a),
        ("Final verdict: [[B]]", .b),
        ("[[ b ]]", .b),
        ("It is a tie. [[C]]", .tie),
        ("[[A]] ... on reflection [[A]]", .a),
        ("\"[[A]]\" if assistant A is better, \"[[B]]\" if assistant B is better", .tie),
        ("A", .tie),
        ("", .tie),
        ("[[D]] [[", .tie),
        ("[[A]", .tie),
    ])
    func parse(reply: String, expected: PairwisePreference) {
        #expect(LLMJudgePrompt.parse(reply) == expected)
    }

    @Test("orders that disagree are a tie")
    func combine() {
        #expect(BothOrders.combine(original: .a, swapped: .b) == .first)
        #expect(BothOrders.combine(original: .b, swapped: .a) == .second)
        #expect(BothOrders.combine(original: .tie, swapped: .tie) == .tie)
        // A judge that always says "A" (position bias, e.g. SmolLM2-135M) yields ties only.
        #expect(BothOrders.combine(original: .a, swapped: .a) == .tie)
        #expect(BothOrders.combine(original: .b, swapped: .b) == .tie)
        #expect(BothOrders.combine(original: .a, swapped: .tie) == .tie)
        #expect(BothOrders.isConsistent(original: .tie, swapped: .tie))
        #expect(!BothOrders.isConsistent(original: .a, swapped: .a))
    }

    @Test("the prompt shows both answers, bounded, and the reference when there is one")
    func prompt() {
        let p = LLMJudgePrompt(maxAnswerCharacters: 20)
        let m = p.messages(question: "What is 2+2?", answerA: "four", answerB: String(repeating: "x", count: 50), reference: "4")
        #expect(m.count == 2 && m[0].role == "system" && m[0].content.contains("[[C]]"))
        #expect(m[1].content.contains("[The Start of Assistant A's Answer]\nfour\n"))
        #expect(m[1].content.contains(String(repeating: "x", count: 20) + "\n[… cut]"))
        #expect(!m[1].content.contains(String(repeating: "x", count: 21)))
        #expect(m[1].content.contains("[Reference Answer]\n4"))
        #expect(!p.messages(question: "q", answerA: "a", answerB: "b").contains { $0.content.contains("[Reference Answer]") })
    }

    @Test("the reference judge prefers the answer stating the reference's result")
    func reference() {
        let ref = "The area of the triangle is 3."
        #expect(ReferenceJudge.compare(first: "Using the shoelace formula, the area is 3.", second: "The area is 6.", reference: ref) == .first)
        #expect(ReferenceJudge.compare(first: "It is 2.", second: "Area = 3 square units", reference: ref) == .second)
        #expect(ReferenceJudge.compare(first: "3", second: "3.0", reference: ref) == .tie)
        #expect(ReferenceJudge.compare(first: "no idea", second: "banana", reference: ref) == .tie)
        #expect(ReferenceJudge.matches("The total is 1,000 dollars", reference: "Answer: 1000"))
        #expect(ReferenceJudge.matches("so x = 3/4", reference: "0.75"))
        #expect(ReferenceJudge.matches("I think the answer is Paris, France.", reference: "Paris"))
        #expect(!ReferenceJudge.matches("London", reference: "Paris"))
        #expect(!ReferenceJudge.matches("anything", reference: "  "))
    }
}

@Suite("Judging: agreement with human labels")
struct JudgeAgreementTests {
    @Test("with and without ties, consistency, tie rate")
    func arithmetic() {
        var a = JudgeAgreement()
        a.record(human: .first, original: .a, swapped: .b)                 // agree, consistent
        a.record(human: .second, original: .a, swapped: .b)                // disagree, consistent
        a.record(human: .first, original: .a, swapped: .a, unparseable: 0)  // position bias → tie
        a.record(human: .tie, original: .tie, swapped: .tie)               // agree on a tie
        a.record(human: .second, original: .b, swapped: .a, failed: 0)     // agree
        a.record(human: .first, original: .tie, swapped: .tie, unparseable: 2)
        #expect(a.pairs == 6 && a.agreeWithTies == 3 && a.decisivePairs == 3 && a.agreeWithoutTies == 2)
        #expect(a.agreementWithTies == 0.5 && a.agreementWithoutTies == 2.0 / 3.0)
        #expect(a.parsedPairs == 5 && a.positionConsistency == 4.0 / 5.0 && a.tieRate == 0.5 && a.unparseableRate == 2.0 / 12.0)
        #expect(JudgeAgreement().agreementWithTies == nil)
    }

    @Test("a judge that always answers A agrees with nobody without ties and is never consistent")
    func alwaysA() {
        var a = JudgeAgreement()
        for h in [DuelChoice.first, .second, .first, .second] { a.record(human: h, original: .a, swapped: .a) }
        #expect(a.tieRate == 1 && a.positionConsistency == 0 && a.agreementWithoutTies == nil && a.agreementWithTies == 0)
    }
}

@Suite("Wire forms: signatures and hashes as hex")
struct HexWireTests {
    @Test("Signed encodes its signature as hex and still reads the old array form")
    func signedHex() throws {
        let auth = NodeFx.auth(requester: 1, executor: 2, seq: 1, expiresAt: NodeFx.t0)
        let data = try JSONEncoder().encode(auth)
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("\"signature\":\"\(Hex.encode(auth.signature))\""))
        #expect(try JSONDecoder().decode(Signed<PaymentAuthorization>.self, from: data) == auth)
        let old = text.replacingOccurrences(of: "\"\(Hex.encode(auth.signature))\"",
                                            with: "[" + auth.signature.map(String.init).joined(separator: ",") + "]")
        #expect(try JSONDecoder().decode(Signed<PaymentAuthorization>.self, from: Data(old.utf8)) == auth)
        let bad = text.replacingOccurrences(of: Hex.encode(auth.signature), with: "zz")
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(Signed<PaymentAuthorization>.self, from: Data(bad.utf8)) }
    }

    @Test("a judge request's pair round-trips with hex hashes")
    func pairSpec() throws {
        let h = NodeFx.crypto.sha256(Array("x".utf8))
        let spec = DuelPairSpec(job: NodeFx.job(1, 1), requester: NodeFx.id(1), first: NodeFx.id(2), second: NodeFx.id(3),
                                firstResponseHash: h, secondResponseHash: h, pairHash: h, judges: [NodeFx.id(4)])
        let data = try JSONEncoder().encode(spec)
        #expect(String(decoding: data, as: UTF8.self).contains(Hex.encode(h)))
        #expect(try JSONDecoder().decode(DuelPairSpec.self, from: data) == spec)
    }
}
