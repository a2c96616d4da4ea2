/**
 * A small interpreter for script-and-transcript tests of the Raft core, after etcd-io/raft's
 * `testdata/*.txt` (datadriven) files.
 *
 * A script is a sequence of blocks. Each block is any number of `#` comment lines and blank lines,
 * one command line, a `----` line, the recorded output lines, and a blank line:
 *
 * ```text
 * # n1 campaigns; its pre-vote is granted by both peers.
 * campaign n1
 * ----
 * n1: PreCandidate term=0 vote=none leader=none
 *
 * deliver
 * ----
 * n1->n2 VoteRequest term=1 pre last=0@0
 * ...
 * ```
 *
 * Running a script replays every command against a fresh {@link TestCluster} and renders the same
 * file with the actual output; the file passes when the rendering equals it byte for byte.
 *
 * Commands (node ids are the ones given to `cluster`):
 * - `cluster n1 n2 n3 [preVote=false] [checkQuorum=false] [seed=N] [<any numeric RaftOptions>=N]`
 *   starts a new cluster (a script may hold several, one after another);
 * - `campaign n1`, `propose n1 some text`, `propose-many n1 30 x` (x1 .. x30, handled as one batch);
 * - `transfer n1 n2` (leadership transfer from leader n1 to n2), `read n1` (a ReadIndex request);
 * - `tick n1 [count]`, `tick-all [count]` (every node, in cluster order, `count` rounds);
 * - `deliver` (until the network is quiet), `deliver N` (only the first N queued messages, not what
 *   they cause), `deliver-one`, `drop` (every queued message), `drop-one` (the first queued message),
 *   `queue` (list without delivering);
 * - `partition n1 | n2 n3`, `cut n1->n2` (one direction), `heal`;
 * - `restart n1` (a crash: the node restarts from what it stored; messages in flight stay queued);
 * - `compact n1 [index]` (n1 snapshots its state at its applied index and compacts its log up to
 *   `index`, default the snapshot index); `add-node n4` (starts an empty node that knows no members);
 *   `membership n1 AddLearner|PromoteLearner|RemoveNode n4` (a membership change proposed on n1);
 *   `members [n1 ...]` (each node's membership and snapshot index);
 * - `stabilize` (flush every node and deliver until nothing changes);
 * - `status [n1 ...]`, `log [n1 ...]`.
 *
 * Every command reports what it changed: delivered and dropped messages (one line each, via
 * {@link describeMessage}), and under them, indented, the state changes they caused — a node's role,
 * term, vote or leader; its commit index and the entries it applied; entries truncated from its log;
 * answers to proposals it forwarded. A command with nothing to report prints `ok`. Entries render as
 * `index@term:data`; a run like `3@2:x1 4@2:x2 5@2:x3` is folded into `3..5@2:x1..x3`.
 *
 * Output is deterministic: the cluster is seeded, messages are delivered in send order, nodes are
 * reported in the order `cluster` named them.
 */
import { DEFAULT_RAFT_OPTIONS, EntryType, type Entry, type Message, type NodeId, type ProposeOutcome, type RaftOptions } from '../../src/raft/index.js';
import { TestCluster, describeEntry, describeMessage } from './cluster.js';

/** The line that separates a command from its recorded output. */
export const OUTPUT_SEPARATOR = '----';

/** Most messages one `deliver` or `stabilize` may deliver before the script is declared runaway. */
const MAX_MESSAGES_PER_COMMAND = 100_000;
/** Most flush-and-deliver rounds of one `stabilize`. */
const MAX_STABILIZE_ROUNDS = 1_000;
/** Most ticks one `tick` or `tick-all` command may ask for. */
const MAX_TICKS_PER_COMMAND = 10_000;
/** Largest cluster a script may start. */
const MAX_NODES = 16;

/** A mistake in the script itself (unknown command, bad argument), as opposed to a core failure. */
export class ScriptError extends Error {
  constructor(line: number, message: string) {
    super(`script line ${line}: ${message}`);
    this.name = 'ScriptError';
  }
}

