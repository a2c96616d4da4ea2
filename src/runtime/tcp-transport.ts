/**
 * The production {@link Transport}: Raft messages over TCP, optionally with mutual TLS.
 *
 * Wire format. Every frame is a 4-byte big-endian payload length followed by that many payload bytes.
 * Each node dials one connection to each peer it sends to and only sends on it; connections it
 * accepts only deliver. The dialer's first frame is a handshake, the listener's only frame is its
 * answer, and every later frame on the connection is one message encoded by {@link encodeMessage}:
 *
 * ```text
 * dialer → listener   [TCP_HANDSHAKE_MAGIC, PROTOCOL_VERSION, clusterId, fromNodeId, toNodeId]
 * listener → dialer   [TCP_HANDSHAKE_MAGIC, PROTOCOL_VERSION, "accept", listenerNodeId]
 *                  or [TCP_HANDSHAKE_MAGIC, PROTOCOL_VERSION, "refuse", reason]   (then it closes)
 * dialer → listener   encodeMessage(message), one per frame, each with `from` = fromNodeId
 * ```
 *
 * Handshake frames are msgpack arrays of at most {@link MAX_HANDSHAKE_FRAME_BYTES}, so a stranger
 * cannot make a node buffer a large frame before it has said who it is.
 *
 * Failure model. Raft tolerates loss, so the transport drops rather than blocks: a full per-peer
 * queue drops its oldest message, a broken connection loses what the kernel had not delivered, and
 * the link redials with exponential backoff and jitter. Bad input (a malformed, truncated or
 * oversized frame, a refused handshake) closes that one connection, is logged and is counted in
 * {@link TcpTransport.stats}; nothing thrown by a socket callback reaches the event loop.
 *
 * @module
 */
import net from 'node:net';
import tls from 'node:tls';
import { Packr, Unpackr } from 'msgpackr';
import { pino, type Logger } from 'pino';
import { ConfigError, MAX_ENCODED_MESSAGE_BYTES, MAX_MEMBERS, MAX_NODE_ID_LENGTH, PROTOCOL_VERSION, decodeMessage, encodeMessage, invariant, nodeId, type Message, type NodeId } from '../raft/index.js';
import type { MessageHandler, Transport } from './interfaces.js';

/** Bytes of the length prefix in front of every frame. */
export const FRAME_HEADER_BYTES = 4;
/** First field of every handshake frame; it names the framing version, so it changes with it. */
export const TCP_HANDSHAKE_MAGIC = 'raftlease-tcp/1';
/**
 * Largest handshake frame (either direction). Ids are bounded ({@link MAX_NODE_ID_LENGTH},
 * {@link MAX_CLUSTER_ID_LENGTH}), so a real handshake is far smaller; the limit keeps a peer that has
 * not identified itself from making this node buffer a large frame.
 */
export const MAX_HANDSHAKE_FRAME_BYTES = 4096;
/** Longest cluster id in UTF-16 code units. */
export const MAX_CLUSTER_ID_LENGTH = 128;

/** Default of {@link TcpTransportOptions.maxFrameBytes}: the codec's own limit. */
export const DEFAULT_MAX_FRAME_BYTES = MAX_ENCODED_MESSAGE_BYTES;
/** Default of {@link TcpTransportOptions.maxQueuedMessagesPerPeer}. */
export const DEFAULT_MAX_QUEUED_MESSAGES_PER_PEER = 1024;
/** Default of {@link TcpTransportOptions.maxQueuedBytesPerPeer}. */
export const DEFAULT_MAX_QUEUED_BYTES_PER_PEER = 64 * 1024 * 1024;
/** Default of {@link TcpTransportOptions.maxInboundConnections}. */
export const DEFAULT_MAX_INBOUND_CONNECTIONS = 256;
/** Default of {@link TcpTransportOptions.handshakeTimeoutMs}. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5_000;
/** Default of {@link TcpTransportOptions.idleTimeoutMs}. */
export const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
/** Default of {@link TcpTransportOptions.reconnectBaseDelayMs}. */
export const DEFAULT_RECONNECT_BASE_DELAY_MS = 50;
/** Default of {@link TcpTransportOptions.reconnectMaxDelayMs}. */
export const DEFAULT_RECONNECT_MAX_DELAY_MS = 5_000;

/** How long `close()` lets an outbound connection flush what it already wrote before cutting it. */
const CLOSE_GRACE_MS = 1_000;
/** How long a refused dialer may take to read the refusal before the listener cuts the connection. */
const REFUSAL_GRACE_MS = 1_000;
/** TCP keep-alive probes start after this much silence; they find dead peers on quiet links. */
const KEEPALIVE_INITIAL_DELAY_MS = 10_000;
/** Upper bound of every configurable timeout and delay (one day): a bound for typos like `60e6`. */
const MAX_TIMEOUT_MS = 86_400_000;
/** Upper bound of the per-peer message queue bound. */
const MAX_QUEUED_MESSAGES_LIMIT = 1_000_000;
/** Upper bound of the per-peer queued bytes bound. */
const MAX_QUEUED_BYTES_LIMIT = 2 ** 40;
/** Upper bound of the inbound connection bound. */
const MAX_INBOUND_CONNECTIONS_LIMIT = 65_536;

/** Why a listener refused a handshake; sent to the dialer so its operator can see the cause. */
export type HandshakeRefusalReason = 'ProtocolMismatch' | 'ClusterMismatch' | 'UnknownNode' | 'WrongNode';

/** A host and TCP port. */
export interface TcpAddress {
  /** Host name or IP address, e.g. `"10.0.0.2"`. With TLS it must match the peer certificate's subjectAltName. */
  readonly host: string;
  /** TCP port. In `listen`, 0 asks the OS for a free port: read it back from {@link TcpTransport.port}. */
  readonly port: number;
}

/** PEM material for mutual TLS. Every node presents its certificate both as server and as client. */
export interface TcpTlsOptions {
  /** This node's certificate (chain), PEM. Its subjectAltName must cover the address peers dial. */
  readonly cert: string | Buffer;
  /** The private key of `cert`, PEM. */
  readonly key: string | Buffer;
  /** The cluster CA certificate(s), PEM. Only holders of a certificate it signed can connect, in either direction. */
  readonly ca: string | Buffer | readonly (string | Buffer)[];
}

