// The composite trace, read: pure functions (no DOM) that turn a request's
// trace nodes and sub-call summaries into a timeline layout, and that read
// the structured data strategies write into their stage texts (markdown
// tables, the council's anonymisation and ranking, the vote, the cascade).
// Unit-tested with `node --test host/ui/tests/`.

/** The lane of calls made before any stage was traced (parent = the root). */
export const UNSTAGED = '(no stage)';

const isCall = (n) => n?.step === 'llm_call';
const isStage = (n) => n != null && typeof n.step === 'string' && n.step !== 'strategy' && n.step !== 'llm_call';
const num = (v) => (Number.isFinite(Number(v)) && v !== null && v !== '' ? Number(v) : 0);
const orNull = (v) => (v === undefined ? null : v);

/** `ok`, `failed`, or `limit` (the sandbox stopped it: its error starts with `LimitExceeded`). */
export function callStatus(node) {
  const e = node?.error;
  if (e == null || e === '') return 'ok';
  return String(e).startsWith('LimitExceeded') ? 'limit' : 'failed';
}

/**
 * Stages by name, in order of first appearance. Several nodes may share a
 * name: they are one stage, whose events are their texts in order.
 * Calls hanging under no stage node get the synthetic stage UNSTAGED.
 * @returns {{name: string, events: {id: number, at_ms: number, text: string}[], calls: object[]}[]}
 */
export function stagesOf(nodes) {
  if (!Array.isArray(nodes)) return [];
  const byId = new Map(nodes.filter(Boolean).map((n) => [n.id, n]));
  const stages = [];
  const byName = new Map();
  const stage = (name) => {
    let s = byName.get(name);
    if (!s) {
      s = { name, events: [], calls: [] };
      byName.set(name, s);
      stages.push(s);
    }
    return s;
  };
  for (const n of nodes) {
    if (isStage(n)) {
      stage(n.step).events.push({ id: n.id, at_ms: num(n.start_ms), text: n.preview ?? '' });
    } else if (isCall(n)) {
      const parent = byId.get(n.parent_id);
      stage(isStage(parent) ? parent.step : UNSTAGED).calls.push(n);
    }
  }
  return stages;
}

/**
 * Which sub-call summary (from `calls`, with the cost) each llm_call node is:
 * the unused summary of the same model whose start, relative to the
 * request's `requestTime` (unix seconds), is nearest the node's start_ms.
 * @returns {Map<number, object>} node id -> call summary
 */
export function matchCallCosts(nodes, calls, requestTime) {
  const out = new Map();
  if (!Array.isArray(nodes) || !Array.isArray(calls) || calls.length === 0) return out;
  const base = Number.isFinite(requestTime) ? requestTime : Math.min(...calls.map((c) => num(c.time)));
  const unused = new Set(calls);
  const callNodes = nodes.filter(isCall).sort((a, b) => num(a.start_ms) - num(b.start_ms) || a.id - b.id);
  for (const n of callNodes) {
    let best = null;
    let bestGap = Infinity;
    for (const c of unused) {
      if (c.model !== n.model && c.model_group !== n.model) continue;
      const gap = Math.abs((num(c.time) - base) * 1000 - num(n.start_ms));
      if (gap < bestGap) {
        best = c;
        bestGap = gap;
      }
    }
    if (best) {
      unused.delete(best);
      out.set(n.id, best);
    }
  }
  return out;
}

/**
 * The timeline of a composite run.
 * - stages: one lane each, in order of first appearance; a lane's span runs
 *   from its first event (or call) to the end of its last call (or event).
 * - rows: call rows, lane after lane; a call goes to the first row of its
 *   lane whose last bar ended by the time it starts, so concurrent calls
 *   stack and sequential ones share a row.
 * - bars: one per llm_call node, with its row, status and matched cost.
 * Options: `requestTime` (unix s, for cost matching); `extendStages` (each
 * lane runs on to the next lane's start, or the run's end: for a live run
 * whose calls are not known yet).
 */
