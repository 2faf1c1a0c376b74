import { describe, expect, it } from 'vitest';
import { fillHistoryTimes } from './image.js';

const layer = (created_by: string, created?: string) => ({ created_by, ...(created ? { created } : {}) });
const meta = (created_by: string) => ({ created_by, empty_layer: true });

describe('fillHistoryTimes', () => {
  it('gives metadata entries before the first new layer that layer’s time, not the base image’s', () => {
    const out = fillHistoryTimes([layer('base', 'T0'), meta('ENV A=1'), layer('RUN x', 'T1'), meta('LABEL l=1'), layer('RUN y', 'T2'), meta('CMD')]);
    expect(out.map((h) => h.created)).toEqual(['T0', 'T1', 'T1', 'T1', 'T2', 'T2']);
  });

  it('gives metadata on a base image with no new layer the base’s latest time', () => {
    expect(fillHistoryTimes([layer('a', 'T0'), layer('b', 'T1'), meta('ENV A=1')]).map((h) => h.created)).toEqual(['T0', 'T1', 'T1']);
  });

  it('leaves entries untimed when nothing has a time', () => {
    expect(fillHistoryTimes([meta('LABEL l=1')])[0]!.created).toBeUndefined();
  });
});
