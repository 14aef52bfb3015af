// Stands in for the billing API in component tests: answers by
// "METHOD /path" and records what was asked, in order. The browser suite
// (e2e/) runs the same pages against the real service.
import { vi } from 'vitest';
import plans from './plans.json';

export { plans };

type Answer = { status?: number; body: unknown; headers?: Record<string, string> };
type Route = Answer | ((body: unknown) => Answer);

export function fakeApi(routes: Record<string, Route>) {
  const calls: { method: string; path: string; body: unknown }[] = [];
  vi.stubGlobal('fetch', async (input: Request | string, init?: RequestInit) => {
    const request = input instanceof Request ? input : new Request(input, init);
    const url = new URL(request.url, 'http://localhost');
    const text = request.method === 'GET' ? '' : await request.text();
    const body = text ? JSON.parse(text) : undefined;
    calls.push({ method: request.method, path: url.pathname, body });
    const route = routes[`${request.method} ${url.pathname}`];
    if (!route) throw new Error(`no fake answer for ${request.method} ${url.pathname}`);
    const answer = typeof route === 'function' ? route(body) : route;
    return new Response(JSON.stringify(answer.body), {
      status: answer.status ?? 200,
      headers: { 'content-type': 'application/json', ...answer.headers },
    });
  });
  return calls;
}
