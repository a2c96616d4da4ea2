/**
 * TcpTransport on loopback: delivery between real transports, queue bounds, redialing, the
 * handshake's refusals, hostile input from raw sockets (table-driven and fuzzed), mutual TLS, and
 * three RaftNodes electing a leader over it.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import fc from 'fast-check';
import { pack, unpack } from 'msgpackr';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ConfigError,
  EntryType,
  FrameReader,
  MAX_HANDSHAKE_FRAME_BYTES,
  MemoryStorage,
  PROTOCOL_VERSION,
  RaftNode,
  SystemClock,
  TCP_HANDSHAKE_MAGIC,
  TcpTransport,
  encodeMessage,
  logIndex,
  nodeId,
  term,
  type AppendRequest,
  type Heartbeat,
  type Message,
  type ProposeRequest,
  type TcpAddress,
  type TcpTransportOptions,
  type TcpTransportStats,
  type VoteRequest,
} from '../../src/index.js';
import { RecordingStateMachine, text } from '../support/runtime-cluster.js';

const CLUSTER_ID = 'tcp-test-cluster';
const LOOPBACK = '127.0.0.1';
/** `TCP_TRANSPORT_LOG=debug npx vitest run test/runtime/tcp-transport.test.ts` shows the transports' logs. */
const logLevel = process.env['TCP_TRANSPORT_LOG'];
const tlsFile = (name: string): string => readFileSync(new URL(`../fixtures/tls/${name}`, import.meta.url), 'utf8');

// ---- Messages: real shapes from src/raft/types.ts. ----

function heartbeat(from: string, to: string, context: number): Heartbeat {
  return { type: 'Heartbeat', from: nodeId(from), to: nodeId(to), term: term(3), commit: logIndex(7), context };
}

function appendRequest(from: string, to: string): AppendRequest {
  return {
    type: 'AppendRequest',
    from: nodeId(from),
    to: nodeId(to),
    term: term(3),
    prevLogIndex: logIndex(4),
    prevLogTerm: term(2),
    leaderCommit: logIndex(4),
    entries: [
      { index: logIndex(5), term: term(3), type: EntryType.Normal, data: text('set x=1') },
      { index: logIndex(6), term: term(3), type: EntryType.Noop, data: new Uint8Array(0) },
    ],
  };
}

function voteRequest(from: string, to: string): VoteRequest {
  return { type: 'VoteRequest', from: nodeId(from), to: nodeId(to), term: term(4), preVote: true, lastLogIndex: logIndex(6), lastLogTerm: term(3), leadershipTransfer: false };
}

function proposeRequest(from: string, to: string, dataBytes: number): ProposeRequest {
  return { type: 'ProposeRequest', from: nodeId(from), to: nodeId(to), term: term(0), requestId: 9, leaderTerm: term(3), data: new Uint8Array(dataBytes).fill(7) };
}

/**
 * The message with every byte field as a plain Uint8Array: the codec hands out Buffers, which
 * `toEqual` tells apart from the Uint8Arrays the test built.
 */
function plainBytes(value: unknown): unknown {
  if (value instanceof Uint8Array) return new Uint8Array(value);
  if (Array.isArray(value)) return value.map(plainBytes);
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([key, field]) => [key, plainBytes(field)]));
  return value;
}

// ---- Transports under test, closed after each test. ----

interface Endpoint {
  readonly transport: TcpTransport;
  readonly inbox: Message[];
  readonly address: TcpAddress;
}

const openTransports = new Set<TcpTransport>();
const rawSockets = new Set<net.Socket>();

afterEach(async () => {
  for (const socket of rawSockets) socket.destroy();
  rawSockets.clear();
  await Promise.all([...openTransports].map((transport) => transport.close()));
  openTransports.clear();
});

async function startEndpoint(id: string, overrides: Partial<TcpTransportOptions> = {}): Promise<Endpoint> {
  const transport = await TcpTransport.start({
    clusterId: CLUSTER_ID,
    nodeId: id,
    listen: { host: LOOPBACK, port: 0 },
    peers: {},
    ...(logLevel === undefined ? {} : { logger: pino({ level: logLevel }) }),
    ...overrides,
  });
  openTransports.add(transport);
  const inbox: Message[] = [];
  transport.listen((message) => inbox.push(message));
  return { transport, inbox, address: { host: LOOPBACK, port: transport.port } };
}

/**
 * Starts `id` again at `address` (a port it or a probe just freed), so that `sender` redials the same
 * address. Another process may have taken the port meanwhile (the suite runs beside process tests):
 * then it starts on a fresh port and `sender` is pointed there, which still exercises the redial.
 */
async function restartAt(id: string, address: { host: string; port: number }, sender: Endpoint, overrides: Partial<TcpTransportOptions>): Promise<Endpoint> {
  try {
    return await startEndpoint(id, { ...overrides, listen: address });
  } catch (error) {
    if (!(error instanceof Error && 'code' in error && error.code === 'EADDRINUSE')) throw error;
    const moved = await startEndpoint(id, overrides);
    sender.transport.setPeer(id, moved.address);
    return moved;
  }
}

/** Starts one transport per id, each knowing all the others. */
async function startMesh(ids: readonly string[], overrides: Partial<TcpTransportOptions> = {}): Promise<Map<string, Endpoint>> {
  const endpoints = new Map<string, Endpoint>();
  for (const id of ids) endpoints.set(id, await startEndpoint(id, overrides));
  for (const [id, endpoint] of endpoints) for (const [peer, other] of endpoints) if (peer !== id) endpoint.transport.setPeer(peer, other.address);
  return endpoints;
}