export function layoutTrace(nodes, calls = [], opts = {}) {
  const empty = { root: null, stages: [], rows: [], bars: [], duration_ms: 0 };
  if (!Array.isArray(nodes) || nodes.length === 0) return empty;
  nodes = nodes.filter((n) => n && typeof n === 'object');
  const rootNode = nodes.find((n) => n.step === 'strategy') ?? null;
  const costs = matchCallCosts(nodes, calls, opts.requestTime);
  const grouped = stagesOf(nodes);
  const stages = [];
  const rows = [];
  const bars = [];
  grouped.forEach((g, si) => {
    const sorted = [...g.calls].sort((a, b) => num(a.start_ms) - num(b.start_ms) || a.id - b.id);
    const own = []; // this lane's rows: {end, lastStart}
    const firstRow = rows.length;
    for (const n of sorted) {
      const start = Math.max(0, num(n.start_ms));
      const dur = Math.max(0, num(n.duration_ms));
      // Free when its last bar ended by now; two calls starting together
      // (one complete-all) never share, even with zero durations.
      let k = own.findIndex((r) => r.end <= start && r.lastStart !== start);
      if (k < 0) {
        k = own.length;
        own.push({ end: 0, lastStart: -1 });
        rows.push({ stage: si, index: k });
      }
      own[k].end = start + dur;
      own[k].lastStart = start;
      const call = costs.get(n.id) ?? null;
      bars.push({
        id: n.id,
        parent_id: orNull(n.parent_id),
        stage: si,
        row: firstRow + k,
        lane_row: k,
        model: n.model ?? '?',
        start_ms: start,
        duration_ms: dur,
        end_ms: start + dur,
        status: callStatus(n),
        error: orNull(n.error),
        prompt_tokens: orNull(n.prompt_tokens),
        completion_tokens: orNull(n.completion_tokens),
        preview: orNull(n.preview),
        cost: call?.cost ?? null,
        call,
      });
    }
    const laneBars = bars.filter((b) => b.stage === si);
    const times = [...g.events.map((e) => e.at_ms), ...laneBars.map((b) => b.start_ms)];
    const ends = [...g.events.map((e) => e.at_ms), ...laneBars.map((b) => b.end_ms)];
    stages.push({
      name: g.name,
      index: si,
      start_ms: times.length ? Math.min(...times) : 0,
      end_ms: ends.length ? Math.max(...ends) : 0,
      events: g.events,
      first_row: firstRow,
      row_count: own.length,
      calls: laneBars.length,
      failed: laneBars.filter((b) => b.status !== 'ok').length,
    });
  });
  const lastTimes = [num(rootNode?.duration_ms), ...stages.map((s) => s.end_ms)];
  const duration = Math.max(0, ...lastTimes);
  if (opts.extendStages) {
    stages.forEach((s, i) => {
      const next = stages.slice(i + 1).find((t) => t.start_ms >= s.start_ms);
      s.end_ms = Math.max(s.end_ms, next ? next.start_ms : duration);
    });
  }
  const root = rootNode
    ? { profile: rootNode.model ?? null, duration_ms: num(rootNode.duration_ms), error: orNull(rootNode.error) }
    : null;
  return { root, stages, rows, bars, duration_ms: duration };
}

// ---- Markdown tables -------------------------------------------------------

const TABLE_LINE = /^\s*\|.*\|\s*$/;
const SEPARATOR = /^\s*\|?(\s*:?-{3,}:?\s*\|)+\s*(:?-{3,}:?\s*)?\|?\s*$/;

/** The cells of one `| a | b |` line; `\|` is a literal bar. */
function cells(line) {
  const inner = line.trim().replace(/^\|/, '').replace(/\|$/, '');
  const out = [];
  let cell = '';
  for (let i = 0; i < inner.length; i++) {
    if (inner[i] === '\\' && inner[i + 1] === '|') {
      cell += '|';
      i++;
    } else if (inner[i] === '|') {
      out.push(cell.trim());
      cell = '';
    } else {
      cell += inner[i];
    }
  }
  out.push(cell.trim());
  return out;
}

/**
 * A text cut into plain parts and markdown tables (a header line, a `---`
 * separator line, then rows), for rendering any stage event.
 * @returns {({type: 'text', text: string} | {type: 'table', headers: string[], rows: string[][]})[]}
 */
