// help.js: the shortcut list, opened with "?" (and closed with Esc).
document.addEventListener('keydown', (ev) => {
  const t = ev.target;
  const typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable);
  const help = document.getElementById('help');
  if (ev.key === '?' && !typing && help && !help.open) {
    ev.preventDefault();
    help.showModal();
  }
});