function endpointOf(endpoints: Map<string, Endpoint>, id: string): Endpoint {
  const endpoint = endpoints.get(id);
  if (endpoint === undefined) throw new Error(`no endpoint ${id}`);
  return endpoint;
}

/** Polls `condition` every 5 ms for at most `timeoutMs`. */
async function waitFor(what: string, condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Sends a fresh heartbeat from `from` to `to` until `to` has it: proof the path works now. */
async function expectDelivery(from: Endpoint, to: Endpoint, context: number): Promise<void> {
  const fromId = from.transport.nodeId;
  const toId = to.transport.nodeId;
  from.transport.send(heartbeat(fromId, toId, context));
  await waitFor(`heartbeat ${context} from ${fromId} at ${toId}`, () => to.inbox.some((message) => message.type === 'Heartbeat' && message.context === context));
}

// ---- Raw sockets speaking (or abusing) the wire format. ----

function frame(payload: Uint8Array): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt32BE(payload.byteLength, 0);
  return Buffer.concat([header, payload]);
}

/** A length prefix that may lie about what follows. */
function lengthPrefixed(declaredBytes: number, bytes: Uint8Array): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt32BE(declaredBytes, 0);
  return Buffer.concat([header, bytes]);
}

function hello(from: string, to: string, clusterId = CLUSTER_ID, version = PROTOCOL_VERSION): Buffer {
  return frame(pack([TCP_HANDSHAKE_MAGIC, version, clusterId, from, to]));
}

async function rawConnect(port: number): Promise<net.Socket> {
  const socket = net.connect({ host: LOOPBACK, port });
  rawSockets.add(socket);
  socket.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return socket;
}

