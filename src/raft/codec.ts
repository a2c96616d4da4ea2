/**
 * Wire encoding of Raft messages: msgpack arrays, validated field by field on the way in.
 *
 * Layout: `[protocolVersion, typeCode, from, to, term, ...fields]`, entries as
 * `[index, term, type, data]`. Arrays rather than maps keep frames small and make every field's
 * position part of the protocol version.
 *
 * The common messages go through the fixed-layout fast paths of `codec-fast.ts`, which write the
 * same bytes as msgpackr and hand everything they do not handle (and every malformed input) to the
 * generic msgpackr path here.
 *
 * @module
 */
import { Packr, Unpackr } from 'msgpackr';
import { DecodeError } from './errors.js';
import type { Entry, LogIndex, Membership, Message, NodeId, ProposalRefusal, SnapshotMetadata, Term } from './types.js';
import { MAX_NODE_ID_LENGTH, MAX_VOTERS } from './config.js';
import { FAST_TYPE_CODES as TYPE_CODES, REFUSAL_NAMES as REFUSALS, WIRE_PROTOCOL_VERSION, decodeFast, encodeFast } from './codec-fast.js';

/** Version of the message layout. A peer speaking another version is refused. */
export const PROTOCOL_VERSION = WIRE_PROTOCOL_VERSION;
/** Largest encoded message accepted by {@link decodeMessage}. */
export const MAX_ENCODED_MESSAGE_BYTES = 64 * 1024 * 1024;
/** Most entries accepted in one decoded AppendEntries. */
export const MAX_DECODED_ENTRIES = 100_000;

const packr = new Packr({ useRecords: false, variableMapSize: true });
// copyBuffers: decoded payloads must not alias (and pin) the caller's receive buffer.
const unpackr = new Unpackr({ useRecords: false, copyBuffers: true, mapsAsObjects: false });

/** Messages up to this size (heartbeats, votes, answers, small appends) are decoded from {@link decodeScratch}. */
const DECODE_SCRATCH_BYTES = 4096;
const decodeScratch = new Uint8Array(DECODE_SCRATCH_BYTES);

/** Encodes a message for the wire. */
export function encodeMessage(message: Message): Uint8Array {
  // Heartbeats, appends, votes and answers: the fixed-layout writer, byte for byte what msgpackr
  // writes below. It declines what it does not handle (long or non-ASCII ids, large messages).
  const fast = encodeFast(message);
  if (fast !== null) return fast;
  // Each layout is written out whole (no spread of a shared header): this runs for every message
  // sent, and the simulator sends every message through it.
  const { from, to, term } = message;
  switch (message.type) {
    case 'VoteRequest':
      return packr.pack([PROTOCOL_VERSION, TYPE_CODES.VoteRequest, from, to, term, message.preVote, message.lastLogIndex, message.lastLogTerm, message.leadershipTransfer]);
    case 'VoteResponse':
      return packr.pack([PROTOCOL_VERSION, TYPE_CODES.VoteResponse, from, to, term, message.preVote, message.granted]);
    case 'AppendRequest': {
      const entries = message.entries.map((entry) => [entry.index, entry.term, entry.type, entry.data]);
      return packr.pack([PROTOCOL_VERSION, TYPE_CODES.AppendRequest, from, to, term, message.prevLogIndex, message.prevLogTerm, message.leaderCommit, entries]);
    }
    case 'AppendResponse':
      return packr.pack([PROTOCOL_VERSION, TYPE_CODES.AppendResponse, from, to, term, message.success, message.index, message.rejectHintIndex, message.rejectHintTerm]);
    case 'Heartbeat':
      return packr.pack([PROTOCOL_VERSION, TYPE_CODES.Heartbeat, from, to, term, message.commit, message.context]);
    case 'HeartbeatResponse':
      return packr.pack([PROTOCOL_VERSION, TYPE_CODES.HeartbeatResponse, from, to, term, message.context]);
    case 'ProposeRequest':
      return packr.pack([PROTOCOL_VERSION, TYPE_CODES.ProposeRequest, from, to, term, message.requestId, message.leaderTerm, message.data]);
    case 'ProposeResponse':
      return packr.pack([PROTOCOL_VERSION, TYPE_CODES.ProposeResponse, from, to, term, message.requestId, message.index, message.entryTerm, message.refusal, message.leaderHint]);
    case 'ReadIndexRequest':
      return packr.pack([PROTOCOL_VERSION, TYPE_CODES.ReadIndexRequest, from, to, term, message.requestId]);
    case 'TimeoutNow':
      return packr.pack([PROTOCOL_VERSION, TYPE_CODES.TimeoutNow, from, to, term]);
    case 'ReadIndexResponse':
      return packr.pack([PROTOCOL_VERSION, TYPE_CODES.ReadIndexResponse, from, to, term, message.requestId, message.index, message.refusal, message.leaderHint]);
    case 'InstallSnapshot':
      return packr.pack([PROTOCOL_VERSION, TYPE_CODES.InstallSnapshot, from, to, term, metadataFields(message.metadata), message.totalBytes, message.offset, message.data, message.done]);
    case 'SnapshotResponse':
      return packr.pack([PROTOCOL_VERSION, TYPE_CODES.SnapshotResponse, from, to, term, message.snapshotIndex, message.receivedBytes, message.gap]);
  }
}

