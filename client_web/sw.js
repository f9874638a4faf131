// Service worker: keeps the app shell (pages, scripts, styles) so a citizen who reloads without a network still
// gets the page, with the state and the outbox it saved. Network first (the node always serves the current
// version); the cache only answers when the network fails or takes too long. The API and /ws are never cached.
const CACHE = 'jansamvad-shell-v1';
const SHELL = [
  '/',
  '/index.html',
  '/css/app.css',
  '/vendor/msgpack.min.js',
  '/js/citizen.js',
  '/js/regionpick.js',
  '/js/conn.js',
  '/js/ui.js',
  '/js/i18n.js',
  '/js/audio.js',
  '/js/ladder.js',
  '/i18n/hi.js',
  '/i18n/en.js',
];
const NETWORK_TIMEOUT_MS = 6000;

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((c) => c.addAll(SHELL))
      .catch(() => {}),
  );
  self.skipWaiting();
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

function shellKey(url) {
  // One cached copy of a page, whatever its query (?th=…).
  return url.pathname === '/' ? '/index.html' : url.pathname;
}

self.addEventListener('fetch', (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== 'GET' || url.origin !== location.origin) return;
  if (url.pathname.startsWith('/api/') || ['/ws', '/healthz', '/readyz'].includes(url.pathname)) return;
  if (url.pathname.endsWith('.html') && url.pathname !== '/index.html') return; // staff pages: never cached
  const key = shellKey(url);
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      const network = fetch(req).then((res) => {
        if (res.ok) cache.put(key, res.clone());
        return res;
      });
      try {
        return await Promise.race([
          network,
          new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), NETWORK_TIMEOUT_MS)),
        ]);
      } catch (err) {
        const hit = await cache.match(key);
        return hit || network; // nothing cached: keep waiting for the network
      }
    })(),
  );
});
