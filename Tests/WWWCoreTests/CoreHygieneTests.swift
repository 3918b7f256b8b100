import Foundation
import Testing

/// DESIGN.md §2: the core is sans-I/O. This test fails if any source file of WWWCore
/// (comments and string literals aside) imports a module, reads a clock, draws unseeded
/// randomness, sleeps, or uses tasks or actors.
@Suite struct CoreHygieneTests {
    static let forbidden: [(pattern: String, why: String)] = [
        (#"\bimport\s+\w+"#, "an import"),
        (#"\b(Date|ContinuousClock|SuspendingClock|DispatchTime|DispatchQueue)\b"#, "a clock or a queue"),
        (#"\b(clock_gettime|gettimeofday|time\s*\()"#, "a clock read"),
        (#"\b(random|SystemRandomNumberGenerator|arc4random\w*)\b"#, "unseeded randomness"),
        (#"\b(sleep|usleep|nanosleep)\b"#, "a sleep"),
        (#"\bTask\b"#, "a task"),
        (#"\b(actor|async|await)\b"#, "concurrency"),
    ]

    /// Removes `//` and `/* */` comments and string literals (multi-line ones first).
    static func code(_ text: String) -> String {
        var s = text
        for p in [#""""[\s\S]*?""""#, #"/\*[\s\S]*?\*/"#, #"//[^\n]*"#, #""(\\.|[^"\\\n])*""#] {
            s = s.replacingOccurrences(of: p, with: " ", options: .regularExpression)
        }
        return s
    }

    static var coreSources: [URL] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dir = root.appendingPathComponent("Sources/WWWCore")
        let files = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: nil)?.compactMap { $0 as? URL } ?? []
        return files.filter { $0.pathExtension == "swift" }.sorted { $0.path < $1.path }
    }

    @Test func theCoreImportsNothingAndNeverTouchesClocksRandomnessOrTasks() throws {
        let files = Self.coreSources
        #expect(files.count > 20, "the core's sources were not found")
        var findings: [String] = []
        for f in files {
            let code = Self.code(try String(contentsOf: f, encoding: .utf8))
            for (pattern, why) in Self.forbidden {
                if let r = code.range(of: pattern, options: .regularExpression) {
                    findings.append("\(f.lastPathComponent): \(why): '\(code[r])'")
                }
            }
        }
        #expect(findings.isEmpty, "\(findings)")
    }

    @Test func theCheckerCatchesWhatItLooksFor() {
        let bad = "import Foundation\nlet t = Date()\nclock_gettime(CLOCK_REALTIME, &ts)\nlet r = Int.random(in: 0...1)\nsleep(1)\nTask { await x() }\n"
        let code = Self.code(bad)
        for (pattern, why) in Self.forbidden { #expect(code.range(of: pattern, options: .regularExpression) != nil, "\(why)") }
        #expect(Self.code("// import Foundation\n/* Task */ let s = \"sleep\"").range(of: #"\b(import|Task|sleep)\b"#, options: .regularExpression) == nil)
    }
}