function metadataFields(metadata: SnapshotMetadata): unknown[] {
  return [metadata.index, metadata.term, metadata.membership.voters, metadata.membership.learners];
}

/** Most members (voters plus learners) a decoded membership may name. */
export const MAX_MEMBERS = 2 * MAX_VOTERS;

/** Encodes a membership as stored in a {@link EntryType.ConfChange} entry. */
export function encodeMembership(membership: Membership): Uint8Array {
  return packr.pack([PROTOCOL_VERSION, membership.voters, membership.learners]);
}

/** Decodes a membership written by {@link encodeMembership}; throws {@link DecodeError} otherwise. */
export function decodeMembership(bytes: Uint8Array): Membership {
  let value: unknown;
  try {
    value = unpackr.unpack(bytes);
  } catch (error) {
    throw new DecodeError('membership is not valid msgpack', { cause: error });
  }
  const fields = new Reader(value, 'membership');
  const version = fields.integer('version');
  if (version !== PROTOCOL_VERSION) throw new DecodeError(`membership version ${version}, expected ${PROTOCOL_VERSION}`);
  const membership = readMembership(fields);
  fields.end();
  return membership;
}

/** Encodes snapshot metadata (for storage next to the snapshot bytes). */
export function encodeSnapshotMetadata(metadata: SnapshotMetadata): Uint8Array {
  return packr.pack([PROTOCOL_VERSION, ...metadataFields(metadata)]);
}

/** Decodes metadata written by {@link encodeSnapshotMetadata}; throws {@link DecodeError} otherwise. */
export function decodeSnapshotMetadata(bytes: Uint8Array): SnapshotMetadata {
  let value: unknown;
  try {
    value = unpackr.unpack(bytes);
  } catch (error) {
    throw new DecodeError('snapshot metadata is not valid msgpack', { cause: error });
  }
  const fields = new Reader(value, 'snapshot metadata');
  const version = fields.integer('version');
  if (version !== PROTOCOL_VERSION) throw new DecodeError(`snapshot metadata version ${version}, expected ${PROTOCOL_VERSION}`);
  const metadata = readMetadataFields(fields);
  fields.end();
  return metadata;
}

function readMetadataFields(fields: Reader): SnapshotMetadata {
  const index = fields.integer('snapshotIndex') as LogIndex;
  const snapshotTerm = fields.integer('snapshotTerm') as Term;
  return { index, term: snapshotTerm, membership: readMembership(fields) };
}

