// roomadmin.js: the open room's link, name and existence: copy its link;
// rename it and delete it (owners; the server checks too).
function start() {
  const ls = window.liveshare;
  const $ = (id) => document.getElementById(id);
  if (!ls) return;
  const fail = (what) => (e) => ls.banner(`${what}: ${ls.describe(e)}`);

  // Shown while a room is open; rename and delete for its owners.
  document.addEventListener('liveshare:version', (ev) => {
    $('room-actions').hidden = !ev.detail.room;
    const owner = ev.detail.role === 'owner' || !ev.detail.role;
    for (const b of document.querySelectorAll('#room-actions .owner-only')) b.hidden = !owner;
  });

  $('copy-link').addEventListener('click', async () => {
    const link = `${location.origin}/?room=${encodeURIComponent(ls.room().id)}`;
    try {
      await navigator.clipboard.writeText(link);
      ls.info(`Link copied: ${link}`);
    } catch (e) {
      // No clipboard (an insecure origin, or refused): show it to copy.
      ls.info(`Copy this link: ${link}`);
    }
  });

  $('room-rename').addEventListener('click', () => {
    $('rename-input').value = $('room-title').textContent;
    $('rename-dialog').showModal();
    $('rename-input').select();
  });
  $('rename-dialog').addEventListener('close', async () => {
    if ($('rename-dialog').returnValue !== 'ok') return;
    const name = $('rename-input').value.trim();
    const id = ls.room().id;
    if (!name || !id) return;
    try {
      const r = await ls.api('PATCH', `/rooms/${encodeURIComponent(id)}`, { name });
      ls.setRoomName(r.name);
      ls.info(`Renamed to ${r.name}.`);
    } catch (e) {
      fail('Could not rename the room')(e);
    }
  });

  $('room-delete').addEventListener('click', () => $('delete-dialog').showModal());
  $('delete-dialog').addEventListener('close', async () => {
    if ($('delete-dialog').returnValue !== 'ok') return;
    const id = ls.room().id;
    if (!id) return;
    try {
      // The stream then says room_deleted, which closes the room here.
      await ls.api('DELETE', `/rooms/${encodeURIComponent(id)}`);
    } catch (e) {
      fail('Could not delete the room')(e);
    }
  });
}

start();
