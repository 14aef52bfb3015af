// The WCAG 2 A and AA rules axe-core checks, on a rendered component in
// jsdom: what fails, as readable lines. Two rules need a real browser
// (colour contrast its layout, label-content-name-mismatch a canvas to spot
// icon fonts); the browser suite (e2e/) checks them on whole pages.
import axe from 'axe-core';

export async function accessibilityViolations(container: Element): Promise<string[]> {
  const result = await axe.run(container, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
    rules: { 'color-contrast': { enabled: false }, 'label-content-name-mismatch': { enabled: false } },
  });
  return result.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`);
}