function readMembership(fields: Reader): Membership {
  const voters = readNodeIdList(fields.array('voters'), 'voters');
  const learners = readNodeIdList(fields.array('learners'), 'learners');
  const all = new Set<string>(voters);
  for (const learner of learners) {
    if (all.has(learner)) throw new DecodeError(`membership names ${learner} twice`);
    all.add(learner);
  }
  if (all.size > MAX_MEMBERS) throw new DecodeError(`membership names more than ${MAX_MEMBERS} nodes`);
  return { voters, learners };
}

function readNodeIdList(values: readonly unknown[], field: string): NodeId[] {
  if (values.length > MAX_MEMBERS) throw new DecodeError(`${field} names more than ${MAX_MEMBERS} nodes`);
  const ids: NodeId[] = [];
  const seen = new Set<string>();
  for (const value of values) {
    const id = checkNodeId(field, value);
    if (seen.has(id)) throw new DecodeError(`${field} names ${id} twice`);
    seen.add(id);
    ids.push(id);
  }
  return ids;
}

/**
 * Decodes and validates a message. Throws {@link DecodeError} — and nothing else — for any input that
 * is not a well-formed message of this protocol version.
 */
export function decodeMessage(bytes: Uint8Array): Message {
  if (!(bytes instanceof Uint8Array)) throw new DecodeError('input is not a byte array');
  if (bytes.byteLength > MAX_ENCODED_MESSAGE_BYTES) {
    throw new DecodeError(`${bytes.byteLength} bytes exceeds the ${MAX_ENCODED_MESSAGE_BYTES}-byte limit`);
  }
  // The fixed-layout reader takes the common messages; anything it declines (including every
  // malformed input) is decoded here, and refused here with the precise reason.
  const fast = decodeFast(bytes);
  if (fast !== null) return fast;
  let value: unknown;
  try {
    if (bytes.byteLength <= DECODE_SCRATCH_BYTES) {
      // msgpackr creates (and caches on the array) a DataView for every new input array, which costs
      // more than decoding a small message; a copy into one reused buffer costs much less. Nothing
      // decoded aliases the buffer: binary fields are copied out (copyBuffers), strings are strings.
      decodeScratch.set(bytes);
      value = unpackr.unpack(decodeScratch, bytes.byteLength);
    } else {
      value = unpackr.unpack(bytes);
    }
  } catch (error) {
    throw new DecodeError('not valid msgpack', { cause: error });
  }
  return validateMessage(value);
}

