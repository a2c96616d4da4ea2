/**
 * Fixed-layout fast paths of the wire codec, for the messages a cluster exchanges all the time
 * (heartbeats, appends, votes, answers). They read and write the same msgpack bytes that msgpackr
 * produces for the message layouts of `codec.ts`, without msgpackr's per-call set-up and per-value
 * type dispatch: per message these cost as much as the packing itself.
 *
 * Both paths handle only the canonical subset of msgpack that msgpackr writes for such messages:
 * non-negative safe integers (below 2^32 as msgpackr's unsigned forms, from 2^32 on as its float64,
 * which is how request ids arrive), booleans, nil, ASCII strings shorter than 32 characters, binary
 * data, and arrays. On anything else they give up (return null) and the caller uses msgpackr, which
 * stays the reference: the encoder's bytes equal msgpackr's, and whatever the decoder accepts, the
 * generic decoder accepts with an equal result (both proven by differential property tests). The
 * decoder therefore never throws and never refuses input itself: every refusal, with its message,
 * comes from the generic path.
 *
 * @module
 */
import { MAX_NODE_ID_LENGTH } from './config.js';
import type { Entry, LogIndex, Message, NodeId, ProposalRefusal, Term } from './types.js';

/** Version of the message layout (exported by codec.ts as `PROTOCOL_VERSION`). */
export const WIRE_PROTOCOL_VERSION = 1;

/** Wire codes of the message types, for both the fast paths and the generic codec. */
export const FAST_TYPE_CODES = {
  VoteRequest: 1,
  VoteResponse: 2,
  AppendRequest: 3,
  AppendResponse: 4,
  Heartbeat: 5,
  HeartbeatResponse: 6,
  ProposeRequest: 7,
  ProposeResponse: 8,
  ReadIndexRequest: 9,
  ReadIndexResponse: 10,
  TimeoutNow: 11,
  InstallSnapshot: 12,
  SnapshotResponse: 13,
} as const satisfies Record<Message['type'], number>;

// -----------------------------------------------------------------------------------------------
// Encoding

/** Largest message written by the fast encoder; larger ones (big appends) go through msgpackr. */
const MAX_FAST_ENCODED_BYTES = 4096;
/**
 * Encodings are views into a shared pool, as msgpackr's are into its buffer: a new pool replaces a
 * full one, and an old pool lives as long as a message encoded into it.
 */
const POOL_BYTES = 64 * 1024;

let pool = new Uint8Array(POOL_BYTES);
let poolPosition = 0;
/**
 * Scratch space for float64s: msgpack stores them big-endian, the typed array in the host's order.
 */
const float64Scratch = new Float64Array(1);
const float64Bytes = new Uint8Array(float64Scratch.buffer);
const littleEndianHost = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
/** Smallest integer msgpackr writes as a float64. */
const FLOAT64_INTEGERS_FROM = 0x1_0000_0000;

/** Write position in {@link pool} during an encoding. */
let at = 0;
/** Set when a value is outside the fast subset: the encoding is abandoned. */
let unsupported = false;

/**
 * Encodes `message` exactly as msgpackr encodes its layout, or returns null if the message holds a
 * value outside the fast subset (then encode it with msgpackr).
 */
export function encodeFast(message: Message): Uint8Array | null {
  if (message.type === 'InstallSnapshot') return null;
  let dataBytes = 0;
  if (message.type === 'AppendRequest') {
    const entries = message.entries;
    // Bounded: a message over the fast limit is left to msgpackr before its entries are summed up.
    for (let index = 0; index < entries.length && dataBytes <= MAX_FAST_ENCODED_BYTES; index++) dataBytes += (entries[index] as Entry).data.byteLength + 32;
  } else if (message.type === 'ProposeRequest') {
    dataBytes = message.data.byteLength;
  }
  // Header, at most 10 fields of at most 9 bytes, two node ids of at most 32 bytes.
  if (dataBytes + 200 > MAX_FAST_ENCODED_BYTES) return null;
  if (pool.length - poolPosition < MAX_FAST_ENCODED_BYTES) {
    pool = new Uint8Array(POOL_BYTES);
    poolPosition = 0;
  }
  const start = poolPosition;
  at = start;
  unsupported = false;
  writeMessage(message);
  // The size bound above keeps every write inside the pool; a typed array drops writes beyond its
  // end silently, so check anyway rather than hand out a truncated encoding.
  if (abandoned()) return null;
  poolPosition = at;
  return pool.subarray(start, at);
}