/** Options of {@link TcpTransport.start}. */
export interface TcpTransportOptions {
  /** Names the cluster; a peer presenting another cluster id in its handshake is refused. */
  readonly clusterId: string;
  /** This node's id; every message this transport sends must come `from` it. */
  readonly nodeId: string;
  /** Where to accept connections from peers. */
  readonly listen: TcpAddress;
  /**
   * Every peer by node id. Only these may connect, and only these can be sent to. May include this
   * node itself (so all nodes can share one map); that entry is ignored. Change it later with
   * {@link TcpTransport.setPeer} and {@link TcpTransport.removePeer}.
   */
  readonly peers: Readonly<Record<string, TcpAddress>>;
  /** Mutual TLS. Without it the transport speaks plain TCP: use it only on a trusted network. */
  readonly tls?: TcpTlsOptions;
  /** Largest message frame accepted or sent, in bytes. Default {@link DEFAULT_MAX_FRAME_BYTES} (64 MiB). */
  readonly maxFrameBytes?: number;
  /**
   * Most messages waiting for one peer; past it the oldest is dropped (and counted in
   * `dropsQueueFull`): Raft resends what matters, and fresh messages are worth more than stale ones.
   * Default {@link DEFAULT_MAX_QUEUED_MESSAGES_PER_PEER}.
   */
  readonly maxQueuedMessagesPerPeer?: number;
  /**
   * Most encoded bytes waiting for one peer, enforced like `maxQueuedMessagesPerPeer` (the newest
   * message is always kept). Default {@link DEFAULT_MAX_QUEUED_BYTES_PER_PEER} (64 MiB).
   */
  readonly maxQueuedBytesPerPeer?: number;
  /** Most accepted connections open at once (handshaking or not); the OS-level bound against floods. Default 256. */
  readonly maxInboundConnections?: number;
  /**
   * Time allowed for handshakes: a dialer's connect, TLS handshake and wait for the answer together;
   * on the listener, the TLS handshake and then the dialer's handshake frame, each. Default 5,000 ms.
   */
  readonly handshakeTimeoutMs?: number;
  /**
   * An outbound connection with no traffic for this long is closed (heartbeats keep the links in use
   * busy); it redials on the next message. Accepted connections are closed after twice this, so the
   * dialer, which owns the link, normally closes first and the listener's timer only reaps dialers
   * that vanished. Default 60,000 ms.
   */
  readonly idleTimeoutMs?: number;
  /** First redial delay after a failed or lost connection; doubles per consecutive failure. Default 50 ms. */
  readonly reconnectBaseDelayMs?: number;
  /** Largest redial delay. Default 5,000 ms. */
  readonly reconnectMaxDelayMs?: number;
  /** Where to log. Default: silent. */
  readonly logger?: Logger;
}

/**
 * Counters (monotonic) and gauges (current values) of a {@link TcpTransport}, for metrics. Frames
 * are counted with their 4-byte header in `bytesIn` / `bytesOut`.
 */
export interface TcpTransportStats {
  /** Message frames received on accepted connections and decoded. */
  readonly framesIn: number;
  /** Message frames written to outbound connections. */
  readonly framesOut: number;
  /** Bytes read from inbound connections (including handshakes and rejected input). */
  readonly bytesIn: number;
  /** Bytes of message frames written to outbound connections. */
  readonly bytesOut: number;
  /** Messages handed to the handler. */
  readonly messagesDelivered: number;
  /** Queued messages dropped because their peer's queue was full (the oldest go first). */
  readonly dropsQueueFull: number;
  /** Messages sent to a node that is not a peer. */
  readonly dropsUnknownPeer: number;
  /** Outgoing messages whose encoding exceeds `maxFrameBytes` (or that could not be encoded). */
  readonly dropsOversized: number;
  /** Received messages whose `from` is not the node id the connection's handshake named. */
  readonly dropsWrongSender: number;
  /** Received messages whose `to` is not this node. */
  readonly dropsWrongRecipient: number;
  /** Received messages that arrived before `listen()` set a handler. */
  readonly dropsNoHandler: number;
  /** Messages sent after `close()`, or still queued when it (or `removePeer`) discarded the queue. */
  readonly dropsClosed: number;
  /** Frames that are not a valid handshake or message where one was due; each closed its connection. */
  readonly malformedFrames: number;
  /** Frames whose declared length exceeded the limit; each closed its connection before allocating. */
  readonly oversizedFrames: number;
  /** Connections that ended in the middle of a frame. */
  readonly truncatedFrames: number;
  /** Inbound handshakes this node refused (wrong cluster, unknown node, wrong protocol version). */
  readonly handshakeRefusals: number;
  /** Outbound handshakes a peer refused, or that reached another node than the one dialed. */
  readonly refusedByPeer: number;
  /** Connections, in either direction, whose handshake did not complete within `handshakeTimeoutMs`. */
  readonly handshakeTimeouts: number;
  /** Inbound TLS handshakes that failed (no client certificate, one from another CA, not TLS at all). */
  readonly tlsFailures: number;
  /** Connections closed after `idleTimeoutMs` without traffic. */
  readonly idleTimeouts: number;
  /** Inbound connections the OS-level bound `maxInboundConnections` turned away. */
  readonly connectionsOverCapacity: number;
  /** Errors thrown by the message handler. */
  readonly handlerErrors: number;
  /** Inbound handshakes accepted. */
  readonly connectionsAccepted: number;
  /** Outbound dials started. */
  readonly connectAttempts: number;
  /** Outbound dials that failed before the peer accepted the handshake. */
  readonly connectFailures: number;
  /** Redials after a failed or lost connection. */
  readonly reconnects: number;
  /** Gauge: inbound connections open now, handshaking or not. */
  readonly inboundConnections: number;
  /** Gauge: outbound connections whose handshake was accepted and that are open now. */
  readonly outboundConnections: number;
  /** Gauge: messages waiting in all peer queues. */
  readonly queuedMessages: number;
  /** Gauge: encoded bytes waiting in all peer queues. */
  readonly queuedBytes: number;
}

type Counter = Exclude<keyof TcpTransportStats, 'inboundConnections' | 'outboundConnections' | 'queuedMessages' | 'queuedBytes'>;
type Counters = Record<Counter, number>;

function zeroCounters(): Counters {
  return {
    framesIn: 0,
    framesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    messagesDelivered: 0,
    dropsQueueFull: 0,
    dropsUnknownPeer: 0,
    dropsOversized: 0,
    dropsWrongSender: 0,
    dropsWrongRecipient: 0,
    dropsNoHandler: 0,
    dropsClosed: 0,
    malformedFrames: 0,
    oversizedFrames: 0,
    truncatedFrames: 0,
    handshakeRefusals: 0,
    refusedByPeer: 0,
    handshakeTimeouts: 0,
    tlsFailures: 0,
    idleTimeouts: 0,
    connectionsOverCapacity: 0,
    handlerErrors: 0,
    connectionsAccepted: 0,
    connectAttempts: 0,
    connectFailures: 0,
    reconnects: 0,
  };
}

/** Options after defaults and validation. */
interface Settings {
  readonly clusterId: string;
  readonly nodeId: NodeId;
  readonly listen: TcpAddress;
  readonly peers: ReadonlyMap<NodeId, TcpAddress>;
  /** The PEM material for the server, and a context built from it once for every dial. */
  readonly tls: { readonly options: tls.SecureContextOptions; readonly clientContext: tls.SecureContext } | null;
  readonly maxFrameBytes: number;
  readonly maxQueuedMessagesPerPeer: number;
  readonly maxQueuedBytesPerPeer: number;
  readonly maxInboundConnections: number;
  readonly handshakeTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly reconnectBaseDelayMs: number;
  readonly reconnectMaxDelayMs: number;
  readonly logger: Logger;
}

