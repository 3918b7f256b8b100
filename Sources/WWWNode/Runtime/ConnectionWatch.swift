import Foundation
import Hummingbird
import NIOCore

/// The request context of the node's router: Hummingbird's basic context plus the
/// connection's channel, so a request can be told when its client goes away.
public struct NodeRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// Notices at once that a client closed its connection — half-closed its input (Hummingbird
/// allows half-closure, so a plain `close()` by the client shows up as input closed) or the
/// connection dropped — and tells the request being served on it, so its engine or peer
/// request is cancelled while the client waits (queue, prefill) and between tokens.
///
/// One `DisconnectHandler` sits in each connection's pipeline; the registry maps channels
/// to their watch for the handlers of requests (one request at a time per HTTP/1.1
/// connection). Entries live as long as the connection.
public final class ConnectionWatches: @unchecked Sendable {
    private final class Watch {
        var onGone: (@Sendable () -> Void)?
        var gone = false
    }

    private let lock = NSLock()
    private var watches: [ObjectIdentifier: Watch] = [:]

    public init() {}

    /// A handler for a new connection's pipeline.
    public func handler() -> any RemovableChannelHandler { DisconnectHandler(registry: self) }

    /// Connections watched now.
    var count: Int { lock.withLock { watches.count } }

    /// Calls `onGone` once when the client of `channel` goes away (at once if it already
    /// has). Returns false when the channel is not watched (e.g. in router tests).
    @discardableResult
    func arm(_ channel: any Channel, _ onGone: @escaping @Sendable () -> Void) -> Bool {
        let key = ObjectIdentifier(channel)
        let (known, fireNow): (Bool, Bool) = lock.withLock {
            guard let w = watches[key] else { return (false, false) }
            if w.gone { return (true, true) }
            w.onGone = onGone
            return (true, false)
        }
        if fireNow { onGone() }
        return known
    }

    /// The request on `channel` ended: nothing to tell any more.
    func disarm(_ channel: any Channel) {
        lock.withLock { watches[ObjectIdentifier(channel)]?.onGone = nil }
    }

    fileprivate func added(_ key: ObjectIdentifier) { lock.withLock { watches[key] = Watch() } }

    fileprivate func gone(_ key: ObjectIdentifier) {
        let f: (@Sendable () -> Void)? = lock.withLock {
            guard let w = watches[key] else { return nil }
            w.gone = true
            defer { w.onGone = nil }
            return w.onGone
        }
        f?()
    }

    fileprivate func removed(_ key: ObjectIdentifier) {
        gone(key)
        lock.withLock { watches[key] = nil }
    }
}

/// Forwards everything; reports input closed and inactive to the registry.
final class DisconnectHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    private let registry: ConnectionWatches

    init(registry: ConnectionWatches) { self.registry = registry }

    func handlerAdded(context: ChannelHandlerContext) { registry.added(ObjectIdentifier(context.channel)) }

    func handlerRemoved(context: ChannelHandlerContext) { registry.removed(ObjectIdentifier(context.channel)) }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed { registry.gone(ObjectIdentifier(context.channel)) }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        registry.gone(ObjectIdentifier(context.channel))
        context.fireChannelInactive()
    }
}