/** Whether the encoding in progress met an unsupported value (read through a call: set by callees). */
function abandoned(): boolean {
  return unsupported || at > pool.length;
}

function writeMessage(message: Message): void {
  switch (message.type) {
    case 'VoteRequest':
      writeHeader(9, FAST_TYPE_CODES.VoteRequest, message.from, message.to, message.term);
      writeBoolean(message.preVote);
      writeUint(message.lastLogIndex);
      writeUint(message.lastLogTerm);
      writeBoolean(message.leadershipTransfer);
      return;
    case 'VoteResponse':
      writeHeader(7, FAST_TYPE_CODES.VoteResponse, message.from, message.to, message.term);
      writeBoolean(message.preVote);
      writeBoolean(message.granted);
      return;
    case 'AppendRequest': {
      writeHeader(9, FAST_TYPE_CODES.AppendRequest, message.from, message.to, message.term);
      writeUint(message.prevLogIndex);
      writeUint(message.prevLogTerm);
      writeUint(message.leaderCommit);
      const entries = message.entries;
      writeArrayHeader(entries.length);
      for (let index = 0; index < entries.length; index++) {
        const entry = entries[index] as Entry;
        pool[at++] = 0x94;
        writeUint(entry.index);
        writeUint(entry.term);
        writeUint(entry.type);
        writeBinary(entry.data);
      }
      return;
    }
    case 'AppendResponse':
      writeHeader(9, FAST_TYPE_CODES.AppendResponse, message.from, message.to, message.term);
      writeBoolean(message.success);
      writeUint(message.index);
      writeUint(message.rejectHintIndex);
      writeUint(message.rejectHintTerm);
      return;
    case 'Heartbeat':
      writeHeader(7, FAST_TYPE_CODES.Heartbeat, message.from, message.to, message.term);
      writeUint(message.commit);
      writeUint(message.context);
      return;
    case 'HeartbeatResponse':
      writeHeader(6, FAST_TYPE_CODES.HeartbeatResponse, message.from, message.to, message.term);
      writeUint(message.context);
      return;
    case 'ProposeRequest':
      writeHeader(8, FAST_TYPE_CODES.ProposeRequest, message.from, message.to, message.term);
      writeUint(message.requestId);
      writeUint(message.leaderTerm);
      writeBinary(message.data);
      return;
    case 'ProposeResponse':
      writeHeader(10, FAST_TYPE_CODES.ProposeResponse, message.from, message.to, message.term);
      writeUint(message.requestId);
      writeUint(message.index);
      writeUint(message.entryTerm);
      writeNullableString(message.refusal);
      writeNullableString(message.leaderHint);
      return;
    case 'ReadIndexRequest':
      writeHeader(6, FAST_TYPE_CODES.ReadIndexRequest, message.from, message.to, message.term);
      writeUint(message.requestId);
      return;
    case 'ReadIndexResponse':
      writeHeader(9, FAST_TYPE_CODES.ReadIndexResponse, message.from, message.to, message.term);
      writeUint(message.requestId);
      writeUint(message.index);
      writeNullableString(message.refusal);
      writeNullableString(message.leaderHint);
      return;
    case 'TimeoutNow':
      writeHeader(5, FAST_TYPE_CODES.TimeoutNow, message.from, message.to, message.term);
      return;
    case 'SnapshotResponse':
      writeHeader(8, FAST_TYPE_CODES.SnapshotResponse, message.from, message.to, message.term);
      writeUint(message.snapshotIndex);
      writeUint(message.receivedBytes);
      writeBoolean(message.gap);
      return;
    case 'InstallSnapshot':
      unsupported = true;
      return;
  }
}