/**
 * Raft messages between nodes over TCP: one dialed connection per peer for sending, accepted
 * connections for receiving, length-prefixed msgpack frames, a cluster-and-node handshake, optional
 * mutual TLS, bounded per-peer queues and redialing with backoff. See the module documentation for
 * the wire format.
 *
 * @example
 * ```ts
 * const transport = await TcpTransport.start({
 *   clusterId: 'locks-prod',
 *   nodeId: 'n1',
 *   listen: { host: '0.0.0.0', port: 7001 },
 *   peers: { n2: { host: '10.0.0.2', port: 7001 }, n3: { host: '10.0.0.3', port: 7001 } },
 *   tls: { cert: readFileSync('n1.pem'), key: readFileSync('n1.key'), ca: readFileSync('ca.pem') },
 * });
 * const node = await RaftNode.start({ id: 'n1', voters: ['n1', 'n2', 'n3'], transport, storage, clock, stateMachine });
 * ```
 */
export class TcpTransport implements Transport {
  private readonly settings: Settings;
  private readonly logger: Logger;
  private readonly counters: Counters = zeroCounters();
  private readonly server: net.Server;
  private readonly linkContext: LinkContext;
  /** Outbound links by peer. Invariant: never holds this node's own id. */
  private readonly links = new Map<NodeId, OutboundLink>();
  /** Inbound connections whose handshake was accepted, by the peer they speak for (at most one each). */
  private readonly inboundByPeer = new Map<NodeId, InboundConnection>();
  private readonly inbound = new Set<InboundConnection>();
  /** Every socket the server accepted, TLS handshake done or not, so `close()` can cut them all. */
  private readonly acceptedSockets = new Set<net.Socket>();
  private handler: MessageHandler | null = null;
  /** Set once bound; kept after `close()` so the port can still be read. */
  private boundPort = 0;
  private closed = false;
  private closing: Promise<void> | null = null;

  private constructor(settings: Settings) {
    this.settings = settings;
    this.logger = settings.logger.child({ component: 'tcp-transport', node: settings.nodeId });
    this.linkContext = { settings, counters: this.counters, logger: this.logger };
    for (const [peer, address] of settings.peers) this.links.set(peer, new OutboundLink(peer, address, this.linkContext));
    // With TLS this runs once the TLS handshake (client certificate included) succeeded.
    const onAccepted = (socket: net.Socket): void => {
      this.onInboundSocket(socket);
    };
    if (settings.tls === null) {
      this.server = net.createServer(onAccepted);
    } else {
      const server = tls.createServer(
        { ...settings.tls.options, requestCert: true, rejectUnauthorized: true, handshakeTimeout: settings.handshakeTimeoutMs, minVersion: 'TLSv1.2' },
        onAccepted,
      );
      server.on('tlsClientError', (error, socket) => {
        this.counters.tlsFailures++;
        this.logger.warn({ remote: remoteOf(socket), err: error }, 'refused a TLS connection');
      });
      this.server = server;
    }
    this.server.maxConnections = settings.maxInboundConnections;
    this.server.on('connection', (socket: net.Socket) => {
      this.acceptedSockets.add(socket);
      socket.once('close', () => this.acceptedSockets.delete(socket));
      // Until the TLS layer (if any) owns the socket, an error here must not become uncaught.
      socket.on('error', () => undefined);
    });
    this.server.on('drop', (dropped) => {
      this.counters.connectionsOverCapacity++;
      this.logger.debug({ remote: dropped === undefined ? 'unknown' : `${dropped.remoteAddress ?? '?'}:${dropped.remotePort ?? '?'}` }, 'turned away a connection over maxInboundConnections');
    });
  }

  /**
   * Validates the options, binds the listener and resolves once it accepts connections. Throws
   * {@link ConfigError} for invalid options and the socket error (e.g. `EADDRINUSE`) if binding fails.
   * Messages that arrive before {@link listen} sets a handler are dropped (and counted).
   */
  static async start(options: TcpTransportOptions): Promise<TcpTransport> {
    const transport = new TcpTransport(resolveSettings(options));
    await transport.bind();
    return transport;
  }

  /** The port the listener is bound to (the OS's choice when `listen.port` was 0). */
  get port(): number {
    return this.boundPort;
  }

  /** This node's id. */
  get nodeId(): NodeId {
    return this.settings.nodeId;
  }

  /**
   * Sets the handler of received messages (`RaftNode.start` calls it). It runs in socket callbacks,
   * never inside `send`. If it throws, the error is logged, counted and rethrown from a microtask,
   * so the handler's own failure policy (RaftNode crashes on a broken invariant by default) applies.
   */
  listen(handler: MessageHandler): void {
    this.handler = handler;
  }

  /**
   * Queues `message` for `message.to` and returns at once. Dials the peer if no connection is up;
   * drops the message (and counts it) when the peer is unknown, the message is too large to frame,
   * or the transport is closed, and drops the peer's oldest message when its queue is full.
   */
  send(message: Message): void {
    if (this.closed) {
      this.counters.dropsClosed++;
      return;
    }
    const link = this.links.get(message.to);
    if (link === undefined) {
      this.counters.dropsUnknownPeer++;
      this.logger.debug({ to: message.to, type: message.type }, 'dropped a message to a node that is not a peer');
      return;
    }
    let payload: Uint8Array;
    try {
      payload = encodeMessage(message);
    } catch (error) {
      // Only a message that breaks its own type can fail to encode; drop it rather than throw into Raft.
      this.counters.dropsOversized++;
      this.logger.error({ err: error, to: message.to, type: message.type }, 'dropped a message that could not be encoded');
      return;
    }
    if (payload.byteLength > this.settings.maxFrameBytes) {
      this.counters.dropsOversized++;
      this.logger.warn(
        { to: message.to, type: message.type, bytes: payload.byteLength, maxFrameBytes: this.settings.maxFrameBytes },
        'dropped a message larger than maxFrameBytes; lower the Raft message and snapshot chunk limits below it',
      );
      return;
    }
    link.enqueue(payload);
  }

  /**
   * Writes every peer's queued messages now. Without it, what `send` queued goes out at the next
   * turn of the event loop (`setImmediate`), in one write per peer: after the answers to clients
   * that the same turn produced, so a commit notification never delays a client's answer. The
   * runtime calls it for messages on a write's critical path.
   */
  flush(): void {
    for (const link of this.links.values()) link.flushNow();
  }