/** Resolves with every byte the peer sent once the socket closes; fails if it stays open past `timeoutMs`. */
function untilClosed(socket: net.Socket, timeoutMs = 3_000): Promise<Buffer> {
  const received: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  return new Promise<Buffer>((resolve, reject) => {
    if (socket.destroyed) {
      resolve(Buffer.concat(received));
      return;
    }
    const timer = setTimeout(() => {
      reject(new Error(`socket still open after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(received));
    });
  });
}

/** Decodes the frames in `bytes` (a listener's handshake answer). */
function framesIn(bytes: Buffer): unknown[] {
  const reader = new FrameReader(MAX_HANDSHAKE_FRAME_BYTES);
  reader.push(bytes);
  const frames: unknown[] = [];
  for (let read = reader.next(); read.kind === 'frame'; read = reader.next()) frames.push(unpack(read.payload));
  return frames;
}

const badInput = (stats: TcpTransportStats): number => stats.malformedFrames + stats.oversizedFrames + stats.truncatedFrames;

describe('TcpTransport delivery', () => {
  it('carries real messages between three transports, both ways, in order per link', async () => {
    const ids = ['n1', 'n2', 'n3'];
    const mesh = await startMesh(ids);
    const heartbeatsPerLink = 50;
    for (const from of ids) {
      for (const to of ids) {
        if (from === to) continue;
        const sender = endpointOf(mesh, from).transport;
        sender.send(voteRequest(from, to));
        sender.send(appendRequest(from, to));
        for (let context = 0; context < heartbeatsPerLink; context++) sender.send(heartbeat(from, to, context));
      }
    }
    const perNode = 2 * (heartbeatsPerLink + 2);
    for (const id of ids) await waitFor(`${perNode} messages at ${id}`, () => endpointOf(mesh, id).inbox.length === perNode);
    for (const to of ids) {
      const inbox = endpointOf(mesh, to).inbox;
      for (const from of ids) {
        if (from === to) continue;
        const fromPeer = inbox.filter((message) => message.from === from);
        expect(plainBytes(fromPeer.slice(0, 2))).toEqual([voteRequest(from, to), appendRequest(from, to)]);
        expect(fromPeer.slice(2).map((message) => (message.type === 'Heartbeat' ? message.context : -1))).toEqual(Array.from({ length: heartbeatsPerLink }, (_, index) => index));
      }
      const stats = endpointOf(mesh, to).transport.stats();
      expect(stats).toMatchObject({ framesIn: perNode, messagesDelivered: perNode, framesOut: perNode, connectionsAccepted: 2, outboundConnections: 2, inboundConnections: 2, queuedMessages: 0 });
      expect(badInput(stats)).toBe(0);
    }
  });

  it('writes what send() queued at the next turn of the event loop, after the microtasks, or at once on flush()', async () => {
    const mesh = await startMesh(['n1', 'n2']);
    const sender = endpointOf(mesh, 'n1');
    const receiver = endpointOf(mesh, 'n2');
    await expectDelivery(sender, receiver, 1);
    const written = (): number => sender.transport.stats().framesOut;
    const before = written();
    sender.transport.send(heartbeat('n1', 'n2', 2));
    sender.transport.send(heartbeat('n1', 'n2', 3));
    // Microtasks (a client's answer resolving) run before the write.
    for (let turn = 0; turn < 20; turn++) await Promise.resolve();
    expect(written()).toBe(before);
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(written()).toBe(before + 2);
    sender.transport.send(heartbeat('n1', 'n2', 4));
    sender.transport.flush();
    expect(written()).toBe(before + 3);
    await waitFor('heartbeats 2..4', () => [2, 3, 4].every((context) => receiver.inbox.some((message) => message.type === 'Heartbeat' && message.context === context)));
    // A flush with nothing queued writes nothing.
    sender.transport.flush();
    expect(written()).toBe(before + 3);
  });

  it('drops the oldest messages beyond maxQueuedMessagesPerPeer while the peer is down, and delivers the rest once it is up', async () => {
    // Learn a free port, then free it: n2 is "down" at that address.
    const probe = await startEndpoint('n2');
    const n2Port = probe.transport.port;
    await probe.transport.close();
    const n1 = await startEndpoint('n1', { peers: { n2: { host: LOOPBACK, port: n2Port } }, maxQueuedMessagesPerPeer: 10, reconnectMaxDelayMs: 100 });
    for (let context = 0; context < 25; context++) n1.transport.send(heartbeat('n1', 'n2', context));
    expect(n1.transport.stats()).toMatchObject({ dropsQueueFull: 15, queuedMessages: 10 });
    await waitFor('a failed dial', () => n1.transport.stats().connectFailures >= 2);
    expect(n1.transport.stats().queuedMessages).toBe(10);

    const n2 = await restartAt('n2', { host: LOOPBACK, port: n2Port }, n1, { peers: { n1: n1.address } });
    await waitFor('the 10 newest heartbeats at n2', () => n2.inbox.length === 10);
    expect(n2.inbox.map((message) => (message.type === 'Heartbeat' ? message.context : -1))).toEqual([15, 16, 17, 18, 19, 20, 21, 22, 23, 24]);
    expect(n1.transport.stats().reconnects).toBeGreaterThanOrEqual(1);
    expect(n1.transport.stats()).toMatchObject({ dropsQueueFull: 15, queuedMessages: 0, framesOut: 10 });
  });

  it('bounds the queue by bytes too, keeping the newest message', async () => {
    const n1 = await startEndpoint('n1', { peers: { n2: { host: LOOPBACK, port: 1 } }, maxQueuedBytesPerPeer: 3_000, reconnectBaseDelayMs: 1_000 });
    for (let count = 0; count < 5; count++) n1.transport.send(proposeRequest('n1', 'n2', 1_000));
    const stats = n1.transport.stats();
    expect(stats.queuedMessages).toBe(2);
    expect(stats.queuedBytes).toBeLessThanOrEqual(3_000);
    expect(stats.dropsQueueFull).toBe(3);
  });

  it('redials a peer that restarted and delivers again', async () => {
    const mesh = await startMesh(['n1', 'n2'], { reconnectMaxDelayMs: 100 });
    const n1 = endpointOf(mesh, 'n1');
    const n2 = endpointOf(mesh, 'n2');
    await expectDelivery(n1, n2, 1);
    await n2.transport.close();
    await waitFor('n1 to notice', () => n1.transport.stats().outboundConnections === 0);
    // Sent while n2 is down: queued (or lost with the old connection; Raft would resend).
    n1.transport.send(heartbeat('n1', 'n2', 2));
    await waitFor('a failed redial', () => n1.transport.stats().connectFailures >= 1);

    const restarted = await restartAt('n2', n2.address, n1, { peers: { n1: n1.address } });
    await expectDelivery(n1, restarted, 3);
    expect(restarted.inbox.map((message) => (message.type === 'Heartbeat' ? message.context : -1))).toEqual([2, 3]);
    expect(n1.transport.stats().reconnects).toBeGreaterThanOrEqual(1);
    // And the other direction, which n2 dials afresh.
    await expectDelivery(restarted, n1, 4);
  });

  it('carries large messages intact through socket backpressure', async () => {
    const mesh = await startMesh(['n1', 'n2']);
    const n1 = endpointOf(mesh, 'n1');
    const n2 = endpointOf(mesh, 'n2');
    const messageBytes = 3 * 1024 * 1024;
    for (let count = 0; count < 6; count++) n1.transport.send({ ...proposeRequest('n1', 'n2', messageBytes), requestId: count });
    await waitFor('six large messages', () => n2.inbox.length === 6, 10_000);
    expect(n2.inbox.map((message) => (message.type === 'ProposeRequest' ? [message.requestId, message.data.byteLength, message.data.every((byte) => byte === 7)] : null))).toEqual(
      Array.from({ length: 6 }, (_, index) => [index, messageBytes, true]),
    );
  });

  it('closes idle connections and redials on the next message', async () => {
    const mesh = await startMesh(['n1', 'n2'], { idleTimeoutMs: 100 });
    const n1 = endpointOf(mesh, 'n1');
    const n2 = endpointOf(mesh, 'n2');
    await expectDelivery(n1, n2, 1);
    await waitFor('the idle close', () => n1.transport.stats().outboundConnections === 0 && n2.transport.stats().inboundConnections === 0);
    expect(n1.transport.stats().idleTimeouts + n2.transport.stats().idleTimeouts).toBeGreaterThanOrEqual(1);
    await expectDelivery(n1, n2, 2);
    expect(n1.transport.stats()).toMatchObject({ connectAttempts: 2, connectFailures: 0 });
  });

  it('follows peer changes: a new address is redialed, a removed peer is refused', async () => {
    const mesh = await startMesh(['n1', 'n2'], { reconnectBaseDelayMs: 1_000 });
    const n1 = endpointOf(mesh, 'n1');
    const n2 = endpointOf(mesh, 'n2');
    await expectDelivery(n1, n2, 1);
    const moved = await startEndpoint('n2', { peers: { n1: n1.address } });
    n1.transport.setPeer('n2', moved.address);
    await expectDelivery(n1, moved, 2);
    await n1.transport.removePeer('n2');
    n1.transport.send(heartbeat('n1', 'n2', 3));
    expect(n1.transport.stats().dropsUnknownPeer).toBe(1);
    moved.transport.send(heartbeat('n2', 'n1', 4));
    await waitFor('the refusal', () => moved.transport.stats().refusedByPeer === 1);
    expect(n1.transport.stats().handshakeRefusals).toBe(1);
  });

  it('drops messages to unknown peers and messages larger than maxFrameBytes, and counts them', async () => {
    const mesh = await startMesh(['n1', 'n2'], { maxFrameBytes: 2_048 });
    const n1 = endpointOf(mesh, 'n1');
    const n2 = endpointOf(mesh, 'n2');
    n1.transport.send(heartbeat('n1', 'n9', 1));
    n1.transport.send(proposeRequest('n1', 'n2', 4_096));
    await expectDelivery(n1, n2, 2);
    expect(n1.transport.stats()).toMatchObject({ dropsUnknownPeer: 1, dropsOversized: 1, framesOut: 1 });
    expect(n2.inbox).toHaveLength(1);
  });

  it('close() shuts the listener and every connection, stops redialing and drops later sends', async () => {
    const n1 = await startEndpoint('n1', { peers: { n2: { host: LOOPBACK, port: 1 } }, reconnectBaseDelayMs: 10, reconnectMaxDelayMs: 20 });
    n1.transport.send(heartbeat('n1', 'n2', 1));
    await waitFor('a few failed dials', () => n1.transport.stats().connectFailures >= 2);
    const port = n1.transport.port;
    await n1.transport.close();
    await n1.transport.close(); // idempotent
    const attempts = n1.transport.stats().connectAttempts;
    n1.transport.send(heartbeat('n1', 'n2', 2));
    await sleep(200);
    expect(n1.transport.stats().connectAttempts).toBe(attempts);
    expect(n1.transport.stats().dropsClosed).toBeGreaterThanOrEqual(2);
    await expect(rawConnect(port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('rejects invalid options with ConfigError naming the field', async () => {
    const base: TcpTransportOptions = { clusterId: CLUSTER_ID, nodeId: 'n1', listen: { host: LOOPBACK, port: 0 }, peers: {} };
    const cases: [Partial<TcpTransportOptions>, string][] = [
      [{ clusterId: '' }, 'clusterId'],
      [{ nodeId: '' }, 'nodeId'],
      [{ listen: { host: LOOPBACK, port: 70_000 } }, 'listen.port'],
      [{ peers: { n2: { host: LOOPBACK, port: 0 } } }, 'peers.n2.port'],
      [{ maxFrameBytes: 0 }, 'maxFrameBytes'],
      [{ maxFrameBytes: 2 ** 32 }, 'maxFrameBytes'],
      [{ maxQueuedMessagesPerPeer: 1.5 }, 'maxQueuedMessagesPerPeer'],
      [{ handshakeTimeoutMs: -1 }, 'handshakeTimeoutMs'],
      [{ tls: { cert: 'not a certificate', key: 'nor a key', ca: 'nor a CA' } }, 'tls'],
    ];
    for (const [override, field] of cases) {
      const error = await TcpTransport.start({ ...base, ...override }).catch((caught: unknown) => caught);
      expect(error, field).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).field).toBe(field);
    }
  });
});

describe('TcpTransport handshake', () => {
  it('refuses a peer of another cluster, and the dialer counts the refusal', async () => {
    const n1 = await startEndpoint('n1');
    const n2 = await startEndpoint('n2', { clusterId: 'another-cluster', peers: { n1: n1.address }, reconnectBaseDelayMs: 1_000 });
    n1.transport.setPeer('n2', n2.address);
    n2.transport.send(heartbeat('n2', 'n1', 1));
    await waitFor('the refusal', () => n2.transport.stats().refusedByPeer >= 1);
    expect(n1.transport.stats()).toMatchObject({ handshakeRefusals: 1, connectionsAccepted: 0, framesIn: 0 });
    expect(n1.inbox).toEqual([]);
  });

  it('refuses a node id that is not a peer', async () => {
    const n1 = await startEndpoint('n1');
    const n9 = await startEndpoint('n9', { peers: { n1: n1.address }, reconnectBaseDelayMs: 1_000 });
    n9.transport.send(heartbeat('n9', 'n1', 1));
    await waitFor('the refusal', () => n9.transport.stats().refusedByPeer >= 1);
    expect(n1.transport.stats()).toMatchObject({ handshakeRefusals: 1, connectionsAccepted: 0 });
    expect(n1.inbox).toEqual([]);
  });

  it('answers a raw dialer with the reason for a refusal, then closes', async () => {
    const n1 = await startEndpoint('n1', { peers: { n2: { host: LOOPBACK, port: 1 } } });
    const cases: [Buffer, string][] = [
      [hello('n2', 'n1', 'another-cluster'), 'ClusterMismatch'],
      [hello('n9', 'n1'), 'UnknownNode'],
      [hello('n1', 'n1'), 'UnknownNode'],
      [hello('n2', 'n7'), 'WrongNode'],
      [hello('n2', 'n1', CLUSTER_ID, PROTOCOL_VERSION + 98), 'ProtocolMismatch'],
    ];
    for (const [handshake, reason] of cases) {
      const socket = await rawConnect(n1.transport.port);
      const answer = untilClosed(socket);
      socket.write(handshake);
      expect(framesIn(await answer), reason).toEqual([[TCP_HANDSHAKE_MAGIC, PROTOCOL_VERSION, 'refuse', reason]]);
    }
    expect(n1.transport.stats().handshakeRefusals).toBe(cases.length);
  });

  it('accepts a valid handshake with an accept frame naming the listener', async () => {
    const n1 = await startEndpoint('n1', { peers: { n2: { host: LOOPBACK, port: 1 } } });
    const socket = await rawConnect(n1.transport.port);
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.write(hello('n2', 'n1'));
    await waitFor('the answer', () => framesIn(Buffer.concat(received)).length === 1);
    expect(framesIn(Buffer.concat(received))).toEqual([[TCP_HANDSHAKE_MAGIC, PROTOCOL_VERSION, 'accept', 'n1']]);
    socket.write(frame(encodeMessage(heartbeat('n2', 'n1', 5))));
    await waitFor('delivery', () => n1.inbox.length === 1);
    expect(n1.inbox).toEqual([heartbeat('n2', 'n1', 5)]);
  });

  it('gives up on a listener that never answers the handshake, and retries', async () => {
    const silent = net.createServer((socket) => {
      rawSockets.add(socket);
    });
    await new Promise<void>((resolve) => silent.listen(0, LOOPBACK, resolve));
    try {
      const address = silent.address();
      if (address === null || typeof address === 'string') throw new Error('no address');
      const n1 = await startEndpoint('n1', { peers: { n2: { host: LOOPBACK, port: address.port } }, handshakeTimeoutMs: 100, reconnectMaxDelayMs: 50 });
      n1.transport.send(heartbeat('n1', 'n2', 1));
      await waitFor('two timed-out attempts', () => n1.transport.stats().handshakeTimeouts >= 2 && n1.transport.stats().connectFailures >= 2);
      expect(n1.transport.stats()).toMatchObject({ outboundConnections: 0, queuedMessages: 1 });
    } finally {
      for (const socket of rawSockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('turns away connections beyond maxInboundConnections', async () => {
    const n1 = await startEndpoint('n1', { maxInboundConnections: 2 });
    const sockets = [await rawConnect(n1.transport.port), await rawConnect(n1.transport.port)];
    const third = await rawConnect(n1.transport.port);
    await untilClosed(third);
    expect(n1.transport.stats().connectionsOverCapacity).toBe(1);
    expect(sockets.every((socket) => !socket.destroyed)).toBe(true);
  });

  it('closes a connection that sends no handshake within handshakeTimeoutMs', async () => {
    const n1 = await startEndpoint('n1', { handshakeTimeoutMs: 150 });
    const socket = await rawConnect(n1.transport.port);
    await untilClosed(socket);
    await waitFor('the server side to close', () => n1.transport.stats().inboundConnections === 0);
    expect(n1.transport.stats().handshakeTimeouts).toBe(1);
  });
});

describe('TcpTransport under hostile input', () => {
  // n1 serves; n2 is a legitimate transport that must keep getting through. Raw sockets claim to be
  // n3 (a known peer with no transport), so they never displace n2's connection.
  async function hostileSetup(overrides: Partial<TcpTransportOptions> = {}): Promise<{ n1: Endpoint; n2: Endpoint }> {
    const mesh = await startMesh(['n1', 'n2'], overrides);
    const n1 = endpointOf(mesh, 'n1');
    n1.transport.setPeer('n3', { host: LOOPBACK, port: 1 });
    return { n1, n2: endpointOf(mesh, 'n2') };
  }

  const validFromN3 = (): Buffer => frame(encodeMessage(heartbeat('n3', 'n1', 42)));
  const cases: { name: string; bytes: () => Buffer; counter: keyof TcpTransportStats; endAfter?: boolean }[] = [
    { name: 'text garbage (an HTTP request)', bytes: () => Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), counter: 'oversizedFrames' },
    { name: 'a small frame of garbage instead of a handshake', bytes: () => frame(Buffer.from([0xc1, 0xc1, 0xc1])), counter: 'malformedFrames' },
    { name: 'a handshake with the wrong magic', bytes: () => frame(pack(['http/1.1', PROTOCOL_VERSION, CLUSTER_ID, 'n3', 'n1'])), counter: 'malformedFrames' },
    { name: 'a handshake that is a msgpack map', bytes: () => frame(pack({ magic: TCP_HANDSHAKE_MAGIC })), counter: 'malformedFrames' },
    { name: 'length 0xFFFFFFFF before the handshake', bytes: () => Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]), counter: 'oversizedFrames' },
    { name: 'a handshake frame over its 4 KiB limit', bytes: () => frame(Buffer.alloc(MAX_HANDSHAKE_FRAME_BYTES + 1)), counter: 'oversizedFrames' },
    { name: 'length 0xFFFFFFFF after the handshake', bytes: () => Buffer.concat([hello('n3', 'n1'), Buffer.from([0xff, 0xff, 0xff, 0xff])]), counter: 'oversizedFrames' },
    { name: 'a truncated frame, then end of stream', bytes: () => Buffer.concat([hello('n3', 'n1'), validFromN3().subarray(0, 9)]), counter: 'truncatedFrames', endAfter: true },
    { name: 'a truncated length prefix, then end of stream', bytes: () => Buffer.concat([hello('n3', 'n1'), Buffer.from([0, 0])]), counter: 'truncatedFrames', endAfter: true },
    { name: 'invalid msgpack after the handshake', bytes: () => Buffer.concat([hello('n3', 'n1'), frame(Buffer.from([0xc1]))]), counter: 'malformedFrames' },
    { name: 'an empty frame after the handshake', bytes: () => Buffer.concat([hello('n3', 'n1'), frame(new Uint8Array(0))]), counter: 'malformedFrames' },
    { name: 'valid msgpack that is not a message', bytes: () => Buffer.concat([hello('n3', 'n1'), frame(pack({ type: 'Heartbeat' }))]), counter: 'malformedFrames' },
    {
      name: 'a message of another protocol version',
      bytes: () => Buffer.concat([hello('n3', 'n1'), frame(pack([PROTOCOL_VERSION + 1, 5, 'n3', 'n1', 3, 7, 0]))]),
      counter: 'malformedFrames',
    },
    { name: 'a second handshake after the first', bytes: () => Buffer.concat([hello('n3', 'n1'), hello('n3', 'n1')]), counter: 'malformedFrames' },
  ];

  for (const { name, bytes, counter, endAfter } of cases) {
    it(`closes and counts ${name}, and keeps serving a legitimate peer`, async () => {
      const { n1, n2 } = await hostileSetup();
      await expectDelivery(n2, n1, 1);
      const socket = await rawConnect(n1.transport.port);
      const closed = untilClosed(socket);
      socket.write(bytes());
      if (endAfter === true) socket.end();
      await closed;
      await waitFor(`${counter} to count it`, () => n1.transport.stats()[counter] === 1);
      expect(badInput(n1.transport.stats())).toBe(1);
      await expectDelivery(n2, n1, 2);
      expect(n1.inbox.every((message) => message.from === 'n2')).toBe(true);
      await waitFor('only the legitimate connection left', () => n1.transport.stats().inboundConnections === 1);
    });
  }

  it('drops messages whose sender is not the handshake node, keeping the connection', async () => {
    const { n1, n2 } = await hostileSetup();
    const socket = await rawConnect(n1.transport.port);
    socket.write(Buffer.concat([hello('n3', 'n1'), frame(encodeMessage(heartbeat('n2', 'n1', 7))), frame(encodeMessage(heartbeat('n3', 'n2', 8)))]));
    socket.write(validFromN3());
    await waitFor('the valid message', () => n1.inbox.length === 1);
    expect(n1.inbox).toEqual([heartbeat('n3', 'n1', 42)]);
    expect(n1.transport.stats()).toMatchObject({ dropsWrongSender: 1, dropsWrongRecipient: 1, framesIn: 3, messagesDelivered: 1 });
    expect(socket.destroyed).toBe(false);
    await expectDelivery(n2, n1, 3);
  });

  it('keeps serving while fuzzed with random and mutated frames (fast-check)', async () => {
    const { n1, n2 } = await hostileSetup({ handshakeTimeoutMs: 500 });
    const validMessages = [heartbeat('n3', 'n1', 1), appendRequest('n3', 'n1'), voteRequest('n3', 'n1'), proposeRequest('n3', 'n1', 40)].map((message) => Buffer.from(encodeMessage(message)));
    const mutatedMessage = fc
      .record({
        base: fc.constantFrom(...validMessages),
        flips: fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 4 }),
        cut: fc.option(fc.nat(), { nil: undefined }),
      })
      .map(({ base, flips, cut }) => {
        const bytes = Buffer.from(base);
        for (const { at, value } of flips) bytes[at % bytes.length] = value;
        return frame(cut === undefined ? bytes : bytes.subarray(0, cut % bytes.length));
      });
    const piece = fc.oneof(
      { weight: 3, arbitrary: mutatedMessage },
      { weight: 2, arbitrary: fc.constantFrom(...validMessages).map((bytes) => frame(bytes)) },
      { weight: 2, arbitrary: fc.uint8Array({ maxLength: 64 }).map((bytes) => frame(bytes)) },
      { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 32 }).map((bytes) => Buffer.from(bytes)) },
      // Any declared length, followed by too few bytes or by the start of the next "frame".
      { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 0, max: 0xff_ff_ff_ff }), fc.uint8Array({ maxLength: 16 })).map(([declaredBytes, bytes]) => lengthPrefixed(declaredBytes, bytes)) },
    );
    const session = fc.record({ handshake: fc.boolean(), pieces: fc.array(piece, { maxLength: 6 }) });
    let round = 0;
    await fc.assert(
      fc.asyncProperty(session, async ({ handshake, pieces }) => {
        const socket = await rawConnect(n1.transport.port);
        const closed = untilClosed(socket, 2_000);
        socket.end(Buffer.concat([...(handshake ? [hello('n3', 'n1')] : []), ...pieces]));
        await closed;
        rawSockets.delete(socket);
        // Whatever got through came from the node its connection named, to this node.
        for (const message of n1.inbox) {
          expect(['n2', 'n3']).toContain(message.from);
          expect(message.to).toBe('n1');
        }
        await expectDelivery(n2, n1, 1_000 + round++);
      }),
      { numRuns: 300, interruptAfterTimeLimit: 4_000 },
    );
    expect(round).toBeGreaterThan(20);
    await waitFor('only the legitimate connection left', () => n1.transport.stats().inboundConnections === 1);
    expect(badInput(n1.transport.stats())).toBeGreaterThan(0);
  });

  it('reassembles frames however the stream is split, and refuses an oversized length before its payload arrives (FrameReader)', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 20 }), (payloads, cuts) => {
        const stream = Buffer.concat(payloads.map((payload) => frame(payload)));
        const reader = new FrameReader(40);
        const out: Buffer[] = [];
        let offset = 0;
        for (let position = 0; offset < stream.length; position++) {
          const size = cuts[position % cuts.length] ?? 1;
          reader.push(stream.subarray(offset, offset + size));
          offset += size;
          for (let read = reader.next(); read.kind === 'frame'; read = reader.next()) out.push(read.payload);
        }
        expect(out.map((payload) => [...payload])).toEqual(payloads.map((payload) => [...payload]));
        expect(reader.bufferedBytes).toBe(0);
      }),
    );
    const reader = new FrameReader(1_024);
    reader.push(Buffer.from([0, 0, 4]));
    expect(reader.next()).toEqual({ kind: 'incomplete' });
    reader.push(Buffer.from([1]));
    expect(reader.next()).toEqual({ kind: 'oversized', declaredBytes: 1_025 });
  });
});

describe('TcpTransport with mutual TLS', () => {
  const ca = tlsFile('ca.pem');
  const nodeTls = (id: string): NonNullable<TcpTransportOptions['tls']> => ({ cert: tlsFile(`${id}.pem`), key: tlsFile(`${id}.key`), ca });
  const rogueTls = { cert: tlsFile('rogue.pem'), key: tlsFile('rogue.key'), ca };

  it('connects peers whose certificates the cluster CA signed', async () => {
    const n1 = await startEndpoint('n1', { tls: nodeTls('n1') });
    const n2 = await startEndpoint('n2', { tls: nodeTls('n2'), peers: { n1: n1.address } });
    n1.transport.setPeer('n2', n2.address);
    await expectDelivery(n2, n1, 1);
    await expectDelivery(n1, n2, 2);
    n1.transport.send(appendRequest('n1', 'n2'));
    await waitFor('the append', () => n2.inbox.length === 2);
    expect(plainBytes(n2.inbox[1])).toEqual(appendRequest('n1', 'n2'));
    expect(n1.transport.stats().tlsFailures).toBe(0);
  });

  it('refuses a client certificate signed by another CA', async () => {
    const n1 = await startEndpoint('n1', { tls: nodeTls('n1'), peers: { n2: { host: LOOPBACK, port: 1 } } });
    const rogue = await startEndpoint('n2', { tls: rogueTls, peers: { n1: n1.address }, reconnectBaseDelayMs: 1_000 });
    rogue.transport.send(heartbeat('n2', 'n1', 1));
    await waitFor('the TLS refusal', () => n1.transport.stats().tlsFailures >= 1 && rogue.transport.stats().connectFailures >= 1);
    expect(n1.transport.stats()).toMatchObject({ connectionsAccepted: 0, framesIn: 0 });
    expect(n1.inbox).toEqual([]);
  });

  it('does not dial a server whose certificate another CA signed', async () => {
    const rogueServer = await startEndpoint('n2', { tls: rogueTls });
    const n1 = await startEndpoint('n1', { tls: nodeTls('n1'), peers: { n2: rogueServer.address }, reconnectBaseDelayMs: 1_000 });
    n1.transport.send(heartbeat('n1', 'n2', 1));
    await waitFor('the failed dial', () => n1.transport.stats().connectFailures >= 1);
    expect(n1.transport.stats().outboundConnections).toBe(0);
    expect(rogueServer.inbox).toEqual([]);
  });

  it('refuses a TLS client without a certificate, and a plaintext client', async () => {
    const n1 = await startEndpoint('n1', { tls: nodeTls('n1'), peers: { n2: { host: LOOPBACK, port: 1 } } });
    const anonymous = tls.connect({ host: LOOPBACK, port: n1.transport.port, ca });
    rawSockets.add(anonymous);
    anonymous.on('error', () => undefined);
    anonymous.on('secureConnect', () => anonymous.write(hello('n2', 'n1')));
    await untilClosed(anonymous);
    const plaintext = await rawConnect(n1.transport.port);
    const plaintextClosed = untilClosed(plaintext);
    plaintext.write(hello('n2', 'n1'));
    await plaintextClosed;
    await waitFor('both refusals', () => n1.transport.stats().tlsFailures >= 2);
    expect(n1.transport.stats()).toMatchObject({ connectionsAccepted: 0, inboundConnections: 0, framesIn: 0 });
  });
});

describe('RaftNode over TcpTransport', () => {
  it('three nodes elect a leader and commit a proposal', async () => {
    const ids = ['n1', 'n2', 'n3'];
    const mesh = await startMesh(ids);
    const clock = new SystemClock();
    const fatalErrors: Error[] = [];
    const machines = new Map<string, RecordingStateMachine>();
    const nodes: RaftNode<string>[] = [];
    try {
      for (const [index, id] of ids.entries()) {
        const machine = new RecordingStateMachine();
        machines.set(id, machine);
        nodes.push(
          await RaftNode.start<string>({
            id,
            voters: ids,
            transport: endpointOf(mesh, id).transport,
            storage: new MemoryStorage(),
            clock,
            stateMachine: machine,
            // 20 ms ticks: elections within a few hundred milliseconds of wall time.
            tickIntervalMs: 20,
            seed: 11 + index,
            onFatalError: (error) => fatalErrors.push(error),
          }),
        );
      }
      let leader: RaftNode<string> | undefined;
      await waitFor('a leader', () => (leader = nodes.find((node) => node.status().role === 'Leader')) !== undefined, 10_000);
      if (leader === undefined) throw new Error('no leader');
      const applied = await leader.propose(text('over-tcp'), { timeoutMs: 5_000 });
      expect(applied.result).toBe(`${applied.index}:over-tcp`);
      await waitFor('every node to apply it', () => [...machines.values()].every((machine) => machine.commands.includes('over-tcp')));
      expect(nodes.filter((node) => node.status().role === 'Leader')).toHaveLength(1);
      expect(fatalErrors).toEqual([]);
      for (const id of ids) expect(badInput(endpointOf(mesh, id).transport.stats())).toBe(0);
    } finally {
      for (const node of nodes) await node.stop({ transferLeadership: false });
    }
  });

  it('a live node fuzzed with random and mutated frames stays up, keeps its data and keeps committing', async () => {
    const ids = ['n1', 'n2', 'n3'];
    const mesh = await startMesh(ids, { handshakeTimeoutMs: 300 });
    const clock = new SystemClock();
    const fatalErrors: Error[] = [];
    const machines = new Map<string, RecordingStateMachine>();
    const nodes: RaftNode<string>[] = [];
    try {
      for (const [index, id] of ids.entries()) {
        const machine = new RecordingStateMachine();
        machines.set(id, machine);
        nodes.push(
          await RaftNode.start<string>({
            id,
            voters: ids,
            transport: endpointOf(mesh, id).transport,
            storage: new MemoryStorage(),
            clock,
            stateMachine: machine,
            tickIntervalMs: 20,
            seed: 31 + index,
            onFatalError: (error) => fatalErrors.push(error),
          }),
        );
      }
      let leader: RaftNode<string> | undefined;
      await waitFor('a leader', () => (leader = nodes.find((node) => node.status().role === 'Leader')) !== undefined, 10_000);
      if (leader === undefined) throw new Error('no leader');
      for (let n = 0; n < 5; n++) await leader.propose(text(`before-${n}`), { timeoutMs: 5_000 });
      await waitFor('every node to apply the first entries', () => [...machines.values()].every((machine) => machine.commands.includes('before-4')));
      const target = endpointOf(mesh, leader.id);
      // Frames from outside the cluster: garbage, mutated handshakes (wrong cluster, unknown or
      // corrupted ids, other versions), arbitrary lengths, and frames after a refused handshake.
      // A peer that passes the handshake is a member (with TLS, proven by its certificate), so its
      // well-formed messages are not hostile input.
      const handshake = fc.oneof(
        fc.constant(hello('intruder', leader.id)),
        fc.constant(hello('n2', leader.id, 'another-cluster')),
        fc.constant(hello('n2', leader.id, CLUSTER_ID, PROTOCOL_VERSION + 1)),
        fc.tuple(fc.constant(hello('n9', leader.id)), fc.nat(), fc.integer({ min: 0, max: 255 })).map(([bytes, at, value]) => {
          const mutated = Buffer.from(bytes);
          mutated[4 + (at % (mutated.length - 4))] = value;
          return mutated;
        }),
        fc.uint8Array({ maxLength: 64 }).map((bytes) => frame(bytes)),
      );
      const piece = fc.oneof(
        fc.uint8Array({ maxLength: 64 }).map((bytes) => frame(bytes)),
        fc.constantFrom(...ids).map((from) => frame(encodeMessage(heartbeat(from, leader?.id ?? 'n1', 1)))),
        fc.tuple(fc.integer({ min: 0, max: 0xff_ff_ff_ff }), fc.uint8Array({ maxLength: 16 })).map(([declaredBytes, bytes]) => lengthPrefixed(declaredBytes, bytes)),
      );
      let sessions = 0;
      await fc.assert(
        fc.asyncProperty(handshake, fc.array(piece, { maxLength: 5 }), async (first, rest) => {
          const socket = await rawConnect(target.transport.port);
          const closed = untilClosed(socket, 2_000);
          socket.end(Buffer.concat([first, ...rest]));
          await closed;
          rawSockets.delete(socket);
          sessions++;
        }),
        { numRuns: 200, interruptAfterTimeLimit: 3_000 },
      );
      expect(sessions).toBeGreaterThan(20);
      expect(badInput(target.transport.stats()) + target.transport.stats().handshakeRefusals).toBeGreaterThan(0);
      // Still up, still the same data, still committing through the same cluster.
      expect(fatalErrors).toEqual([]);
      const current = nodes.find((node) => node.status().role === 'Leader') ?? leader;
      await current.propose(text('after-fuzz'), { timeoutMs: 5_000 });
      await waitFor('every node to apply the entry proposed after the fuzzing', () => [...machines.values()].every((machine) => machine.commands.includes('after-fuzz')));
      for (const machine of machines.values()) expect(machine.commands.filter((command) => command.startsWith('before-'))).toEqual(['before-0', 'before-1', 'before-2', 'before-3', 'before-4']);
      expect(fatalErrors).toEqual([]);
    } finally {
      for (const node of nodes) await node.stop({ transferLeadership: false });
    }
  });
});