export function markdownBlocks(text) {
  const lines = String(text ?? '').split('\n');
  const blocks = [];
  let plain = [];
  const flush = () => {
    if (plain.length) blocks.push({ type: 'text', text: plain.join('\n') });
    plain = [];
  };
  for (let i = 0; i < lines.length; i++) {
    if (TABLE_LINE.test(lines[i]) && i + 1 < lines.length && SEPARATOR.test(lines[i + 1])) {
      flush();
      const headers = cells(lines[i]);
      const rows = [];
      i += 2;
      while (i < lines.length && TABLE_LINE.test(lines[i])) rows.push(cells(lines[i++]));
      i--;
      blocks.push({ type: 'table', headers, rows });
    } else {
      plain.push(lines[i]);
    }
  }
  flush();
  return blocks;
}

/** The first markdown table in a text, or null. */
export function parseMarkdownTable(text) {
  const t = markdownBlocks(text).find((b) => b.type === 'table');
  return t ? { headers: t.headers, rows: t.rows } : null;
}

/** A table's rows as objects keyed by lower-case header. */
function records(table) {
  const keys = table.headers.map((h) => h.toLowerCase());
  return table.rows.map((r) => Object.fromEntries(keys.map((k, i) => [k, r[i] ?? ''])));
}

/** Every stage event, in order, with its stage name. */
function allEvents(nodes) {
  return stagesOf(nodes).flatMap((s) => s.events.map((e) => ({ ...e, stage: s.name })));
}

// ---- Strategy-specific readings ---------------------------------------------

/**
 * The council's stage texts read back: the anonymisation map (stage 1:
 * `anonymized as Response A = m1, Response B = m2`), each reviewer's ranking
 * (`reviewer 1 (m) ranked B > A (weight 1.00)`) and the aggregate ranking
 * (`aggregate of N usable ranking(s) ...` and a markdown table). Null when the
 * trace holds none of them.
 */
export function councilFromTrace(nodes) {
  let map = null;
  let ranking = null;
  const reviewers = [];
  for (const e of allEvents(nodes)) {
    const text = e.text;
    const anon = /^anonymized as (.*)$/s.exec(text);
    if (anon) {
      map = [];
      const pair = /Response ([A-Z]{1,2}) = (.+?)(?=, Response [A-Z]{1,2} = |$)/gs;
      for (const m of anon[1].matchAll(pair)) map.push({ label: m[1], model: m[2].trim() });
      continue;
    }
    const agg = /^aggregate of (\d+) usable ranking\(s\)/.exec(text);
    if (agg) {
      const table = parseMarkdownTable(text);
      ranking = {
        usable: Number(agg[1]),
        rows: table
          ? records(table).map((r) => ({
              place: Number(r.place),
              response: r.response,
              label: r.response.replace(/^Response\s+/, ''),
              member: r.member,
              mean_rank: Number(r['mean rank']),
            }))
          : [],
      };
      continue;
    }
    const rev = /^reviewer (\d+) \((.+)\) ranked (.+?) \(weight ([\d.]+)(?:, (.*))?\)$/s.exec(text);
    if (rev) {
      reviewers.push({
        reviewer: Number(rev[1]),
        model: rev[2],
        order: rev[3].split(' > ').map((s) => s.trim()),
        weight: Number(rev[4]),
        note: rev[5] ?? null,
      });
    }
  }
  if (!map && !ranking && reviewers.length === 0) return null;
  return { map: map ?? [], ranking, reviewers };
}

/** Rust's `{:?}` of a string (`"4\"2"`) as the string itself. */
function unquote(s) {
  try {
    return JSON.parse(s);
  } catch {
    return s.replace(/^"|"$/g, '');
  }
}

/**
 * Self-consistency's vote: the `| answer | votes | samples |` table and the
 * `winner: "42" with 3 of 5 vote(s); answering with sample 1` line. Null when
 * no event holds the table.
 */