function writeHeader(fieldCount: number, typeCode: number, from: string, to: string, term: number): void {
  pool[at++] = 0x90 | fieldCount;
  pool[at++] = WIRE_PROTOCOL_VERSION;
  pool[at++] = typeCode;
  writeString(from);
  writeString(to);
  writeUint(term);
}

/** A non-negative safe integer, in msgpackr's choice of form; anything else is unsupported. */
function writeUint(value: number): void {
  if (value >>> 0 !== value) {
    if (value >= FLOAT64_INTEGERS_FROM && Number.isSafeInteger(value)) writeFloat64(value);
    else unsupported = true;
    return;
  }
  if (value < 0x80) {
    pool[at++] = value;
  } else if (value < 0x100) {
    pool[at++] = 0xcc;
    pool[at++] = value;
  } else if (value < 0x10000) {
    pool[at++] = 0xcd;
    pool[at++] = value >>> 8;
    pool[at++] = value & 0xff;
  } else {
    pool[at++] = 0xce;
    pool[at++] = value >>> 24;
    pool[at++] = (value >>> 16) & 0xff;
    pool[at++] = (value >>> 8) & 0xff;
    pool[at++] = value & 0xff;
  }
}

function writeFloat64(value: number): void {
  float64Scratch[0] = value;
  pool[at++] = 0xcb;
  for (let byte = 0; byte < 8; byte++) pool[at++] = float64Bytes[littleEndianHost ? 7 - byte : byte] as number;
}

function writeBoolean(value: boolean): void {
  pool[at++] = value ? 0xc3 : 0xc2;
}

/** An ASCII string shorter than 32 characters (a fixstr); anything else is unsupported. */
function writeString(value: string): void {
  const length = value.length;
  if (length >= 32) {
    unsupported = true;
    return;
  }
  pool[at++] = 0xa0 | length;
  for (let index = 0; index < length; index++) {
    const code = value.charCodeAt(index);
    if (code >= 0x80) {
      unsupported = true;
      return;
    }
    pool[at++] = code;
  }
}

function writeNullableString(value: string | null): void {
  if (value === null) pool[at++] = 0xc0;
  else writeString(value);
}

function writeArrayHeader(length: number): void {
  if (length < 0x10) {
    pool[at++] = 0x90 | length;
  } else if (length < 0x10000) {
    pool[at++] = 0xdc;
    pool[at++] = length >>> 8;
    pool[at++] = length & 0xff;
  } else {
    // More entries than fit the size bound of the fast path anyway.
    unsupported = true;
  }
}

/** Binary data (its length is within the size bound checked up front: bin8 or bin16). */
function writeBinary(data: Uint8Array): void {
  const length = data.byteLength;
  if (length < 0x100) {
    pool[at++] = 0xc4;
    pool[at++] = length;
  } else if (length < 0x10000) {
    pool[at++] = 0xc5;
    pool[at++] = length >>> 8;
    pool[at++] = length & 0xff;
  } else {
    unsupported = true;
    return;
  }
  pool.set(data, at);
  at += length;
}

// -----------------------------------------------------------------------------------------------
// Decoding

/** Input and read position during a decoding. */
let input: Uint8Array = new Uint8Array(0);
let position = 0;
/** Set when the input leaves the fast subset or the layout: the generic decoder takes over. */
let giveUp = false;

/** Most entries the fast decoder reads from one AppendRequest (a fixarray or array16 header). */
const MAX_FAST_ENTRIES = 0xffff;

/**
 * Decodes `bytes` if they are a well-formed message in the fast subset, or returns null: then decode
 * them with the generic decoder, which either accepts them with an equal result or refuses them with
 * the precise error. Never throws.
 */
