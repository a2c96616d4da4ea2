import { describe, expect, it } from 'vitest';
import { ConfigError, nodeId, resolveRaftConfig } from '../../src/raft/index.js';

describe('resolveRaftConfig', () => {
  it('fills every default and accepts a well-formed configuration', () => {
    const config = resolveRaftConfig({ id: nodeId('n1'), voters: ['n1', 'n2', 'n3'].map(nodeId) });
    expect(config).toMatchObject({ electionTimeoutTicks: 10, heartbeatIntervalTicks: 1, preVote: true, checkQuorum: true });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('refuses node ids that are not well-formed Unicode, since they would not survive the wire', () => {
    const attempt = (): unknown => resolveRaftConfig({ id: nodeId('n\ud800'), voters: [nodeId('n\ud800')] });
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(/well-formed/);
    expect(() => resolveRaftConfig({ id: nodeId('n😀'), voters: [nodeId('n😀')] })).not.toThrow();
  });

  it('names the field of a value of the wrong type', () => {
    const bad = { id: nodeId('n1'), voters: [nodeId('n1')], maxInflightMessages: '8' as unknown as number };
    expect(() => resolveRaftConfig(bad)).toThrow(expect.objectContaining({ field: 'maxInflightMessages', code: 'InvalidConfig' }) as Error);
  });
});
