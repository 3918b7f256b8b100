import Foundation
import Testing
import WWWCore
@testable import WWWCrypto

func tempDir() -> String {
    let dir = NSTemporaryDirectory() + "wwwcrypto-\(UUID().uuidString)"
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

func mode(_ path: String) throws -> Int {
    (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as! NSNumber).intValue
}

@Suite struct NodeKeyFileTests {
    @Test func createsKeyWithMode0600AndReloadsSameIdentity() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/nested/keys/node.key"
        let created = try NodeKey.loadOrCreate(path: path)
        #expect(try mode(path) == 0o600)
        #expect(try mode(dir + "/nested/keys") == 0o700)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text == Hex.encode(created.rawRepresentation) + "\n")
        let again = try NodeKey.loadOrCreate(path: path)
        #expect(again.nodeID == created.nodeID)
        #expect(try NodeKey.load(path: path)?.nodeID == created.nodeID)
        // No temporary files left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/nested/keys") == ["node.key"])
    }

    @Test func loadsAHandWrittenKey() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/node.key"
        #expect(FileManager.default.createFile(atPath: path, contents: Data(("  " + Hex.encode(Array(1...32)) + "\n\n").utf8),
                                       attributes: [.posixPermissions: 0o400]))
        #expect(try NodeKey.loadOrCreate(path: path).nodeID == fixedKey.nodeID)
    }

    @Test func refusesGroupOrWorldReadableKey() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/node.key"
        _ = try NodeKey.loadOrCreate(path: path)
        for bad in [0o644, 0o640, 0o604, 0o660] {
            try FileManager.default.setAttributes([.posixPermissions: bad], ofItemAtPath: path)
            #expect(throws: NodeKeyError.insecurePermissions(path: path, mode: UInt32(bad))) {
                try NodeKey.loadOrCreate(path: path)
            }
        }
        #expect(NodeKeyError.insecurePermissions(path: path, mode: 0o644).description.contains("chmod 600 \(path)"))
    }

    @Test func corruptKeyFileIsAnErrorNotANewIdentity() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/node.key"
        for content in ["", "not hex at all", String(repeating: "ab", count: 31), String(repeating: "zz", count: 32),
                        String(repeating: "ab", count: 33)] {
            try? FileManager.default.removeItem(atPath: path)
            #expect(FileManager.default.createFile(atPath: path, contents: Data(content.utf8), attributes: [.posixPermissions: 0o600]))
            #expect {
                try NodeKey.loadOrCreate(path: path)
            } throws: { error in
                guard case NodeKeyError.corrupt(let p, _) = error else { return false }
                return p == path
            }
            // The corrupt file is left untouched for the operator.
            #expect(try String(contentsOfFile: path, encoding: .utf8) == content)
        }
    }

    @Test func inMemoryKeyMustBe32Bytes() {
        #expect(throws: NodeKeyError.self) { try NodeKey(rawRepresentation: [1, 2, 3]) }
    }
}
