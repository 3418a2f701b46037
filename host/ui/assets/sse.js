// Server-sent events, read from a fetch body: text in, one `data` payload
// out per event (multi-line data joined with \n; comments and other fields
// ignored). No DOM: unit-tested with node.

export function sseParser(onData) {
  let buffer = '';
  const flush = (block) => {
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    if (data.length) onData(data.join('\n'));
  };
  return {
    /** Feeds decoded text; complete events are delivered at once. */
    push(text) {
      buffer += text;
      let m;
      while ((m = /\r?\n\r?\n/.exec(buffer))) {
        const block = buffer.slice(0, m.index);
        buffer = buffer.slice(m.index + m[0].length);
        flush(block);
      }
    },
    /** Delivers a last event the stream did not end with a blank line. */
    end() {
      if (buffer.trim()) flush(buffer);
      buffer = '';
    },
  };
}
