import { test } from 'node:test';
import assert from 'node:assert/strict';

import { sseParser } from '../assets/sse.js';

test('events split across chunks arrive whole, in order', () => {
  const got = [];
  const p = sseParser((d) => got.push(d));
  p.push('data: {"a":');
  p.push('1}\n\nda');
  p.push('ta: [DONE]\n\n');
  assert.deepEqual(got, ['{"a":1}', '[DONE]']);
});

test('CRLF, comments, other fields and multi-line data', () => {
  const got = [];
  const p = sseParser((d) => got.push(d));
  p.push(': keep-alive\r\n\r\nevent: message\r\nid: 3\r\ndata: one\r\ndata:two\r\n\r\n');
  assert.deepEqual(got, ['one\ntwo']);
});

test('a last event without the blank line is delivered at the end', () => {
  const got = [];
  const p = sseParser((d) => got.push(d));
  p.push('data: {"error": {"message": "boom"}}');
  assert.deepEqual(got, []);
  p.end();
  assert.deepEqual(got, ['{"error": {"message": "boom"}}']);
});
