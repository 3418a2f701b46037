// Playground: one prompt to any model or composite profile, streamed
// (fetch + SSE). A composite's stage trace (reasoning_content lines) fills
// the panel beside the answer and a provisional timeline timed in the page;
// when the stream ends, the real trace is fetched by the request id header
// and drawn with the request page's timeline.

import { api, authHeaders, errorOf, query } from './api.js';
import { h, s, show, debounce } from './dom.js';
import * as f from './format.js';
import { sseParser } from './sse.js';
import { layoutTrace, parseReasoning, nodesFromEvents } from './timeline.js';
import { drawTimeline, legend } from './timeline-svg.js';

let lastModel = '';
let lastPrompt = '';

export function mount(main) {
  const select = h('select', { id: 'pg-model', name: 'model', required: true }, h('option', { value: '' }, 'Loading models…'));
  const prompt = h('textarea', { id: 'pg-prompt', name: 'prompt', rows: '4', required: true, placeholder: 'Ask something, e.g. What is six times seven?' }, lastPrompt);
  const send = h('button', { type: 'submit', id: 'pg-send', class: 'btn btn-primary' }, 'Send');
  const stop = h('button', { type: 'button', id: 'pg-stop', class: 'btn', hidden: true }, 'Stop');
  const status = h('p', { id: 'pg-status', class: 'pg-status', role: 'status' });
  const meta = h('p', { id: 'pg-meta', class: 'muted small' });
  const answer = h('div', { id: 'pg-answer', class: 'pg-answer', 'aria-live': 'off', tabindex: '0' });
  const trace = h('div', { id: 'pg-trace', class: 'pg-trace', tabindex: '0' });
  const svg = s('svg', { id: 'pg-timeline', class: 'timeline' });
  const timelineNote = h('p', { class: 'muted small' });
  const timelineCard = h('section', { class: 'card', hidden: true },
    h('div', { class: 'card-head' }, h('h2', null, 'Timeline'), timelineNote),
    h('div', { class: 'timeline-wrap' }, svg), legend());
  const form = h('form', { id: 'pg-form', class: 'pg-form' },
    h('div', { class: 'field' }, h('label', { for: 'pg-model' }, 'Model or profile'), select),
    h('div', { class: 'field field-wide' }, h('label', { for: 'pg-prompt' }, 'Prompt'), prompt),
    h('div', { class: 'field-buttons' }, send, stop, h('span', { class: 'muted small' }, 'Ctrl+Enter sends')));
  const root = h('section', { id: 'playground', class: 'page' },
    h('h1', null, 'Playground'),
    h('section', { class: 'card' }, form, status, meta),
    h('div', { class: 'pg-grid' },
      h('section', { class: 'card' }, h('h2', null, 'Answer'), answer),
      h('section', { class: 'card' }, h('h2', null, 'Stage trace'), trace)),
    timelineCard);
  main.append(root);

  let controller = null;
  let ticker = null;
  let composites = new Set();

  (async () => {
    try {
      const [list, models] = await Promise.allSettled([api('/v1/models'), api('/ui/api/models')]);
      if (list.status === 'rejected') throw list.reason;
      if (models.status === 'fulfilled') composites = new Set((models.value.profiles ?? []).map((p) => p.model_name));
      const ids = (list.value.data ?? []).map((m) => m.id).sort();
      const comp = ids.filter((id) => composites.has(id));
      const plain = ids.filter((id) => !composites.has(id));
      const opts = (xs) => xs.map((id) => h('option', { value: id }, id));
      select.replaceChildren(
        ...(comp.length ? [h('optgroup', { label: 'Composite profiles' }, opts(comp)), h('optgroup', { label: 'Models' }, opts(plain))] : opts(plain)));
      if (ids.includes(lastModel)) select.value = lastModel;
      if (!ids.length) show(status, 'No model is served.');
    } catch (e) {
      select.replaceChildren(h('option', { value: '' }, 'no models'));
      status.textContent = `error: could not list the models: ${e.message}`;
    } finally {
      root.dataset.ready = 'true';
    }
  })();

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    run();
  });
  prompt.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      run();
    }
  });
  stop.addEventListener('click', () => controller?.abort());

  async function run() {
    const model = select.value;
    const text = prompt.value.trim();
    if (!model || !text) {
      status.textContent = 'error: pick a model and write a prompt';
      return;
    }
    lastModel = model;
    lastPrompt = prompt.value;
    controller?.abort();
    controller = new AbortController();
    const mine = controller;
    answer.replaceChildren();
    trace.replaceChildren();
    meta.textContent = '';
    timelineCard.hidden = true;
    redraw = null;
    send.disabled = true;
    stop.hidden = false;
    status.textContent = 'sending…';

    const t0 = performance.now();
    const sentAt = Date.now() / 1000;
    const times = []; // when each stage event arrived, ms since sending
    let reasoning = '';
    let firstToken = null;
    let usage = null;
    let streamError = null;
    let done = false;
    // Stage events are timed as they arrive; the live timeline is redrawn
    // then, and every 250 ms so the run visibly goes on.
    let events = [];
    const arrived = () => {
      const parsed = parseReasoning(reasoning).events;
      const now = performance.now() - t0;
      while (times.length < parsed.length) times.push(now);
      events = parsed;
      live();
    };
    const live = () => {
      if (!events.length) return;
      timelineCard.hidden = false;
      timelineNote.textContent = 'live: stage events as they arrive, timed in this page; the calls are drawn when the run ends';
      const nodes = nodesFromEvents(events.map((e, i) => ({ ...e, at_ms: times[i] })), { profile: model, elapsed_ms: performance.now() - t0 });
      const layout = layoutTrace(nodes, [], { extendStages: true });
      redraw = () => drawTimeline(svg, layout, { live: true });
      redraw();
    };

    let requestId = null;
    let streamed = false;
    try {
      const res = await fetch('/v1/chat/completions', {
        method: 'POST',
        signal: mine.signal,
        headers: authHeaders({ 'content-type': 'application/json', accept: 'text/event-stream' }),
        body: JSON.stringify({ model, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: text }] }),
      });
      requestId = res.headers.get('x-conclave-request-id');
      if (!res.ok) throw await errorOf(res);
      status.textContent = 'streaming…';
      streamed = true;
      ticker = setInterval(live, 250);
      const parser = sseParser((data) => {
        if (data === '[DONE]') {
          done = true;
          return;
        }
        let msg;
        try {
          msg = JSON.parse(data);
        } catch {
          return; // not JSON: not ours to show
        }
        if (msg.error) {
          streamError = msg.error.message ?? String(msg.error);
          return;
        }
        if (msg.usage) usage = msg.usage;
        const delta = msg.choices?.[0]?.delta ?? {};
        if (delta.reasoning_content) {
          reasoning += delta.reasoning_content;
          trace.append(delta.reasoning_content);
          trace.scrollTop = trace.scrollHeight;
          arrived();
        }
        if (delta.content) {
          firstToken ??= performance.now() - t0;
          answer.append(delta.content);
        }
      });
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done: end } = await reader.read();
        if (end) break;
        parser.push(decoder.decode(value, { stream: true }));
      }
      parser.push(decoder.decode());
      parser.end();
      if (!done && !streamError) streamError = 'the stream ended before [DONE]';
    } catch (e) {
      streamError = e.name === 'AbortError' ? 'stopped' : e.status === 0 || e instanceof TypeError ? 'the gateway cannot be reached' : e.message;
    } finally {
      clearInterval(ticker);
      ticker = null;
    }
    if (mine !== controller) return; // a newer run took over
    const total = performance.now() - t0;
    meta.textContent = [
      `${f.ms(total)} in all`,
      firstToken != null ? `first token after ${f.ms(firstToken)}` : null,
      usage ? `${f.int(usage.prompt_tokens)} prompt + ${f.int(usage.completion_tokens)} completion tokens` : null,
    ].filter(Boolean).join(' · ');
    if (reasoning && !reasoning.endsWith('\n')) reasoning += '\n'; // the last event is complete now
    arrived();
    if (requestId && streamed) {
      status.textContent = 'fetching the trace…';
      await realTrace(requestId, model, sentAt, mine.signal);
    }
    if (mine !== controller) return;
    status.textContent = streamError ? `error: ${streamError}` : 'done';
    send.disabled = false;
    stop.hidden = true;
  }

  /**
   * The recorded request and its real timeline. Its outcome is written just
   * after the stream ends, so the table is asked (a 200 either way) until the
   * id shows up, rather than the request itself (a 404 until then).
   */
  async function realTrace(id, model, sentAt, signal) {
    const href = `#/requests/${encodeURIComponent(id)}`;
    for (let i = 0; i < 10; i++) {
      try {
        const list = await api(`/ui/api/requests${query({ model, since: (sentAt - 5).toFixed(3), limit: 200 })}`, { signal });
        if ((list.requests ?? []).some((r) => r.id === id)) {
          const d = await api(`/ui/api/requests/${encodeURIComponent(id)}`, { signal });
          meta.append(' · ', h('a', { href, id: 'pg-request-link' }, 'open the request'));
          if (!Array.isArray(d.trace)) return;
          const layout = layoutTrace(d.trace, d.calls ?? [], { requestTime: d.request?.time });
          timelineCard.hidden = false;
          timelineNote.replaceChildren('as recorded by the gateway · ', h('a', { href }, 'details'));
          redraw = () => drawTimeline(svg, layout);
          redraw();
          return;
        }
      } catch {
        return; // aborted, or the recorded request cannot be read: the live timeline stays
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  let redraw = null;
  const onResize = debounce(() => redraw?.(), 150);
  window.addEventListener('resize', onResize);
  return () => {
    controller?.abort();
    controller = null;
    clearInterval(ticker);
    window.removeEventListener('resize', onResize);
  };
}