/** One command with the comments before it and the output recorded after it. */
export interface ScriptBlock {
  /** Comment and blank lines before the command, verbatim. */
  readonly leading: readonly string[];
  readonly command: string;
  /** 1-based line number of the command, for error messages. */
  readonly line: number;
  /** The recorded output, or null when the command has no `----` section yet. */
  readonly recorded: readonly string[] | null;
}

/** A parsed script file. */
export interface ParsedScript {
  readonly blocks: readonly ScriptBlock[];
  /** Comment and blank lines after the last command. */
  readonly trailing: readonly string[];
}

function isCommentOrBlank(line: string): boolean {
  return line.trim() === '' || line.trimStart().startsWith('#');
}

/** Splits a script file into blocks. */
export function parseScript(text: string): ParsedScript {
  const lines = text.replace(/\r\n/g, '\n').split('\n');
  if (lines.at(-1) === '') lines.pop();
  const blocks: ScriptBlock[] = [];
  let pending: string[] = [];
  let position = 0;
  while (position < lines.length) {
    const line = lines[position] ?? '';
    if (isCommentOrBlank(line)) {
      pending.push(line);
      position++;
      continue;
    }
    const commandLine = position + 1;
    position++;
    let recorded: string[] | null = null;
    if (lines[position] === OUTPUT_SEPARATOR) {
      position++;
      recorded = [];
      while (position < lines.length && (lines[position] ?? '') !== '') {
        recorded.push(lines[position] ?? '');
        position++;
      }
    }
    // The blank line that ends the block belongs to it (a new command has no output yet, only that).
    if (position < lines.length && (lines[position] ?? '') === '') position++;
    blocks.push({ leading: pending, command: line, line: commandLine, recorded });
    pending = [];
  }
  return { blocks, trailing: pending };
}

/** Renders a script with the given output for each block (canonical layout). */
export function renderScript(script: ParsedScript, outputs: readonly (readonly string[])[]): string {
  const lines: string[] = [];
  script.blocks.forEach((block, index) => {
    lines.push(...block.leading, block.command, OUTPUT_SEPARATOR, ...(outputs[index] ?? []), '');
  });
  lines.push(...script.trailing);
  while (lines.length > 0 && lines.at(-1) === '') lines.pop();
  return `${lines.join('\n')}\n`;
}

/** Runs every command of a script and returns the file as it should read with the actual output. */
export function runScript(text: string): string {
  const script = parseScript(text);
  const runner = new ScriptRunner();
  const outputs = script.blocks.map((block) => runner.run(block.command, block.line));
  return renderScript(script, outputs);
}

/** What the interpreter remembers of a node to report what a command changed. */
interface NodeSnapshot {
  readonly role: string;
  readonly term: number;
  readonly vote: string;
  readonly leader: string;
  readonly commit: number;
  readonly appliedCount: number;
  readonly entries: readonly Entry[];
  readonly outcomeCount: number;
  readonly readCount: number;
  /** Snapshots installed from a leader so far. */
  readonly installCount: number;
}

/** Executes commands one at a time against the current cluster. */
export class ScriptRunner {
  private cluster: TestCluster | null = null;
  /** Request ids of `read` commands. */
  private readRequests = 0;
  private ids: NodeId[] = [];
  private snapshots = new Map<NodeId, NodeSnapshot>();

