import { afterEach, vi } from 'vitest';
import { cleanup } from '@testing-library/react';

// What jsdom lacks and the pages or user-event use: scrolling (a no-op
// here) and CSS.escape (user-event's arrow keys in a radio group).
window.scrollTo = () => {};
if (!globalThis.CSS?.escape) {
  Object.assign(globalThis, { CSS: { escape: (s: string) => s.replace(/[^\w-]/g, (c) => `\\${c}`) } });
}

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  sessionStorage.clear();
  history.replaceState(null, '', '/');
});