  /**
   * Adds a peer, or changes its address (its connection is then redialed at the new address). Use it
   * when the membership grows. Throws {@link ConfigError} for an invalid id or address.
   */
  setPeer(id: string, address: TcpAddress): void {
    const peer = checkNodeIdOption(`peers.${id}`, id);
    const checked = checkAddress(`peers.${id}`, address, false);
    if (peer === this.settings.nodeId || this.closed) return;
    const link = this.links.get(peer);
    if (link !== undefined) {
      link.setAddress(checked);
      return;
    }
    if (this.links.size >= MAX_MEMBERS) throw new ConfigError('peers', `at most ${MAX_MEMBERS} peers`);
    this.links.set(peer, new OutboundLink(peer, checked, this.linkContext));
  }

  /**
   * Forgets a peer: closes both its connections, discards its queue, and refuses its handshakes from
   * now on. Use it when the membership shrinks.
   */
  async removePeer(id: string): Promise<void> {
    const peer = nodeId(id);
    const link = this.links.get(peer);
    this.links.delete(peer);
    const inbound = this.inboundByPeer.get(peer);
    if (inbound !== undefined) this.dropInbound(inbound);
    await link?.close();
  }

  /** A snapshot of the counters and gauges. */
  stats(): TcpTransportStats {
    let outboundConnections = 0;
    let queuedMessages = 0;
    let queuedBytes = 0;
    for (const link of this.links.values()) {
      if (link.isOpen()) outboundConnections++;
      queuedMessages += link.queuedMessages();
      queuedBytes += link.queuedBytes();
    }
    return { ...this.counters, inboundConnections: this.inbound.size, outboundConnections, queuedMessages, queuedBytes };
  }

  /**
   * Stops listening, stops redialing, discards queued messages and closes every connection (outbound
   * ones get up to a second to flush what was already written). Idempotent.
   */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    this.closed = true;
    this.closing = this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    const serverClosed = new Promise<void>((resolve) => {
      // The callback also runs (with an error) when the server was not listening: either way it is shut.
      this.server.close(() => {
        resolve();
      });
    });
    for (const connection of this.inbound) this.dropInbound(connection);
    // Sockets still in their TLS handshake are not in `inbound` yet.
    for (const socket of this.acceptedSockets) socket.destroy();
    const links = [...this.links.values()];
    this.links.clear();
    await Promise.all([serverClosed, ...links.map((link) => link.close())]);
    this.logger.info('tcp transport closed');
  }

  private bind(): Promise<void> {
    const { host, port } = this.settings.listen;
    return new Promise<void>((resolve, reject) => {
      const onBindError = (error: Error): void => {
        reject(error);
      };
      this.server.once('error', onBindError);
      this.server.listen({ host, port }, () => {
        this.server.off('error', onBindError);
        const address = this.server.address();
        invariant(address !== null && typeof address === 'object', 'the transport listens on a TCP address');
        this.boundPort = address.port;
        this.server.on('error', (error) => {
          // Accept errors (e.g. EMFILE) are transient for the server; log them, keep serving.
          this.logger.error({ err: error }, 'listener error');
        });
        this.logger.info({ host, port: this.port, tls: this.settings.tls !== null }, 'tcp transport listening');
        resolve();
      });
    });
  }

  // ---- Inbound connections: handshake, then deliver. ----

  private onInboundSocket(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    const connection: InboundConnection = {
      socket,
      remote: remoteOf(socket),
      reader: new FrameReader(MAX_HANDSHAKE_FRAME_BYTES),
      peer: null,
      timer: null,
      closing: false,
      warnedWrongSender: false,
    };
    this.inbound.add(connection);
    connection.timer = setTimeout(() => {
      connection.timer = null;
      this.counters.handshakeTimeouts++;
      this.logger.warn({ remote: connection.remote }, 'closed an inbound connection that sent no handshake in time');
      this.dropInbound(connection);
    }, this.settings.handshakeTimeoutMs);
    socket.on('data', (chunk: Buffer) => {
      try {
        this.onInboundData(connection, chunk);
      } catch (error) {
        // A bug in this file must not take the process down through a socket callback; it is loud instead.
        this.logger.error({ err: error, remote: connection.remote, peer: connection.peer }, 'unexpected error reading a connection; closing it');
        this.dropInbound(connection);
      }
    });
    socket.on('timeout', () => {
      this.counters.idleTimeouts++;
      this.logger.info({ remote: connection.remote, peer: connection.peer }, 'closed an idle inbound connection');
      this.dropInbound(connection);
    });
    socket.on('error', (error) => {
      this.logger.debug({ err: error, remote: connection.remote, peer: connection.peer }, 'inbound connection error');
    });
    socket.on('close', () => {
      this.inbound.delete(connection);
      if (connection.timer !== null) clearTimeout(connection.timer);
      connection.timer = null;
      if (connection.peer !== null && this.inboundByPeer.get(connection.peer) === connection) this.inboundByPeer.delete(connection.peer);
      if (!connection.closing && connection.reader.bufferedBytes > 0) {
        this.counters.truncatedFrames++;
        this.logger.warn({ remote: connection.remote, peer: connection.peer, bufferedBytes: connection.reader.bufferedBytes }, 'inbound connection ended inside a frame');
      }
    });
  }

  private onInboundData(connection: InboundConnection, chunk: Buffer): void {
    if (connection.closing) return;
    this.counters.bytesIn += chunk.byteLength;
    connection.reader.push(chunk);
    // Each pass consumes one whole frame of what has arrived, so the loop ends with the input.
    while (!connection.closing) {
      const read = connection.reader.next();
      if (read.kind === 'incomplete') return;
      if (read.kind === 'oversized') {
        this.counters.oversizedFrames++;
        this.logger.warn(
          { remote: connection.remote, peer: connection.peer, declaredBytes: read.declaredBytes, maxBytes: connection.reader.maxFrameBytes },
          'closed a connection that declared an oversized frame',
        );
        this.dropInbound(connection);
        return;
      }
      if (connection.peer === null) this.onHandshake(connection, read.payload);
      else this.onMessageFrame(connection, connection.peer, read.payload);
    }
  }

  private onHandshake(connection: InboundConnection, payload: Buffer): void {
    const hello = parseHello(payload);
    if (hello.kind === 'malformed') {
      this.counters.malformedFrames++;
      this.logger.warn({ remote: connection.remote, problem: hello.problem }, 'closed a connection whose handshake is malformed');
      this.dropInbound(connection);
      return;
    }
    if (hello.kind === 'otherVersion') {
      this.refuse(connection, 'ProtocolMismatch', { version: hello.version, expected: PROTOCOL_VERSION });
      return;
    }
    if (hello.clusterId !== this.settings.clusterId) {
      this.refuse(connection, 'ClusterMismatch', { from: hello.from, clusterId: hello.clusterId });
      return;
    }
    if (hello.to !== this.settings.nodeId) {
      this.refuse(connection, 'WrongNode', { from: hello.from, to: hello.to });
      return;
    }
    if (!this.links.has(hello.from)) {
      this.refuse(connection, 'UnknownNode', { from: hello.from });
      return;
    }
    if (connection.timer !== null) clearTimeout(connection.timer);
    connection.timer = null;
    connection.peer = hello.from;
    connection.reader.maxFrameBytes = this.settings.maxFrameBytes;
    connection.socket.setTimeout(2 * this.settings.idleTimeoutMs);
    connection.socket.write(encodeFrame(packHandshake([TCP_HANDSHAKE_MAGIC, PROTOCOL_VERSION, 'accept', this.settings.nodeId])));
    this.counters.connectionsAccepted++;
    // A peer dials again after it restarted or lost its link: the older connection is stale.
    const previous = this.inboundByPeer.get(hello.from);
    this.inboundByPeer.set(hello.from, connection);
    if (previous !== undefined) this.dropInbound(previous);
    this.logger.debug({ remote: connection.remote, peer: hello.from }, 'accepted an inbound connection');
    // The peer is evidently up: if our own link to it is waiting out a backoff, dial now.
    this.links.get(hello.from)?.nudge();
  }

  private refuse(connection: InboundConnection, reason: HandshakeRefusalReason, details: Record<string, unknown>): void {
    this.counters.handshakeRefusals++;
    this.logger.warn({ remote: connection.remote, reason, ...details }, 'refused a handshake');
    connection.closing = true;
    if (connection.timer !== null) clearTimeout(connection.timer);
    // Say why, then close; cut the connection if the dialer does not close its side soon.
    connection.socket.end(encodeFrame(packHandshake([TCP_HANDSHAKE_MAGIC, PROTOCOL_VERSION, 'refuse', reason])));
    connection.timer = setTimeout(() => {
      connection.timer = null;
      connection.socket.destroy();
    }, REFUSAL_GRACE_MS);
  }

  private onMessageFrame(connection: InboundConnection, peer: NodeId, payload: Buffer): void {
    let message: Message;
    try {
      message = decodeMessage(payload);
    } catch (error) {
      this.counters.malformedFrames++;
      this.logger.warn({ remote: connection.remote, peer, err: error }, 'closed a connection that sent a malformed frame');
      this.dropInbound(connection);
      return;
    }
    this.counters.framesIn++;
    if (message.from !== peer) {
      this.counters.dropsWrongSender++;
      // Once per connection: a confused peer would otherwise log every message.
      if (!connection.warnedWrongSender) this.logger.warn({ remote: connection.remote, peer, from: message.from }, 'dropping messages whose sender is not the handshake node');
      connection.warnedWrongSender = true;
      return;
    }
    if (message.to !== this.settings.nodeId) {
      this.counters.dropsWrongRecipient++;
      return;
    }
    this.deliver(message);
  }

  private deliver(message: Message): void {
    const handler = this.handler;
    if (handler === null) {
      this.counters.dropsNoHandler++;
      return;
    }
    try {
      handler(message);
      this.counters.messagesDelivered++;
    } catch (error) {
      this.counters.handlerErrors++;
      this.logger.error({ err: error, from: message.from, type: message.type }, 'message handler threw');
      // The handler's failure policy is the handler's (RaftNode rethrows fatal errors to crash by
      // default): rethrow it outside the socket callback, with this connection's state intact.
      queueMicrotask(() => {
        throw error;
      });
    }
  }

  private dropInbound(connection: InboundConnection): void {
    connection.closing = true;
    if (connection.timer !== null) clearTimeout(connection.timer);
    connection.timer = null;
    connection.socket.destroy();
  }
}