export function decodeFast(bytes: Uint8Array): Message | null {
  input = bytes;
  position = 0;
  giveUp = false;
  const message = readMessage();
  const complete = !gaveUp() && position === bytes.length;
  input = EMPTY;
  return complete ? message : null;
}

const EMPTY = new Uint8Array(0);

function readMessage(): Message | null {
  const fieldCount = readArrayHeader();
  if (readUint() !== WIRE_PROTOCOL_VERSION) return null;
  const typeCode = readUint();
  const from = readNodeId();
  const to = readNodeId();
  const term = readUint() as Term;
  if (gaveUp() || from === null || to === null) return null;
  switch (typeCode) {
    case FAST_TYPE_CODES.VoteRequest: {
      if (fieldCount !== 9) return null;
      const preVote = readBoolean();
      const lastLogIndex = readUint() as LogIndex;
      const lastLogTerm = readUint() as Term;
      const leadershipTransfer = readBoolean();
      return { type: 'VoteRequest', from, to, term, preVote, lastLogIndex, lastLogTerm, leadershipTransfer };
    }
    case FAST_TYPE_CODES.VoteResponse: {
      if (fieldCount !== 7) return null;
      const preVote = readBoolean();
      const granted = readBoolean();
      return { type: 'VoteResponse', from, to, term, preVote, granted };
    }
    case FAST_TYPE_CODES.AppendRequest: {
      if (fieldCount !== 9) return null;
      const prevLogIndex = readUint() as LogIndex;
      const prevLogTerm = readUint() as Term;
      const leaderCommit = readUint() as LogIndex;
      const entries = readEntries(prevLogIndex, term);
      if (entries === null) return null;
      return { type: 'AppendRequest', from, to, term, prevLogIndex, prevLogTerm, leaderCommit, entries };
    }
    case FAST_TYPE_CODES.AppendResponse: {
      if (fieldCount !== 9) return null;
      const success = readBoolean();
      const index = readUint() as LogIndex;
      const rejectHintIndex = readUint() as LogIndex;
      const rejectHintTerm = readUint() as Term;
      return { type: 'AppendResponse', from, to, term, success, index, rejectHintIndex, rejectHintTerm };
    }
    case FAST_TYPE_CODES.Heartbeat: {
      if (fieldCount !== 7) return null;
      const commit = readUint() as LogIndex;
      const context = readUint();
      return { type: 'Heartbeat', from, to, term, commit, context };
    }
    case FAST_TYPE_CODES.HeartbeatResponse: {
      if (fieldCount !== 6) return null;
      return { type: 'HeartbeatResponse', from, to, term, context: readUint() };
    }
    case FAST_TYPE_CODES.TimeoutNow:
      if (fieldCount !== 5) return null;
      return { type: 'TimeoutNow', from, to, term };
    case FAST_TYPE_CODES.ReadIndexRequest:
      if (fieldCount !== 6) return null;
      return { type: 'ReadIndexRequest', from, to, term, requestId: readUint() };
    case FAST_TYPE_CODES.ReadIndexResponse: {
      if (fieldCount !== 9) return null;
      const requestId = readUint();
      const index = readUint() as LogIndex;
      const refusal = readRefusal();
      const leaderHint = readLeaderHint();
      return { type: 'ReadIndexResponse', from, to, term, requestId, index, refusal, leaderHint };
    }
    case FAST_TYPE_CODES.ProposeRequest: {
      if (fieldCount !== 8) return null;
      const requestId = readUint();
      const leaderTerm = readUint() as Term;
      const data = readBinary();
      if (data === null) return null;
      return { type: 'ProposeRequest', from, to, term, requestId, leaderTerm, data };
    }
    case FAST_TYPE_CODES.ProposeResponse: {
      if (fieldCount !== 10) return null;
      const requestId = readUint();
      const index = readUint() as LogIndex;
      const entryTerm = readUint() as Term;
      const refusal = readRefusal();
      const leaderHint = readLeaderHint();
      return { type: 'ProposeResponse', from, to, term, requestId, index, entryTerm, refusal, leaderHint };
    }
    case FAST_TYPE_CODES.SnapshotResponse: {
      if (fieldCount !== 8) return null;
      const snapshotIndex = readUint() as LogIndex;
      const receivedBytes = readUint();
      const gap = readBoolean();
      return { type: 'SnapshotResponse', from, to, term, snapshotIndex, receivedBytes, gap };
    }
    default:
      // InstallSnapshot, or an unknown type: the generic decoder.
      return null;
  }
}