export function votesFromTrace(nodes) {
  for (const e of allEvents(nodes)) {
    const table = parseMarkdownTable(e.text);
    if (!table) continue;
    const h = table.headers.map((x) => x.toLowerCase());
    if (!(h.includes('answer') && h.includes('votes'))) continue;
    const rows = records(table).map((r) => ({
      answer: r.answer,
      votes: Number(r.votes),
      samples: (r.samples ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
        .map(Number),
    }));
    let winner = null;
    const w = /^winner: (".*") with (\d+) of (\d+) vote\(s\)(.*?); answering with sample (\d+)\s*$/m.exec(e.text);
    if (w) {
      winner = {
        answer: unquote(w[1]),
        votes: Number(w[2]),
        of: Number(w[3]),
        tie: w[4].includes('tie'),
        sample: Number(w[5]),
      };
    }
    return { stage: e.stage, rows, winner };
  }
  return null;
}

/**
 * The cascade's tiers (stages `tier 1`, `tier 2`, ... — `tier 1: model` is
 * read too) and which one was accepted: `accepted the answer of M (why)`, or
 * the last tier (`M is the last tier; its answer is accepted as it is`) when
 * its call and the run succeeded. Null when the trace has no tier stage.
 */
export function cascadeFromTrace(nodes) {
  const stages = stagesOf(nodes);
  const root = Array.isArray(nodes) ? nodes.find((n) => n?.step === 'strategy') : null;
  const tiers = [];
  for (const s of stages) {
    const m = /^tier (\d+)(?::\s*(.+))?$/.exec(s.name);
    if (!m) continue;
    const tier = { tier: Number(m[1]), stage: s.name, model: m[2]?.trim() ?? null, outcome: 'pending', reason: null, last: false };
    for (const { text } of s.events) {
      let x;
      if ((x = /^asking (.+)$/.exec(text))) tier.model ??= x[1];
      else if ((x = /^(.+) is the last tier; its answer is accepted as it is$/.exec(text))) {
        tier.model ??= x[1];
        tier.last = true;
      } else if ((x = /^accepted the answer of (.+?) \((.*)\)$/s.exec(text))) {
        tier.model ??= x[1];
        tier.outcome = 'accepted';
        tier.reason = x[2];
      } else if (text === 'not accepted; escalating') {
        tier.outcome = 'escalated';
      } else if ((x = /^(.+?) failed \((.*)\); escalating$/s.exec(text))) {
        tier.outcome = 'failed';
        tier.reason = x[2];
      } else if ((x = /^verifier (\S+) (rejected it: .*|failed .*|'s verdict could not be read .*)$/s.exec(text))) {
        tier.reason = `verifier ${x[1]} ${x[2]}`;
      }
    }
    if (tier.last && tier.outcome === 'pending') {
      const failedCall = s.calls.some((c) => callStatus(c) !== 'ok');
      if (root?.error || failedCall) {
        tier.outcome = 'failed';
        tier.reason = root?.error ?? 'its call failed';
      } else {
        tier.outcome = 'accepted';
        tier.reason = 'last tier';
      }
    }
    tiers.push(tier);
  }
  if (tiers.length === 0) return null;
  return { tiers, accepted: tiers.find((t) => t.outcome === 'accepted') ?? null };
}

// ---- Live runs (playground) -------------------------------------------------

/**
 * Stage events from a stream's `reasoning_content` text, whose lines are
 * `[<stage>] <text>`; a line without the prefix continues the event before.
 * Returns complete events only (the text after the last newline may still
 * grow) and the rest.
 */
export function parseReasoning(text) {
  const events = [];
  const end = text.lastIndexOf('\n');
  const done = end < 0 ? '' : text.slice(0, end);
  const rest = end < 0 ? text : text.slice(end + 1);
  if (done) {
    for (const line of done.split('\n')) {
      const m = /^\[([^\]\n]+)\] (.*)$/.exec(line);
      if (m) events.push({ stage: m[1], text: m[2] });
      else if (events.length) events[events.length - 1].text += `\n${line}`;
      else events.push({ stage: UNSTAGED, text: line });
    }
  }
  return { events, rest };
}

/**
 * Trace nodes for a run in progress, from stage events timed in the page
 * (`at_ms` since the request was sent): a root and one node per event.
 */
export function nodesFromEvents(events, { profile = null, elapsed_ms = 0 } = {}) {
  const nodes = [{ id: 0, parent_id: null, step: 'strategy', model: profile, start_ms: 0, duration_ms: elapsed_ms, preview: null, error: null }];
  events.forEach((e, i) => {
    nodes.push({ id: i + 1, parent_id: 0, step: e.stage, model: null, start_ms: e.at_ms, duration_ms: 0, preview: e.text, error: null });
  });
  return nodes;
}