interface InboundConnection {
  readonly socket: net.Socket;
  /** `address:port` of the dialer, for logs. */
  readonly remote: string;
  readonly reader: FrameReader;
  /** The node the handshake named; null until it was accepted. */
  peer: NodeId | null;
  /** Handshake deadline, then (after a refusal) the deadline for the dialer to go away. */
  timer: ReturnType<typeof setTimeout> | null;
  /** This side decided to close it: ignore further input, and a partial frame is not "truncated". */
  closing: boolean;
  warnedWrongSender: boolean;
}

/** What the links share with their transport. */
interface LinkContext {
  readonly settings: Settings;
  readonly counters: Counters;
  readonly logger: Logger;
}

type LinkState =
  /** No connection; the next message dials. */
  | 'idle'
  /** Dialing, or waiting for the peer to accept the handshake. */
  | 'connecting'
  | 'open'
  /** Waiting out a redial delay. */
  | 'backoff'
  | 'closed';

/** The sending side of one peer: its queue and the one connection this node dials to it. */
class OutboundLink {
  private state: LinkState = 'idle';
  private socket: net.Socket | null = null;
  /** Handshake deadline while connecting; redial delay in backoff. */
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** Failed or lost connections since the last accepted handshake; sets the backoff. */
  private consecutiveFailures = 0;
  /** The socket's buffer is over its high-water mark: wait for 'drain'. */
  private writeBlocked = false;
  private flushScheduled = false;
  /** The open connection is being closed for idleness: go idle, not into backoff. */
  private closingIdle = false;
  private readonly queue = new FrameQueue();
  private readonly logger: Logger;

  constructor(
    private readonly peer: NodeId,
    private address: TcpAddress,
    private readonly context: LinkContext,
  ) {
    this.logger = context.logger.child({ peer });
  }

  isOpen(): boolean {
    return this.state === 'open';
  }

  queuedMessages(): number {
    return this.queue.length;
  }

  queuedBytes(): number {
    return this.queue.bytes;
  }

  enqueue(payload: Uint8Array): void {
    if (this.state === 'closed') {
      this.context.counters.dropsClosed++;
      return;
    }
    const { maxQueuedMessagesPerPeer, maxQueuedBytesPerPeer } = this.context.settings;
    // Oldest first: a stale heartbeat or append is worth less than the one that replaces it.
    while (this.queue.length > 0 && (this.queue.length >= maxQueuedMessagesPerPeer || this.queue.bytes + payload.byteLength > maxQueuedBytesPerPeer)) {
      this.queue.shift();
      this.context.counters.dropsQueueFull++;
    }
    this.queue.push(payload);
    if (this.state === 'idle') this.connect();
    else if (this.state === 'open') this.scheduleFlush();
  }

  setAddress(address: TcpAddress): void {
    if (address.host === this.address.host && address.port === this.address.port) return;
    this.address = address;
    this.consecutiveFailures = 0;
    if (this.state === 'backoff') this.nudge();
    // The close handler redials (after the shortest backoff) at the new address.
    else this.socket?.destroy();
  }

  /** Redials now if waiting out a backoff (the peer just showed it is up). */
  nudge(): void {
    if (this.state !== 'backoff') return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.context.counters.reconnects++;
    this.connect();
  }