  /** Runs one command line and returns its output lines (`ok` when there is nothing to report). */
  run(command: string, line: number): string[] {
    const [name, ...args] = command.trim().split(/\s+/);
    const output: string[] = [];
    const fail = (message: string): never => {
      throw new ScriptError(line, `${message} (in '${command}')`);
    };
    try {
      this.dispatch(name ?? '', args, command, output, fail);
    } catch (error) {
      if (error instanceof ScriptError) throw error;
      // A failure of the core (an InvariantError, say) goes into the transcript, which shows where and
      // how it happened; scripts.test.ts still fails on a broken invariant, even in rewrite mode.
      output.push(`error: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
    }
    return output.length === 0 ? ['ok'] : output;
  }

  private dispatch(name: string, args: string[], command: string, output: string[], fail: (message: string) => never): void {
    if (name === 'cluster') {
      this.startCluster(args, fail);
      return;
    }
    const cluster = this.cluster ?? fail('no cluster yet: start with `cluster n1 n2 n3`');
    switch (name) {
      case 'campaign': {
        const id = this.nodeArg(args, 0, fail);
        cluster.campaign(id);
        this.reportChanges(output, '');
        return;
      }
      case 'propose': {
        const id = this.nodeArg(args, 0, fail);
        const text = command.trim().split(/\s+/).slice(2).join(' ');
        if (text === '') fail('propose needs data');
        output.push(`${id}: ${describeOutcome(cluster.propose(id, text))}`);
        this.reportChanges(output, '');
        return;
      }
      case 'transfer': {
        const id = this.nodeArg(args, 0, fail);
        const target = this.nodeArg(args, 1, fail);
        const outcome = cluster.node(id).transferLeadership(target);
        cluster.flush(id);
        output.push(`${id}: transfer to ${target}: ${outcome.kind}${outcome.kind === 'Refused' ? ` ${outcome.reason}` : ''}`);
        this.reportChanges(output, '');
        return;
      }
      case 'read': {
        const id = this.nodeArg(args, 0, fail);
        const requestId = ++this.readRequests;
        const outcome = cluster.node(id).readIndex(requestId);
        cluster.flush(id);
        output.push(`${id}: read ${requestId}: ${outcome.kind === 'Pending' ? 'Pending' : `Refused ${outcome.refusal}`}`);
        this.reportChanges(output, '');
        return;
      }
      case 'propose-many': {
        const id = this.nodeArg(args, 0, fail);
        const count = this.countArg(args.slice(0, 2), 1, fail);
        const prefix = args[2] ?? fail('propose-many needs a data prefix');
        if (args.length > 3) fail('too many arguments');
        this.proposeMany(id, count, prefix, output);
        this.reportChanges(output, '');
        return;
      }
      case 'tick': {
        const id = this.nodeArg(args, 0, fail);
        const count = this.countArg(args, 1, fail);
        for (let tick = 1; tick <= count; tick++) {
          cluster.tick(id);
          this.reportChanges(output, count > 1 ? `tick ${tick}: ` : '');
        }
        return;
      }
      case 'tick-all': {
        const count = this.countArg(args, 0, fail);
        for (let tick = 1; tick <= count; tick++) {
          for (const id of this.ids) cluster.tick(id);
          this.reportChanges(output, count > 1 ? `tick ${tick}: ` : '');
        }
        return;
      }
      case 'deliver': {
        if (args.length === 0) {
          this.deliverUntilQuiet(output);
          return;
        }
        this.deliverFirst(this.countArg(args, 0, fail), output);
        return;
      }
      case 'deliver-one':
        this.noArgs(args, fail);
        this.deliverFirst(1, output);
        return;
      case 'drop':
        this.noArgs(args, fail);
        for (const message of cluster.queue) output.push(`drop ${describeMessageCompactly(message)}`);
        cluster.queue = [];
        return;
      case 'drop-one': {
        this.noArgs(args, fail);
        const [first, ...rest] = cluster.queue;
        if (first === undefined) fail('nothing queued');
        else output.push(`drop ${describeMessageCompactly(first)}`);
        cluster.queue = rest;
        return;
      }
      case 'queue':
        this.noArgs(args, fail);
        for (const message of cluster.queue) output.push(`queued ${describeMessageCompactly(message)}`);
        return;
      case 'partition': {
        const groups = args.join(' ').split('|').map((group) => group.trim().split(/\s+/).filter((id) => id !== ''));
        if (groups.length < 2 || groups.some((group) => group.length === 0)) fail('partition needs groups separated by |');
        for (const group of groups) for (const id of group) this.checkNode(id, fail);
        cluster.partition(...groups);
        return;
      }
      case 'cut': {
        const [from, to, ...rest] = (args[0] ?? '').split('->');
        if (args.length !== 1 || from === undefined || to === undefined || rest.length > 0) fail('cut needs one link, e.g. n1->n2');
        cluster.cutOneWay(this.checkNode(from, fail), this.checkNode(to, fail));
        return;
      }
      case 'heal':
        this.noArgs(args, fail);
        cluster.heal();
        return;
      case 'restart': {
        const id = this.nodeArg(args, 0, fail);
        cluster.start(id);
        // The restarted state machine starts empty and re-applies the committed log: report it all.
        const before = this.snapshots.get(id);
        if (before !== undefined) this.snapshots.set(id, { ...before, appliedCount: 0 });
        cluster.flush(id);
        this.reportChanges(output, '');
        return;
      }
      case 'stabilize':
        this.noArgs(args, fail);
        this.stabilize(output);
        return;
      case 'compact': {
        const id = this.nodeArg(args, 0, fail);
        const upTo = args[1] === undefined ? undefined : this.integer(args[1], fail);
        const compactedTo = cluster.compact(id, upTo);
        const status = cluster.node(id).status();
        output.push(`${id}: snapshot at ${status.snapshotIndex}, log compacted to ${compactedTo} (first entry ${cluster.node(id).raft.log.firstIndex()})`);
        this.reportChanges(output, '');
        return;
      }
      case 'add-node': {
        const id = args[0] ?? fail('add-node needs a node id');
        if (args.length !== 1) fail('too many arguments');
        if (this.ids.includes(id as NodeId)) fail(`node ${id} exists`);
        cluster.addNode(id);
        this.ids.push(id as NodeId);
        this.snapshots.set(id as NodeId, this.snapshot(id as NodeId));
        output.push(`${id}: started with no members`);
        return;
      }
      case 'membership': {
        const id = this.nodeArg(args, 0, fail);
        const kind = args[1];
        if (kind !== 'AddLearner' && kind !== 'PromoteLearner' && kind !== 'RemoveNode') fail('membership needs AddLearner, PromoteLearner or RemoveNode');
        const target = this.nodeArg(args, 2, fail);
        const outcome = cluster.changeMembership(id, kind, target);
        output.push(
          outcome.kind === 'Appended'
            ? `${id}: ${kind} ${target} appended at ${outcome.index}@${outcome.term}: voters=${outcome.membership.voters.join(',')} learners=${outcome.membership.learners.join(',') || 'none'}`
            : `${id}: ${kind} ${target} refused ${outcome.refusal}: ${outcome.reason}`,
        );
        this.reportChanges(output, '');
        return;
      }
      case 'members':
        for (const id of this.nodesArg(args, fail)) {
          const status = cluster.node(id).status();
          output.push(`${id}: voters=${status.membership.voters.join(',') || 'none'} learners=${status.membership.learners.join(',') || 'none'} snapshot=${status.snapshotIndex}`);
        }
        return;
      case 'status':
        for (const id of this.nodesArg(args, fail)) output.push(this.describeStatus(id));
        return;
      case 'log':
        for (const id of this.nodesArg(args, fail)) {
          const entries = this.entriesOf(id);
          output.push(`${id}: ${entries.length === 0 ? '(empty)' : describeEntries(entries)}`);
        }
        return;
      default:
        fail(`unknown command '${name}'`);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Commands

  private startCluster(args: string[], fail: (message: string) => never): void {
    const ids: string[] = [];
    const options: Record<string, number | boolean> = {};
    for (const arg of args) {
      const equals = arg.indexOf('=');
      if (equals < 0) {
        if (ids.includes(arg)) fail(`node ${arg} listed twice`);
        ids.push(arg);
        continue;
      }
      const key = arg.slice(0, equals);
      const value = arg.slice(equals + 1);
      if (key === 'seed') {
        options[key] = this.integer(value, fail);
      } else if (!(key in DEFAULT_RAFT_OPTIONS)) {
        fail(`unknown option '${key}'`);
      } else if (typeof DEFAULT_RAFT_OPTIONS[key as keyof RaftOptions] === 'boolean') {
        if (value !== 'true' && value !== 'false') fail(`${key} must be true or false`);
        options[key] = value === 'true';
      } else {
        options[key] = this.integer(value, fail);
      }
    }
    if (ids.length === 0 || ids.length > MAX_NODES) fail(`a cluster needs 1 to ${MAX_NODES} nodes`);
    this.cluster = new TestCluster(ids, options);
    this.ids = ids as NodeId[];
    this.snapshots = new Map(this.ids.map((id) => [id, this.snapshot(id)]));
  }

  /**
   * Proposes `prefix1` .. `prefixN` on one node before handling its Ready, so a leader sends them in
   * one AppendEntries per follower. One line sums up a run of entries appended in order.
   */
  private proposeMany(id: NodeId, count: number, prefix: string, output: string[]): void {
    const cluster = this.mustCluster();
    const node = cluster.node(id);
    const outcomes = [];
    for (let number = 1; number <= count; number++) {
      outcomes.push(node.propose(new TextEncoder().encode(`${prefix}${number}`), cluster.trace.length + number));
    }
    cluster.flush(id);
    const first = outcomes[0];
    const last = outcomes.at(-1);
    if (first?.kind === 'Appended' && last?.kind === 'Appended' && outcomes.every((outcome) => outcome.kind === 'Appended' && outcome.term === first.term) && last.index - first.index === count - 1) {
      output.push(`${id}: Appended ${prefix}1..${prefix}${count} at index=${first.index}..${last.index} term=${first.term}`);
      return;
    }
    outcomes.forEach((outcome, position) => {
      output.push(`${id}: ${prefix}${position + 1} ${describeOutcome(outcome)}`);
    });
  }

  private deliverFirst(count: number, output: string[]): void {
    const cluster = this.mustCluster();
    const batch = cluster.queue.splice(0, count);
    for (const message of batch) this.deliver(message, output);
  }

  private deliverUntilQuiet(output: string[]): number {
    const cluster = this.mustCluster();
    let delivered = 0;
    while (cluster.queue.length > 0) {
      // Round by round: every message queued now, then what they caused, in send order.
      const batch = cluster.queue;
      cluster.queue = [];
      for (const message of batch) {
        if (delivered >= MAX_MESSAGES_PER_COMMAND) throw new Error(`network did not quiesce after ${MAX_MESSAGES_PER_COMMAND} messages`);
        this.deliver(message, output);
        delivered++;
      }
    }
    return delivered;
  }

  private deliver(message: Message, output: string[]): void {
    const delivered = this.mustCluster().deliverOne(message);
    output.push(`${delivered ? '' : 'drop '}${describeMessageCompactly(message)}`);
    this.reportChanges(output, '  ');
  }

  private stabilize(output: string[]): void {
    const cluster = this.mustCluster();
    for (let round = 0; round < MAX_STABILIZE_ROUNDS; round++) {
      cluster.flushAll();
      this.reportChanges(output, '');
      if (cluster.queue.length === 0) return;
      this.deliverUntilQuiet(output);
    }
    throw new Error(`stabilize did not settle after ${MAX_STABILIZE_ROUNDS} rounds`);
  }

  // ---------------------------------------------------------------------------------------------
  // Reporting

  private snapshot(id: NodeId): NodeSnapshot {
    const cluster = this.mustCluster();
    const status = cluster.node(id).status();
    return {
      role: status.role,
      term: status.term,
      vote: status.vote ?? 'none',
      leader: status.leader ?? 'none',
      commit: status.commitIndex,
      appliedCount: cluster.applied.get(id)?.length ?? 0,
      entries: this.entriesOf(id),
      outcomeCount: cluster.forwardedOutcomes.get(id)?.length ?? 0,
      readCount: cluster.readStates.get(id)?.length ?? 0,
      installCount: cluster.installs.get(id)?.length ?? 0,
    };
  }

  /** Appends a line for every change since the last report, for every node in cluster order. */
  private reportChanges(output: string[], prefix: string): void {
    const cluster = this.mustCluster();
    for (const id of this.ids) {
      const before = this.snapshots.get(id);
      const after = this.snapshot(id);
      this.snapshots.set(id, after);
      if (before === undefined) continue;
      if (before.role !== after.role || before.term !== after.term || before.vote !== after.vote || before.leader !== after.leader) {
        output.push(`${prefix}${id}: ${after.role} term=${after.term} vote=${after.vote} leader=${after.leader}`);
      }
      const truncated = truncatedEntries(before.entries, after.entries, cluster.node(id).raft.log.firstIndex());
      if (truncated.length > 0) output.push(`${prefix}${id}: truncated [${describeEntries(truncated)}]`);
      // Installing a snapshot restarts the applied list from the snapshot.
      const installs = (cluster.installs.get(id) ?? []).slice(before.installCount);
      for (const installed of installs) {
        output.push(`${prefix}${id}: installed snapshot ${installed.metadata.index}@${installed.metadata.term} state=[${new TextDecoder().decode(installed.data).replace(/"/g, '')}]`);
      }
      const appliedFrom = installs.length > 0 ? 0 : before.appliedCount;
      const applied = after.appliedCount >= appliedFrom ? (cluster.applied.get(id) ?? []).slice(appliedFrom) : [];
      if (before.commit !== after.commit || applied.length > 0) {
        output.push(`${prefix}${id}: commit=${after.commit} applied=[${describeEntries(applied)}]`);
      }
      for (const outcome of (cluster.forwardedOutcomes.get(id) ?? []).slice(before.outcomeCount)) {
        const result = outcome.refusal === null ? `accepted at ${outcome.index}@${outcome.term}` : `refused ${outcome.refusal}`;
        output.push(`${prefix}${id}: proposal ${outcome.requestId} ${result} leaderHint=${outcome.leaderHint ?? 'none'}`);
      }
      for (const state of (cluster.readStates.get(id) ?? []).slice(before.readCount)) {
        const result = state.refusal === null ? `index=${state.index}` : `refused ${state.refusal}`;
        output.push(`${prefix}${id}: read ${state.requestId} ${result}`);
      }
    }
  }

  private describeStatus(id: NodeId): string {
    const status = this.mustCluster().node(id).status();
    return (
      `${id}: ${status.role} term=${status.term} vote=${status.vote ?? 'none'} leader=${status.leader ?? 'none'}` +
      ` last=${status.lastIndex} commit=${status.commitIndex} applied=${status.appliedIndex}`
    );
  }

  private entriesOf(id: NodeId): Entry[] {
    const node = this.mustCluster().node(id);
    const log = node.raft.log;
    return log.slice(log.firstIndex(), Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  }

  // ---------------------------------------------------------------------------------------------
  // Arguments

  private mustCluster(): TestCluster {
    if (this.cluster === null) throw new Error('no cluster');
    return this.cluster;
  }

  private checkNode(id: string, fail: (message: string) => never): NodeId {
    if (!this.ids.includes(id as NodeId)) fail(`unknown node '${id}'`);
    return id as NodeId;
  }

  private nodeArg(args: readonly string[], position: number, fail: (message: string) => never): NodeId {
    return this.checkNode(args[position] ?? fail('missing node id'), fail);
  }

  private nodesArg(args: readonly string[], fail: (message: string) => never): NodeId[] {
    return args.length === 0 ? this.ids : args.map((id) => this.checkNode(id, fail));
  }

  private countArg(args: readonly string[], position: number, fail: (message: string) => never): number {
    if (args.length > position + 1) fail('too many arguments');
    const value = args[position];
    if (value === undefined) return 1;
    const count = this.integer(value, fail);
    if (count < 1 || count > MAX_TICKS_PER_COMMAND) fail(`count must be in [1, ${MAX_TICKS_PER_COMMAND}]`);
    return count;
  }

  private noArgs(args: readonly string[], fail: (message: string) => never): void {
    if (args.length > 0) fail('takes no arguments');
  }

  private integer(value: string, fail: (message: string) => never): number {
    if (!/^-?\d+$/.test(value)) fail(`'${value}' is not an integer`);
    return Number(value);
  }
}

/** Shortest run of entries that {@link describeEntries} folds into one item. */
const MIN_FOLDED_RUN = 3;

/**
 * {@link describeEntry} for each entry, except that a run of entries in one term whose data counts
 * up (`x1 x2 x3`, as `propose-many` makes them) is folded into one item: `3..42@2:x1..x40`. Nothing
 * is lost: the run stands for exactly those entries.
 */
export function describeEntries(entries: readonly Entry[]): string {
  const items: string[] = [];
  let position = 0;
  while (position < entries.length) {
    const first = entries[position];
    if (first === undefined) break;
    const start = numbered(first);
    let end = position + 1;
    if (start !== null) {
      for (; end < entries.length; end++) {
        const next = entries[end];
        const nextNumbered = next === undefined ? null : numbered(next);
        const offset = end - position;
        if (
          next === undefined ||
          nextNumbered === null ||
          next.term !== first.term ||
          next.index !== first.index + offset ||
          nextNumbered.prefix !== start.prefix ||
          nextNumbered.number !== start.number + offset
        ) {
          break;
        }
      }
    }
    const last = entries[end - 1];
    if (start !== null && last !== undefined && end - position >= MIN_FOLDED_RUN) {
      items.push(`${first.index}..${last.index}@${first.term}:${start.prefix}${start.number}..${start.prefix}${start.number + end - position - 1}`);
      position = end;
    } else {
      items.push(describeEntry(first));
      position++;
    }
  }
  return items.join(' ');
}

/** The data of a normal entry split into a prefix and a trailing decimal number, if it has one. */
function numbered(entry: Entry): { prefix: string; number: number } | null {
  if (entry.type !== EntryType.Normal) return null;
  const match = /^(.*?)(\d{1,9})$/.exec(new TextDecoder().decode(entry.data));
  if (match === null) return null;
  const [, prefix = '', digits = ''] = match;
  // "x01" would not round-trip through the folded form.
  if (digits.length > 1 && digits.startsWith('0')) return null;
  return { prefix, number: Number(digits) };
}

/** {@link describeMessage}, with the entries of an AppendRequest folded by {@link describeEntries}. */
export function describeMessageCompactly(message: Message): string {
  if (message.type !== 'AppendRequest') return describeMessage(message);
  const head = describeMessage({ ...message, entries: [] });
  const suffix = 'entries=[]';
  if (!head.endsWith(suffix)) throw new Error(`unexpected AppendRequest rendering: ${head}`);
  return `${head.slice(0, -suffix.length)}entries=[${describeEntries(message.entries)}]`;
}

function describeOutcome(outcome: ProposeOutcome): string {
  switch (outcome.kind) {
    case 'Appended':
      return `Appended index=${outcome.index} term=${outcome.term}`;
    case 'Forwarded':
      return `Forwarded to ${outcome.leader}`;
    case 'Refused':
      return `Refused ${outcome.refusal} leaderHint=${outcome.leaderHint ?? 'none'}`;
  }
}

/** Entries of `before` that `after` no longer holds (same index, different term, or gone). */
/** Entries of `before` that `after` (which starts at `afterFirstIndex`) replaced or dropped; compacted entries do not count. */
function truncatedEntries(before: readonly Entry[], after: readonly Entry[], afterFirstIndex: number): Entry[] {
  for (const old of before) {
    if (old.index < afterFirstIndex) continue;
    const current = after[old.index - afterFirstIndex];
    if (current === undefined || current.term !== old.term) return before.filter((entry) => entry.index >= old.index);
  }
  return [];
}
