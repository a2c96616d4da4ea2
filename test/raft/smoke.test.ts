import { describe, expect, it } from 'vitest';
import { TestCluster } from '../support/cluster.js';

describe('three-node cluster', () => {
  it('elects a leader and commits proposals on every node', () => {
    const cluster = new TestCluster(['n1', 'n2', 'n3']);
    cluster.campaign('n1');
    cluster.deliverAll();
    expect(cluster.leaders()).toEqual(['n1']);
    cluster.propose('n1', 'a');
    cluster.propose('n2', 'b');
    cluster.deliverAll();
    cluster.tick('n1');
    cluster.deliverAll();
    for (const id of ['n1', 'n2', 'n3']) expect(cluster.appliedData(id)).toEqual(['a', 'b']);
  });
});