  close(): Promise<void> {
    if (this.state === 'closed') return Promise.resolve();
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.context.counters.dropsClosed += this.queue.clear();
    const socket = this.socket;
    if (socket === null) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const force = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
      socket.once('close', () => {
        clearTimeout(force);
        resolve();
      });
      // end() sends what was already written; a connection still handshaking has nothing to send,
      // and one whose buffer is full would only delay the close.
      if (wasOpen && !this.writeBlocked) socket.end();
      else socket.destroy();
    });
  }

  private connect(): void {
    const { settings, counters } = this.context;
    this.state = 'connecting';
    this.writeBlocked = false;
    this.closingIdle = false;
    counters.connectAttempts++;
    const { host, port } = this.address;
    let socket: net.Socket;
    if (settings.tls === null) {
      socket = net.connect({ host, port });
    } else {
      // SNI must not be an IP address; the certificate is checked against `host` either way.
      socket = tls.connect({ host, port, secureContext: settings.tls.clientContext, minVersion: 'TLSv1.2', ...(net.isIP(host) === 0 ? { servername: host } : {}) });
    }
    this.socket = socket;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_INITIAL_DELAY_MS);
    const reader = new FrameReader(MAX_HANDSHAKE_FRAME_BYTES);
    let lastError: Error | null = null;
    this.timer = setTimeout(() => {
      this.timer = null;
      counters.handshakeTimeouts++;
      lastError = new Error(`no handshake answer within ${settings.handshakeTimeoutMs} ms`);
      socket.destroy();
    }, settings.handshakeTimeoutMs);
    socket.once(settings.tls === null ? 'connect' : 'secureConnect', () => {
      if (this.socket !== socket) return;
      socket.write(encodeFrame(packHandshake([TCP_HANDSHAKE_MAGIC, PROTOCOL_VERSION, settings.clusterId, settings.nodeId, this.peer])));
    });
    socket.on('data', (chunk: Buffer) => {
      if (this.socket !== socket) return;
      try {
        const problem = this.onData(socket, reader, chunk);
        if (problem !== null) {
          lastError = new Error(problem);
          socket.destroy();
        }
      } catch (error) {
        this.logger.error({ err: error }, 'unexpected error reading an outbound connection; closing it');
        socket.destroy();
      }
    });
    socket.on('drain', () => {
      if (this.socket !== socket) return;
      this.writeBlocked = false;
      this.flush();
    });
    socket.on('timeout', () => {
      if (this.socket !== socket) return;
      counters.idleTimeouts++;
      this.closingIdle = true;
      this.logger.debug('closing an idle outbound connection');
      socket.destroy();
    });
    socket.on('error', (error) => {
      lastError = error;
    });
    socket.on('close', () => {
      if (this.socket !== socket) return;
      this.onClose(lastError);
    });
  }

  /** Handles bytes from the listener; returns a problem that must close the connection, or null. */
  private onData(socket: net.Socket, reader: FrameReader, chunk: Buffer): string | null {
    const { settings, counters } = this.context;
    if (this.state !== 'connecting') {
      // The listener's only frame is its answer to the handshake.
      counters.malformedFrames++;
      return 'the peer sent data after accepting the handshake';
    }
    reader.push(chunk);
    const read = reader.next();
    if (read.kind === 'incomplete') return null;
    if (read.kind === 'oversized') {
      counters.oversizedFrames++;
      return `the peer's handshake answer declares ${read.declaredBytes} bytes`;
    }
    const reply = parseReply(read.payload);
    if (reply.kind === 'malformed') {
      counters.malformedFrames++;
      return `malformed handshake answer: ${reply.problem}`;
    }
    if (reply.kind === 'refuse') {
      counters.refusedByPeer++;
      this.logger.warn({ reason: reply.reason, host: this.address.host, port: this.address.port }, 'the peer refused our handshake');
      return `refused: ${reply.reason}`;
    }
    if (reply.nodeId !== this.peer) {
      counters.refusedByPeer++;
      this.logger.warn({ answeredAs: reply.nodeId, host: this.address.host, port: this.address.port }, 'the peer address answers as another node; check the peer map');
      return `answered as ${reply.nodeId}`;
    }
    if (reader.bufferedBytes > 0) {
      counters.malformedFrames++;
      return 'the peer sent data after accepting the handshake';
    }
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.state = 'open';
    if (this.consecutiveFailures > 0) this.logger.info({ failures: this.consecutiveFailures }, 'reconnected to peer');
    else this.logger.debug('connected to peer');
    this.consecutiveFailures = 0;
    socket.setTimeout(settings.idleTimeoutMs);
    this.flush();
    return null;
  }

  private onClose(lastError: Error | null): void {
    const { counters } = this.context;
    const wasOpen = this.state === 'open';
    this.socket = null;
    this.writeBlocked = false;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.state === 'closed') return;
    if (this.closingIdle) {
      this.closingIdle = false;
      this.state = 'idle';
      if (this.queue.length > 0) this.connect();
      return;
    }
    if (!wasOpen) {
      counters.connectFailures++;
      // Warn once per outage; repeats while the peer stays down would only add noise.
      const details = { err: lastError?.message ?? 'closed by the peer', host: this.address.host, port: this.address.port };
      if (this.consecutiveFailures === 0) this.logger.warn(details, 'could not connect to peer; retrying with backoff');
      else this.logger.debug(details, 'could not connect to peer');
    } else {
      this.logger.info({ err: lastError?.message ?? 'closed by the peer' }, 'lost the connection to peer; redialing');
    }
    this.consecutiveFailures++;
    this.scheduleRedial();
  }

  private scheduleRedial(): void {
    const { reconnectBaseDelayMs, reconnectMaxDelayMs } = this.context.settings;
    // Exponential backoff with "equal jitter": at least half the capped delay, so a down peer is not
    // hammered, plus a random half, so the nodes of a cluster do not redial in lockstep.
    const exponent = Math.min(this.consecutiveFailures - 1, 30);
    const ceilingMs = Math.min(reconnectMaxDelayMs, reconnectBaseDelayMs * 2 ** exponent);
    const delayMs = ceilingMs / 2 + Math.random() * (ceilingMs / 2);
    this.state = 'backoff';
    this.timer = setTimeout(() => {
      this.timer = null;
      this.context.counters.reconnects++;
      this.connect();
    }, delayMs);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // Batch everything one turn of the event loop queued into one corked write, after the turn's
    // microtasks (answers to clients among them) have run; TcpTransport.flush writes sooner.
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Writes the queue now, if the connection is open (see {@link TcpTransport.flush}). */
  flushNow(): void {
    if (this.queue.length > 0) this.flush();
  }

  private flush(): void {
    const socket = this.socket;
    if (this.state !== 'open' || socket === null || this.writeBlocked) return;
    // Destroyed or ending but not yet 'close'd: keep the messages for the next connection.
    if (socket.destroyed || !socket.writable) return;
    const { counters } = this.context;
    socket.cork();
    try {
      // Bounded by the queue, itself bounded by maxQueuedMessagesPerPeer.
      for (let payload = this.queue.shift(); payload !== undefined; payload = this.queue.shift()) {
        socket.write(frameHeader(payload.byteLength));
        const writable = socket.write(payload);
        counters.framesOut++;
        counters.bytesOut += FRAME_HEADER_BYTES + payload.byteLength;
        if (!writable) {
          // Leave the rest in the bounded queue instead of the socket's unbounded buffer.
          this.writeBlocked = true;
          break;
        }
      }
    } finally {
      socket.uncork();
    }
  }
}