/** Validates a decoded value as a message. Exported for transports that decode frames themselves. */
export function validateMessage(value: unknown): Message {
  const fields = new Reader(value);
  const version = fields.integer('protocolVersion');
  if (version !== PROTOCOL_VERSION) throw new DecodeError(`protocol version ${version}, expected ${PROTOCOL_VERSION}`);
  const typeCode = fields.integer('type');
  const from = fields.nodeId('from');
  const to = fields.nodeId('to');
  const messageTerm = fields.integer('term') as Term;
  let message: Message;
  switch (typeCode) {
    case TYPE_CODES.VoteRequest:
      message = {
        type: 'VoteRequest',
        from, to, term: messageTerm,
        preVote: fields.boolean('preVote'),
        lastLogIndex: fields.integer('lastLogIndex') as LogIndex,
        lastLogTerm: fields.integer('lastLogTerm') as Term,
        leadershipTransfer: fields.boolean('leadershipTransfer'),
      };
      break;
    case TYPE_CODES.VoteResponse:
      message = { type: 'VoteResponse', from, to, term: messageTerm, preVote: fields.boolean('preVote'), granted: fields.boolean('granted') };
      break;
    case TYPE_CODES.AppendRequest: {
      const prevLogIndex = fields.integer('prevLogIndex') as LogIndex;
      const prevLogTerm = fields.integer('prevLogTerm') as Term;
      const leaderCommit = fields.integer('leaderCommit') as LogIndex;
      const entries = readEntries(fields.array('entries'), prevLogIndex, messageTerm);
      message = { type: 'AppendRequest', from, to, term: messageTerm, prevLogIndex, prevLogTerm, leaderCommit, entries };
      break;
    }
    case TYPE_CODES.AppendResponse:
      message = {
        type: 'AppendResponse',
        from, to, term: messageTerm,
        success: fields.boolean('success'),
        index: fields.integer('index') as LogIndex,
        rejectHintIndex: fields.integer('rejectHintIndex') as LogIndex,
        rejectHintTerm: fields.integer('rejectHintTerm') as Term,
      };
      break;
    case TYPE_CODES.Heartbeat:
      message = { type: 'Heartbeat', from, to, term: messageTerm, commit: fields.integer('commit') as LogIndex, context: fields.integer('context') };
      break;
    case TYPE_CODES.HeartbeatResponse:
      message = { type: 'HeartbeatResponse', from, to, term: messageTerm, context: fields.integer('context') };
      break;
    case TYPE_CODES.TimeoutNow:
      message = { type: 'TimeoutNow', from, to, term: messageTerm };
      break;
    case TYPE_CODES.ReadIndexRequest:
      message = { type: 'ReadIndexRequest', from, to, term: messageTerm, requestId: fields.integer('requestId') };
      break;
    case TYPE_CODES.ReadIndexResponse: {
      const requestId = fields.integer('requestId');
      const index = fields.integer('index') as LogIndex;
      const refusal = readRefusal(fields.any('refusal'));
      message = { type: 'ReadIndexResponse', from, to, term: messageTerm, requestId, index, refusal, leaderHint: readLeaderHint(fields.any('leaderHint')) };
      break;
    }
    case TYPE_CODES.ProposeRequest:
      message = {
        type: 'ProposeRequest',
        from, to, term: messageTerm,
        requestId: fields.integer('requestId'),
        leaderTerm: fields.integer('leaderTerm') as Term,
        data: fields.bytes('data'),
      };
      break;
    case TYPE_CODES.ProposeResponse: {
      const requestId = fields.integer('requestId');
      const index = fields.integer('index') as LogIndex;
      const entryTerm = fields.integer('entryTerm') as Term;
      const refusal = readRefusal(fields.any('refusal'));
      message = { type: 'ProposeResponse', from, to, term: messageTerm, requestId, index, entryTerm, refusal, leaderHint: readLeaderHint(fields.any('leaderHint')) };
      break;
    }
    case TYPE_CODES.InstallSnapshot: {
      const metadataReader = new Reader(fields.array('metadata'), 'metadata');
      const metadata = readMetadataFields(metadataReader);
      metadataReader.end();
      const totalBytes = fields.integer('totalBytes');
      const offset = fields.integer('offset');
      const data = fields.bytes('data');
      const done = fields.boolean('done');
      if (offset + data.byteLength > totalBytes) throw new DecodeError(`snapshot chunk at ${offset} of ${data.byteLength} bytes overruns the ${totalBytes}-byte snapshot`);
      if (done !== (offset + data.byteLength === totalBytes)) throw new DecodeError('snapshot chunk done flag does not match its position');
      message = { type: 'InstallSnapshot', from, to, term: messageTerm, metadata, totalBytes, offset, data, done };
      break;
    }
    case TYPE_CODES.SnapshotResponse:
      message = {
        type: 'SnapshotResponse',
        from, to, term: messageTerm,
        snapshotIndex: fields.integer('snapshotIndex') as LogIndex,
        receivedBytes: fields.integer('receivedBytes'),
        gap: fields.boolean('gap'),
      };
      break;
    default:
      throw new DecodeError(`unknown message type ${typeCode}`);
  }
  fields.end();
  return message;
}