/**
 * Entries with the generic decoder's checks: consecutive indexes after `prevLogIndex`, terms in
 * order and at most the message's, a known type. Membership entries go to the generic decoder,
 * which also decodes the membership they carry.
 */
function readEntries(prevLogIndex: LogIndex, messageTerm: Term): Entry[] | null {
  const count = readArrayHeader();
  if (gaveUp() || count > MAX_FAST_ENTRIES) return null;
  const entries: Entry[] = [];
  let previousTerm = 0;
  for (let offset = 0; offset < count; offset++) {
    if (readArrayHeader() !== 4) return null;
    const index = readUint();
    const entryTerm = readUint();
    const type = readUint();
    const data = readBinary();
    if (gaveUp() || data === null) return null;
    if (index !== prevLogIndex + offset + 1 || entryTerm < previousTerm || entryTerm > messageTerm) return null;
    if (type !== 0 && type !== 1) return null;
    previousTerm = entryTerm;
    entries.push({ index: index as LogIndex, term: entryTerm as Term, type, data });
  }
  return entries;
}

/** A fixarray or array16 header's length; -1 (and give up) otherwise. */
function readArrayHeader(): number {
  if (position >= input.length) return fail();
  const head = input[position++] as number;
  if (head >= 0x90 && head <= 0x9f) return head & 0x0f;
  if (head === 0xdc && position + 2 <= input.length) {
    const length = uint16At(position);
    position += 2;
    return length;
  }
  return fail();
}

/**
 * A positive fixint, uint8, uint16 or uint32, or a float64 holding a safe integer from 2^32 on (as
 * msgpackr writes those); -1 (and give up) for anything else.
 */
function readUint(): number {
  if (position >= input.length) return fail();
  const head = input[position++] as number;
  if (head < 0x80) return head;
  switch (head) {
    case 0xcc:
      if (position + 1 > input.length) return fail();
      return input[position++] as number;
    case 0xcd: {
      if (position + 2 > input.length) return fail();
      const value = uint16At(position);
      position += 2;
      return value;
    }
    case 0xce: {
      if (position + 4 > input.length) return fail();
      const value = uint32At(position);
      position += 4;
      return value;
    }
    case 0xcb: {
      if (position + 8 > input.length) return fail();
      for (let byte = 0; byte < 8; byte++) float64Bytes[littleEndianHost ? 7 - byte : byte] = input[position + byte] as number;
      position += 8;
      const value = float64Scratch[0] as number;
      return value >= FLOAT64_INTEGERS_FROM && Number.isSafeInteger(value) ? value : fail();
    }
    default:
      return fail();
  }
}

function readBoolean(): boolean {
  if (position >= input.length) {
    fail();
    return false;
  }
  const head = input[position++];
  if (head === 0xc3) return true;
  if (head !== 0xc2) fail();
  return false;
}

/** Binary data (bin8, bin16 or bin32), copied out so that it never aliases the input. */
function readBinary(): Uint8Array | null {
  if (position >= input.length) {
    fail();
    return null;
  }
  const head = input[position++];
  let length: number;
  if (head === 0xc4 && position + 1 <= input.length) {
    length = input[position++] as number;
  } else if (head === 0xc5 && position + 2 <= input.length) {
    length = uint16At(position);
    position += 2;
  } else if (head === 0xc6 && position + 4 <= input.length) {
    length = uint32At(position);
    position += 4;
  } else {
    fail();
    return null;
  }
  if (position + length > input.length) {
    fail();
    return null;
  }
  // A fresh array, never a view: a Buffer's slice() would alias the input.
  const data = new Uint8Array(length);
  data.set(input.subarray(position, position + length));
  position += length;
  return data;
}