/** A FIFO of encoded messages with O(1) removal at the head and a byte count. */
class FrameQueue {
  private items: (Uint8Array | undefined)[] = [];
  private head = 0;
  private totalBytes = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  push(item: Uint8Array): void {
    this.items.push(item);
    this.totalBytes += item.byteLength;
  }

  shift(): Uint8Array | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head++;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      // Compact once the consumed prefix is most of the array, so memory tracks the live queue.
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    invariant(item !== undefined, 'a queued frame is present between head and end');
    this.totalBytes -= item.byteLength;
    return item;
  }

  /** Empties the queue; returns how many items it held. */
  clear(): number {
    const count = this.length;
    this.items = [];
    this.head = 0;
    this.totalBytes = 0;
    return count;
  }
}

/** The outcome of {@link FrameReader.next}. */
export type FrameRead =
  /** A whole frame's payload. */
  | { readonly kind: 'frame'; readonly payload: Buffer }
  /** More bytes are needed. */
  | { readonly kind: 'incomplete' }
  /** The next frame declares more than `maxFrameBytes`; the stream cannot be trusted further. */
  | { readonly kind: 'oversized'; readonly declaredBytes: number };

/**
 * Splits a byte stream into length-prefixed frames. The declared length is checked against
 * `maxFrameBytes` as soon as its 4 bytes arrive, before anything is allocated for the payload, and
 * chunks are joined once per frame (not once per chunk), so reading a frame is linear in its size.
 *
 * @internal
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /** @param maxFrameBytes - largest payload accepted; may be raised later (after a handshake). */
  constructor(public maxFrameBytes: number) {}

  /** Bytes received and not yet returned as frames. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Appends received bytes. */
  push(chunk: Buffer): void {
    if (chunk.byteLength === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.byteLength;
  }

  /** Takes the next whole frame, if it has arrived. After `oversized`, stop reading this stream. */
  next(): FrameRead {
    if (this.buffered < FRAME_HEADER_BYTES) return { kind: 'incomplete' };
    const declaredBytes = this.peekHeader();
    if (declaredBytes > this.maxFrameBytes) return { kind: 'oversized', declaredBytes };
    if (this.buffered < FRAME_HEADER_BYTES + declaredBytes) return { kind: 'incomplete' };
    this.take(FRAME_HEADER_BYTES);
    return { kind: 'frame', payload: this.take(declaredBytes) };
  }

  private peekHeader(): number {
    const first = this.chunks[0];
    invariant(first !== undefined, 'buffered bytes live in chunks');
    if (first.byteLength >= FRAME_HEADER_BYTES) return first.readUInt32BE(0);
    // The header straddles chunks: gather its bytes.
    const header = Buffer.alloc(FRAME_HEADER_BYTES);
    let filled = 0;
    for (const chunk of this.chunks) {
      filled += chunk.copy(header, filled, 0, Math.min(chunk.byteLength, FRAME_HEADER_BYTES - filled));
      if (filled === FRAME_HEADER_BYTES) break;
    }
    return header.readUInt32BE(0);
  }

  /** Removes and returns the first `byteCount` buffered bytes (a view when they sit in one chunk). */
  private take(byteCount: number): Buffer {
    invariant(byteCount <= this.buffered, () => `taking ${byteCount} of ${this.buffered} buffered bytes`);
    this.buffered -= byteCount;
    const first = this.chunks[0];
    if (first !== undefined && first.byteLength >= byteCount) {
      this.consumeFirst(first, byteCount);
      return first.subarray(0, byteCount);
    }
    const out = Buffer.allocUnsafe(byteCount);
    let filled = 0;
    while (filled < byteCount) {
      const chunk = this.chunks[0];
      invariant(chunk !== undefined, 'buffered bytes live in chunks');
      const copied = chunk.copy(out, filled, 0, Math.min(chunk.byteLength, byteCount - filled));
      filled += copied;
      this.consumeFirst(chunk, copied);
    }
    return out;
  }

  private consumeFirst(first: Buffer, byteCount: number): void {
    if (byteCount === first.byteLength) this.chunks.shift();
    else this.chunks[0] = first.subarray(byteCount);
  }
}

/** The 4-byte big-endian length prefix of a frame of `payloadBytes`. */
function frameHeader(payloadBytes: number): Buffer {
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header.writeUInt32BE(payloadBytes, 0);
  return header;
}

/** A whole frame (prefix and payload) in one buffer; for the small handshake frames. */
function encodeFrame(payload: Uint8Array): Buffer {
  return Buffer.concat([frameHeader(payload.byteLength), payload]);
}

const handshakePackr = new Packr({ useRecords: false, variableMapSize: true });
const handshakeUnpackr = new Unpackr({ useRecords: false, mapsAsObjects: false });

function packHandshake(fields: readonly (string | number)[]): Buffer {
  return handshakePackr.pack(fields);
}

type ParsedHello =
  | { readonly kind: 'hello'; readonly clusterId: string; readonly from: NodeId; readonly to: NodeId }
  | { readonly kind: 'otherVersion'; readonly version: number }
  | { readonly kind: 'malformed'; readonly problem: string };

/** Reads a dialer's handshake. Never throws. */
function parseHello(payload: Buffer): ParsedHello {
  const fields = unpackHandshake(payload);
  if (typeof fields === 'string') return { kind: 'malformed', problem: fields };
  const [, version, clusterId, from, to] = fields;
  if (typeof version !== 'number' || !Number.isSafeInteger(version)) return { kind: 'malformed', problem: 'version is not an integer' };
  // Refuse another version before reading its fields: their layout is that version's business.
  if (version !== PROTOCOL_VERSION) return { kind: 'otherVersion', version };
  if (fields.length !== 5) return { kind: 'malformed', problem: `${fields.length} fields, expected 5` };
  if (typeof clusterId !== 'string' || clusterId.length === 0 || clusterId.length > MAX_CLUSTER_ID_LENGTH) return { kind: 'malformed', problem: 'cluster id is not a valid string' };
  if (!isNodeIdValue(from) || !isNodeIdValue(to)) return { kind: 'malformed', problem: 'node id is not a valid string' };
  return { kind: 'hello', clusterId, from: nodeId(from), to: nodeId(to) };
}

type ParsedReply =
  | { readonly kind: 'accept'; readonly nodeId: string }
  | { readonly kind: 'refuse'; readonly reason: string }
  | { readonly kind: 'malformed'; readonly problem: string };

