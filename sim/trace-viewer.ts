/**
 * The trace viewer: one self-contained HTML page (inline CSS and JavaScript, the data as JSON in a
 * `<script type="application/json">` tag, no network access) that draws a simulation run on a
 * timeline — a lane per node with its role and term, messages as arrows between lanes, partitions,
 * crashes and pauses, each node's clock offset, the committed index, lease holders per key and the
 * violation, if any. `raftlease sim replay --seed N --html FILE` writes it.
 *
 * Two sources feed it: the run's trace lines (`trace: true`) for starts, crashes, pauses, clock jumps,
 * partitions, transfers, membership changes and restores, and the structured timeline
 * (`timeline: true`, recorded by {@link TimelineRecorder}) for what the trace does not say: roles,
 * terms and commit indexes after each event, when each message was sent, the network's cut links,
 * the clocks and the lease holders.
 *
 * Deterministic: the same run gives the same bytes.
 *
 * @module
 */
import type { Message, Raft, Role } from '../src/raft/index.js';
import type { SimulationResult } from './simulation.js';

// -------------------------------------------------------------------------------------------------
// The structured timeline

/** A node's role in the timeline: Raft's, or `Down` from a crash until its restart is observed. */
export type TimelineRole = Role | 'Down';

/** A node's role, term, known leader or voting status changed (observed after an event, or a crash). */
export interface TimelineRoleChange {
  readonly timeNs: number;
  readonly node: number;
  readonly role: TimelineRole;
  readonly term: number;
  readonly leader: string | null;
  readonly voter: boolean;
}

/** A node's commit index changed. */
export interface TimelineCommitChange {
  readonly timeNs: number;
  readonly node: number;
  readonly commit: number;
}

/** One message, from its send to each of its deliveries (none when the network lost it, two when duplicated). */
export interface TimelineMessage {
  readonly sentNs: number;
  readonly from: number;
  readonly to: number;
  readonly type: Message['type'];
  readonly term: number;
  /** The message's main fields, e.g. `prev=4/2 entries=3 commit=5`. */
  readonly detail: string;
  /** `delivered` false: it reached the target while the link was cut or the target was down. */
  readonly deliveries: { readonly atNs: number; readonly delivered: boolean }[];
}

/** The set of cut links (`[from, to]` node indexes) from `timeNs` on. */
export interface TimelineNetworkChange {
  readonly timeNs: number;
  readonly cut: readonly (readonly [number, number])[];
}

/**
 * A lease held over true time: `table` as the replicated lease table has it (from the grant's first
 * application to the release's or expiry's), `client` as a lock client believed it held it (the lock
 * workload's belief intervals, which the exclusion checker judges).
 */
export interface TimelineLease {
  readonly key: string;
  readonly owner: string;
  readonly fencingToken: number;
  readonly source: 'table' | 'client';
  /** The node the client ran on (`client` only). */
  readonly node: number | null;
  readonly fromNs: number;
  /** Null while still held at the end of the run. */
  readonly toNs: number | null;
  /** How it ended: `released`, `expired`, `ended` (a client's belief ended) or `open`. */
  readonly end: 'released' | 'expired' | 'ended' | 'open';
  /** Renewals (and re-acquires) applied (`table` only). */
  readonly renewals: number;
}

/** Everything the trace viewer needs that the trace lines do not say. */
export interface SimulationTimeline {
  readonly nodes: readonly string[];
  /** Each node's clock at true time 0 (its jumps are in the trace). */
  readonly clocks: readonly { readonly offsetNs: number; readonly driftPpm: number }[];
  readonly roles: readonly TimelineRoleChange[];
  readonly commits: readonly TimelineCommitChange[];
  readonly messages: readonly TimelineMessage[];
  readonly network: readonly TimelineNetworkChange[];
  readonly leases: readonly TimelineLease[];
  /** True time at the end of the run. */
  readonly endNs: number;
}

interface OpenLease {
  readonly key: string;
  readonly owner: string;
  readonly fencingToken: number;
  readonly fromNs: number;
  renewals: number;
}

/**
 * Records a {@link SimulationTimeline} while a simulation runs (`timeline: true`). It only reads: no
 * random draw, no trace line, no microtask, so the run and its trace stay byte-identical.
 */
export class TimelineRecorder {
  private readonly nodeIds: readonly string[];
  private readonly indexById: ReadonlyMap<string, number>;
  private readonly clocks: { readonly offsetNs: number; readonly driftPpm: number }[];
  private readonly roles: TimelineRoleChange[] = [];
  private readonly commits: TimelineCommitChange[] = [];
  private readonly messages: TimelineMessage[] = [];
  private readonly networkChanges: TimelineNetworkChange[] = [];
  private readonly leases: TimelineLease[] = [];
  private readonly lastRole: (TimelineRoleChange | null)[];
  private readonly lastCommit: number[];
  /** The record of each message in flight (duplicates share the message object). */
  private readonly inFlight = new WeakMap<object, TimelineMessage>();
  private lastCut = '';
  /** Log indexes already applied somewhere: the table's view is the first application's. */
  private readonly appliedIndexes = new Set<number>();
  private readonly openLeases = new Map<string, OpenLease>();

  constructor(nodes: readonly { readonly id: string; readonly clock: { readonly offsetNs: number; readonly driftPpm: number } }[]) {
    this.nodeIds = nodes.map((node) => node.id);
    this.indexById = new Map(this.nodeIds.map((id, index) => [id, index]));
    this.clocks = nodes.map((node) => ({ offsetNs: node.clock.offsetNs, driftPpm: node.clock.driftPpm }));
    this.lastRole = nodes.map(() => null);
    this.lastCommit = nodes.map(() => -1);
  }

  /** Node `node`'s core after an event. */
  observe(timeNs: number, node: number, raft: Raft): void {
    const role = raft.role();
    const term = raft.term();
    const leader = raft.leader();
    const voter = raft.isVoter();
    const last = this.lastRole[node];
    if (last?.role !== role || last.term !== term || last.leader !== leader || last.voter !== voter) {
      const change: TimelineRoleChange = { timeNs, node, role, term, leader, voter };
      this.roles.push(change);
      this.lastRole[node] = change;
    }
    const commit = raft.log.committed();
    if (this.lastCommit[node] !== commit) {
      this.commits.push({ timeNs, node, commit });
      this.lastCommit[node] = commit;
    }
  }

  /** Node `node` crashed. */
  crashed(timeNs: number, node: number): void {
    const last = this.lastRole[node];
    const change: TimelineRoleChange = { timeNs, node, role: 'Down', term: last?.term ?? 0, leader: null, voter: last?.voter ?? true };
    this.roles.push(change);
    this.lastRole[node] = change;
    this.lastCommit[node] = -1;
  }

  /** Node `from` sent `message` (before the network decided its fate). */
  sent(timeNs: number, from: number, message: Message): void {
    const to = this.indexById.get(message.to);
    if (to === undefined) return;
    const record: TimelineMessage = { sentNs: timeNs, from, to, type: message.type, term: message.term, detail: messageDetail(message), deliveries: [] };
    this.messages.push(record);
    this.inFlight.set(message, record);
  }

  /** A copy of `message` reached its target (`delivered` false: dropped at the cut link or down target). */
  delivered(timeNs: number, message: Message, delivered: boolean): void {
    this.inFlight.get(message)?.deliveries.push({ atNs: timeNs, delivered });
  }

  /** The cut links now (recorded when they changed). */
  network(timeNs: number, cutLinks: ReadonlySet<number>): void {
    const cut = [...cutLinks].sort((a, b) => a - b);
    const signature = cut.join(',');
    if (signature === this.lastCut) return;
    this.lastCut = signature;
    this.networkChanges.push({ timeNs, cut: cut.map((link) => [Math.floor(link / 1000), link % 1000] as const) });
  }

  /** A state machine applied log index `index` with `result` (lease table results open and close leases). */
  applied(timeNs: number, index: number, result: unknown): void {
    if (this.appliedIndexes.has(index)) return;
    this.appliedIndexes.add(index);
    if (typeof result !== 'object' || result === null || !('type' in result) || !('lease' in result)) return;
    const lease = result.lease as { readonly key?: unknown; readonly owner?: unknown; readonly fencingToken?: unknown } | null;
    if (typeof lease !== 'object' || lease === null || typeof lease.key !== 'string' || typeof lease.owner !== 'string' || typeof lease.fencingToken !== 'number') return;
    const key = lease.key;
    const open = this.openLeases.get(key);
    switch (result.type) {
      case 'Granted': {
        if (open !== undefined && open.owner === lease.owner && open.fencingToken === lease.fencingToken) {
          open.renewals++;
          return;
        }
        if (open !== undefined) this.closeLease(open, timeNs, 'ended');
        this.openLeases.set(key, { key, owner: lease.owner, fencingToken: lease.fencingToken, fromNs: timeNs, renewals: 0 });
        return;
      }
      case 'Released':
      case 'Expired':
        if (open === undefined) return;
        this.closeLease(open, timeNs, result.type === 'Released' ? 'released' : 'expired');
        this.openLeases.delete(key);
        return;
      default:
        return;
    }
  }

