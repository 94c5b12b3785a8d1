// search.js: find a table by its label or id. Typing marks the matches on
// the canvas; Enter brings the next match to the middle and selects it.
function start() {
  const ls = window.liveshare;
  const input = document.getElementById('search');
  if (!ls || !input) return;
  let matches = [], at = -1;

  function mark() {
    const q = input.value.trim().toLowerCase();
    matches = q ? ls.state().nodes.filter((n) => (n.label || '').toLowerCase().includes(q) || n.id.toLowerCase().includes(q)).map((n) => n.id) : [];
    at = -1;
    const set = new Set(matches);
    for (const g of document.querySelectorAll('#nodes g.node')) g.classList.toggle('match', set.has(g.dataset.id));
    input.classList.toggle('none', !!q && matches.length === 0);
    input.title = q ? `${matches.length} found` : '';
  }

  input.addEventListener('input', mark);
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') {
      ev.preventDefault();
      if (!matches.length) mark();
      if (!matches.length) return;
      at = (at + 1) % matches.length;
      ls.focusNode(matches[at]);
    } else if (ev.key === 'Escape') {
      input.value = '';
      mark();
      input.blur();
    }
  });
  // The marks follow the graph as it changes.
  document.addEventListener('liveshare:drawn', () => { if (input.value.trim()) {
    const set = new Set(matches);
    for (const g of document.querySelectorAll('#nodes g.node')) g.classList.toggle('match', set.has(g.dataset.id));
  } });
  document.addEventListener('keydown', (ev) => {
    const t = ev.target;
    const typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable);
    if (ev.key === '/' && !typing && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      input.focus();
      input.select();
    }
  });
}

start();