/** Reads a listener's answer. Never throws. */
function parseReply(payload: Buffer): ParsedReply {
  const fields = unpackHandshake(payload);
  if (typeof fields === 'string') return { kind: 'malformed', problem: fields };
  const [, version, verdict, detail] = fields;
  if (fields.length !== 4) return { kind: 'malformed', problem: `${fields.length} fields, expected 4` };
  if (typeof detail !== 'string' || detail.length === 0 || detail.length > MAX_NODE_ID_LENGTH) return { kind: 'malformed', problem: 'detail is not a valid string' };
  // A refusal is read whatever its version: a peer on another version refuses us with its own.
  if (verdict === 'refuse') return { kind: 'refuse', reason: detail };
  if (verdict !== 'accept') return { kind: 'malformed', problem: 'verdict is neither accept nor refuse' };
  if (version !== PROTOCOL_VERSION) return { kind: 'malformed', problem: `accepted with protocol version ${String(version)}` };
  return { kind: 'accept', nodeId: detail };
}

/** Unpacks a handshake frame into its fields after checking the magic; a string says what is wrong. */
function unpackHandshake(payload: Buffer): readonly unknown[] | string {
  let value: unknown;
  try {
    value = handshakeUnpackr.unpack(payload);
  } catch {
    return 'not valid msgpack';
  }
  if (!Array.isArray(value)) return 'not an array';
  const fields = value as readonly unknown[];
  if (fields[0] !== TCP_HANDSHAKE_MAGIC) return 'wrong magic';
  return fields;
}

function isNodeIdValue(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_NODE_ID_LENGTH;
}

function remoteOf(socket: net.Socket): string {
  return `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
}

// ---- Options. ----

function resolveSettings(options: TcpTransportOptions): Settings {
  if (typeof options.clusterId !== 'string' || options.clusterId.length === 0 || options.clusterId.length > MAX_CLUSTER_ID_LENGTH) {
    throw new ConfigError('clusterId', `must be a non-empty string of at most ${MAX_CLUSTER_ID_LENGTH} characters`);
  }
  const self = checkNodeIdOption('nodeId', options.nodeId);
  const listen = checkAddress('listen', options.listen, true);
  const peerEntries = Object.entries(options.peers);
  if (peerEntries.length > MAX_MEMBERS + 1) throw new ConfigError('peers', `at most ${MAX_MEMBERS} peers`);
  const peers = new Map<NodeId, TcpAddress>();
  for (const [id, address] of peerEntries) {
    const peer = checkNodeIdOption(`peers.${id}`, id);
    const checked = checkAddress(`peers.${id}`, address, false);
    if (peer !== self) peers.set(peer, checked);
  }
  const maxFrameBytes = integerOption('maxFrameBytes', options.maxFrameBytes, DEFAULT_MAX_FRAME_BYTES, 1, MAX_ENCODED_MESSAGE_BYTES);
  return {
    clusterId: options.clusterId,
    nodeId: self,
    listen,
    peers,
    tls: options.tls === undefined ? null : checkTls(options.tls),
    maxFrameBytes,
    maxQueuedMessagesPerPeer: integerOption('maxQueuedMessagesPerPeer', options.maxQueuedMessagesPerPeer, DEFAULT_MAX_QUEUED_MESSAGES_PER_PEER, 1, MAX_QUEUED_MESSAGES_LIMIT),
    maxQueuedBytesPerPeer: integerOption('maxQueuedBytesPerPeer', options.maxQueuedBytesPerPeer, DEFAULT_MAX_QUEUED_BYTES_PER_PEER, 1, MAX_QUEUED_BYTES_LIMIT),
    maxInboundConnections: integerOption('maxInboundConnections', options.maxInboundConnections, DEFAULT_MAX_INBOUND_CONNECTIONS, 1, MAX_INBOUND_CONNECTIONS_LIMIT),
    handshakeTimeoutMs: integerOption('handshakeTimeoutMs', options.handshakeTimeoutMs, DEFAULT_HANDSHAKE_TIMEOUT_MS, 1, MAX_TIMEOUT_MS),
    idleTimeoutMs: integerOption('idleTimeoutMs', options.idleTimeoutMs, DEFAULT_IDLE_TIMEOUT_MS, 1, MAX_TIMEOUT_MS),
    reconnectBaseDelayMs: integerOption('reconnectBaseDelayMs', options.reconnectBaseDelayMs, DEFAULT_RECONNECT_BASE_DELAY_MS, 1, MAX_TIMEOUT_MS),
    reconnectMaxDelayMs: integerOption('reconnectMaxDelayMs', options.reconnectMaxDelayMs, DEFAULT_RECONNECT_MAX_DELAY_MS, 1, MAX_TIMEOUT_MS),
    logger: options.logger ?? pino({ level: 'silent' }),
  };
}

function integerOption(field: string, value: number | undefined, fallback: number, min: number, max: number): number {
  const resolved = value ?? fallback;
  if (!Number.isSafeInteger(resolved) || resolved < min || resolved > max) throw new ConfigError(field, `must be an integer from ${min} to ${max}, got ${resolved}`);
  return resolved;
}

function checkNodeIdOption(field: string, value: unknown): NodeId {
  if (!isNodeIdValue(value)) throw new ConfigError(field, `must be a non-empty string of at most ${MAX_NODE_ID_LENGTH} characters`);
  return nodeId(value);
}

function checkAddress(field: string, address: TcpAddress | undefined, allowPortZero: boolean): TcpAddress {
  if (typeof address !== 'object' || typeof address.host !== 'string' || address.host.length === 0) throw new ConfigError(field, 'must be { host, port } with a non-empty host');
  const minPort = allowPortZero ? 0 : 1;
  if (!Number.isSafeInteger(address.port) || address.port < minPort || address.port > 65_535) throw new ConfigError(`${field}.port`, `must be an integer from ${minPort} to 65535, got ${address.port}`);
  return { host: address.host, port: address.port };
}

function checkTls(options: TcpTlsOptions): NonNullable<Settings['tls']> {
  const isPem = (value: unknown): value is string | Buffer => (typeof value === 'string' && value.length > 0) || (Buffer.isBuffer(value) && value.byteLength > 0);
  if (!isPem(options.cert)) throw new ConfigError('tls.cert', 'must be a PEM certificate (string or Buffer)');
  if (!isPem(options.key)) throw new ConfigError('tls.key', 'must be a PEM private key (string or Buffer)');
  const ca = options.ca;
  const caList: (string | Buffer)[] = typeof ca === 'string' || Buffer.isBuffer(ca) ? [ca] : [...ca];
  if (caList.length === 0 || !caList.every(isPem)) throw new ConfigError('tls.ca', 'must be the PEM certificate(s) of the cluster CA');
  const contextOptions: tls.SecureContextOptions = { cert: options.cert, key: options.key, ca: caList, minVersion: 'TLSv1.2' };
  try {
    // Parsed now, so bad PEM fails at start rather than at the first connection, and once, not per dial.
    return { options: contextOptions, clientContext: tls.createSecureContext(contextOptions) };
  } catch (error) {
    throw new ConfigError('tls', `cannot load the certificate, key or CA: ${error instanceof Error ? error.message : String(error)}`);
  }
}