  /** The lock workload's belief intervals (at the end of the run). */
  beliefs(intervals: readonly { readonly key: string; readonly owner: string; readonly fencingToken: number; readonly node: number; readonly fromNs: number; readonly toNs: number | null }[]): void {
    for (const interval of intervals) {
      this.leases.push({
        key: interval.key,
        owner: interval.owner,
        fencingToken: interval.fencingToken,
        source: 'client',
        node: interval.node,
        fromNs: interval.fromNs,
        toNs: interval.toNs,
        end: interval.toNs === null ? 'open' : 'ended',
        renewals: 0,
      });
    }
  }

  /** The timeline, at true time `endNs`. */
  finish(endNs: number): SimulationTimeline {
    for (const open of this.openLeases.values()) this.closeLease(open, null, 'open');
    this.openLeases.clear();
    return {
      nodes: this.nodeIds,
      clocks: this.clocks,
      roles: this.roles,
      commits: this.commits,
      messages: this.messages,
      network: this.networkChanges,
      leases: this.leases,
      endNs,
    };
  }

  private closeLease(open: OpenLease, toNs: number | null, end: TimelineLease['end']): void {
    this.leases.push({ key: open.key, owner: open.owner, fencingToken: open.fencingToken, source: 'table', node: null, fromNs: open.fromNs, toNs, end, renewals: open.renewals });
  }
}

/** The fields of a message worth showing. */
function messageDetail(message: Message): string {
  switch (message.type) {
    case 'VoteRequest':
      return `${message.preVote ? 'pre-vote ' : ''}last=${message.lastLogIndex}/${message.lastLogTerm}${message.leadershipTransfer ? ' transfer' : ''}`;
    case 'VoteResponse':
      return `${message.preVote ? 'pre-vote ' : ''}${message.granted ? 'granted' : 'rejected'}`;
    case 'AppendRequest':
      return `prev=${message.prevLogIndex}/${message.prevLogTerm} entries=${message.entries.length} commit=${message.leaderCommit}`;
    case 'AppendResponse':
      return message.success ? `ok index=${message.index}` : `rejected index=${message.index} hint=${message.rejectHintIndex}/${message.rejectHintTerm}`;
    case 'Heartbeat':
      return `commit=${message.commit}${message.context === 0 ? '' : ` read=${message.context}`}`;
    case 'HeartbeatResponse':
      return message.context === 0 ? '' : `read=${message.context}`;
    case 'ReadIndexRequest':
      return `request=${message.requestId}`;
    case 'ReadIndexResponse':
      return `request=${message.requestId} ${message.refusal === null ? `index=${message.index}` : `refused ${message.refusal}`}`;
    case 'InstallSnapshot':
      return `snapshot=${message.metadata.index}/${message.metadata.term} bytes ${message.offset}+${message.data.length}/${message.totalBytes}${message.done ? ' done' : ''}`;
    case 'SnapshotResponse':
      return `snapshot=${message.snapshotIndex} received=${message.receivedBytes}${message.gap ? ' gap' : ''}`;
    case 'TimeoutNow':
      return '';
    case 'ProposeRequest':
      return `request=${message.requestId} leaderTerm=${message.leaderTerm} bytes=${message.data.length}`;
    case 'ProposeResponse':
      return `request=${message.requestId} ${message.refusal === null ? `index=${message.index}/${message.entryTerm}` : `refused ${message.refusal}`}`;
  }
}

// -------------------------------------------------------------------------------------------------
// The page's data

/** Default bound on message arrows embedded in a page (keeps it at a few MB at most). */
export const DEFAULT_MAX_MESSAGE_ARROWS = 20_000;

/** Message types never thinned away (elections, transfers, snapshots, forwarding), as long as they fit. */
const PRIORITY_MESSAGES: ReadonlySet<string> = new Set([
  'VoteRequest',
  'VoteResponse',
  'TimeoutNow',
  'InstallSnapshot',
  'SnapshotResponse',
  'ProposeRequest',
  'ProposeResponse',
  'ReadIndexRequest',
  'ReadIndexResponse',
]);

/** Options of {@link renderTraceViewer}. */
export interface TraceViewerOptions {
  /** Title of the page. Default: `raftlease sim — seed N`. */
  readonly title?: string;
  /** The command that replays the run, shown on the page. */
  readonly command?: string;
  /** The workload's name, shown on the page. */
  readonly workload?: string;
  /** Most message arrows embedded; beyond it heartbeats and appends are thinned evenly. Default 20,000. */
  readonly maxMessages?: number;
}

/** Event kinds taken from the trace lines. */
export type TraceEventKind =
  | 'run-start'
  | 'start'
  | 'crash'
  | 'pause'
  | 'clock-jump'
  | 'partition'
  | 'heal-network'
  | 'heal'
  | 'transfer'
  | 'membership'
  | 'restore'
  | 'snapshot'
  | 'install'
  | 'caught-up'
  | 'other';

/** One event parsed from a trace line (deliveries, drops and plain disk writes are left out). */
export interface TraceEvent {
  readonly timeNs: number;
  /** The node it happened on, or -1 for the whole cluster. */
  readonly node: number;
  readonly kind: TraceEventKind;
  readonly text: string;
}

/**
 * The trace lines that describe events (not deliveries, drops or plain disk writes) as
 * {@link TraceEvent}s; `nodes` are the node ids in lane order.
 */
export function parseTraceEvents(trace: readonly string[], nodes: readonly string[]): TraceEvent[] {
  const indexById = new Map(nodes.map((id, index) => [id, index]));
  const node = (id: string | undefined): number => (id === undefined ? -1 : (indexById.get(id) ?? -1));
  const events: TraceEvent[] = [];
  for (const line of trace) {
    const space = line.indexOf(' ');
    if (space <= 0) continue;
    const timeNs = Number(line.slice(0, space));
    const text = line.slice(space + 1);
    const [word, first] = text.split(' ', 2);
    let kind: TraceEventKind;
    let at = -1;
    switch (word) {
      case undefined:
      case 'recv':
      case 'drop':
        continue;
      case 'disk':
        if (text.includes(' snapshot=')) kind = 'snapshot';
        else if (text.includes(' install=')) kind = 'install';
        else continue;
        at = node(first);
        break;
      case 'start':
        kind = first?.startsWith('seed=') === true ? 'run-start' : 'start';
        at = kind === 'start' ? node(first) : -1;
        break;
      case 'crash':
      case 'pause':
      case 'clock-jump':
      case 'transfer':
      case 'restore':
        kind = word;
        at = node(first);
        break;
      case 'membership':
        kind = 'membership';
        at = node(first?.replace(/:$/, ''));
        break;
      case 'partition':
      case 'heal-network':
      case 'heal':
      case 'caught-up':
        kind = word;
        break;
      default:
        kind = 'other';
    }
    events.push({ timeNs, node: at, kind, text });
  }
  return events;
}

/** Role codes in the page's data. */
const ROLE_CODES: Readonly<Record<TimelineRole | 'Starting', string>> = { Follower: 'F', PreCandidate: 'P', Candidate: 'C', Leader: 'L', Down: 'D', Starting: 'S' };

/** Where a violation happened (its detection time, or the start of an overlap the message names). */
function violationPlace(violation: NonNullable<SimulationResult['violation']>, endNs: number): { atNs: number; overlap: { key: string; fromNs: number; toNs: number } | null } {
  if (violation.property === 'LeaseExclusion' || violation.property === 'MaintenanceExclusion') {
    // "'key': ... from A to B ns ... from C ns": the overlap runs from C to B.
    const key = /^'([^']*)'/.exec(violation.message)?.[1];
    const match = /from (\d+) to (\d+|null) ns.* from (\d+) ns/.exec(violation.message);
    if (key !== undefined && match !== null) {
      const fromNs = Number(match[3]);
      const toNs = match[2] === 'null' ? endNs : Number(match[2]);
      if (Number.isFinite(fromNs) && Number.isFinite(toNs)) return { atNs: fromNs, overlap: { key, fromNs, toNs: Math.max(fromNs, toNs) } };
    }
  }
  if (violation.property === 'MaintenanceOnce') {
    const match = / at (\d+) ns, after/.exec(violation.message);
    if (match !== null) return { atNs: Number(match[1]), overlap: null };
  }
  return { atNs: violation.timeNs, overlap: null };
}

/** Keeps about `budget` of `count` items, evenly spread (deterministic). */
function evenly<T>(items: readonly T[], budget: number): T[] {
  if (items.length <= budget) return [...items];
  if (budget <= 0) return [];
  const kept: T[] = [];
  for (let index = 0; index < items.length; index++) {
    if (Math.floor(((index + 1) * budget) / items.length) > Math.floor((index * budget) / items.length)) {
      const item = items[index];
      if (item !== undefined) kept.push(item);
    }
  }
  return kept;
}

/**
 * The data a page embeds (compact rows; the page's script documents each). Exported for tests and
 * for other front ends.
 */