function readEntries(values: readonly unknown[], prevLogIndex: LogIndex, messageTerm: Term): Entry[] {
  if (values.length > MAX_DECODED_ENTRIES) throw new DecodeError(`${values.length} entries exceeds the limit of ${MAX_DECODED_ENTRIES}`);
  const entries: Entry[] = [];
  let previousTerm = 0;
  for (let position = 0; position < values.length; position++) {
    const fields = new Reader(values[position], 'entries', position);
    const index = fields.integer('index');
    const entryTerm = fields.integer('term');
    const type = fields.integer('type');
    const data = fields.bytes('data');
    fields.end();
    if (index !== prevLogIndex + position + 1) throw new DecodeError(`entries[${position}] has index ${index}, expected ${prevLogIndex + position + 1}`);
    if (entryTerm < previousTerm || entryTerm > messageTerm) throw new DecodeError(`entries[${position}] has term ${entryTerm} out of order`);
    if (type !== 0 && type !== 1 && type !== 2) throw new DecodeError(`entries[${position}] has unknown type ${type}`);
    // A membership entry must decode, or the node would fail on appending it.
    if (type === 2) decodeMembership(data);
    previousTerm = entryTerm;
    entries.push({ index: index as LogIndex, term: entryTerm as Term, type, data });
  }
  return entries;
}

function readRefusal(value: unknown): ProposalRefusal | null {
  if (value === null) return null;
  if (typeof value !== 'string' || !REFUSALS.includes(value as ProposalRefusal)) throw new DecodeError(`unknown refusal of type ${typeof value}`);
  return value as ProposalRefusal;
}

function readLeaderHint(value: unknown): NodeId | null {
  return value === null ? null : checkNodeId('leaderHint', value);
}

/** `value` as a node id; `context` (when given) prefixes `field` in the error, built only on failure. */
function checkNodeId(field: string, value: unknown, context?: string): NodeId {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_NODE_ID_LENGTH) {
    throw new DecodeError(`${context === undefined ? '' : `${context}.`}${field} is not a node id`);
  }
  return value as NodeId;
}

/** Reads the positional fields of a decoded array, failing with the field's name. */
class Reader {
  private position = 0;
  private readonly values: readonly unknown[];

  /**
   * @param context what the array is, for errors (`message`, `metadata`, `entries`)
   * @param indexInList the array's position in its list (`entries[3]`), or -1; kept apart from
   *   `context` so that the name is built only when a field is refused
   */
  constructor(
    value: unknown,
    private readonly context = 'message',
    private readonly indexInList = -1,
  ) {
    if (!Array.isArray(value)) throw new DecodeError(`${this.where()} is not an array`);
    this.values = value;
  }

  private where(): string {
    return this.indexInList < 0 ? this.context : `${this.context}[${this.indexInList}]`;
  }

  any(field: string): unknown {
    if (this.position >= this.values.length) throw new DecodeError(`${this.where()} is missing ${field}`);
    return this.values[this.position++];
  }

  integer(field: string): number {
    const value = this.any(field);
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      throw new DecodeError(`${this.where()}.${field} is not a non-negative safe integer`);
    }
    return value;
  }

  boolean(field: string): boolean {
    const value = this.any(field);
    if (typeof value !== 'boolean') throw new DecodeError(`${this.where()}.${field} is not a boolean`);
    return value;
  }

  nodeId(field: string): NodeId {
    return checkNodeId(field, this.any(field), this.where());
  }

  bytes(field: string): Uint8Array {
    const value = this.any(field);
    if (!(value instanceof Uint8Array)) throw new DecodeError(`${this.where()}.${field} is not binary`);
    return value;
  }

  array(field: string): readonly unknown[] {
    const value = this.any(field);
    if (!Array.isArray(value)) throw new DecodeError(`${this.where()}.${field} is not an array`);
    return value;
  }

  end(): void {
    if (this.position !== this.values.length) throw new DecodeError(`${this.where()} has ${this.values.length - this.position} unexpected trailing fields`);
  }
}