/**
 * Recently decoded node ids, so that decoding returns one string per id (no allocation, and its hash
 * is computed once for the maps keyed by node id). Direct-mapped (see {@link idSlot}), so a lookup
 * compares one candidate; a miss replaces that slot. Bounded: a cluster has a handful of members.
 */
const ID_CACHE_SLOTS = 64;
const idCache: string[] = Array.from({ length: ID_CACHE_SLOTS }, () => '');

/**
 * The cache slot of the id of `length` bytes from `first` (bounds checked by the caller): from its
 * length, first byte and last two bytes (for a one-byte id, the string header), so that ids such as
 * `node-11` and `node-21` get different slots.
 */
function idSlot(first: number, length: number): number {
  const last = first + length - 1;
  return ((((input[first] as number) * 31 + (input[last - 1] as number)) * 31 + (input[last] as number)) * 7 + length) & (ID_CACHE_SLOTS - 1);
}

/** A node id as a non-empty ASCII fixstr; null (and give up) otherwise. */
function readNodeId(): NodeId | null {
  if (position >= input.length) {
    fail();
    return null;
  }
  const head = input[position] as number;
  const length = head - 0xa0;
  // A fixstr of 1..31 bytes (within MAX_NODE_ID_LENGTH); other string forms go to the generic decoder.
  if (length < 1 || length > 31 || length > MAX_NODE_ID_LENGTH || position + 1 + length > input.length) {
    fail();
    return null;
  }
  const first = position + 1;
  const slot = idSlot(first, length);
  const cached = idCache[slot] as string;
  if (cached.length === length && sameAscii(cached, first)) {
    position = first + length;
    return cached as NodeId;
  }
  let id = '';
  for (let offset = 0; offset < length; offset++) {
    const code = input[first + offset] as number;
    if (code >= 0x80) {
      fail();
      return null;
    }
    id += String.fromCharCode(code);
  }
  position = first + length;
  idCache[slot] = id;
  return id as NodeId;
}

/** Whether the input from `first` holds the bytes of the ASCII string `value`. */
function sameAscii(value: string, first: number): boolean {
  for (let offset = 0; offset < value.length; offset++) if (input[first + offset] !== value.charCodeAt(offset)) return false;
  return true;
}

/** Every proposal refusal, as it travels on the wire. */
export const REFUSAL_NAMES: readonly ProposalRefusal[] = ['NotLeader', 'ProposalDropped', 'ProposalTooLarge', 'OutcomeUnknown'];

/** Nil or one of the refusal names (as an ASCII fixstr). */
function readRefusal(): ProposalRefusal | null {
  if (position < input.length && input[position] === 0xc0) {
    position++;
    return null;
  }
  for (const name of REFUSAL_NAMES) {
    if (input[position] === (0xa0 | name.length) && position + 1 + name.length <= input.length && sameAscii(name, position + 1)) {
      position += 1 + name.length;
      return name;
    }
  }
  fail();
  return null;
}

function readLeaderHint(): NodeId | null {
  if (position < input.length && input[position] === 0xc0) {
    position++;
    return null;
  }
  return readNodeId();
}

/** Whether the decoding in progress gave up (read through a call: set by callees). */
function gaveUp(): boolean {
  return giveUp;
}

/** The big-endian 16-bit integer at `offset` (bounds checked by the caller). */
function uint16At(offset: number): number {
  return ((input[offset] as number) << 8) | (input[offset + 1] as number);
}

/** The big-endian 32-bit unsigned integer at `offset` (bounds checked by the caller). */
function uint32At(offset: number): number {
  return (input[offset] as number) * 0x100_0000 + (((input[offset + 1] as number) << 16) | ((input[offset + 2] as number) << 8) | (input[offset + 3] as number));
}

function fail(): -1 {
  giveUp = true;
  return -1;
}