export function traceViewerData(result: SimulationResult, options: TraceViewerOptions = {}): Record<string, unknown> {
  const trace = result.trace;
  const timeline = result.timeline;
  if (trace === null || timeline === null) throw new TypeError('the trace viewer needs a run with trace: true and timeline: true');
  const nodes = timeline.nodes;
  const endNs = timeline.endNs;
  const events = parseTraceEvents(trace, nodes);

  // Roles: a node is Starting from its start line until the first observation of its core.
  const roleRows: (readonly [number, number, string, number, number, number])[] = [];
  const leaderIndex = (leader: string | null): number => (leader === null ? -1 : nodes.indexOf(leader));
  const starts = events.filter((event) => event.kind === 'start');
  let startAt = 0;
  for (const change of timeline.roles) {
    for (; startAt < starts.length && (starts[startAt]?.timeNs ?? 0) <= change.timeNs; startAt++) {
      const start = starts[startAt];
      if (start !== undefined) roleRows.push([start.timeNs, start.node, ROLE_CODES.Starting, 0, -1, 1]);
    }
    roleRows.push([change.timeNs, change.node, ROLE_CODES[change.role], change.term, leaderIndex(change.leader), change.voter ? 1 : 0]);
  }
  for (; startAt < starts.length; startAt++) {
    const start = starts[startAt];
    if (start !== undefined) roleRows.push([start.timeNs, start.node, ROLE_CODES.Starting, 0, -1, 1]);
  }

  // Pauses end at their deadline, or earlier at a crash of the node or at healing.
  const pauses: [number, number, number][] = [];
  const healNs = events.find((event) => event.kind === 'heal')?.timeNs ?? Number.POSITIVE_INFINITY;
  for (const event of events) {
    if (event.kind !== 'pause') continue;
    const until = Number(/until=(\d+)/.exec(event.text)?.[1] ?? event.timeNs);
    const crash = events.find((other) => other.kind === 'crash' && other.node === event.node && other.timeNs >= event.timeNs)?.timeNs ?? Number.POSITIVE_INFINITY;
    pauses.push([event.node, event.timeNs, Math.min(until, crash, healNs, endNs)]);
  }

  // Clock jumps per node.
  const clocks = timeline.clocks.map((clock, index) => ({
    offsetNs: clock.offsetNs,
    driftPpm: clock.driftPpm,
    jumps: events.filter((event) => event.kind === 'clock-jump' && event.node === index).map((event) => [event.timeNs, Number(/\+(\d+)ms/.exec(event.text)?.[1] ?? 0) * 1_000_000] as const),
  }));

  // Message arrows: one per delivery attempt, or one for a message the network lost.
  const types: string[] = [];
  const typeIndex = (type: string): number => {
    const at = types.indexOf(type);
    if (at >= 0) return at;
    types.push(type);
    return types.length - 1;
  };
  type Arrow = readonly [number, number, number, number, number, string, number, number];
  const priority: Arrow[] = [];
  const rest: Arrow[] = [];
  for (const message of timeline.messages) {
    const type = typeIndex(message.type);
    const arrows: Arrow[] =
      message.deliveries.length === 0
        ? [[message.sentNs, message.from, message.to, type, message.term, message.detail, -1, 2]]
        : message.deliveries.map((delivery) => [message.sentNs, message.from, message.to, type, message.term, message.detail, delivery.atNs, delivery.delivered ? 0 : 1] as const);
    for (const arrow of arrows) (PRIORITY_MESSAGES.has(message.type) ? priority : rest).push(arrow);
  }
  const total = priority.length + rest.length;
  const budget = Math.max(0, Math.floor(options.maxMessages ?? DEFAULT_MAX_MESSAGE_ARROWS));
  const keptPriority = evenly(priority, budget);
  const keptRest = evenly(rest, budget - keptPriority.length);
  const arrows = [...keptPriority, ...keptRest].sort((a, b) => a[0] - b[0] || a[6] - b[6]);
  const thinned = arrows.length < total;
  const note = thinned
    ? `Messages thinned: ${arrows.length} of ${total} message arrows are drawn (the page keeps at most ${budget}). ` +
      (keptPriority.length === priority.length
        ? `Every election, transfer, snapshot, forwarding and read-index message is kept; heartbeats and appends are sampled evenly (about 1 in ${Math.max(1, Math.round(rest.length / Math.max(1, keptRest.length)))}).`
        : 'Messages of every type are sampled evenly.')
    : null;

  // Leases by key, then source (table before clients), then start.
  const keys = [...new Set(timeline.leases.map((lease) => lease.key))].sort();
  const leases = timeline.leases
    .map((lease) => [keys.indexOf(lease.key), lease.owner, lease.fencingToken, lease.source === 'table' ? 0 : 1, lease.node ?? -1, lease.fromNs, lease.toNs ?? -1, lease.end, lease.renewals] as const)
    .sort((a, b) => a[0] - b[0] || a[3] - b[3] || a[5] - b[5] || a[2] - b[2]);

  const violation = result.violation;
  const place = violation === null ? null : violationPlace(violation, endNs);

  return {
    version: 1,
    title: options.title ?? `raftlease sim — seed ${result.seed}`,
    seed: result.seed,
    ok: result.ok,
    command: options.command ?? null,
    summary: {
      workload: options.workload ?? null,
      nodes: result.nodeCount,
      steps: result.steps,
      simulatedMs: result.simulatedMs,
      livenessMs: result.livenessMs,
      committedEntries: result.committedEntries,
      linearizability: result.linearizability,
      leaseExclusion: result.leaseExclusion,
      enabledFaults: result.enabledFaults,
      driftBeyondBound: result.driftBeyondBound,
      traceHash: result.traceHash,
      traceLines: trace.length,
    },
    endNs,
    nodes,
    clocks,
    roles: roleRows,
    commits: timeline.commits.map((change) => [change.timeNs, change.node, change.commit]),
    messageTypes: types,
    messages: arrows,
    messagesTotal: total,
    messagesThinned: note,
    network: timeline.network.map((change) => [change.timeNs, change.cut]),
    pauses,
    events: events.map((event) => [event.timeNs, event.node, event.kind, event.text]),
    keys,
    leases,
    violation:
      violation === null || place === null
        ? null
        : { property: violation.property, message: violation.message, nodes: violation.nodes, step: violation.step, detectedNs: violation.timeNs, atNs: place.atNs, overlap: place.overlap },
  };
}

/** JSON that is safe inside a `<script>` element. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/**
 * The trace viewer page for `result` (a run with `trace: true` and `timeline: true`): one
 * self-contained HTML document. The same run gives the same bytes.
 *
 * @example
 * ```ts
 * const result = await simulate({ seed: 42, trace: true, timeline: true });
 * writeFileSync('run.html', renderTraceViewer(result, { command: 'npx raftlease sim run --seed 42' }));
 * ```
 */
export function renderTraceViewer(result: SimulationResult, options: TraceViewerOptions = {}): string {
  const data = traceViewerData(result, options);
  const title = escapeHtml(typeof data.title === 'string' ? data.title : `seed ${result.seed}`);
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>${title}</title>
<style>${PAGE_CSS}</style>
</head>
<body>
<header id="header">
<h1>${title}</h1>
<p id="summary" data-summary></p>
<p id="thinned" class="notice" data-thinned hidden></p>
<div id="toolbar">
<button type="button" id="zoom-in" data-action="zoom-in" title="Zoom in (+)">+</button>
<button type="button" id="zoom-out" data-action="zoom-out" title="Zoom out (-)">&minus;</button>
<button type="button" id="pan-left" data-action="pan-left" title="Pan left (&larr;)">&larr;</button>
<button type="button" id="pan-right" data-action="pan-right" title="Pan right (&rarr;)">&rarr;</button>
<button type="button" id="zoom-fit" data-action="fit" title="Whole run (0)">whole run</button>
<button type="button" id="zoom-violation" data-action="violation" title="Zoom to the violation (v)" hidden>violation</button>
<label><input type="checkbox" id="show-messages" checked> messages</label>
<label><input type="checkbox" id="show-heartbeats" checked> heartbeats</label>
<span id="view-label" data-view-label></span>
<span id="message-status" data-message-status></span>
</div>
<div id="legend"></div>
</header>
<main id="main">
<div id="plot"><svg id="timeline" data-timeline role="img" aria-label="timeline of the run"></svg></div>
<aside id="details"><h2>Details</h2><div id="details-body" data-details><p class="hint">Click an event, a message, a role band, a lease or the violation to see its details here. Wheel to zoom, drag to pan.</p></div></aside>
</main>
<script type="application/json" id="trace-data">${scriptJson(data)}</script>
<script>${PAGE_SCRIPT}</script>
</body>
</html>
`;
}

// -------------------------------------------------------------------------------------------------
// The page (no external resources; the script reads the JSON above)

const PAGE_CSS = `
*{box-sizing:border-box}
body{margin:0;font:13px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;background:#fafbfc;display:flex;flex-direction:column;height:100vh}
header{padding:8px 12px 4px;border-bottom:1px solid #d8dde6;background:#fff}
h1{font-size:16px;margin:0 0 2px}
h2{font-size:14px;margin:0 0 6px}
#summary{margin:0 0 4px;color:#4a5161}
#summary .bad{color:#c62828;font-weight:600}
#summary .good{color:#2e7d32;font-weight:600}
.notice{margin:2px 0 4px;padding:3px 8px;background:#fff8e1;border:1px solid #ffe082;border-radius:4px}
#toolbar{display:flex;gap:6px;align-items:center;flex-wrap:wrap;margin:4px 0}
#toolbar button{font:inherit;padding:2px 9px;border:1px solid #b8c0cc;border-radius:4px;background:#f4f6f9;cursor:pointer}
#toolbar button:hover{background:#e8ecf2}
#view-label,#message-status{color:#5b6272;margin-left:8px}
#legend{display:flex;flex-wrap:wrap;gap:10px;color:#4a5161;font-size:12px;margin-bottom:2px}
#legend span.sw{display:inline-block;width:12px;height:10px;margin-right:3px;vertical-align:-1px;border:1px solid rgba(0,0,0,.25)}
main{flex:1;display:flex;min-height:0}
#plot{flex:1;overflow-y:auto;overflow-x:hidden;position:relative}
#timeline{display:block;user-select:none;cursor:grab}
#timeline.dragging{cursor:grabbing}
#details{width:340px;border-left:1px solid #d8dde6;padding:10px 12px;overflow:auto;background:#fff}
#details dl{display:grid;grid-template-columns:auto 1fr;gap:2px 10px;margin:0}
#details dt{color:#5b6272}
#details dd{margin:0;word-break:break-word;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
#details .title{font-weight:600;margin-bottom:6px}
#details .hint{color:#6b7280}
.lane-label{font:600 13px system-ui,sans-serif;fill:#1d2330}
.lane-label.involved{fill:#c62828}
.sub-label{font:10px system-ui,sans-serif;fill:#6b7280}
.axis text{font:10px system-ui,sans-serif;fill:#4a5161}
.axis line{stroke:#c9cfd8}
.grid{stroke:#eef1f5}
.lane-bg{fill:#fff;stroke:#e3e7ee}
.role-F{fill:#dce9f7}
.role-P{fill:#fff3b0}
.role-C{fill:#ffcc80}
.role-L{fill:#81c784}
.role-D{fill:url(#hatch-down)}
.role-S{fill:#eceff1}
.role-text{font:10px system-ui,sans-serif;fill:#1d2330;pointer-events:none}
.pause{fill:#ffb300;fill-opacity:.45;stroke:#e69500}
.cut{fill:url(#hatch-cut);stroke:#8e24aa;stroke-opacity:.5}
.clock-line{fill:none;stroke:#37474f;stroke-width:1.2}
.clock-zero{stroke:#b0bec5;stroke-dasharray:2 2}
.clock-text{font:10px system-ui,sans-serif;fill:#37474f;pointer-events:none}
.msg{stroke-width:1.1;fill:none}
.msg-hit{stroke:transparent;stroke-width:7;fill:none}
.m-vote{stroke:#ef6c00}
.m-append{stroke:#1565c0}
.m-heartbeat{stroke:#9aa5b1;stroke-opacity:.7}
.m-snapshot{stroke:#6a1b9a}
.m-client{stroke:#00897b}
.m-dropped{stroke:#e53935;stroke-dasharray:3 2}
.m-lost{stroke:#e53935}
.ev{stroke:#263238;stroke-width:.8}
.ev-crash{fill:#c62828;stroke:#7f0000}
.ev-start{fill:#43a047}
.ev-pause{fill:#ffb300}
.ev-clock-jump{fill:#00acc1}
.ev-transfer{fill:#8e24aa}
.ev-membership{fill:#5e35b1}
.ev-restore,.ev-snapshot,.ev-install{fill:#6d4c41}
.ev-partition{fill:#8e24aa}
.ev-heal-network,.ev-heal{fill:#2e7d32}
.ev-caught-up,.ev-run-start,.ev-other{fill:#546e7a}
.phase-line{stroke:#2e7d32;stroke-dasharray:6 3}
.commit-line{fill:none;stroke-width:1.3}
.lease{stroke:#37474f;stroke-width:.6}
.lease.overlap{stroke:#c62828;stroke-width:2}
.lease-text{font:10px system-ui,sans-serif;fill:#102030;pointer-events:none}
.overlap-band{fill:#e53935;fill-opacity:.18;stroke:#c62828;stroke-dasharray:4 2}
.violation-line{stroke:#d50000;stroke-width:2}
.violation-detected{stroke:#d50000;stroke-width:1;stroke-dasharray:5 3}
.violation-box{fill:#ffebee;stroke:#d50000}
.violation-text{font:600 11px system-ui,sans-serif;fill:#b71c1c}
.selected{stroke:#000 !important;stroke-width:2.2 !important}
`;

/*
 * The page's script. Plain ES5-style JavaScript in a string (no template literals, no external
 * resources); it redraws the SVG for the visible time range on every zoom or pan.
 *
 * Data rows (all times in true-time nanoseconds, nodes as lane indexes):
 * roles [t, node, roleCode, term, leader, voter]; commits [t, node, commit];
 * messages [sent, from, to, typeIndex, term, detail, arrived (-1 lost), outcome 0 delivered 1 dropped 2 lost];
 * network [t, [[from, to], ...]]; pauses [node, from, to]; events [t, node (-1 cluster), kind, text];
 * leases [keyIndex, owner, token, source 0 table 1 client, node, from, to (-1 open), end, renewals].
 */
const PAGE_SCRIPT = String.raw`
(function () {
  'use strict';
  var D = JSON.parse(document.getElementById('trace-data').textContent);
  var svg = document.getElementById('timeline');
  var plot = document.getElementById('plot');
  var detailsBody = document.getElementById('details-body');
  var N = D.nodes.length;
  var END = Math.max(1, D.endNs);
  var LABEL_W = 96, RIGHT_PAD = 12, AXIS_H = 40, LANE_H = 66, LANE_GAP = 8, BAND_H = 34, CLOCK_Y = 40, CLOCK_H = 20;
  var COMMIT_H = 92, TRACK_H = 15;
  var ROLE_NAMES = { F: 'Follower', P: 'PreCandidate', C: 'Candidate', L: 'Leader', D: 'Down (crashed)', S: 'Starting' };
  var NODE_COLORS = ['#1565c0', '#c62828', '#2e7d32', '#ef6c00', '#6a1b9a', '#00838f', '#ad1457', '#5d4037', '#455a64'];
  var OWNER_COLORS = ['#90caf9', '#a5d6a7', '#ffcc80', '#ce93d8', '#80deea', '#f48fb1', '#e6ee9c', '#bcaaa4', '#b0bec5', '#fff59d', '#9fa8da', '#ffab91'];
  var MAX_VIEW_MESSAGES = 1500;
  var ARROW_COLORS = { vote: '#ef6c00', append: '#1565c0', heartbeat: '#9aa5b1', snapshot: '#6a1b9a', client: '#00897b', dropped: '#e53935' };

  function esc(s) { return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;'); }
  function ms(ns) { return (ns / 1e6).toFixed(3) + ' ms'; }
  function nodeName(i) { return i >= 0 && i < N ? D.nodes[i] : 'cluster'; }

  // ---- derived structures ------------------------------------------------------------------
  var roleSegs = [];
  for (var n = 0; n < N; n++) roleSegs.push([]);
  D.roles.forEach(function (r) {
    var segs = roleSegs[r[1]];
    var last = segs[segs.length - 1];
    if (last && last.role === r[2] && last.term === r[3] && last.leader === r[4] && last.voter === r[5]) return;
    if (last) last.to = r[0];
    segs.push({ from: r[0], to: END, role: r[2], term: r[3], leader: r[4], voter: r[5] });
  });
  roleSegs = roleSegs.map(function (segs) { return segs.filter(function (s, i) { return s.to > s.from || i === segs.length - 1; }); });

  var commitPts = [];
  for (n = 0; n < N; n++) commitPts.push([]);
  var maxCommit = 1;
  D.commits.forEach(function (c) { commitPts[c[1]].push([c[0], c[2]]); if (c[2] > maxCommit) maxCommit = c[2]; });

  // Network periods: the cut links from one change to the next, per node (cut either way).
  var netPeriods = [];
  D.network.forEach(function (c, i) {
    var next = D.network[i + 1];
    netPeriods.push({ from: c[0], to: next ? next[0] : END, cut: c[1] });
  });

  function clockOffsetNs(node, t) {
    var c = D.clocks[node];
    var off = c.offsetNs + Math.trunc(t * c.driftPpm / 1e6);
    for (var i = 0; i < c.jumps.length; i++) if (c.jumps[i][0] <= t) off += c.jumps[i][1];
    return off;
  }
  var maxOffset = 1e6;
  for (n = 0; n < N; n++) {
    maxOffset = Math.max(maxOffset, Math.abs(clockOffsetNs(n, 0)), Math.abs(clockOffsetNs(n, END)));
    D.clocks[n].jumps.forEach(function (j) { maxOffset = Math.max(maxOffset, Math.abs(clockOffsetNs(n, j[0]))); });
  }

  // Lease rows: per key, tracks for the table's view and for the clients' beliefs (overlaps stack).
  var leaseRows = D.keys.map(function (key) { return { key: key, table: [], client: [] }; });
  D.leases.forEach(function (l, i) {
    var row = leaseRows[l[0]];
    var lease = { index: i, key: D.keys[l[0]], owner: l[1], token: l[2], source: l[3] === 0 ? 'table' : 'client', node: l[4], from: l[5], to: l[6] < 0 ? END : l[6], open: l[6] < 0, end: l[7], renewals: l[8], overlap: false, track: 0 };
    (l[3] === 0 ? row.table : row.client).push(lease);
  });
  leaseRows.forEach(function (row) {
    ['table', 'client'].forEach(function (source) {
      var trackEnds = [];
      row[source].forEach(function (l) {
        var t = 0;
        while (t < trackEnds.length && trackEnds[t] > l.from) t++;
        trackEnds[t] = l.to;
        l.track = t;
      });
      row[source + 'Tracks'] = Math.max(1, trackEnds.length);
      var ls = row[source];
      for (var a = 0; a < ls.length; a++) for (var b = a + 1; b < ls.length; b++) {
        if (ls[b].from >= ls[a].to) continue;
        if (ls[a].owner === ls[b].owner && ls[a].token === ls[b].token) continue;
        ls[a].overlap = ls[b].overlap = true;
      }
    });
  });

  // Message categories.
  function category(type) {
    if (type === 'VoteRequest' || type === 'VoteResponse' || type === 'TimeoutNow') return 'vote';
    if (type === 'Heartbeat' || type === 'HeartbeatResponse') return 'heartbeat';
    if (type === 'InstallSnapshot' || type === 'SnapshotResponse') return 'snapshot';
    if (type === 'AppendRequest' || type === 'AppendResponse') return 'append';
    return 'client';
  }

  // ---- layout ------------------------------------------------------------------------------
  var layout = {};
  function computeLayout() {
    var y = AXIS_H;
    layout.lanes = [];
    for (var i = 0; i < N; i++) { layout.lanes.push(y); y += LANE_H + LANE_GAP; }
    layout.commitY = y + 6; y = layout.commitY + COMMIT_H + 14;
    layout.leaseY = [];
    leaseRows.forEach(function (row) {
      var h = (row.tableTracks + (row.client.length > 0 ? row.clientTracks : 0)) * TRACK_H + 8;
      layout.leaseY.push({ y: y, h: h });
      y += h + 6;
    });
    layout.height = y + 10;
    layout.width = Math.max(400, plot.clientWidth);
    layout.plotW = layout.width - LABEL_W - RIGHT_PAD;
  }

  // ---- view --------------------------------------------------------------------------------
  var view = { start: -END * 0.01, end: END * 1.01 };
  function fit() { view.start = -END * 0.01; view.end = END * 1.01; }
  function clampView() {
    var span = view.end - view.start;
    var maxSpan = END * 1.2;
    if (span > maxSpan) { var c = (view.start + view.end) / 2; view.start = c - maxSpan / 2; view.end = c + maxSpan / 2; span = maxSpan; }
    if (span < 1000) { var m = (view.start + view.end) / 2; view.start = m - 500; view.end = m + 500; span = 1000; }
    var lo = -END * 0.1, hi = END * 1.1;
    if (view.start < lo) { view.end += lo - view.start; view.start = lo; }
    if (view.end > hi) { view.start -= view.end - hi; view.end = hi; }
  }
  function X(t) { return LABEL_W + (t - view.start) / (view.end - view.start) * layout.plotW; }
  function T(x) { return view.start + (x - LABEL_W) / layout.plotW * (view.end - view.start); }
  function visible(from, to) { return to >= view.start && from <= view.end; }
  function cx(t) { return Math.max(LABEL_W - 5, Math.min(LABEL_W + layout.plotW + 5, X(t))); }
  function laneMid(node) { return layout.lanes[node] + BAND_H / 2; }

  function zoomAround(t, factor) {
    view.start = t - (t - view.start) * factor;
    view.end = t + (view.end - t) * factor;
    clampView();
    schedule();
  }
  function pan(dt) { view.start += dt; view.end += dt; clampView(); schedule(); }

  // ---- rendering ---------------------------------------------------------------------------
  var items = [];
  var selected = null;
  function item(obj) { items.push(obj); return ' data-item="' + (items.length - 1) + '"'; }

  function niceStep(span) {
    var raw = span / 10;
    var p = Math.pow(10, Math.floor(Math.log10(raw)));
    var m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
  }

  function render() {
    computeLayout();
    items = [];
    var out = [];
    var W = layout.width, H = layout.height, PW = layout.plotW;
    svg.setAttribute('width', W);
    svg.setAttribute('height', H);
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    out.push('<defs>' +
      '<clipPath id="plot-clip"><rect x="' + LABEL_W + '" y="0" width="' + PW + '" height="' + H + '"/></clipPath>' +
      '<pattern id="hatch-down" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#9e9e9e"/><line x1="0" y1="0" x2="0" y2="6" stroke="#616161" stroke-width="3"/></pattern>' +
      '<pattern id="hatch-cut" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(-45)"><line x1="0" y1="0" x2="0" y2="8" stroke="#8e24aa" stroke-opacity=".55" stroke-width="2"/></pattern>' +
      Object.keys(ARROW_COLORS).map(function (k) { return '<marker id="arrow-' + k + '" viewBox="0 0 6 6" refX="6" refY="3" markerWidth="5" markerHeight="5" orient="auto"><path d="M0,0L6,3L0,6z" fill="' + ARROW_COLORS[k] + '"/></marker>'; }).join('') +
      '</defs>');

    // Axis and grid.
    var span = view.end - view.start;
    var step = niceStep(span);
    var decimals = Math.max(0, Math.min(6, Math.ceil(-Math.log10(step / 1e6))));
    var axis = ['<g class="axis" data-axis>'];
    for (var t = Math.ceil(view.start / step) * step; t <= view.end; t += step) {
      var x = X(t);
      axis.push('<line class="grid" x1="' + x + '" y1="' + (AXIS_H - 4) + '" x2="' + x + '" y2="' + H + '"/>');
      axis.push('<line x1="' + x + '" y1="' + (AXIS_H - 10) + '" x2="' + x + '" y2="' + (AXIS_H - 4) + '"/>');
      if (x > LABEL_W + PW - 44) continue;
      axis.push('<text x="' + (x + 2) + '" y="' + (AXIS_H - 12) + '">' + (t / 1e6).toFixed(decimals) + ' ms</text>');
    }
    axis.push('<text x="4" y="' + (AXIS_H - 12) + '">true time</text></g>');
    out.push(axis.join(''));
    out.push('<g clip-path="url(#plot-clip)">');

    // Lanes.
    var involved = D.violation ? D.violation.nodes : [];
    var lanes = [];
    for (var i = 0; i < N; i++) {
      var y0 = layout.lanes[i];
      var g = ['<g data-lane="' + esc(D.nodes[i]) + '" data-node="' + i + '">'];
      g.push('<rect class="lane-bg" x="' + LABEL_W + '" y="' + y0 + '" width="' + PW + '" height="' + LANE_H + '"' + item({ kind: 'lane', node: i }) + '/>');
      roleSegs[i].forEach(function (s) {
        if (!visible(s.from, s.to)) return;
        var x1 = cx(s.from), x2 = cx(s.to), w = Math.max(0.5, x2 - x1);
        g.push('<rect class="role role-' + s.role + '" data-kind="role" data-role="' + s.role + '" x="' + x1 + '" y="' + y0 + '" width="' + w + '" height="' + BAND_H + '"' + item({ kind: 'role', node: i, seg: s }) + '/>');
        if (w > 34 && s.role !== 'D') g.push('<text class="role-text" x="' + (Math.max(x1, LABEL_W) + 3) + '" y="' + (y0 + 13) + '">' + (s.role === 'S' ? 'starting' : 'T' + s.term + (s.role === 'L' ? ' leader' : s.role === 'C' ? ' cand.' : s.role === 'P' ? ' pre-cand.' : '')) + '</text>');
        if (w > 80 && s.role === 'F' && s.leader >= 0) g.push('<text class="role-text" x="' + (Math.max(x1, LABEL_W) + 3) + '" y="' + (y0 + 26) + '">leader ' + esc(D.nodes[s.leader]) + '</text>');
      });
      netPeriods.forEach(function (p) {
        if (!visible(p.from, p.to)) return;
        var mine = p.cut.filter(function (l) { return l[0] === i || l[1] === i; });
        if (mine.length === 0) return;
        g.push('<rect class="cut" data-kind="partition" x="' + cx(p.from) + '" y="' + (y0 + BAND_H - 10) + '" width="' + Math.max(1, cx(p.to) - cx(p.from)) + '" height="10"' + item({ kind: 'partition', node: i, period: p, links: mine }) + '/>');
      });
      D.pauses.forEach(function (p) {
        if (p[0] !== i || !visible(p[1], p[2])) return;
        g.push('<rect class="pause" data-kind="pause" x="' + cx(p[1]) + '" y="' + (y0 + 2) + '" width="' + Math.max(1.5, cx(p[2]) - cx(p[1])) + '" height="' + (BAND_H - 14) + '"' + item({ kind: 'pause', node: i, from: p[1], to: p[2] }) + '/>');
      });
      // Clock offset: a line around a dashed zero, with the offset at the left edge of the view.
      var cy0 = y0 + CLOCK_Y + CLOCK_H / 2;
      var scale = (CLOCK_H / 2 - 1) / maxOffset;
      var pts = [];
      var ts = [Math.max(0, view.start)];
      D.clocks[i].jumps.forEach(function (j) { if (j[0] > ts[0] && j[0] < Math.min(END, view.end)) { ts.push(j[0] - 1); ts.push(j[0]); } });
      ts.push(Math.min(END, Math.max(view.end, 0)));
      ts.forEach(function (tt) { pts.push(cx(tt).toFixed(1) + ',' + (cy0 - clockOffsetNs(i, tt) * scale).toFixed(1)); });
      g.push('<line class="clock-zero" x1="' + LABEL_W + '" y1="' + cy0 + '" x2="' + (LABEL_W + PW) + '" y2="' + cy0 + '"/>');
      g.push('<polyline class="clock-line" data-kind="clock" points="' + pts.join(' ') + '"' + item({ kind: 'clock', node: i }) + '/>');
      g.push('<text class="clock-text" data-clock-label x="' + (LABEL_W + 12) + '" y="' + (y0 + CLOCK_Y + 8) + '">clock ' + (clockOffsetNs(i, Math.max(0, view.start)) >= 0 ? '+' : '') + (clockOffsetNs(i, Math.max(0, view.start)) / 1e6).toFixed(3) + ' ms, ' + D.clocks[i].driftPpm + ' ppm</text>');
      g.push('</g>');
      lanes.push(g.join(''));
    }
    out.push(lanes.join(''));

    // Liveness phase.
    D.events.forEach(function (e) {
      if (e[2] === 'heal' && visible(e[0], e[0])) out.push('<line class="phase-line" x1="' + X(e[0]) + '" y1="' + AXIS_H + '" x2="' + X(e[0]) + '" y2="' + (layout.commitY + COMMIT_H) + '"/>');
    });

    // Messages.
    var showMessages = document.getElementById('show-messages').checked;
    var showHeartbeats = document.getElementById('show-heartbeats').checked;
    var inView = [];
    if (showMessages) {
      for (var k = 0; k < D.messages.length; k++) {
        var m = D.messages[k];
        var endT = m[6] < 0 ? m[0] : m[6];
        if (!visible(m[0], endT)) continue;
        if (!showHeartbeats && category(D.messageTypes[m[3]]) === 'heartbeat') continue;
        inView.push(k);
      }
    }
    // At most about one arrow per two pixels: elections, snapshots, forwarding, drops and losses
    // first, then heartbeats and appends, each sampled evenly.
    var cap = Math.max(200, Math.min(MAX_VIEW_MESSAGES, Math.round(PW / 2)));
    var drawn = inView;
    if (inView.length > cap) {
      var first = [], second = [];
      inView.forEach(function (k) {
        var m = D.messages[k], cat = category(D.messageTypes[m[3]]);
        (m[7] !== 0 || (cat !== 'heartbeat' && cat !== 'append') ? first : second).push(k);
      });
      // The first group takes at most 60% of the arrows while there are others to show.
      first = evenly(first, second.length > 0 ? Math.ceil(cap * 0.6) : cap);
      drawn = first.concat(evenly(second, cap - first.length)).sort(function (a, b) { return a - b; });
    }
    var msgs = ['<g data-messages>'];
    drawn.forEach(function (k) {
      var m = D.messages[k];
      var type = D.messageTypes[m[3]];
      var cls = m[7] === 1 ? 'm-dropped' : m[7] === 2 ? 'm-lost' : 'm-' + category(type);
      var x1 = X(m[0]), y1 = laneMid(m[1]);
      var x2, y2;
      if (m[7] === 2) { x2 = x1 + 10; y2 = y1 + (m[2] > m[1] ? 12 : -12); } else { x2 = X(m[6]); y2 = laneMid(m[2]); }
      var it = item({ kind: 'message', index: k });
      msgs.push('<g data-kind="message" data-type="' + type + '"' + it + '><line class="msg-hit" x1="' + x1 + '" y1="' + y1 + '" x2="' + x2 + '" y2="' + y2 + '"/><line class="msg ' + cls + '" x1="' + x1 + '" y1="' + y1 + '" x2="' + x2 + '" y2="' + y2 + '"' + (m[7] === 2 ? '' : ' marker-end="url(#arrow-' + (m[7] === 1 ? 'dropped' : category(type)) + ')"') + '/></g>');
    });
    msgs.push('</g>');
    out.push(msgs.join(''));
    var status = document.getElementById('message-status');
    status.textContent = !showMessages ? 'messages hidden' : inView.length > drawn.length ? drawn.length + ' of ' + inView.length + ' messages in view drawn; zoom in to see all' : inView.length + ' messages in view';

    // Event markers (on top of the messages).
    var marks = ['<g data-events>'];
    D.events.forEach(function (e, idx) {
      if (!visible(e[0], e[0]) || e[2] === 'run-start') return;
      var x = X(e[0]);
      var it = item({ kind: 'event', index: idx });
      var attrs = ' data-kind="event" data-event="' + e[2] + '"' + it;
      if (e[1] < 0) {
        marks.push('<path class="ev ev-' + e[2] + '"' + attrs + ' d="M' + (x - 5) + ',' + (AXIS_H - 1) + 'L' + (x + 5) + ',' + (AXIS_H - 1) + 'L' + x + ',' + (AXIS_H + 8) + 'z"/>');
        return;
      }
      var yy = layout.lanes[e[1]];
      if (e[2] === 'crash') {
        marks.push('<path class="ev ev-crash" data-kind="crash"' + it + ' d="M' + (x - 6) + ',' + (yy + BAND_H / 2 - 6) + 'l12,12m0,-12l-12,12" stroke-width="3" stroke="#c62828"/>');
        marks.push('<circle class="ev ev-crash"' + attrs + ' cx="' + x + '" cy="' + (yy + BAND_H / 2) + '" r="7" fill-opacity="0.15"/>');
      } else {
        var yc = yy + BAND_H + 2;
        marks.push('<path class="ev ev-' + e[2] + '"' + attrs + ' d="M' + x + ',' + (yc - 5) + 'L' + (x + 5) + ',' + yc + 'L' + x + ',' + (yc + 5) + 'L' + (x - 5) + ',' + yc + 'z"/>');
      }
    });
    marks.push('</g>');
    out.push(marks.join(''));

    // Commit index chart.
    var cy = layout.commitY;
    var c = ['<g data-chart="commit">'];
    c.push('<rect class="lane-bg" x="' + LABEL_W + '" y="' + cy + '" width="' + PW + '" height="' + COMMIT_H + '"' + item({ kind: 'commit' }) + '/>');
    for (i = 0; i < N; i++) {
      var pts2 = commitPts[i];
      if (pts2.length === 0) continue;
      var line = [];
      var prevY = null;
      for (var p = 0; p < pts2.length; p++) {
        var t1 = pts2[p][0], t2 = p + 1 < pts2.length ? pts2[p + 1][0] : END;
        if (t2 < view.start || t1 > view.end) continue;
        var yv = cy + COMMIT_H - 4 - pts2[p][1] / maxCommit * (COMMIT_H - 10);
        if (prevY !== null) line.push(cx(t1).toFixed(1) + ',' + prevY.toFixed(1));
        line.push(cx(t1).toFixed(1) + ',' + yv.toFixed(1));
        line.push(cx(t2).toFixed(1) + ',' + yv.toFixed(1));
        prevY = yv;
      }
      if (line.length > 0) c.push('<polyline class="commit-line" data-commit-node="' + esc(D.nodes[i]) + '" stroke="' + NODE_COLORS[i % NODE_COLORS.length] + '" points="' + line.join(' ') + '"' + item({ kind: 'commit' }) + '/>');
    }
    c.push('</g>');
    out.push(c.join(''));

    // Leases.
    var L = ['<g data-leases>'];
    leaseRows.forEach(function (row, r) {
      var ly = layout.leaseY[r];
      L.push('<g data-lease-key="' + esc(row.key) + '">');
      L.push('<rect class="lane-bg" x="' + LABEL_W + '" y="' + ly.y + '" width="' + PW + '" height="' + ly.h + '"/>');
      ['table', 'client'].forEach(function (source) {
        var base = ly.y + 4 + (source === 'table' ? 0 : row.tableTracks * TRACK_H);
        row[source].forEach(function (l) {
          if (!visible(l.from, l.to)) return;
          var x1 = cx(l.from), w = Math.max(1, cx(l.to) - x1), yl = base + l.track * TRACK_H;
          L.push('<rect class="lease' + (l.overlap && source === 'client' ? ' overlap' : '') + '" data-kind="lease" data-source="' + source + '" fill="' + ownerColor(l.owner) + '" x="' + x1 + '" y="' + yl + '" width="' + w + '" height="' + (TRACK_H - 3) + '"' + item({ kind: 'lease', lease: l }) + '/>');
          if (w > 46) L.push('<text class="lease-text" x="' + (Math.max(x1, LABEL_W) + 3) + '" y="' + (yl + 10) + '">' + esc(l.owner) + ' #' + l.token + (source === 'client' ? ' on ' + esc(nodeName(l.node)) : '') + '</text>');
        });
      });
      if (D.violation && D.violation.overlap && D.violation.overlap.key === row.key && visible(D.violation.overlap.fromNs, D.violation.overlap.toNs)) {
        L.push('<rect class="overlap-band" data-overlap x="' + cx(D.violation.overlap.fromNs) + '" y="' + ly.y + '" width="' + Math.max(2, cx(D.violation.overlap.toNs) - cx(D.violation.overlap.fromNs)) + '" height="' + ly.h + '"' + item({ kind: 'violation' }) + '/>');
      }
      L.push('</g>');
    });
    L.push('</g>');
    out.push(L.join(''));
    out.push('</g>');

    // Left labels (outside the clip).
    var labels = ['<g data-labels>'];
    for (i = 0; i < N; i++) {
      var ly0 = layout.lanes[i];
      labels.push('<text class="lane-label' + (involved.indexOf(D.nodes[i]) >= 0 ? ' involved' : '') + '" x="8" y="' + (ly0 + 16) + '"' + item({ kind: 'node', node: i }) + '>' + esc(D.nodes[i]) + '</text>');
      labels.push('<text class="sub-label" x="8" y="' + (ly0 + 30) + '">role / term</text>');
      labels.push('<text class="sub-label" x="8" y="' + (ly0 + CLOCK_Y + 14) + '">clock offset</text>');
    }
    labels.push('<text class="lane-label" x="8" y="' + (layout.commitY + 16) + '">commit</text>');
    labels.push('<text class="sub-label" x="8" y="' + (layout.commitY + 30) + '">index 0..' + maxCommit + '</text>');
    for (i = 0; i < N; i++) {
      var lx = 8 + (i % 2) * 40, lyy = layout.commitY + 44 + Math.floor(i / 2) * 11;
      labels.push('<rect x="' + lx + '" y="' + (lyy - 5) + '" width="10" height="4" fill="' + NODE_COLORS[i % NODE_COLORS.length] + '"/><text class="sub-label" x="' + (lx + 14) + '" y="' + lyy + '">' + esc(D.nodes[i]) + '</text>');
    }
    leaseRows.forEach(function (row, r) {
      var ly = layout.leaseY[r];
      labels.push('<text class="lane-label" x="8" y="' + (ly.y + 13) + '">' + esc(row.key) + '</text>');
      labels.push('<text class="sub-label" x="8" y="' + (ly.y + 25) + '">' + (row.client.length > 0 ? 'table / clients' : 'lease table') + '</text>');
    });
    labels.push('</g>');
    out.push(labels.join(''));

    // The violation, on top of everything.
    if (D.violation) {
      var v = D.violation;
      var vx = cx(v.atNs);
      var text = v.property + ': ' + v.message;
      var maxChars = Math.max(20, Math.min(160, Math.floor((PW - 24) / 6.6)));
      var short = text.length > maxChars ? text.slice(0, maxChars - 3) + '...' : text;
      var boxW = Math.min(PW - 8, short.length * 6.1 + 12);
      var bx = Math.max(LABEL_W + 2, Math.min(vx - boxW / 2, LABEL_W + PW - boxW - 2));
      var vg = ['<g data-violation data-property="' + esc(v.property) + '" data-time-ns="' + v.atNs + '"' + item({ kind: 'violation' }) + '>'];
      // The red line where it happened (dashed where it was detected, if later), when in view; the
      // label always shows, with an arrow towards it when it is off to one side.
      if (v.detectedNs !== v.atNs && visible(v.detectedNs, v.detectedNs)) vg.push('<line class="violation-detected" x1="' + X(v.detectedNs) + '" y1="' + AXIS_H + '" x2="' + X(v.detectedNs) + '" y2="' + H + '"/>');
      if (visible(v.atNs, v.atNs)) {
        vg.push('<line class="violation-line" x1="' + vx + '" y1="' + AXIS_H + '" x2="' + vx + '" y2="' + H + '"/>');
        vg.push('<line class="msg-hit" x1="' + vx + '" y1="' + AXIS_H + '" x2="' + vx + '" y2="' + H + '"/>');
      }
      vg.push('<rect class="violation-box" x="' + bx + '" y="2" width="' + boxW + '" height="16" rx="3"/>');
      vg.push('<text class="violation-text" x="' + (bx + 6) + '" y="14">' + (v.atNs < view.start ? '\u25c0 ' : v.atNs > view.end ? '\u25b6 ' : '') + esc(short) + '</text>');
      vg.push('</g>');
      out.push(vg.join(''));
    }

    svg.innerHTML = out.join('');
    // Fit the violation's label box to its text.
    var vt = svg.querySelector('.violation-text'), vb = svg.querySelector('.violation-box');
    if (vt && vb && vt.getComputedTextLength) {
      var tw = Math.min(PW - 4, vt.getComputedTextLength() + 12);
      var vx2 = cx(D.violation.atNs);
      var bx2 = Math.max(LABEL_W + 2, Math.min(vx2 - tw / 2, LABEL_W + PW - tw - 2));
      vb.setAttribute('width', tw); vb.setAttribute('x', bx2); vt.setAttribute('x', bx2 + 6);
    }
    svg.setAttribute('data-view-start', String(Math.round(view.start)));
    svg.setAttribute('data-view-end', String(Math.round(view.end)));
    var shownStart = Math.max(0, view.start), shownEnd = Math.min(END, view.end);
    document.getElementById('view-label').textContent = 'view ' + ms(shownStart) + ' .. ' + ms(shownEnd) + ' (' + ms(shownEnd - shownStart) + ')';
    if (selected !== null) highlight(selected);
  }

  function evenly(list, budget) {
    if (list.length <= budget) return list;
    var kept = [];
    for (var q = 0; q < list.length; q++) if (Math.floor((q + 1) * budget / list.length) > Math.floor(q * budget / list.length)) kept.push(list[q]);
    return kept;
  }

  function ownerColor(owner) {
    var h = 0;
    for (var i = 0; i < owner.length; i++) h = (h * 31 + owner.charCodeAt(i)) % 1000003;
    return OWNER_COLORS[h % OWNER_COLORS.length];
  }

  var pending = false;
  function schedule() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; render(); });
  }

  // ---- details -----------------------------------------------------------------------------
  function stateAt(node, t) {
    var seg = null;
    roleSegs[node].forEach(function (s) { if (s.from <= t) seg = s; });
    var commit = null;
    commitPts[node].forEach(function (p) { if (p[0] <= t) commit = p[1]; });
    var cut = [];
    netPeriods.forEach(function (p) { if (p.from <= t && t < p.to) cut = p.cut.filter(function (l) { return l[0] === node || l[1] === node; }); });
    var paused = D.pauses.some(function (p) { return p[0] === node && p[1] <= t && t < p[2]; });
    return { seg: seg, commit: commit, cut: cut, paused: paused };
  }
  function links(list) { return list.length === 0 ? 'none' : list.map(function (l) { return D.nodes[l[0]] + '\u2192' + D.nodes[l[1]]; }).join(', '); }

  function show(title, rows, kind) {
    var html = '<div class="title" data-details-title>' + esc(title) + '</div><dl>';
    rows.forEach(function (r) { html += '<dt>' + esc(r[0]) + '</dt><dd>' + esc(r[1]) + '</dd>'; });
    detailsBody.innerHTML = html + '</dl>';
    detailsBody.setAttribute('data-details-kind', kind);
  }

  function details(it, t) {
    var rows, s;
    switch (it.kind) {
      case 'message': {
        var m = D.messages[it.index];
        rows = [['type', D.messageTypes[m[3]]], ['from', D.nodes[m[1]]], ['to', D.nodes[m[2]]], ['term', m[4]], ['fields', m[5] || '-'], ['sent at', ms(m[0])]];
        if (m[7] === 2) rows.push(['outcome', 'lost in the network (dropped at send, or still in flight at the end)']);
        else { rows.push(['arrived at', ms(m[6])]); rows.push(['latency', ms(m[6] - m[0])]); rows.push(['outcome', m[7] === 0 ? 'delivered' : 'dropped on arrival (link cut or target down)']); }
        show('Message ' + D.messageTypes[m[3]], rows, 'message');
        return;
      }
      case 'event': {
        var e = D.events[it.index];
        show('Event: ' + e[2], [['time', ms(e[0])], ['node', nodeName(e[1])], ['trace line', e[3]]], 'event');
        return;
      }
      case 'role':
        s = it.seg;
        rows = [['node', D.nodes[it.node]], ['role', ROLE_NAMES[s.role]], ['term', s.term], ['from', ms(s.from)], ['to', ms(s.to)], ['duration', ms(s.to - s.from)]];
        if (s.role !== 'D' && s.role !== 'S') { rows.push(['knows leader', s.leader >= 0 ? D.nodes[s.leader] : 'none']); rows.push(['voter', s.voter ? 'yes' : 'no (learner or removed)']); }
        if (t !== null) addState(rows, it.node, t);
        show(D.nodes[it.node] + ': ' + ROLE_NAMES[s.role] + (s.role === 'D' || s.role === 'S' ? '' : ', term ' + s.term), rows, 'role');
        return;
      case 'lane':
      case 'clock': {
        rows = [['node', D.nodes[it.node]]];
        addState(rows, it.node, t === null ? 0 : t);
        show(D.nodes[it.node] + ' at ' + ms(t === null ? 0 : t), rows, it.kind);
        return;
      }
      case 'node': {
        var c = D.clocks[it.node];
        show('Node ' + D.nodes[it.node], [['clock offset at 0', ms(c.offsetNs)], ['drift', c.driftPpm + ' ppm'], ['clock jumps', c.jumps.length === 0 ? 'none' : c.jumps.map(function (j) { return '+' + ms(j[1]) + ' at ' + ms(j[0]); }).join(', ')], ['role changes', roleSegs[it.node].length]], 'node');
        return;
      }
      case 'partition':
        show('Partition: ' + D.nodes[it.node] + ' cut off', [['from', ms(it.period.from)], ['to', ms(it.period.to)], ['links cut (this node)', links(it.links)], ['all links cut', links(it.period.cut)]], 'partition');
        return;
      case 'pause':
        show('Pause: ' + D.nodes[it.node], [['from', ms(it.from)], ['to', ms(it.to)], ['duration', ms(it.to - it.from)]], 'pause');
        return;
      case 'commit': {
        var tt = t === null ? END : t;
        rows = [['time', ms(tt)]];
        for (var i = 0; i < N; i++) { var st = stateAt(i, tt); rows.push([D.nodes[i] + ' commit', st.commit === null ? '-' : st.commit]); }
        show('Commit index at ' + ms(tt), rows, 'commit');
        return;
      }
      case 'lease': {
        var l = it.lease;
        rows = [['key', l.key], ['owner', l.owner], ['fencing token', l.token], ['view', l.source === 'table' ? 'lease table (first application of grant to release/expiry)' : 'client belief (what the exclusion checker judges)'], ['from', ms(l.from)], ['to', l.open ? 'still held at the end' : ms(l.to)], ['ended', l.end]];
        if (l.source === 'client') rows.push(['client node', nodeName(l.node)]);
        else rows.push(['renewals', l.renewals]);
        if (l.overlap) rows.push(['overlap', 'overlaps another holder\u2019s lease']);
        show('Lease ' + l.key + ' \u2014 ' + l.owner, rows, 'lease');
        return;
      }
      case 'violation': {
        var v = D.violation;
        rows = [['property', v.property], ['message', v.message], ['nodes', v.nodes.length === 0 ? '-' : v.nodes.join(', ')], ['step', v.step], ['happened at', ms(v.atNs)], ['detected at', ms(v.detectedNs)]];
        if (v.overlap) rows.push(['overlap', v.overlap.key + ' from ' + ms(v.overlap.fromNs) + ' to ' + ms(v.overlap.toNs)]);
        show('Violation: ' + v.property, rows, 'violation');
        return;
      }
    }
  }
  function addState(rows, node, t) {
    var st = stateAt(node, t);
    rows.push(['at', ms(t)]);
    if (st.seg) { rows.push(['role then', ROLE_NAMES[st.seg.role] + (st.seg.role === 'D' || st.seg.role === 'S' ? '' : ', term ' + st.seg.term)]); }
    rows.push(['commit index then', st.commit === null ? '-' : st.commit]);
    rows.push(['clock offset then', ms(clockOffsetNs(node, Math.max(0, t)))]);
    rows.push(['local clock then', ms(Math.max(0, t) + clockOffsetNs(node, Math.max(0, t)))]);
    rows.push(['paused', st.paused ? 'yes' : 'no']);
    rows.push(['links cut', links(st.cut)]);
  }

  function highlight(index) {
    var el = svg.querySelector('[data-item="' + index + '"]');
    if (!el) return;
    var target = el.querySelector('.msg') || el;
    target.classList.add('selected');
  }

  // ---- interaction -------------------------------------------------------------------------
  var drag = null;
  var dragged = false;
  function svgX(ev) { var r = svg.getBoundingClientRect(); return ev.clientX - r.left; }
  svg.addEventListener('wheel', function (ev) {
    ev.preventDefault();
    var dy = ev.deltaMode === 1 ? ev.deltaY * 30 : ev.deltaMode === 2 ? ev.deltaY * 300 : ev.deltaY;
    if (ev.shiftKey || Math.abs(ev.deltaX) > Math.abs(dy)) { pan(((ev.deltaX || dy) / layout.plotW) * (view.end - view.start)); return; }
    var x = Math.max(LABEL_W, Math.min(LABEL_W + layout.plotW, svgX(ev)));
    zoomAround(T(x), Math.exp(dy * 0.0015));
  }, { passive: false });
  svg.addEventListener('mousedown', function (ev) {
    if (ev.button !== 0) return;
    drag = { x: ev.clientX, start: view.start, end: view.end };
    dragged = false;
  });
  window.addEventListener('mousemove', function (ev) {
    if (drag === null) return;
    var dx = ev.clientX - drag.x;
    if (!dragged && Math.abs(dx) < 4) return;
    dragged = true;
    svg.classList.add('dragging');
    var dt = -dx / layout.plotW * (drag.end - drag.start);
    view.start = drag.start + dt; view.end = drag.end + dt;
    clampView();
    schedule();
  });
  window.addEventListener('mouseup', function () {
    drag = null;
    svg.classList.remove('dragging');
  });
  svg.addEventListener('click', function (ev) {
    if (dragged) { dragged = false; return; }
    var el = ev.target.closest ? ev.target.closest('[data-item]') : null;
    if (!el) return;
    var index = Number(el.getAttribute('data-item'));
    var it = items[index];
    if (!it) return;
    var x = svgX(ev);
    var t = x >= LABEL_W ? T(x) : null;
    details(it, t);
    var prev = svg.querySelectorAll('.selected');
    for (var i = 0; i < prev.length; i++) prev[i].classList.remove('selected');
    selected = index;
    highlight(index);
  });
  function center() { return (view.start + view.end) / 2; }
  function act(action) {
    var span = view.end - view.start;
    if (action === 'zoom-in') zoomAround(center(), 0.5);
    else if (action === 'zoom-out') zoomAround(center(), 2);
    else if (action === 'pan-left') pan(-span * 0.25);
    else if (action === 'pan-right') pan(span * 0.25);
    else if (action === 'fit') { fit(); schedule(); }
    else if (action === 'violation' && D.violation) {
      var w = Math.max(2e6, Math.min(END * 0.05, 400e6));
      view.start = D.violation.atNs - w / 2; view.end = D.violation.atNs + w / 2;
      clampView(); schedule();
      details({ kind: 'violation' }, null);
    }
  }
  Array.prototype.forEach.call(document.querySelectorAll('[data-action]'), function (b) {
    b.addEventListener('click', function () { act(b.getAttribute('data-action')); });
  });
  document.addEventListener('keydown', function (ev) {
    if (ev.target && ev.target.tagName === 'INPUT') return;
    var map = { '+': 'zoom-in', '=': 'zoom-in', '-': 'zoom-out', ArrowLeft: 'pan-left', ArrowRight: 'pan-right', '0': 'fit', v: 'violation' };
    if (map[ev.key]) { ev.preventDefault(); act(map[ev.key]); }
  });
  document.getElementById('show-messages').addEventListener('change', schedule);
  document.getElementById('show-heartbeats').addEventListener('change', schedule);
  window.addEventListener('resize', schedule);

  // ---- header ------------------------------------------------------------------------------
  var S = D.summary;
  var parts = [];
  parts.push(D.ok ? '<span class="good">ok</span>' : '<span class="bad">VIOLATION: ' + esc(D.violation ? D.violation.property : '?') + '</span>');
  parts.push(S.nodes + ' nodes' + (S.workload ? ', workload ' + esc(S.workload) : ''));
  parts.push(S.steps + ' events, ' + S.simulatedMs.toFixed(0) + ' simulated ms');
  parts.push('faults: ' + (S.enabledFaults.length ? esc(S.enabledFaults.join(', ')) : 'none') + (S.driftBeyondBound ? ' (DRIFT BEYOND BOUND)' : ''));
  parts.push('committed ' + S.committedEntries + ', linearizability ' + esc(S.linearizability) + (S.leaseExclusion !== 'skipped' ? ', lease exclusion ' + esc(S.leaseExclusion) : ''));
  parts.push('liveness ' + (S.livenessMs === null ? 'not reached' : S.livenessMs.toFixed(0) + ' ms after healing'));
  parts.push(D.messagesTotal + ' message arrows, ' + S.traceLines + ' trace lines');
  if (D.command) parts.push('replay: <code>' + esc(D.command) + '</code>');
  document.getElementById('summary').innerHTML = parts.join(' \u00b7 ');
  if (D.messagesThinned) { var th = document.getElementById('thinned'); th.textContent = D.messagesThinned; th.hidden = false; }
  else document.getElementById('thinned').remove();
  if (D.violation) document.getElementById('zoom-violation').hidden = false;
  var legend = [['#81c784', 'leader'], ['#ffcc80', 'candidate'], ['#fff3b0', 'pre-candidate'], ['#dce9f7', 'follower'], ['#9e9e9e', 'down'], ['#eceff1', 'starting'], ['#ffb300', 'paused'], ['#ce93d8', 'cut off (partition)']];
  var lg = legend.map(function (l) { return '<span><span class="sw" style="background:' + l[0] + '"></span>' + l[1] + '</span>'; });
  lg.push('<span>arrows: <b style="color:#ef6c00">votes</b> <b style="color:#1565c0">appends</b> <b style="color:#9aa5b1">heartbeats</b> <b style="color:#6a1b9a">snapshots</b> <b style="color:#00897b">forwarding/reads</b> <b style="color:#e53935">dropped/lost</b></span>');
  lg.push('<span>\u25c6 events (start, clock jump, transfer, membership, restore) \u00b7 \u2716 crash \u00b7 \u25bc cluster events (partition, heal)</span>');
  document.getElementById('legend').innerHTML = lg.join('');
  document.body.setAttribute('data-ready', 'true');
  render();
})();
`;
